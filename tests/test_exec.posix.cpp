// exec family, POSIX only: /bin/sh syntax, signals.
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <chrono>
#include <csignal>

using namespace std::chrono_literals;

TEST_CASE("exec runs a command line through the shell") {
  auto r = cp::exec("echo hello; echo oops >&2; exit 3");
  REQUIRE(r);
  CHECK(r->out == "hello\n");
  CHECK(r->err == "oops\n");
  CHECK(r->status.exit_code() == 3);
  CHECK(!r->ok());
  CHECK(r->pid > 0);
  CHECK(r->command == "echo hello; echo oops >&2; exit 3");
  auto c = r->check();
  REQUIRE(!c);
  CHECK(c.error() == cp::errc::command_failed);
  CHECK(c.error().message() == "Command failed: echo hello; echo oops >&2; exit 3 (exited with code 3)\noops\n");
}

TEST_CASE("exec of a pipeline") {
  auto r = cp::exec("printf 'a\\nb\\nc\\n' | wc -l");
  REQUIRE(r);
  CHECK(r->ok());
  CHECK(r->check());
  CHECK(r->out.find('3') != std::string::npos);
}

TEST_CASE("a child that ignores kill_signal gets SIGKILL after the grace period") {
  auto r = cp::exec_file(child_path(), {"ignore-term-sleep", "100000"}, {.timeout = 2000ms, .kill_grace = 200ms});
  REQUIRE(r);
  CHECK(r->timed_out);
  CHECK(r->status.signal() == SIGKILL);
  CHECK(r->out == "ready\n");
}

TEST_CASE("stdio can be changed: stderr into stdout") {
  auto r = cp::exec("echo a; echo b >&2; echo c", {.stdio = {cp::pipe, cp::pipe, cp::same_as_stdout}});
  REQUIRE(r);
  CHECK(r->out == "a\nb\nc\n");
  CHECK(r->err.empty());
}

TEST_CASE("exec with cwd and env") {
  auto r = cp::exec("pwd; echo $CP_X", {.cwd = "/", .env = cp::environment::extend({{"CP_X", "y"}})});
  REQUIRE(r);
  CHECK(r->out == "/\ny\n");
}
TEST_CASE("a grandchild of the shell holding stdout does not hang exec") {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = cp::exec("sleep 100 & echo hi", {.drain_timeout = 300ms});
  REQUIRE(r);
  CHECK(r->out == "hi\n");
  CHECK(r->ok());
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 300ms);
  CHECK(took < 30s);
}

TEST_CASE("a child killed by SIGSEGV is reported as data") {
  auto r = cp::exec_file(child_path(), {"signal", std::to_string(SIGSEGV)});
  REQUIRE(r);
  CHECK(r->status.signal() == SIGSEGV);
  CHECK(r->status.crashed());
  CHECK(r->check().error().message().find("killed by signal SIGSEGV") != std::string::npos);
}
