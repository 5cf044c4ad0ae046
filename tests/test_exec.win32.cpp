// exec family, Win32 only: %ComSpec% /d /s /c "<command>", as Node.
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <chrono>

using namespace std::chrono_literals;

TEST_CASE("exec runs a command line through cmd.exe") {
  auto r = cp::exec("echo hello& echo oops 1>&2& exit 3");
  REQUIRE(r);
  CHECK(r->out == "hello\r\n");
  CHECK(r->err == "oops \r\n");
  CHECK(r->status.exit_code() == 3);
  CHECK(!r->ok());
  CHECK(r->check().error().message() == "Command failed: echo hello& echo oops 1>&2& exit 3 (exited with code 3)\noops \r\n");
}

TEST_CASE("exec keeps quotes in the command as written (cmd /s strips only the outer pair)") {
  auto r = cp::exec("\"" + child_path() + "\" args \"a b\" c");
  REQUIRE(r);
  CHECK(r->out == nul_joined({"a b", "c"}));
}

TEST_CASE("exec with cwd and env") {
  auto r = cp::exec("cd& echo %CP_X%", {.cwd = "C:\\windows", .env = cp::environment::extend({{"CP_X", "y"}})});
  REQUIRE(r);
  CHECK(r->out == "C:\\windows\r\ny\r\n");
}

TEST_CASE("stdio can be changed: stderr into stdout") {
  auto r = cp::exec("echo a& echo b 1>&2& echo c", {.stdio = {cp::pipe, cp::pipe, cp::same_as_stdout}});
  REQUIRE(r);
  CHECK(r->out == "a\r\nb \r\nc\r\n");
  CHECK(r->err.empty());
}

TEST_CASE("timeout on a shell command ends its whole tree (the job), so no drain wait is needed") {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = cp::exec("\"" + child_path() + "\" sleep 100000", {.timeout = 200ms, .drain_timeout = 30s});
  REQUIRE(r);
  CHECK(r->timed_out);
  CHECK(r->status.signal() == SIGTERM);
  CHECK(std::chrono::steady_clock::now() - t0 < 30s);
}
