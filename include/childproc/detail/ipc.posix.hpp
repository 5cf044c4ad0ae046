// SPDX-License-Identifier: BSL-1.0
// POSIX backend of ipc.hpp.
#ifndef CHILDPROC_DETAIL_IPC_POSIX_HPP
#define CHILDPROC_DETAIL_IPC_POSIX_HPP

#include "os.posix.hpp"

#include <algorithm>  // std::max
#include <cerrno>   // errno
#include <cstdlib>  // unsetenv

#include <sys/resource.h>  // getrlimit

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

inline auto channel_peer_native(native_handle, const native_child*) -> result<unique_handle> { return unique_handle(); }

inline auto prepare_handle_native(native_handle h, native_handle) -> result<outgoing_handle> {
  const int copy = h >= 0 ? ::fcntl(h, F_DUPFD_CLOEXEC, 0) : -1;
  if (copy < 0) return last_os_error(h < 0 ? EBADF : errno, "send: fd " + std::to_string(h));
  outgoing_handle out;
  out.own.reset(copy);
  out.payload.assign(8, '\0');
  return out;
}

inline void sent_handle_native(outgoing_handle& h) noexcept { h.own.reset(); }

inline void drop_handle_native(outgoing_handle& h) noexcept { h.own.reset(); }

inline auto take_received_handle_native(std::string_view, unique_handle received, native_handle) -> result<unique_handle> {
  if (!received) return error(errc::bad_frame, "receive: a handle was announced but no descriptor arrived with it");
  return received;
}

inline std::size_t held_descriptors_native() noexcept {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY || r.rlim_cur / 4 > (1u << 20)) return std::size_t{1} << 20;
  return std::max<std::size_t>(1, static_cast<std::size_t>(r.rlim_cur / 4));
}

inline bool node_frames_native() noexcept { return false; }

inline auto node_handle_type_native(native_handle h) -> result<std::string> {
  struct stat st{};
  if (::fstat(h, &st) != 0) return last_os_error(errno, "send: fstat fd " + std::to_string(h));
  if (S_ISFIFO(st.st_mode)) return std::string("net.Native");
  if (S_ISSOCK(st.st_mode)) {
    int type = 0, listening = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(h, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return last_os_error(errno, "send: getsockopt SO_TYPE");
    len = sizeof listening;
    // libuv takes TCP and Unix-domain sockets only: one of another family would stay in its
    // one pending slot, and every handle after it be NACKed.
    sockaddr_storage addr{};
    socklen_t addr_len = sizeof addr;
    const bool family_ok = ::getsockname(h, reinterpret_cast<sockaddr*>(&addr), &addr_len) == 0 &&
                           (addr.ss_family == AF_INET || addr.ss_family == AF_INET6 || addr.ss_family == AF_UNIX);
    if (type == SOCK_STREAM && family_ok && ::getsockopt(h, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0)
      return std::string(listening ? "net.Server" : "net.Socket");
  }
  return error(errc::invalid_argument, "send: fd " + std::to_string(h) +
                                           " cannot go to a Node process, which takes TCP and Unix stream sockets and pipes only");
}

inline handle_identity handle_identity_native(native_handle h) noexcept {
  struct stat st{};
  if (::fstat(h, &st) != 0) return {};
  return {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

inline bool handle_still_native(native_handle h, const handle_identity& id) noexcept {
  return id != handle_identity{} && handle_identity_native(h) == id;
}

inline auto self_exe_native(const std::string& recorded) -> result<std::string> {
  for (const char* link : {"/proc/self/exe", "/proc/curproc/file"}) {
    std::string path(4096, '\0');
    const ssize_t n = ::readlink(link, path.data(), path.size());
    if (n > 0 && static_cast<std::size_t>(n) < path.size()) {
      path.resize(static_cast<std::size_t>(n));
      return path;
    }
  }
  if (!recorded.empty()) return recorded;
  return last_os_error(ENOTSUP, "fork_self: the running executable's path (no /proc; call dispatch_entry(argc, argv) first in main)");
}

}  // namespace childproc::inline v0::detail

#endif
