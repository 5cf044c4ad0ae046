// Cancellation by std::stop_token: reads, writes, exits and sleeps end with errc::cancelled,
// from the loop's thread or another one, and leave their stream or process usable.
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <chrono>
#include <stop_token>
#include <string>
#include <thread>

using namespace std::chrono_literals;

static cp::options piped() { return {.stdio = {cp::pipe, cp::pipe, cp::pipe}}; }

// Requests stop on `src` after `d`, from a coroutine on the same loop.
static cp::task<> stop_after(std::stop_source& src, std::chrono::milliseconds d) {
  (void)co_await cp::event_loop::current()->sleep(d);
  src.request_stop();
}

TEST_CASE("a pending read cancelled from the loop is errc::cancelled, and the stream reads on") {
  auto p = cp::spawn(child_path(), {"echo"}, piped()).value();
  std::stop_source src;
  auto run = [&]() -> cp::task<std::string> {
    char buf[64];
    auto read = [&]() -> cp::task<cp::result<std::size_t>> { co_return co_await p.out().async_read_some(buf, src.get_token()); };
    auto [r, unused] = co_await cp::when_all(read(), stop_after(src, 50ms));
    (void)unused;
    REQUIRE(!r);
    CHECK(r.error() == cp::errc::cancelled);
    CHECK(r.error() == std::errc::operation_canceled);
    CHECK(r.error().message() == "read: cancelled");
    REQUIRE(co_await p.in().async_write("after\n"));
    auto line = co_await p.out().read_line();
    co_return line.value();
  };
  CHECK(cp::sync_wait(run()) == "after");
  p.in().close();
  CHECK(p.wait()->success());
}

TEST_CASE("a cancelled read_line keeps the partial line it had read") {
  auto p = cp::spawn(child_path(), {"echo"}, piped()).value();
  REQUIRE(p.in().write("ab"));
  std::stop_source src;
  auto run = [&]() -> cp::task<std::string> {
    auto [first, unused] = co_await cp::when_all(p.out().read_line(1 << 20, src.get_token()), stop_after(src, 100ms));
    (void)unused;
    CHECK(first.error() == cp::errc::cancelled);
    REQUIRE(co_await p.in().async_write("c\n"));
    co_return (co_await p.out().read_line()).value();
  };
  CHECK(cp::sync_wait(run()) == "abc");
  p.in().close();
  CHECK(p.wait()->success());
}

TEST_CASE("a read cancelled from another thread") {
  auto p = cp::spawn(child_path(), {"echo"}, piped()).value();
  std::stop_source src;
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    src.request_stop();
  });
  auto r = cp::sync_wait([&]() -> cp::task<cp::result<std::size_t>> {
    char buf[16];
    co_return co_await p.out().async_read_some(buf, src.get_token());
  }());
  t.join();
  REQUIRE(!r);
  CHECK(r.error() == cp::errc::cancelled);
  p.in().close();
  CHECK(p.wait()->success());
}

TEST_CASE("a token stopped before the await starts nothing") {
  auto p = cp::spawn(child_path(), {"echo"}, piped()).value();
  std::stop_source src;
  src.request_stop();
  cp::sync_wait([&]() -> cp::task<> {
    char buf[16];
    auto r = co_await p.out().async_read_some(buf, src.get_token());
    CHECK(r.error() == cp::errc::cancelled);
    auto w = co_await p.in().async_write_some(std::string_view("x"), src.get_token());
    CHECK(w.error().message() == "write: cancelled");
    auto e = co_await p.exit(src.get_token());
    CHECK(e.error().message() == "wait: cancelled");
    auto s = co_await cp::event_loop::current()->sleep(1h, src.get_token());
    CHECK(s.error().message() == "sleep: cancelled");
  }());
  REQUIRE(p.in().write("still\n"));  // nothing was consumed or written
  p.in().close();
  CHECK(p.out().read_all().value() == "still\n");
  CHECK(p.wait()->success());
}

TEST_CASE("a cancelled exit wait leaves the child running and awaitable") {
  auto p = cp::spawn(child_path(), {"sleep", "100000"}, {}).value();
  std::stop_source src;
  cp::sync_wait([&]() -> cp::task<> {
    auto wait = [&]() -> cp::task<cp::result<cp::exit_status>> { co_return co_await p.exit(src.get_token()); };
    auto [e, unused] = co_await cp::when_all(wait(), stop_after(src, 50ms));
    (void)unused;
    CHECK(e.error() == cp::errc::cancelled);
    CHECK(!p.try_wait().value());  // still running
    REQUIRE(p.kill(SIGKILL));
    auto st = co_await p.exit();
    REQUIRE(st);
    CHECK(st->signal() == SIGKILL);
  }());
}

TEST_CASE("a long sleep cancelled early; an uncancelled one sleeps its time") {
  std::stop_source src;
  const auto t0 = std::chrono::steady_clock::now();
  cp::sync_wait([&]() -> cp::task<> {
    auto nap = [&]() -> cp::task<cp::result<void>> { co_return co_await cp::event_loop::current()->sleep(1h, src.get_token()); };
    auto [s, unused] = co_await cp::when_all(nap(), stop_after(src, 20ms));
    (void)unused;
    CHECK(s.error() == cp::errc::cancelled);
    std::stop_source never;
    CHECK(co_await cp::event_loop::current()->sleep(30ms, never.get_token()));
  }());
  CHECK(std::chrono::steady_clock::now() - t0 >= 50ms);
  CHECK(std::chrono::steady_clock::now() - t0 < 30min);  // did not sleep the hour
}

TEST_CASE("a write blocked on a full pipe is cancelled") {
  auto p = cp::spawn(child_path(), {"sleep", "100000"}, piped()).value();  // never reads stdin
  const std::string big(8 << 20, 'x');  // more than any pipe buffer
  std::stop_source src;
  cp::sync_wait([&]() -> cp::task<> {
    auto [w, unused] = co_await cp::when_all(p.in().async_write(big, src.get_token()), stop_after(src, 100ms));
    (void)unused;
    CHECK(w.error() == cp::errc::cancelled);
    CHECK(w.error().message() == "write: cancelled");
  }());
  REQUIRE(p.kill(SIGKILL));
  CHECK(p.wait()->signal() == SIGKILL);
}

TEST_CASE("exec_file with options.stop_token: stopped from another thread, the child is killed") {
  std::stop_source src;
  std::thread t([&] {
    std::this_thread::sleep_for(100ms);
    src.request_stop();
  });
  auto r = cp::exec_file(child_path(), {"sleep", "100000"}, {.stop_token = src.get_token()});
  t.join();
  REQUIRE(r);
  CHECK(r->cancelled);
  CHECK(!r->timed_out);
  CHECK(r->status.signal() == SIGTERM);
  CHECK(!r->ok());
  CHECK(r->check().error().message().find("The operation was aborted") != std::string::npos);
}

TEST_CASE("exec_file with a token stopped before it starts: killed at once, reported") {
  std::stop_source src;
  src.request_stop();
  auto r = cp::exec_file(child_path(), {"sleep", "100000"}, {.stop_token = src.get_token()});
  REQUIRE(r);
  CHECK(r->cancelled);
  CHECK(r->status.signal() == SIGTERM);
}

TEST_CASE("exec with a token that is never stopped runs normally") {
  std::stop_source src;
  auto r = cp::exec_file(child_path(), {"exit", "3"}, {.stop_token = src.get_token()});
  REQUIRE(r);
  CHECK(!r->cancelled);
  CHECK(r->status.exit_code() == 3);
  src.request_stop();  // after the end: nothing to do, nothing breaks
}

TEST_CASE("spawn with options.stop_token: the child gets kill_signal, also after a move") {
  std::stop_source src;
  auto p = cp::spawn(child_path(), {"sleep", "100000"}, {.stdio = {cp::ignore, cp::ignore, cp::inherit},
                                                          .kill_signal = SIGKILL, .stop_token = src.get_token()})
               .value();
  cp::process moved = std::move(p);
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    src.request_stop();
  });
  auto st = moved.wait();
  t.join();
  REQUIRE(st);
  CHECK(st->signal() == SIGKILL);
}

TEST_CASE("spawn with a token: a stop after the child was reaped sends nothing") {
  std::stop_source src;
  auto p = cp::spawn(child_path(), {"exit", "0"}, {.stop_token = src.get_token()}).value();
  CHECK(p.wait()->success());
  src.request_stop();
  CHECK(p.kill(0).error() == std::errc::no_such_process);
}
