#include <childproc/exit_status.hpp>
#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <csignal>

namespace cp = childproc;

TEST_CASE("exited") {
  const auto s = cp::exit_status::exited(3);
  CHECK(s.exited());
  CHECK(!s.signaled());
  CHECK(s.exit_code() == 3);
  CHECK(!s.signal().has_value());
  CHECK(!s.success());
  CHECK(!s.crashed());
  CHECK(s.to_string() == "exited with code 3");
  CHECK(cp::exit_status::exited(0).success());
  CHECK(s == cp::exit_status::exited(3));
  CHECK(s != cp::exit_status::exited(4));
}

TEST_CASE("signaled") {
  const auto s = cp::exit_status::signaled(SIGSEGV, true);
  CHECK(s.signaled());
  CHECK(!s.exit_code().has_value());
  CHECK(s.signal() == SIGSEGV);
  CHECK(s.core_dumped());
  CHECK(s.crashed());
  CHECK(!s.success());
  CHECK(s.to_string() == "killed by signal SIGSEGV (core dumped)");
  CHECK(cp::exit_status::signaled(SIGTERM).to_string() == "killed by signal SIGTERM");
  CHECK(!cp::exit_status::signaled(SIGTERM).crashed());
  CHECK(cp::exit_status::signaled(77).to_string() == "killed by signal 77");
}
