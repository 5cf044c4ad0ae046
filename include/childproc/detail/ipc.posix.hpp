// SPDX-License-Identifier: BSL-1.0
// POSIX backend of ipc.hpp.
#ifndef CHILDPROC_DETAIL_IPC_POSIX_HPP
#define CHILDPROC_DETAIL_IPC_POSIX_HPP

#include "os.posix.hpp"

#include <cerrno>   // errno
#include <cstdlib>  // unsetenv

namespace childproc::inline v0::detail {

inline auto create_channel_native() -> result<pipe_pair> { return create_duplex_native(); }

inline auto adopt_channel_native(int fd) -> result<unique_handle> {
  const int flags = fd >= 0 ? ::fcntl(fd, F_GETFD) : -1;
  if (flags < 0) return last_os_error(fd < 0 ? EBADF : errno, "channel: fd " + std::to_string(fd));
  unique_handle h(fd);
  if (::fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0) return last_os_error(errno, "channel: fcntl");
  if (auto r = set_nonblocking(fd); !r) return std::move(r).error();
  return h;
}

inline void unset_env_native(const char* name) noexcept { ::unsetenv(name); }

inline auto self_exe_native() -> result<std::string> {
#if CHILDPROC_LINUX
  std::string path(4096, '\0');
  const ssize_t n = ::readlink("/proc/self/exe", path.data(), path.size());
  if (n < 0) return last_os_error(errno, "fork_self: readlink /proc/self/exe");
  if (static_cast<std::size_t>(n) == path.size()) return last_os_error(ENAMETOOLONG, "fork_self: readlink /proc/self/exe");
  path.resize(static_cast<std::size_t>(n));
  return path;
#else
  return last_os_error(ENOTSUP, "fork_self: the running executable's path");
#endif
}

}  // namespace childproc::inline v0::detail

#endif
