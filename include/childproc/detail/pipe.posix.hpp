// SPDX-License-Identifier: BSL-1.0
// POSIX backend of pipe.hpp.
#ifndef CHILDPROC_DETAIL_PIPE_POSIX_HPP
#define CHILDPROC_DETAIL_PIPE_POSIX_HPP

#include "os.posix.hpp"

#include <cerrno>   // errno
#include <cstring>  // memcpy of descriptors in control messages

namespace childproc::inline v0::detail {

// MSG_DONTWAIT where the system has it: a channel's socket is then left blocking (a blocking
// receive is one recvmsg), and every other read or write of ours on it asks not to wait.
#if defined(MSG_DONTWAIT)
inline constexpr int dont_wait_posix = MSG_DONTWAIT;
#else
inline constexpr int dont_wait_posix = 0;
#endif

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

inline auto create_socket_pipe_native(bool child_reads) -> result<pipe_pair> {
  auto p = create_duplex_native();
  if (!p) return p;
  // One way only, as a pipe: the child cannot fill the parent's stdin end nor wait reading its
  // stdout, and a close with unread bytes never turns the other side's end of file into ECONNRESET.
  if (::shutdown(child_reads ? p->child.get() : p->parent.get(), SHUT_WR) != 0) return last_os_error(errno, "shutdown");
  // Linux doubles the figure for its bookkeeping: half of it gives grown_pipe_size of data.
  const int size = static_cast<int>(grown_pipe_size / 2);
  for (int fd : {p->parent.get(), p->child.get()}) (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  return p;
}

inline auto create_plain_pipe_native() -> result<pipe_pair> {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return last_os_error(errno, "pipe");
  return pipe_pair{unique_handle(fds[0]), unique_handle(fds[1])};
}

inline int make_blocking_socket_native(native_handle h) noexcept {
  struct stat st{};
  if (dont_wait_posix == 0 || ::fstat(h, &st) != 0 || !S_ISSOCK(st.st_mode)) return 0;
  const int flags = ::fcntl(h, F_GETFL);
  if (flags < 0) return 0;
  if ((flags & O_NONBLOCK) == 0) return 1;
  return ::fcntl(h, F_SETFL, flags & ~O_NONBLOCK) == 0 ? 2 : 0;
}

inline void undo_blocking_socket_native(native_handle h) noexcept { (void)set_nonblocking(h); }

// The most descriptors one recvmsg takes: a channel sends one per sendmsg, and Linux stops a
// read after the bytes that carried descriptors, so more never come at once.
inline constexpr int max_received_fds_posix = 16;

// One recvmsg(2) attempt that keeps the descriptors sent with the bytes in `received` (owned from
// arrival: close-on-exec, closed if nobody takes them); `wait`: block (a socket made blocking).
// `received` null: no control buffer, so the kernel discards descriptors without installing them
// (closing one of ours would drop this process's record locks on its file).
inline auto try_recv_posix(int fd, std::span<char> buffer, std::vector<unique_handle>* received, bool wait = false)
    -> result<std::size_t> {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_received_fds_posix)];
  iovec io{buffer.data(), buffer.size()};
  for (;;) {
    msghdr m{};
    m.msg_iov = &io;
    m.msg_iovlen = 1;
    if (received) {
      m.msg_control = control;
      m.msg_controllen = sizeof control;
    }
    const ssize_t n = ::recvmsg(fd, &m, MSG_CMSG_CLOEXEC | (wait ? 0 : dont_wait_posix));
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_os_error(errno, errno == EAGAIN ? std::string() : std::string("recvmsg"));
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int one;
        std::memcpy(&one, CMSG_DATA(c) + i * sizeof(int), sizeof one);
        received->emplace_back(one);
      }
    }
    // MSG_CTRUNC: more descriptors came than fit; the kernel closed the rest. The bytes are
    // kept: a frame that announced a dropped descriptor finds none and says so.
    return static_cast<std::size_t>(n);
  }
}

// One read(2) attempt; a socket (a channel's, or one marked `socket`) takes recvmsg(2), which
// keeps descriptors sent with the bytes in `received`, or lets the kernel discard them. `wait`:
// block (a socket made blocking). EAGAIN comes back as an error for the caller to wait on.
inline auto try_read_posix(int fd, std::span<char> buffer, std::vector<unique_handle>* received = nullptr,
                           bool socket = false, bool wait = false) -> result<std::size_t> {
  if (received || socket) {  // a pipe handed over as a socket says ENOTSOCK: read it
    auto r = try_recv_posix(fd, buffer, received, wait);
    if (r || r.error().value() != ENOTSOCK) return r;
  }
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) return last_os_error(errno, errno == EAGAIN ? std::string() : std::string("read"));
  }
}

// One send(2) attempt on a socket, MSG_NOSIGNAL instead of SIGPIPE; with `attach` >= 0 a
// sendmsg(2) carrying that descriptor with the bytes.
inline auto try_send_posix(int fd, std::span<const char> data, int attach) -> result<std::size_t> {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  iovec io{const_cast<char*>(data.data()), data.size()};
  msghdr m{};
  m.msg_iov = &io;
  m.msg_iovlen = 1;
  if (attach >= 0) {
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &attach, sizeof attach);
  }
  for (;;) {
    const int flags = MSG_NOSIGNAL | dont_wait_posix;
    const ssize_t n = attach >= 0 ? ::sendmsg(fd, &m, flags) : ::send(fd, data.data(), data.size(), flags);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) return last_os_error(errno, errno == EAGAIN ? std::string() : std::string(attach >= 0 ? "sendmsg" : "send"));
  }
}

// One write(2) attempt without SIGPIPE: the signal is blocked in this thread for the call and a
// SIGPIPE it raised is consumed, so no process-wide disposition changes (the technique of libcurl).
// A socket takes send(2)'s MSG_NOSIGNAL instead: one system call rather than four. (A "socket"
// that is not one, such as a pipe handed over as a channel, says ENOTSOCK and takes the mask.)
inline auto try_write_posix(int fd, std::span<const char> data, int attach = -1, bool socket = false)
    -> result<std::size_t> {
  if (attach >= 0 || socket) {
    auto r = try_send_posix(fd, data, attach);
    if (r || r.error().value() != ENOTSOCK || attach >= 0) return r;
  }
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

inline auto wait_readable_native(native_handle h, int timeout_ms) -> result<bool> {
  pollfd p{h, POLLIN, 0};
  int n;
  while ((n = ::poll(&p, 1, timeout_ms)) < 0)
    if (errno != EINTR) return last_os_error(errno, "poll");
  return n > 0;
}

inline auto read_some_native(native_handle h, std::span<char> buffer, std::vector<unique_handle>* received,
                             bool wait_first, bool blocking_socket) -> result<std::size_t> {
  if (blocking_socket) {  // one call that waits, as a plain read loop does
    for (;;) {
      auto r = try_read_posix(h, buffer, received, true, true);
      if (r || r.error().value() != EAGAIN) return r;
      // Someone made it non-blocking again (the flag belongs to the open file): wait, then read.
      if (auto w = poll_one_posix(h, POLLIN); !w) return std::move(w).error();
    }
  }
  if (wait_first)
    if (auto w = poll_one_posix(h, POLLIN); !w) return std::move(w).error();
  for (;;) {
    auto r = try_read_posix(h, buffer, received);
    if (r || r.error().value() != EAGAIN) return r;
    if (auto w = poll_one_posix(h, POLLIN); !w) return std::move(w).error();
  }
}

inline auto write_some_native(native_handle h, std::span<const char> data, native_handle attach, bool socket)
    -> result<std::size_t> {
  for (;;) {
    auto r = try_write_posix(h, data, attach, socket);
    if (r || r.error().value() != EAGAIN) return r;
    if (auto w = poll_one_posix(h, POLLOUT); !w) return std::move(w).error();
  }
}

inline auto write_some_reading_native(native_handle h, std::span<const char> data, native_handle attach, bool socket,
                                      read_sink& sink) -> result<std::size_t> {
  bool peer_ended = false;
  for (;;) {
    auto r = try_write_posix(h, data, attach, socket);
    if (r || r.error().value() != EAGAIN) return r;
    const std::span<char> room = peer_ended ? std::span<char>() : sink.room();
    pollfd p{h, static_cast<short>(POLLOUT | (room.empty() ? 0 : POLLIN)), 0};
    while (::poll(&p, 1, -1) < 0)
      if (errno != EINTR) return last_os_error(errno, "poll");
    if (room.empty() || !(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
    auto got = try_read_posix(h, room, sink.received, socket);
    if (!got && got.error().value() == EAGAIN) continue;
    peer_ended = !got || *got == 0;  // after an end or an error, only the write is waited for
    sink.arrived(std::move(got));
  }
}

inline auto write_now_native(native_handle h, std::span<const char> data, native_handle attach, bool socket)
    -> result<std::size_t> {
  auto r = try_write_posix(h, data, attach, socket);
  if (!r && r.error().value() == EAGAIN) return std::size_t{0};
  return r;
}

inline std::size_t pipe_capacity_native(native_handle h) noexcept {
#if defined(F_GETPIPE_SZ)
  const int n = ::fcntl(h, F_GETPIPE_SZ);
  return n > 0 ? static_cast<std::size_t>(n) : 0;
#else
  (void)h;
  return 0;
#endif
}

inline std::size_t grow_pipe_native(native_handle h, std::size_t size) noexcept {
#if defined(F_SETPIPE_SZ)
  const int n = ::fcntl(h, F_SETPIPE_SZ, static_cast<int>(size));
  return n > 0 ? static_cast<std::size_t>(n) : 0;
#else
  (void)h, (void)size;
  return 0;
#endif
}

}  // namespace childproc::inline v0::detail

#endif
