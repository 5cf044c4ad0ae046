// SPDX-License-Identifier: BSL-1.0
// POSIX backend of wait.hpp.
#ifndef CHILDPROC_DETAIL_WAIT_POSIX_HPP
#define CHILDPROC_DETAIL_WAIT_POSIX_HPP

#include "os.posix.hpp"

#include <cerrno>   // errno
#include <mutex>    // the reaper's list
#include <thread>   // the reaper
#include <utility>  // std::pair
#include <vector>   // the reaper's list

#ifndef P_PIDFD
#  define P_PIDFD 3  // Linux 5.4; glibc headers before 2.36 lack it
#endif

namespace childproc::inline v0::detail {

inline exit_status status_from_siginfo(const siginfo_t& info) noexcept {
  switch (info.si_code) {
    case CLD_EXITED: return exit_status::exited(info.si_status);
    case CLD_DUMPED: return exit_status::signaled(info.si_status, true);
    default: return exit_status::signaled(info.si_status, false);
  }
}

// now + timeout without overflow (a huge timeout means "no deadline" in practice).
inline std::chrono::steady_clock::time_point deadline_after_posix(std::chrono::steady_clock::time_point now,
                                                                 std::chrono::milliseconds timeout) noexcept {
  const auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::time_point::max() - now);
  return timeout >= limit ? std::chrono::steady_clock::time_point::max() : now + timeout;
}

// One waitid(2) on the child; `flags` adds WNOHANG / WNOWAIT. nullopt: not ended yet.
inline auto waitid_posix(native_child& c, int flags) -> result<std::optional<exit_status>> {
  if (c.gone) return last_os_error(ECHILD, "wait " + std::to_string(c.pid));  // its pid may be another's now
  siginfo_t info{};
  for (;;) {
    const int rc = c.handle ? ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(c.handle.get()), &info, WEXITED | flags)
                            : ::waitid(P_PID, static_cast<id_t>(c.pid), &info, WEXITED | flags);
    if (rc == 0) break;
    if (errno == EINVAL && c.handle) {  // Linux 5.3 has pidfd_open but not waitid(P_PIDFD): use the pid
      c.handle.reset();
      continue;
    }
    if (errno != EINTR) return last_os_error(errno, "wait " + std::to_string(c.pid));
  }
  if (info.si_pid == 0) return std::optional<exit_status>();
  return std::optional<exit_status>(status_from_siginfo(info));
}

inline auto wait_native(native_child& c) -> result<exit_status> {
  auto r = waitid_posix(c, 0);
  if (!r) return std::move(r).error();
  return **r;
}

inline auto try_wait_native(native_child& c) -> result<std::optional<exit_status>> {
  return waitid_posix(c, WNOHANG);
}

// wait_for_native's loop; `flags` may add WNOWAIT (the child is then left to reap).
inline auto wait_for_posix(native_child& c, std::chrono::milliseconds timeout, int flags)
    -> result<std::optional<exit_status>> {
  using clock = std::chrono::steady_clock;
  const auto deadline = deadline_after_posix(clock::now(), timeout);
  auto nap = std::chrono::milliseconds(1);
  for (;;) {
    auto r = waitid_posix(c, WNOHANG | flags);
    if (!r || *r) return r;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
    if (left.count() <= 0) return r;
    if (c.handle) {
      pollfd p{c.handle.get(), POLLIN, 0};
      const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
      if (n < 0 && errno != EINTR) return last_os_error(errno, "poll");
    } else {
      std::this_thread::sleep_for(std::min(nap, left));
      nap = std::min(nap * 2, std::chrono::milliseconds(20));
    }
  }
}

inline auto wait_for_native(native_child& c, std::chrono::milliseconds timeout)
    -> result<std::optional<exit_status>> {
  return wait_for_posix(c, timeout, 0);
}

inline auto wait_ended_for_native(native_child& c, std::chrono::milliseconds timeout) -> result<bool> {
  auto r = wait_for_posix(c, timeout, WNOWAIT);
  if (!r) return std::move(r).error();
  return r->has_value();
}

inline auto has_exited_native(native_child& c) -> result<bool> {
  auto r = waitid_posix(c, WNOHANG | WNOWAIT);
  if (!r) return std::move(r).error();
  return r->has_value();
}

inline auto kill_native(native_child& c, int signal) -> result<void> {
  if (c.gone) return last_os_error(ESRCH, "kill");  // its pid may be another process's now
#ifdef SYS_pidfd_send_signal
  // Through the pidfd the signal can never reach a recycled pid, even from another thread
  // racing with the reap (options.stop_token); ENOSYS falls back to kill(2).
  if (c.handle) {
    if (::syscall(SYS_pidfd_send_signal, c.handle.get(), signal, nullptr, 0) == 0) return {};
    if (errno != ENOSYS) return last_os_error(errno, "kill");
  }
#endif
  if (::kill(c.pid, signal) != 0) return last_os_error(errno, "kill");
  return {};
}

// Reaps detached children on one thread, started by the first detach. It waits only on the pids
// it was given, so it never steals another component's children.
class reaper {
 public:
  static reaper& instance() {
    static reaper* r = new reaper;  // leaked on purpose: the thread may outlive static destructors
    return *r;
  }

  void add(native_child&& c) {
    std::lock_guard lock(mutex_);
    if (!started_) {
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
        wake_read_ = fds[0];
        wake_write_ = fds[1];
      }
      std::thread([this] { run(); }).detach();
      started_ = true;
    }
    children_.push_back(std::move(c));
    if (wake_write_ >= 0) (void)!::write(wake_write_, "x", 1);
  }

 private:
  void run() {
    std::vector<pollfd> fds;
    for (;;) {
      bool polling_needed = wake_read_ < 0;
      fds.clear();
      fds.push_back({wake_read_, POLLIN, 0});
      {
        std::lock_guard lock(mutex_);
        std::erase_if(children_, [](native_child& c) {
          auto r = try_wait_native(c);
          return !r || r->has_value();  // reaped, or ECHILD: someone else did
        });
        for (auto& c : children_) {
          if (c.handle) fds.push_back({c.handle.get(), POLLIN, 0});
          else polling_needed = true;
        }
      }
      ::poll(fds.data(), fds.size(), polling_needed ? 50 : -1);
      char buf[64];
      while (wake_read_ >= 0 && ::read(wake_read_, buf, sizeof buf) > 0) {}
    }
  }

  std::mutex mutex_;
  std::vector<native_child> children_;
  bool started_ = false;
  int wake_read_ = -1;
  int wake_write_ = -1;
};

inline void detach_native(native_child&& c) noexcept {
  if (auto r = try_wait_native(c); !r || r->has_value()) return;  // already gone: nothing to hand off
#if CHILDPROC_EXCEPTIONS
  try {
    reaper::instance().add(std::move(c));
  } catch (...) {
  }
#else
  reaper::instance().add(std::move(c));
#endif
}

}  // namespace childproc::inline v0::detail

#endif
