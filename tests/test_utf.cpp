// UTF-8 <-> UTF-16: platform-free, so it runs on every OS.
#include <childproc/detail/utf.hpp>
#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

namespace cp = childproc;
using cp::detail::utf16_to_utf8;
using cp::detail::utf8_to_utf16;

TEST_CASE("round trips: ASCII, two, three and four byte forms") {
  const std::string s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";  // a é € 😀 z
  auto w = utf8_to_utf16(s);
  REQUIRE(w);
  CHECK(*w == std::u16string{u'a', 0x00E9, 0x20AC, 0xD83D, 0xDE00, u'z'});
  CHECK(utf16_to_utf8(*w) == s);
  CHECK(utf8_to_utf16("").value().empty());
  CHECK(utf8_to_utf16(std::string_view("a\0b", 3)).value() == std::u16string(u"a\0b", 3));
}

TEST_CASE("every code point survives the round trip") {
  for (char32_t cp = 1; cp <= 0x10FFFF; cp += (cp < 0x3000 ? 1 : 97)) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::u16string w;
    if (cp >= 0x10000) {
      w = {static_cast<char16_t>(0xD800 + ((cp - 0x10000) >> 10)), static_cast<char16_t>(0xDC00 + ((cp - 0x10000) & 0x3FF))};
    } else {
      w = {static_cast<char16_t>(cp)};
    }
    auto back = utf8_to_utf16(utf16_to_utf8(w));
    REQUIRE(back);
    REQUIRE(*back == w);
  }
}

TEST_CASE("invalid UTF-8 is an error with the offset, never a mangled string") {
  const char* bad[] = {
      "\x80",              // lone continuation
      "ab\xC3",            // cut two-byte form
      "\xC0\xAF",          // overlong '/'
      "\xE0\x80\xAF",      // overlong
      "\xED\xA0\x80",      // surrogate D800
      "\xF4\x90\x80\x80",  // > U+10FFFF
      "\xF8\x88\x80\x80\x80",
      "\xE2\x28\xA1",      // bad continuation
  };
  for (const char* b : bad) {
    auto r = utf8_to_utf16(b);
    REQUIRE_MESSAGE(!r, b);
    CHECK(r.error() == cp::errc::invalid_argument);
  }
  CHECK(utf8_to_utf16("ab\xC3").error().message() == "invalid UTF-8 at byte 2");
}

TEST_CASE("a lone surrogate from the OS becomes U+FFFD") {
  CHECK(utf16_to_utf8(std::u16string{u'a', 0xD800, u'b'}) == "a\xEF\xBF\xBD" "b");
  CHECK(utf16_to_utf8(std::u16string{0xDC00}) == "\xEF\xBF\xBD");
}
