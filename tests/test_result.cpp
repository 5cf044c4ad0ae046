#include <childproc/result.hpp>
#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

namespace cp = childproc;

TEST_CASE("a result holds a value") {
  cp::result<int> r = 42;
  CHECK(r.has_value());
  CHECK(static_cast<bool>(r));
  CHECK(*r == 42);
  CHECK(r.value() == 42);
  CHECK(!r.error());
  CHECK(r.value_or(7) == 42);
}

TEST_CASE("a result holds an error, and value() throws std::system_error with Node's words") {
  cp::result<std::string> r = cp::error(std::error_code(ENOENT, std::generic_category()), "spawn nosuchprog");
  CHECK(!r.has_value());
  CHECK(r.error() == std::errc::no_such_file_or_directory);
  CHECK(r.error().value() == ENOENT);
  CHECK(r.error().message() == "spawn nosuchprog ENOENT");
  CHECK(r.error().context() == "spawn nosuchprog");
  CHECK(r.value_or("x") == "x");
  try {
    (void)r.value();
    FAIL("value() did not throw");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == ENOENT);
    CHECK(std::string(e.what()).rfind("spawn nosuchprog ENOENT", 0) == 0);
  }
}

TEST_CASE("result<void>") {
  cp::result<void> ok;
  CHECK(ok.has_value());
  CHECK_NOTHROW(ok.value());
  cp::result<void> bad = cp::errc::timed_out;
  CHECK(!bad);
  CHECK(bad.error() == cp::errc::timed_out);
  CHECK_THROWS_AS(bad.value(), std::system_error);
}

TEST_CASE("library errors compare with their portable std::errc twins") {
  CHECK(cp::make_error_code(cp::errc::invalid_argument) == std::errc::invalid_argument);
  CHECK(cp::make_error_code(cp::errc::timed_out) == std::errc::timed_out);
  CHECK(cp::make_error_code(cp::errc::cancelled) == std::errc::operation_canceled);
  CHECK(cp::make_error_code(cp::errc::end_of_stream) != std::errc::invalid_argument);
  CHECK(std::string(cp::childproc_category().name()) == "childproc");
  CHECK(cp::error(cp::errc::end_of_stream).message() == "end of stream");
  CHECK(cp::error(cp::errc::invalid_argument, "spawn: the program name is empty").message() ==
        "spawn: the program name is empty");
}

TEST_CASE("an OS error without a known name falls back to its number") {
  cp::error e(std::error_code(4095, std::generic_category()), "spawn x");
  CHECK(e.message() == "spawn x E4095");
  cp::error none(std::error_code(EPIPE, std::generic_category()));
  CHECK(none.message() == std::error_code(EPIPE, std::generic_category()).message());
  CHECK(cp::error(std::error_code(EPIPE, std::generic_category()), "write").message() == "write EPIPE");
}

TEST_CASE("OS codes in their native category") {
#ifdef _WIN32
  // Win32 codes with no errno twin keep the system's text.
  CHECK(cp::error(std::error_code(1450, std::system_category()), "spawn x").message().rfind("spawn x: ", 0) == 0);
#else
  CHECK(cp::error(std::error_code(ENOENT, std::system_category()), "spawn x").message() == "spawn x ENOENT");
#endif
}

TEST_CASE("move-only values") {
  struct only_move {
    int v;
    explicit only_move(int x) : v(x) {}
    only_move(only_move&&) = default;
    only_move& operator=(only_move&&) = default;
  };
  cp::result<only_move> r = only_move(3);
  only_move m = std::move(r).value();
  CHECK(m.v == 3);
}
