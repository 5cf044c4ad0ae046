// SPDX-License-Identifier: BSL-1.0
// Contract: waiting for, signalling and handing off a child.
#ifndef CHILDPROC_DETAIL_WAIT_HPP
#define CHILDPROC_DETAIL_WAIT_HPP

#include "../exit_status.hpp"
#include "../result.hpp"
#include "handle.hpp"

#include <chrono>    // wait_for
#include <optional>  // try_wait

namespace childproc::inline v0 {

#if CHILDPROC_WIN32
/// A process id: DWORD on Win32, pid_t on POSIX.
using pid_type = unsigned long;
#else
/// A process id: DWORD on Win32, pid_t on POSIX.
using pid_type = int;
#endif

namespace detail {

/// A started, not yet reaped child.
struct native_child {
  pid_type pid = 0;
  unique_handle handle;  ///< Linux: a pidfd (invalid where pidfd_open is missing). Win32: the process HANDLE.
  unique_handle job;     ///< Win32: the kill-on-close job object. POSIX: unused.
  int term_signal = 0;   ///< Win32: the signal kill() emulated, reported as the status. POSIX: unused.
  bool gone = false;     ///< POSIX: not our child by the time spawn looked (reaped by others): never signalled or waited by pid
};

/// Blocks until the child ends and reaps it.
///   POSIX: waitid(P_PIDFD) with a pidfd, else waitpid(pid); EINTR retried; never waitpid(-1).
///   Win32: WaitForSingleObject, then GetExitCodeProcess.
inline auto wait_native(native_child& c) -> result<exit_status>;

/// Reaps the child if it has ended, without blocking.
///   POSIX: the same with WNOHANG.   Win32: WaitForSingleObject(h, 0).
inline auto try_wait_native(native_child& c) -> result<std::optional<exit_status>>;

/// Waits at most `timeout` for the child to end; reaps it if it did.
///   POSIX: poll(2) on the pidfd, else WNOHANG checks with growing sleeps (1 ms to 20 ms).
///   Win32: WaitForSingleObject(h, ms).
inline auto wait_for_native(native_child& c, std::chrono::milliseconds timeout)
    -> result<std::optional<exit_status>>;

/// Waits at most `timeout` for the child to end, without reaping it: true once it has ended.
///   POSIX: wait_for_native's waits with WNOWAIT.   Win32: WaitForSingleObject(h, ms).
inline auto wait_ended_for_native(native_child& c, std::chrono::milliseconds timeout) -> result<bool>;

/// Whether the child has ended, without reaping it (so the owner still reaps it exactly once).
///   POSIX: waitid(WEXITED | WNOHANG | WNOWAIT).   Win32: WaitForSingleObject(h, 0).
inline auto has_exited_native(native_child& c) -> result<bool>;

/// Sends `signal` to the child (0 checks that it is there).
///   POSIX: pidfd_send_signal with a pidfd (Linux 5.1), else kill(2) (the owner has not reaped the child yet).
///   Win32: TerminateProcess for SIGTERM, SIGKILL, SIGINT and SIGQUIT (as libuv); 0 checks liveness.
inline auto kill_native(native_child& c, int signal) -> result<void>;

/// Gives up ownership of a running child, which must still never become a zombie.
///   POSIX: the child goes to one lazily started reaper thread that waits on it (pidfd or WNOHANG).
///   Win32: the handles are closed (Windows keeps no zombies).
inline void detach_native(native_child&& c) noexcept;

}  // namespace detail
}  // namespace childproc::inline v0

#if CHILDPROC_WIN32
#  include "wait.win32.hpp"
#else
#  include "wait.posix.hpp"
#endif

#endif
