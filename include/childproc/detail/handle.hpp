// SPDX-License-Identifier: BSL-1.0
// Contract: the native descriptor type and its one RAII owner.
#ifndef CHILDPROC_DETAIL_HANDLE_HPP
#define CHILDPROC_DETAIL_HANDLE_HPP

#include "../config.hpp"

#include <utility>  // std::exchange

namespace childproc::inline v0 {

#if CHILDPROC_WIN32
/// A HANDLE on Win32, a file descriptor on POSIX.
using native_handle = void*;
#else
/// A HANDLE on Win32, a file descriptor on POSIX.
using native_handle = int;
#endif

namespace detail {

/// The value that owns nothing: -1 on POSIX, INVALID_HANDLE_VALUE on Win32.
inline native_handle invalid_handle() noexcept;

/// Closes a handle, ignoring errors (there is nothing a caller could do with one).
///   POSIX: close(2); EINTR is not retried (Linux and POSIX 2024 say the fd is gone).
///   Win32: CloseHandle.
inline void close_native(native_handle h) noexcept;

}  // namespace detail
}  // namespace childproc::inline v0

#if CHILDPROC_WIN32
#  include "handle.win32.hpp"
#else
#  include "handle.posix.hpp"
#endif

namespace childproc::inline v0::detail {

/// The one move-only owner of a descriptor or HANDLE.
class unique_handle {
 public:
  unique_handle() noexcept = default;
  explicit unique_handle(native_handle h) noexcept : h_(h) {}
  unique_handle(unique_handle&& o) noexcept : h_(o.release()) {}
  unique_handle& operator=(unique_handle&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  ~unique_handle() { reset(); }

  native_handle get() const noexcept { return h_; }
  bool valid() const noexcept { return h_ != invalid_handle(); }
  explicit operator bool() const noexcept { return valid(); }
  native_handle release() noexcept { return std::exchange(h_, invalid_handle()); }
  void reset(native_handle h = invalid_handle()) noexcept {
    if (valid()) close_native(h_);
    h_ = h;
  }

 private:
  native_handle h_ = invalid_handle();
};

}  // namespace childproc::inline v0::detail

#endif
