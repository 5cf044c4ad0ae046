// SPDX-License-Identifier: BSL-1.0
// Shared by the fuzz targets: an invariant check that survives NDEBUG, and a reader that
// turns the fuzz input into the choices (sizes, flags, separators) and the data a target needs.
#ifndef CHILDPROC_TESTS_FUZZ_HPP
#define CHILDPROC_TESTS_FUZZ_HPP

#include <cstddef>      // std::size_t
#include <cstdint>      // std::uint8_t
#include <cstdio>       // std::fprintf
#include <cstdlib>      // std::abort
#include <string>       // pieces
#include <string_view>  // the input
#include <vector>       // pieces

// Not assert(): NDEBUG must not turn a violated invariant into a pass. The message says which.
#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);   \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

namespace fuzz {

// Takes bytes from the front of the input; past the end it gives zeros, so any input is usable.
struct reader {
  std::string_view in;
  reader(const std::uint8_t* data, std::size_t size) : in(reinterpret_cast<const char*>(data), size) {}
  std::uint8_t byte() {
    if (in.empty()) return 0;
    const auto b = static_cast<std::uint8_t>(in.front());
    in.remove_prefix(1);
    return b;
  }
  std::string_view take(std::size_t n) {
    const auto s = in.substr(0, n);
    in.remove_prefix(s.size());
    return s;
  }
  std::string_view rest() { return take(in.size()); }
};

// Splits at every `sep`: "a|b|" is {"a", "b", ""}; "" is {""}.
inline std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  for (;;) {
    const auto at = s.find(sep);
    out.emplace_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

}  // namespace fuzz

#endif
