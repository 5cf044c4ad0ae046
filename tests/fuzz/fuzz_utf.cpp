// SPDX-License-Identifier: BSL-1.0
// UTF-8 <-> UTF-16 against a strict decoder written here from the Unicode well-formed byte
// sequence table (Unicode 15, table 3-7): valid UTF-8 converts to what the table says and back to
// the same bytes; invalid UTF-8 is errc::invalid_argument at the offset where the first ill-formed
// sequence starts. Any UTF-16, lone surrogates included, gives valid UTF-8 in which each lone
// surrogate is U+FFFD, as utf.hpp documents.
//
// Input: a flag byte (bit 0: the rest is UTF-16LE, else UTF-8), then the text.
#include "fuzz.hpp"

#include <childproc/detail/utf.hpp>

#include <cstdint>

namespace {

using childproc::detail::utf16_to_utf8;
using childproc::detail::utf8_to_utf16;

// Decodes `in` by table 3-7; npos when valid, else the offset of the sequence that is not.
std::size_t decode(std::string_view in, std::u32string& out) {
  for (std::size_t i = 0; i < in.size();) {
    const auto b = [&](std::size_t k) { return i + k < in.size() ? static_cast<unsigned char>(in[i + k]) : 0x100u; };
    const unsigned b0 = b(0);
    // The range of the second byte depends on the first; later bytes are always 80..BF.
    std::size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (b0 <= 0x7F) len = 1;
    else if (b0 >= 0xC2 && b0 <= 0xDF) len = 2;
    else if (b0 == 0xE0) len = 3, lo = 0xA0;
    else if (b0 == 0xED) len = 3, hi = 0x9F;
    else if (b0 >= 0xE1 && b0 <= 0xEF) len = 3;
    else if (b0 == 0xF0) len = 4, lo = 0x90;
    else if (b0 == 0xF4) len = 4, hi = 0x8F;
    else if (b0 >= 0xF1 && b0 <= 0xF3) len = 4;
    else return i;
    if (len > 1 && (b(1) < lo || b(1) > hi)) return i;
    for (std::size_t k = 2; k < len; ++k)
      if (b(k) < 0x80 || b(k) > 0xBF) return i;
    char32_t cp = len == 1 ? b0 : b0 & (0x7F >> len);
    for (std::size_t k = 1; k < len; ++k) cp = cp << 6 | (b(k) & 0x3F);
    out.push_back(cp);
    i += len;
  }
  return std::string_view::npos;
}

std::u16string to_utf16(const std::u32string& cps) {
  std::u16string w;
  for (char32_t c : cps) {
    if (c < 0x10000) {
      w.push_back(static_cast<char16_t>(c));
    } else {
      w.push_back(static_cast<char16_t>(0xD800 + ((c - 0x10000) >> 10)));
      w.push_back(static_cast<char16_t>(0xDC00 + ((c - 0x10000) & 0x3FF)));
    }
  }
  return w;
}

void check_utf8(std::string_view s) {
  std::u32string cps;
  const auto bad = decode(s, cps);
  const auto w = utf8_to_utf16(s);
  if (bad != std::string_view::npos) {
    FUZZ_CHECK(!w && w.error() == childproc::errc::invalid_argument);
    FUZZ_CHECK(w.error().message() == "invalid UTF-8 at byte " + std::to_string(bad));
    return;
  }
  FUZZ_CHECK(w && *w == to_utf16(cps));
  FUZZ_CHECK(utf16_to_utf8(*w) == s);
}

void check_utf16(std::u16string_view w) {
  std::u32string cps;  // lone surrogates become U+FFFD
  for (std::size_t i = 0; i < w.size(); ++i) {
    const char32_t u = w[i];
    if (u >= 0xD800 && u <= 0xDBFF && i + 1 < w.size() && w[i + 1] >= 0xDC00 && w[i + 1] <= 0xDFFF) {
      cps.push_back(0x10000 + ((u - 0xD800) << 10) + (w[i + 1] - 0xDC00));
      ++i;
    } else {
      cps.push_back(u >= 0xD800 && u <= 0xDFFF ? 0xFFFD : u);
    }
  }
  const std::string s = utf16_to_utf8(w);
  std::u32string back;
  FUZZ_CHECK(decode(s, back) == std::string_view::npos && back == cps);
  const auto again = utf8_to_utf16(s);
  FUZZ_CHECK(again && *again == to_utf16(cps));
  FUZZ_CHECK(utf16_to_utf8(*again) == s);  // a second pass changes nothing
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::reader in(data, size);
  const bool utf16 = in.byte() & 1;
  const auto text = in.rest();
  if (!utf16) {
    check_utf8(text);
    return 0;
  }
  std::u16string w(text.size() / 2, u'\0');
  for (std::size_t i = 0; i < w.size(); ++i)
    w[i] = static_cast<char16_t>(static_cast<unsigned char>(text[2 * i]) | static_cast<unsigned char>(text[2 * i + 1]) << 8);
  check_utf16(w);
  return 0;
}
