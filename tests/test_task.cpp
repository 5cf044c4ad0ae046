// task<T>, sync_wait, when_all, event_loop: laziness, results, exceptions, timers, post.
#include <childproc/event_loop.hpp>
#include <childproc/task.hpp>
#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

namespace cp = childproc;
using namespace std::chrono_literals;

static cp::task<int> forty_two() { co_return 42; }
static cp::task<int> add(int a, int b) { co_return co_await forty_two() - 42 + a + b; }
static cp::task<void> fail() {
  throw std::runtime_error("boom");
  co_return;
}

TEST_CASE("a task is lazy and gives its value through sync_wait") {
  bool started = false;
  auto body = [&]() -> cp::task<std::string> {  // named: a coroutine lambda's captures live in the lambda
    started = true;
    co_return "done";
  };
  auto t = body();
  CHECK(!started);
  CHECK(cp::sync_wait(std::move(t)) == "done");
  CHECK(started);
  CHECK(cp::sync_wait(add(1, 2)) == 3);
}

TEST_CASE("an exception in a task is rethrown where it is awaited") {
  auto outer = []() -> cp::task<std::string> {
    try {
      co_await fail();
    } catch (const std::runtime_error& e) {
      co_return std::string("caught ") + e.what();
    }
    co_return "not caught";
  };
  CHECK(cp::sync_wait(outer()) == "caught boom");
  CHECK_THROWS_WITH_AS(cp::sync_wait(fail()), "boom", std::runtime_error);
}

TEST_CASE("deep chains of synchronously completing tasks do not grow the stack") {
  struct deep {
    static cp::task<int> count(int n) {
      if (n == 0) co_return 0;
      co_return 1 + co_await count(n - 1);
    }
  };
  CHECK(cp::sync_wait(deep::count(20000)) == 20000);
  auto loop = []() -> cp::task<int> {
    int sum = 0;
    for (int i = 0; i < 1000000; ++i) sum += co_await forty_two() - 41;
    co_return sum;
  };
  CHECK(cp::sync_wait(loop()) == 1000000);
}

TEST_CASE("sleep resumes after the duration; when_all runs tasks concurrently") {
  std::vector<std::string> events;
  auto nap = [&](std::chrono::milliseconds d, int v) -> cp::task<int> {
    events.push_back("start " + std::to_string(v));
    auto r = co_await cp::event_loop::current()->sleep(d);
    REQUIRE(r);
    events.push_back("end " + std::to_string(v));
    co_return v;
  };
  const auto t0 = std::chrono::steady_clock::now();
  auto [a, b, c] = cp::sync_wait(cp::when_all(nap(150ms, 1), nap(100ms, 2), nap(50ms, 3)));
  CHECK(std::chrono::steady_clock::now() - t0 >= 150ms);
  CHECK(a == 1);
  CHECK(b == 2);
  CHECK(c == 3);
  // Concurrent: all three sleep at once, and the shortest ends first.
  CHECK(events == std::vector<std::string>{"start 1", "start 2", "start 3", "end 3", "end 2", "end 1"});
  std::vector<cp::task<int>> many;
  for (int i = 0; i < 100; ++i) many.push_back(nap(10ms, i));
  auto all = cp::sync_wait(cp::when_all(std::move(many)));
  REQUIRE(all.size() == 100);
  for (int i = 0; i < 100; ++i) CHECK(all[static_cast<std::size_t>(i)] == i);
}

TEST_CASE("when_all rethrows the first exception once every task has ended") {
  int finished = 0;
  auto slow = [&]() -> cp::task<void> {
    (void)co_await cp::event_loop::current()->sleep(50ms);
    ++finished;
  };
  CHECK_THROWS_WITH_AS(cp::sync_wait(cp::when_all(slow(), fail(), slow())), "boom", std::runtime_error);
  CHECK(finished == 2);
}

TEST_CASE("post from another thread runs on the loop; stop ends run()") {
  cp::event_loop loop;
  int ran_on_loop = 0;
  const auto loop_thread = std::this_thread::get_id();
  std::thread other([&] {
    for (int i = 0; i < 10; ++i)
      loop.post([&] {
        if (std::this_thread::get_id() == loop_thread) ++ran_on_loop;
      });
    loop.post([&] { loop.stop(); });
  });
  REQUIRE(loop.run());
  other.join();
  CHECK(ran_on_loop == 10);
}

TEST_CASE("current() is the running loop, and nothing outside") {
  CHECK(cp::event_loop::current() == nullptr);
  cp::event_loop loop;
  auto probe = [&]() -> cp::task<bool> { co_return cp::event_loop::current() == &loop; };
  CHECK(loop.run(probe()));
  CHECK(cp::event_loop::current() == nullptr);
}
