// SPDX-License-Identifier: BSL-1.0
// Platform-free: UTF-8 <-> UTF-16, strict, so it is tested on every OS (Win32 strings cross here).
#ifndef CHILDPROC_DETAIL_UTF_HPP
#define CHILDPROC_DETAIL_UTF_HPP

#include "../result.hpp"

#include <cstddef>      // std::size_t
#include <string>       // std::string, std::u16string
#include <string_view>  // inputs

namespace childproc::inline v0::detail {

/// UTF-8 to UTF-16. Invalid UTF-8 (bad bytes, overlong forms, surrogates, > U+10FFFF, cut
/// sequences) is errc::invalid_argument naming the byte offset, never a mangled string.
inline result<std::u16string> utf8_to_utf16(std::string_view in) {
  std::u16string out;
  out.reserve(in.size());
  auto bad = [&](std::size_t at) {
    return error(errc::invalid_argument, "invalid UTF-8 at byte " + std::to_string(at));
  };
  for (std::size_t i = 0; i < in.size();) {
    const auto b0 = static_cast<unsigned char>(in[i]);
    if (b0 < 0x80) {
      out.push_back(static_cast<char16_t>(b0));
      ++i;
      continue;
    }
    std::size_t len;
    char32_t cp, min;
    if ((b0 & 0xE0) == 0xC0) len = 2, cp = b0 & 0x1Fu, min = 0x80;
    else if ((b0 & 0xF0) == 0xE0) len = 3, cp = b0 & 0x0Fu, min = 0x800;
    else if ((b0 & 0xF8) == 0xF0) len = 4, cp = b0 & 0x07u, min = 0x10000;
    else return bad(i);
    if (i + len > in.size()) return bad(i);
    for (std::size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(in[i + k]);
      if ((b & 0xC0) != 0x80) return bad(i);
      cp = (cp << 6) | (b & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return bad(i);
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out.push_back(static_cast<char16_t>(0xD800 + (cp >> 10)));
      out.push_back(static_cast<char16_t>(0xDC00 + (cp & 0x3FF)));
    } else {
      out.push_back(static_cast<char16_t>(cp));
    }
    i += len;
  }
  return out;
}

/// UTF-16 to UTF-8. A lone surrogate (Windows names can hold one) becomes U+FFFD.
inline std::string utf16_to_utf8(std::u16string_view in) {
  std::string out;
  out.reserve(in.size());
  auto put = [&](char32_t cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  };
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char32_t u = in[i];
    if (u >= 0xD800 && u <= 0xDBFF && i + 1 < in.size() && in[i + 1] >= 0xDC00 && in[i + 1] <= 0xDFFF) {
      put(0x10000 + ((u - 0xD800) << 10) + (in[i + 1] - 0xDC00));
      ++i;
    } else if (u >= 0xD800 && u <= 0xDFFF) {
      put(0xFFFD);
    } else {
      put(u);
    }
  }
  return out;
}

}  // namespace childproc::inline v0::detail

#endif
