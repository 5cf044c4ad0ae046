// SPDX-License-Identifier: BSL-1.0
// Win32 backend of handle.hpp.
#ifndef CHILDPROC_DETAIL_HANDLE_WIN32_HPP
#define CHILDPROC_DETAIL_HANDLE_WIN32_HPP

#include "os.win32.hpp"

namespace childproc::inline v0::detail {

inline native_handle invalid_handle() noexcept { return INVALID_HANDLE_VALUE; }

inline void close_native(native_handle h) noexcept {
  if (h) ::CloseHandle(h);
}

}  // namespace childproc::inline v0::detail

#endif
