// SPDX-License-Identifier: BSL-1.0
// POSIX backend of handle.hpp.
#ifndef CHILDPROC_DETAIL_HANDLE_POSIX_HPP
#define CHILDPROC_DETAIL_HANDLE_POSIX_HPP

#include "os.posix.hpp"

namespace childproc::inline v0::detail {

inline native_handle invalid_handle() noexcept { return -1; }

inline void close_native(native_handle h) noexcept { ::close(h); }

}  // namespace childproc::inline v0::detail

#endif
