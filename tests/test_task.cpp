// task<T>, sync_wait, when_all, event_loop: laziness, results, exceptions, timers, post.
#include <childproc/event_loop.hpp>
#include <childproc/task.hpp>
#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <stop_token>
#include <system_error>
#include <string>
#include <thread>

namespace cp = childproc;
using namespace std::chrono_literals;

static cp::task<int> forty_two() { co_return 42; }
static cp::task<int> add(int a, int b) { co_return co_await forty_two() - 42 + a + b; }
static cp::task<void> forty_two_void() { co_return; }
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

// A loop of awaits that complete at once keeps a flat stack in every build (sanitizers and -O0
// included): the awaited task hands control back through the awaiter's resume(). Recursion
// (a task awaiting a task awaiting ...) nests one call per level, like plain functions.
TEST_CASE("a million synchronously completing awaits in a loop do not grow the stack") {
  struct deep {
    static cp::task<int> count(int n) {
      if (n == 0) co_return 0;
      co_return 1 + co_await count(n - 1);
    }
  };
  CHECK(cp::sync_wait(deep::count(1000)) == 1000);
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

TEST_CASE("run_until(task) runs the loop until the task ends, with its value") {
  cp::event_loop loop;
  auto later = [&]() -> cp::task<int> {
    (void)co_await loop.sleep(std::chrono::milliseconds(10));
    co_return 7;
  };
  CHECK(loop.run_until(later()) == 7);
  CHECK(loop.run(later()) == 7);
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

TEST_CASE("when_any with a stop source: the first wins, the others are cancelled and awaited") {
  std::vector<std::string> events;
  std::stop_source src;
  auto nap = [&](std::chrono::milliseconds d, int v) -> cp::task<int> {
    auto r = co_await cp::event_loop::current()->sleep(d, src.get_token());
    events.push_back(std::to_string(v) + (r ? " slept" : r.error() == cp::errc::cancelled ? " cancelled" : " ?"));
    co_return v;
  };
  const auto t0 = std::chrono::steady_clock::now();
  auto w = cp::sync_wait(cp::when_any(src, nap(1h, 1), nap(30ms, 2), nap(1h, 3)));
  CHECK(std::chrono::steady_clock::now() - t0 < 30min);
  CHECK(w.index == 1);
  CHECK(w.value == 2);
  REQUIRE(events.size() == 3);  // all ended before it returned; stop callbacks run in no set order
  CHECK(events[0] == "2 slept");
  std::sort(events.begin() + 1, events.end());
  CHECK(events == std::vector<std::string>{"2 slept", "1 cancelled", "3 cancelled"});
  CHECK(src.stop_requested());
}

TEST_CASE("when_any without a stop source is a race: the losers run on by themselves") {
  std::vector<std::string> events;
  auto nap = [&](std::chrono::milliseconds d, std::string v) -> cp::task<std::string> {
    (void)co_await cp::event_loop::current()->sleep(d);
    events.push_back(v);
    co_return v;
  };
  cp::sync_wait([&]() -> cp::task<> {
    std::vector<cp::task<std::string>> v;
    v.push_back(nap(100ms, "slow"));
    v.push_back(nap(10ms, "fast"));
    auto w = co_await cp::when_any(std::move(v));
    CHECK(w.index == 1);
    CHECK(w.value == "fast");
    CHECK(events == std::vector<std::string>{"fast"});
    (void)co_await cp::event_loop::current()->sleep(300ms);  // the loser ends meanwhile
    CHECK(events == std::vector<std::string>{"fast", "slow"});
  }());
}

TEST_CASE("when_any: the winner's exception is rethrown; no tasks is invalid_argument") {
  std::stop_source src;
  auto slow = [&]() -> cp::task<void> { (void)co_await cp::event_loop::current()->sleep(1h, src.get_token()); };
  CHECK_THROWS_WITH_AS(cp::sync_wait(cp::when_any(src, slow(), fail())), "boom", std::runtime_error);
  CHECK_THROWS_AS(cp::sync_wait(cp::when_any(std::vector<cp::task<int>>{})), std::system_error);
  auto void_win = cp::sync_wait(cp::when_any(forty_two_void(), forty_two_void()));
  CHECK(void_win.index == 0);
}
