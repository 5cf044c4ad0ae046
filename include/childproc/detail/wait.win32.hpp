// SPDX-License-Identifier: BSL-1.0
// Win32 backend of wait.hpp.
#ifndef CHILDPROC_DETAIL_WAIT_WIN32_HPP
#define CHILDPROC_DETAIL_WAIT_WIN32_HPP

#include "os.win32.hpp"

#include <csignal>  // SIGTERM, SIGINT

namespace childproc::inline v0::detail {

// The exit code TerminateProcess / TerminateJobObject give a child we killed (libuv's choice).
inline constexpr DWORD killed_exit_code_win32 = 1;

// How the child ended; a kill() of ours is reported as that signal, as Node does.
inline exit_status status_win32(native_child& c) {
  DWORD code = 0;
  ::GetExitCodeProcess(c.handle.get(), &code);
  if (c.term_signal && code == killed_exit_code_win32) return exit_status::signaled(c.term_signal);
  return exit_status::exited(static_cast<int>(code));
}

inline auto wait_native(native_child& c) -> result<exit_status> {
  if (::WaitForSingleObject(c.handle.get(), INFINITE) == WAIT_FAILED) return last_win32_error("wait");
  return status_win32(c);
}

inline auto try_wait_native(native_child& c) -> result<std::optional<exit_status>> {
  return wait_for_native(c, std::chrono::milliseconds(0));
}

inline auto wait_for_native(native_child& c, std::chrono::milliseconds timeout)
    -> result<std::optional<exit_status>> {
  const auto ms = static_cast<DWORD>(std::min<long long>(timeout.count() < 0 ? 0 : timeout.count(), INFINITE - 1));
  switch (::WaitForSingleObject(c.handle.get(), ms)) {
    case WAIT_OBJECT_0: return std::optional<exit_status>(status_win32(c));
    case WAIT_TIMEOUT: return std::optional<exit_status>();
    default: return last_win32_error("wait");
  }
}

inline auto wait_ended_for_native(native_child& c, std::chrono::milliseconds timeout) -> result<bool> {
  const auto ms = static_cast<DWORD>(std::min<long long>(timeout.count() < 0 ? 0 : timeout.count(), INFINITE - 1));
  switch (::WaitForSingleObject(c.handle.get(), ms)) {
    case WAIT_OBJECT_0: return true;
    case WAIT_TIMEOUT: return false;
    default: return last_win32_error("wait");
  }
}

inline auto has_exited_native(native_child& c) -> result<bool> {
  const DWORD r = ::WaitForSingleObject(c.handle.get(), 0);
  if (r == WAIT_FAILED) return last_win32_error("wait");
  return r == WAIT_OBJECT_0;
}

inline auto kill_native(native_child& c, int signal) -> result<void> {
  if (signal == 0) {
    auto r = has_exited_native(c);
    if (!r) return std::move(r).error();
    if (*r) return errno_error(ESRCH, "kill");
    return {};
  }
  // SIGTERM, SIGKILL (9), SIGINT, SIGQUIT (3) end the process, as in libuv; nothing else exists here.
  if (signal != SIGTERM && signal != 9 && signal != SIGINT && signal != 3)
    return errno_error(signal < 0 || signal > 64 ? EINVAL : ENOSYS, "kill");
  // An ended child is not killed again: TerminateJobObject would succeed on its empty job and the
  // natural exit code would be reported as this signal.
  if (auto gone = has_exited_native(c); gone && *gone) return errno_error(ESRCH, "kill");
  // Recorded before the child dies: a waiter on another thread (options.stop_token) that sees the
  // end must also see which signal it was.
  const int before = c.term_signal;
  if (!before) c.term_signal = signal;
  // The job holds the child's whole tree: killing it leaves no grandchild holding our pipes.
  const BOOL ok = c.job ? ::TerminateJobObject(c.job.get(), killed_exit_code_win32)
                        : ::TerminateProcess(c.handle.get(), killed_exit_code_win32);
  if (!ok) {
    const DWORD err = ::GetLastError();
    c.term_signal = before;
    if (auto gone = has_exited_native(c); gone && *gone) return errno_error(ESRCH, "kill");
    return win32_error(err, "kill");
  }
  return {};
}

inline void detach_native(native_child&& c) noexcept {
  if (c.job) {  // let the child outlive its job handle
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION none{};
    ::SetInformationJobObject(c.job.get(), JobObjectExtendedLimitInformation, &none, sizeof none);
  }
  c.job.reset();
  c.handle.reset();  // Windows keeps no zombies
}

}  // namespace childproc::inline v0::detail

#endif
