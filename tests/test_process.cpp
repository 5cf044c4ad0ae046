// process: wait, try_wait, wait_for, kill, detach, the destructor, and statuses.
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <chrono>
#include <csignal>
#include <thread>

using namespace std::chrono_literals;

static cp::options quiet() { return {.stdio = {cp::ignore, cp::ignore, cp::ignore}}; }

TEST_CASE("wait returns the exit code, and the same status again later") {
  auto p = cp::spawn(child_path(), {"exit", "42"}, quiet()).value();
  CHECK(p.pid() > 0);
  auto st = p.wait();
  REQUIRE(st);
  CHECK(st->exit_code() == 42);
  CHECK(p.wait()->exit_code() == 42);
  CHECK(p.status() == cp::exit_status::exited(42));
}

TEST_CASE("try_wait does not block; wait_for times out, then sees the end") {
  auto p = cp::spawn(child_path(), {"sleep", "2000"}, quiet()).value();
  auto now = p.try_wait();
  REQUIRE(now);
  CHECK(!now->has_value());
  const auto t0 = std::chrono::steady_clock::now();
  auto early = p.wait_for(50ms);
  REQUIRE(early);
  CHECK(!early->has_value());
  CHECK(std::chrono::steady_clock::now() - t0 >= 50ms);
  auto later = p.wait_for(10s);
  REQUIRE(later);
  REQUIRE(later->has_value());
  CHECK((*later)->success());
  auto again = p.try_wait();
  CHECK(again->value().success());
}

TEST_CASE("kill sends a signal; the status says which") {
  auto p = cp::spawn(child_path(), {"sleep", "10000"}, quiet()).value();
  REQUIRE(p.kill());
  auto st = p.wait();
  REQUIRE(st);
  CHECK(st->signal() == SIGTERM);
  CHECK(!st->exit_code().has_value());
  auto q = cp::spawn(child_path(), {"sleep", "10000"}, quiet()).value();
  REQUIRE(q.kill(SIGKILL));
  CHECK(q.wait()->signal() == SIGKILL);
}

TEST_CASE("kill(0) checks the child is there") {
  auto p = cp::spawn(child_path(), {"sleep", "10000"}, quiet()).value();
  CHECK(p.kill(0));
  CHECK(p.kill(SIGKILL));
  CHECK(p.wait()->signal() == SIGKILL);
}

TEST_CASE("kill after the child was reaped is ESRCH and sends nothing") {
  auto p = cp::spawn(child_path(), {"exit", "0"}, quiet()).value();
  REQUIRE(p.wait());
  auto k = p.kill();
  REQUIRE(!k);
  CHECK(k.error() == std::errc::no_such_process);
  CHECK(k.error().message() == "kill ESRCH");
}

TEST_CASE("kill with an invalid signal is EINVAL") {
  auto p = cp::spawn(child_path(), {"sleep", "10000"}, quiet()).value();
  auto k = p.kill(12345);
  REQUIRE(!k);
  CHECK(k.error() == std::errc::invalid_argument);
  CHECK(k.error().message() == "kill EINVAL");
}

TEST_CASE("an empty or moved-from process owns no child") {
  cp::process empty;
  CHECK(!empty.valid());
  auto w = empty.wait();
  REQUIRE(!w);
  CHECK(w.error() == cp::errc::no_process);
  CHECK(w.error().message() == "wait: this process object owns no child");
  CHECK(empty.kill().error() == cp::errc::no_process);
  auto p = cp::spawn(child_path(), {"exit", "5"}, quiet()).value();
  cp::process q = std::move(p);
  CHECK(!p.valid());
  CHECK(q.wait()->exit_code() == 5);
  cp::process r;
  r = std::move(q);
  CHECK(r.wait()->exit_code() == 5);
}

TEST_CASE("the destructor kills and reaps a running child") {
  cp::pid_type pid = 0;
  {
    auto p = cp::spawn(child_path(), {"sleep", "100000"}, quiet()).value();
    pid = p.pid();
    CHECK(pid_exists(pid));
  }
  CHECK(!pid_exists(pid));  // killed and reaped: not even a zombie
}

TEST_CASE("detach leaves the child running and it is still reaped when it ends") {
  auto p = cp::spawn(child_path(), {"sleep", "200"}, quiet()).value();
  const cp::pid_type pid = p.pid();
  p.detach();
  CHECK(!p.valid());
  CHECK(pid_exists(pid));
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {  // up to 5 s
    std::this_thread::sleep_for(10ms);
    gone = !pid_exists(pid);
  }
  CHECK(gone);  // the reaper thread collected it: no zombie
}

TEST_CASE("a child spawned with detached outlives its process object and is reaped at its end") {
  cp::pid_type pid = 0;
  {
    auto p = cp::spawn(child_path(), {"sleep", "200"}, {.stdio = {cp::ignore, cp::ignore, cp::ignore}, .detached = true}).value();
    pid = p.pid();
  }
  CHECK(pid_exists(pid));
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    std::this_thread::sleep_for(10ms);
    gone = !pid_exists(pid);
  }
  CHECK(gone);
}
