#include <childproc/detail/env_block.hpp>
#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

namespace cp = childproc;
using cp::detail::build_env_block;

static const std::vector<std::string> parent = {"HOME=/root", "PATH=/usr/bin", "Path=/x", "EMPTY="};

TEST_CASE("inherit copies the parent's block in order") {
  auto b = build_env_block(parent, {}, false, "spawn x");
  REQUIRE(b);
  CHECK(*b == std::vector<std::string>{"HOME=/root", "PATH=/usr/bin", "Path=/x", "EMPTY="});
}

TEST_CASE("extend replaces in place, appends new names, and removes") {
  auto b = build_env_block(parent, cp::environment::extend({{"PATH", "/bin"}, {"NEW", "1"}}, {"HOME"}), false, "spawn x");
  REQUIRE(b);
  CHECK(*b == std::vector<std::string>{"PATH=/bin", "Path=/x", "EMPTY=", "NEW=1"});
}

TEST_CASE("replace starts empty; a later duplicate name wins") {
  auto b = build_env_block(parent, cp::environment::replace({{"A", "1"}, {"B", "=x="}, {"A", "2"}}), false, "spawn x");
  REQUIRE(b);
  CHECK(*b == std::vector<std::string>{"A=2", "B==x="});
}

TEST_CASE("Win32 rules: names compare without case, and one spelling is kept") {
  auto b = build_env_block(parent, cp::environment::extend({{"path", "C:\\bin"}}, {"home"}), true, "spawn x");
  REQUIRE(b);
  CHECK(*b == std::vector<std::string>{"path=C:\\bin", "EMPTY="});
  CHECK(cp::detail::env_find(*b, "PATH", true) != nullptr);
  CHECK(cp::detail::env_find(*b, "PATH", false) == nullptr);
  CHECK(cp::detail::env_value(*cp::detail::env_find(*b, "PATH", true)) == "C:\\bin");
}

TEST_CASE("a leading '=' belongs to the name (Win32 drive variables)") {
  CHECK(cp::detail::env_key("=C:=C:\\dir") == "=C:");
  CHECK(cp::detail::env_key("A=b=c") == "A");
  CHECK(cp::detail::env_key("NOVALUE") == "NOVALUE");
}

TEST_CASE("bad names and values are errors that say what is wrong") {
  auto empty = build_env_block(parent, cp::environment::extend({{"", "1"}}), false, "spawn x");
  REQUIRE(!empty);
  CHECK(empty.error() == cp::errc::invalid_argument);
  CHECK(empty.error().message() == "spawn x: an environment variable name is empty ('')");
  auto eq = build_env_block(parent, cp::environment::extend({{"A=B", "1"}}), false, "spawn x");
  REQUIRE(!eq);
  CHECK(eq.error().message() == "spawn x: an environment variable name contains '=' ('A=B')");
  auto nul = build_env_block(parent, cp::environment::extend({{"A", std::string("x\0y", 3)}}), false, "spawn x");
  REQUIRE(!nul);
  CHECK(nul.error().message() == "spawn x: an environment variable contains a NUL byte ('A')");
  auto unset = build_env_block(parent, cp::environment::extend({}, {std::string("B\0", 2)}), false, "spawn x");
  REQUIRE(!unset);
  CHECK(unset.error() == cp::errc::invalid_argument);
}

// Found by tests/fuzz/fuzz_env_block, input (hex) 020a3d30410a300a3142: an empty entry of the
// parent's (POSIX environ can hold one) was dropped when anything was set and kept otherwise.
// It is always dropped now.
TEST_CASE("an empty entry of the parent's is dropped, whatever is set") {
  const std::vector<std::string> with_empty = {"A=1", "", "B=2"};
  auto untouched = build_env_block(with_empty, {}, false, "spawn x");
  auto extended = build_env_block(with_empty, cp::environment::extend({{"C", "3"}}), false, "spawn x");
  REQUIRE(untouched);
  REQUIRE(extended);
  CHECK(*untouched == std::vector<std::string>{"A=1", "B=2"});
  CHECK(*extended == std::vector<std::string>{"A=1", "B=2", "C=3"});
}
