// SPDX-License-Identifier: BSL-1.0
// POSIX backend of reactor.hpp: epoll (edge-triggered) on Linux, poll(2) elsewhere or with CHILDPROC_USE_POLL.
#ifndef CHILDPROC_DETAIL_REACTOR_POSIX_HPP
#define CHILDPROC_DETAIL_REACTOR_POSIX_HPP

#include "os.posix.hpp"

#include <algorithm>      // std::min
#include <cerrno>         // errno
#include <unordered_map>  // waiters per fd
#include <vector>         // poll set, fallback exits

namespace childproc::inline v0::detail {

// Who waits on one fd. epoll: one-shot registrations, re-armed (EPOLL_CTL_MOD) while someone
// waits, so an fd that was closed and reused without cancel() heals (MOD fails, ADD again).
// An operation tries its syscall first, so nothing is lost while nobody waited; a read marked
// wait_first is armed at once instead (epoll and poll report readiness that already exists).
struct fd_waiters {
  io_op* reader = nullptr;
  io_op* writer = nullptr;
  std::vector<exit_op*> exits;  // a pidfd: any number wait for the one child (a watchdog beside the main task)
  bool registered = false;
  bool waited() const noexcept { return reader || writer || !exits.empty(); }
};

struct reactor_state {
  int epoll_fd = -1;
  int wake_read = -1;   // the self-pipe, once enable_wake ran
  int wake_write = -1;
  std::unordered_map<int, fd_waiters> fds;
  std::vector<exit_op*> polled_exits;  // children without a pidfd
  std::vector<pollfd> poll_set;        // reused by the poll backend
};

// One attempt at an io_op; false if it would block.
inline bool attempt_io_posix(io_op* op) {
  auto r = op->write ? try_write_posix(op->handle, {op->data, op->size}, op->attach, op->socket)
                     : try_read_posix(op->handle, {op->data, op->size}, op->received, op->socket);
  if (!r && r.error().value() == EAGAIN) return false;
  op->bytes = r ? *r : 0;
  op->err = r ? error() : std::move(r).error();
  return true;
}

// Whether the child of an exit_op has ended (an error, such as ECHILD, also ends the wait).
inline bool attempt_exit_posix(exit_op* op) {
  auto r = has_exited_native(*op->child);
  if (r && !*r) return false;
  op->err = r ? error() : std::move(r).error();
  return true;
}

// Asks the poller for the events the waiters of `fd` need.
inline auto arm_fd_posix(reactor_state& s, int fd, fd_waiters& w) -> result<void> {
#if CHILDPROC_HAS_EPOLL
  epoll_event ev{};
  // RDHUP only for a reader: the peer's half-close says nothing to a writer, and asked for by one
  // it would fire again at every re-arm while the write waits (a spin).
  const bool reading = w.reader || !w.exits.empty();
  ev.events = EPOLLONESHOT | (reading ? EPOLLIN | EPOLLRDHUP : 0u) | (w.writer ? EPOLLOUT : 0u);
  ev.data.fd = fd;
  if (w.registered && ::epoll_ctl(s.epoll_fd, EPOLL_CTL_MOD, fd, &ev) == 0) return {};
  if (::epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0 &&
      (errno != EEXIST || ::epoll_ctl(s.epoll_fd, EPOLL_CTL_MOD, fd, &ev) != 0))
    return last_os_error(errno, "epoll_ctl");
#else
  (void)s;
  (void)fd;
#endif
  w.registered = true;
  return {};
}

inline void drain_wake_posix(reactor_state& s) noexcept {
  char buf[256];
  while (::read(s.wake_read, buf, sizeof buf) > 0) {}
}

// Runs what became possible on `fd`, then re-arms it for whoever still waits.
inline void on_ready_posix(reactor_state& s, int fd, bool readable, bool writable, op_queue& done) {
  auto it = s.fds.find(fd);
  if (it == s.fds.end()) return;
  fd_waiters& w = it->second;
  if (readable && w.reader && attempt_io_posix(w.reader)) done.push(std::exchange(w.reader, nullptr));
  if (writable && w.writer && attempt_io_posix(w.writer)) done.push(std::exchange(w.writer, nullptr));
  if (readable && !w.exits.empty() && attempt_exit_posix(w.exits.front())) {
    for (exit_op* op : w.exits) {
      op->err = w.exits.front()->err;
      done.push(op);
    }
    w.exits.clear();
  }
  if (w.waited())
    if (auto r = arm_fd_posix(s, fd, w); !r) {
      for (reactor_op* op : {static_cast<reactor_op*>(std::exchange(w.reader, nullptr)),
                             static_cast<reactor_op*>(std::exchange(w.writer, nullptr))})
        if (op) {
          op->err = r.error();
          done.push(op);
        }
      for (exit_op* op : std::exchange(w.exits, {})) {
        op->err = r.error();
        done.push(op);
      }
    }
}

inline auto reactor_open_native(reactor_state& s) -> result<void> {
#if CHILDPROC_HAS_EPOLL
  s.epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (s.epoll_fd < 0) return last_os_error(errno, "epoll_create1");
#else
  (void)s;
#endif
  return {};
}

inline void start_io_native(reactor_state& s, io_op* op, op_queue& done) {
  if (auto it = s.fds.find(op->handle); it != s.fds.end() && (op->write ? it->second.writer : it->second.reader)) {
    op->err = error(errc::busy, op->write ? "write: another write is pending on this handle" : "read: another read is pending on this handle");
    return done.push(op);  // the first one keeps waiting: a second never replaces it
  }
  op->waiting = false;
  const bool try_first = op->write || !op->wait_first;
  if (try_first && attempt_io_posix(op)) return done.push(op);
  auto& w = s.fds[op->handle];
  (op->write ? w.writer : w.reader) = op;
  op->waiting = true;
  if (auto r = arm_fd_posix(s, op->handle, w); !r) {
    op->waiting = false;
    (op->write ? w.writer : w.reader) = nullptr;
    // epoll refuses regular files (EPERM), which are always ready: read at once after all.
    if (!try_first && r.error().value() == EPERM && attempt_io_posix(op)) return done.push(op);
    op->err = std::move(r).error();
    done.push(op);
  }
}

inline void start_exit_wait_native(reactor_state& s, exit_op* op, op_queue& done) {
  if (attempt_exit_posix(op)) return done.push(op);
  if (!op->child->handle) return s.polled_exits.push_back(op);
  const int fd = op->child->handle.get();
  auto& w = s.fds[fd];
  w.exits.push_back(op);
  if (auto r = arm_fd_posix(s, fd, w); !r) {
    w.exits.pop_back();
    op->err = std::move(r).error();
    done.push(op);
  }
}

inline void cancel_native(reactor_state& s, native_handle h, bool, op_queue& done) {
  auto it = s.fds.find(h);
  if (it == s.fds.end()) return;
  std::vector<reactor_op*> ops(it->second.exits.begin(), it->second.exits.end());
  ops.push_back(it->second.reader);
  ops.push_back(it->second.writer);
  for (reactor_op* op : ops)
    if (op) {
      op->err = error(errc::cancelled);
      op->bytes = 0;
      done.push(op);
    }
#if CHILDPROC_HAS_EPOLL
  if (it->second.registered) ::epoll_ctl(s.epoll_fd, EPOLL_CTL_DEL, h, nullptr);
#endif
  s.fds.erase(it);
}

// Drops `op` from the waiters of `fd`; the fd leaves the poller once nobody waits on it.
inline void unwait_posix(reactor_state& s, int fd, reactor_op* op, op_queue& done) {
  auto it = s.fds.find(fd);
  if (it == s.fds.end()) return;
  fd_waiters& w = it->second;
  if (w.reader == op) w.reader = nullptr;
  else if (w.writer == op) w.writer = nullptr;
  else if (!std::erase_if(w.exits, [op](exit_op* e) { return e == op; })) return;  // not pending: already completed
  op->err = error(errc::cancelled);
  op->bytes = 0;
  done.push(op);
  if (w.waited()) {
    if (auto r = arm_fd_posix(s, fd, w); !r) on_ready_posix(s, fd, true, true, done);  // let them see the error
    return;
  }
#if CHILDPROC_HAS_EPOLL
  if (w.registered) ::epoll_ctl(s.epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
#endif
  s.fds.erase(it);
}

inline void cancel_io_native(reactor_state& s, io_op* op, op_queue& done) { unwait_posix(s, op->handle, op, done); }

inline constexpr bool cancelled_write_counted_native = true;

inline void withdraw_io_native(reactor_state& s, io_op* op, read_sink*) noexcept {  // nothing was written: exact
  op_queue dropped;  // the cancelled completion, which must not run
  unwait_posix(s, op->handle, op, dropped);
}

inline void cancel_all_native(reactor_state& s, op_queue& done) noexcept {
  std::vector<int> fds;
  for (auto& [fd, w] : s.fds) fds.push_back(fd);
  for (int fd : fds) cancel_native(s, fd, false, done);
  for (exit_op* op : std::exchange(s.polled_exits, {})) {
    op->err = error(errc::cancelled);
    done.push(op);
  }
}

inline bool pending_native(const reactor_state& s) noexcept { return !s.fds.empty() || !s.polled_exits.empty(); }

inline void cancel_exit_wait_native(reactor_state& s, exit_op* op, op_queue& done) {
  if (std::erase(s.polled_exits, op)) {
    op->err = error(errc::cancelled);
    return done.push(op);
  }
  if (op->child->handle) unwait_posix(s, op->child->handle.get(), op, done);
}

inline auto reactor_poll_native(reactor_state& s, int timeout_ms, op_queue& done) -> result<void> {
  if (!s.polled_exits.empty()) timeout_ms = timeout_ms < 0 ? 5 : std::min(timeout_ms, 5);
#if CHILDPROC_HAS_EPOLL
  epoll_event events[64];
  const int n = ::epoll_wait(s.epoll_fd, events, 64, timeout_ms);
  if (n < 0 && errno != EINTR) return last_os_error(errno, "epoll_wait");
  for (int i = 0; i < n; ++i) {
    if (events[i].data.fd == s.wake_read) {
      drain_wake_posix(s);
      continue;
    }
    const auto e = events[i].events;
    const bool broken = (e & (EPOLLERR | EPOLLHUP)) != 0;
    on_ready_posix(s, events[i].data.fd, broken || (e & (EPOLLIN | EPOLLRDHUP)), broken || (e & EPOLLOUT), done);
  }
#else
  s.poll_set.clear();
  if (s.wake_read >= 0) s.poll_set.push_back({s.wake_read, POLLIN, 0});
  for (auto& [fd, w] : s.fds) {
    const short want = static_cast<short>(((w.reader || !w.exits.empty()) ? POLLIN : 0) | (w.writer ? POLLOUT : 0));
    if (want) s.poll_set.push_back({fd, want, 0});
  }
  const int n = ::poll(s.poll_set.data(), s.poll_set.size(), timeout_ms);
  if (n < 0 && errno != EINTR) return last_os_error(errno, "poll");
  for (int i = 0; n > 0 && i < static_cast<int>(s.poll_set.size()); ++i) {
    const auto& p = s.poll_set[static_cast<std::size_t>(i)];
    if (p.fd == s.wake_read) {
      if (p.revents) drain_wake_posix(s);
      continue;
    }
    const bool broken = (p.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0;
    if (p.revents) on_ready_posix(s, p.fd, broken || (p.revents & POLLIN), broken || (p.revents & POLLOUT), done);
  }
#endif
  std::erase_if(s.polled_exits, [&](exit_op* op) {
    if (!attempt_exit_posix(op)) return false;
    done.push(op);
    return true;
  });
  return {};
}

inline auto reactor_enable_wake_native(reactor_state& s) -> result<void> {
  if (s.wake_read >= 0) return {};
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return last_os_error(errno, "pipe");
  s.wake_read = fds[0];
  s.wake_write = fds[1];
#if CHILDPROC_HAS_EPOLL
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = s.wake_read;
  if (::epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, s.wake_read, &ev) != 0) return last_os_error(errno, "epoll_ctl");
#endif
  return {};
}

inline void reactor_wake_native(reactor_state& s) noexcept {
  const char byte = 0;
  (void)!::write(s.wake_write, &byte, 1);  // a full pipe is already a pending wake-up
}

inline void forget_handle_native(native_handle) noexcept {}

inline void reactor_close_native(reactor_state& s) noexcept {
  for (int* fd : {&s.epoll_fd, &s.wake_read, &s.wake_write})
    if (*fd >= 0) ::close(std::exchange(*fd, -1));
}

}  // namespace childproc::inline v0::detail

#endif
