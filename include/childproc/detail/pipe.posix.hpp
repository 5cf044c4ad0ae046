// SPDX-License-Identifier: BSL-1.0
// POSIX backend of pipe.hpp.
#ifndef CHILDPROC_DETAIL_PIPE_POSIX_HPP
#define CHILDPROC_DETAIL_PIPE_POSIX_HPP

#include "os.posix.hpp"

#include <cerrno>  // errno

namespace childproc::inline v0::detail {

inline result<void> set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return last_os_error(errno, "fcntl");
  return {};
}

inline auto create_pipe_native(bool child_reads) -> result<pipe_pair> {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return last_os_error(errno, "pipe");
  pipe_pair p{unique_handle(child_reads ? fds[1] : fds[0]), unique_handle(child_reads ? fds[0] : fds[1])};
  if (auto r = set_nonblocking(p.parent.get()); !r) return std::move(r).error();
  return p;
}

inline auto create_duplex_native() -> result<pipe_pair> {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return last_os_error(errno, "socketpair");
  pipe_pair p{unique_handle(fds[0]), unique_handle(fds[1])};
  if (auto r = set_nonblocking(p.parent.get()); !r) return std::move(r).error();
  return p;
}

inline auto create_plain_pipe_native() -> result<pipe_pair> {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return last_os_error(errno, "pipe");
  return pipe_pair{unique_handle(fds[0]), unique_handle(fds[1])};
}

// One read(2) attempt; EAGAIN comes back as an error for the caller to wait on.
inline auto try_read_posix(int fd, std::span<char> buffer) -> result<std::size_t> {
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) return last_os_error(errno, errno == EAGAIN ? std::string() : std::string("read"));
  }
}

// One write(2) attempt without SIGPIPE: the signal is blocked in this thread for the call and a
// SIGPIPE it raised is consumed, so no process-wide disposition changes (the technique of libcurl).
inline auto try_write_posix(int fd, std::span<const char> data) -> result<std::size_t> {
  sigset_t pipe_only, old_mask, pending;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old_mask);
  ssize_t n;
  do n = ::write(fd, data.data(), data.size());
  while (n < 0 && errno == EINTR);
  const int err = errno;
  if (n < 0 && err == EPIPE && !was_pending) {
    const timespec zero{};
    while (sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {}
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  if (n >= 0) return static_cast<std::size_t>(n);
  return last_os_error(err, err == EAGAIN ? std::string() : std::string("write"));
}

inline result<void> poll_one_posix(int fd, short events) {
  pollfd p{fd, events, 0};
  while (::poll(&p, 1, -1) < 0)
    if (errno != EINTR) return last_os_error(errno, "poll");
  return {};
}

inline auto read_some_native(native_handle h, std::span<char> buffer) -> result<std::size_t> {
  for (;;) {
    auto r = try_read_posix(h, buffer);
    if (r || r.error().value() != EAGAIN) return r;
    if (auto w = poll_one_posix(h, POLLIN); !w) return std::move(w).error();
  }
}

inline auto write_some_native(native_handle h, std::span<const char> data) -> result<std::size_t> {
  for (;;) {
    auto r = try_write_posix(h, data);
    if (r || r.error().value() != EAGAIN) return r;
    if (auto w = poll_one_posix(h, POLLOUT); !w) return std::move(w).error();
  }
}

inline auto write_now_native(native_handle h, std::span<const char> data) -> result<std::size_t> {
  auto r = try_write_posix(h, data);
  if (!r && r.error().value() == EAGAIN) return std::size_t{0};
  return r;
}

}  // namespace childproc::inline v0::detail

#endif
