// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_STREAM_HPP
#define CHILDPROC_STREAM_HPP

#include "detail/pipe.hpp"
#include "options.hpp"
#include "result.hpp"

#include <cstddef>      // std::size_t
#include <span>         // buffers
#include <string>       // read_all
#include <string_view>  // write

namespace childproc::inline v0 {

/// The parent's end of one of the child's stdio pipes. Move-only; closes on destruction.
class stream {
 public:
  stream() noexcept = default;
  /// Takes ownership of a descriptor or HANDLE.
  explicit stream(detail::unique_handle h) noexcept : h_(std::move(h)) {}

  /// Whether the stream is open.
  bool is_open() const noexcept { return h_.valid(); }
  /// The descriptor or HANDLE (still owned by the stream).
  native_handle handle() const noexcept { return h_.get(); }
  /// Gives up ownership of the descriptor or HANDLE.
  native_handle release() noexcept { return h_.release(); }
  /// Closes the parent's end: for stdin, the child then sees end of file.
  void close() noexcept { h_.reset(); }

  /// Reads what is there (at least one byte), blocking; errc::end_of_stream at the end.
  result<std::size_t> read_some(std::span<char> buffer) {
    if (!is_open()) return error(errc::no_process, "read: the stream is closed");
    auto r = detail::read_some_native(h_.get(), buffer);
    if (r && *r == 0 && !buffer.empty()) return errc::end_of_stream;
    return r;
  }

  /// Reads to the end of the stream; more than `max` bytes is errc::max_buffer_exceeded.
  result<std::string> read_all(std::size_t max = unlimited) {
    std::string data;
    for (;;) {
      const std::size_t old = data.size();
      data.resize(old + 65536);
      auto r = read_some({data.data() + old, 65536});
      data.resize(old + (r ? *r : 0));
      if (!r) {
        if (r.error() == errc::end_of_stream) return data;
        return std::move(r).error();
      }
      if (data.size() > max) return error(errc::max_buffer_exceeded, "read: more than " + std::to_string(max) + " bytes");
    }
  }

  /// Writes all of `data`, blocking; a reader that is gone is an EPIPE error, never SIGPIPE.
  result<void> write(std::string_view data) {
    if (!is_open()) return error(errc::no_process, "write: the stream is closed");
    while (!data.empty()) {
      auto r = detail::write_some_native(h_.get(), {data.data(), data.size()});
      if (!r) return std::move(r).error();
      data.remove_prefix(*r);
    }
    return {};
  }

 private:
  detail::unique_handle h_;
};

}  // namespace childproc::inline v0

#endif
