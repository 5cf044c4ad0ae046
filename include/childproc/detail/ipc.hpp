// SPDX-License-Identifier: BSL-1.0
// Contract: the OS side of the message channel and of fork_self: the duplex transport, the
// child's pickup of its end, and the path of the running executable.
#ifndef CHILDPROC_DETAIL_IPC_HPP
#define CHILDPROC_DETAIL_IPC_HPP

#include "../result.hpp"
#include "handle.hpp"
#include "pipe.hpp"

#include <string>  // paths

namespace childproc::inline v0::detail {

/// The environment variable that tells a forked child where its channel is (a descriptor number).
inline constexpr const char* channel_env = "CHILDPROC_CHANNEL";

/// A duplex transport for a channel; the parent's end is ready for the reactor, the child's end
/// is what the child gets at its stdio index.
///   POSIX: socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC), the parent's end non-blocking.
///   Win32: a duplex named pipe, both ends overlapped (the child runs its own completion port).
inline auto create_channel_native() -> result<pipe_pair>;

/// In the child: takes the channel end at descriptor `fd`, out of reach of grandchildren.
///   POSIX: checks the fd, sets FD_CLOEXEC and O_NONBLOCK.
///   Win32: the C runtime's fd -> HANDLE (lpReserved2), duplicated as non-inheritable; the fd is closed.
inline auto adopt_channel_native(int fd) -> result<unique_handle>;

/// Removes a variable from this process's environment (so children do not inherit it).
///   POSIX: unsetenv.   Win32: SetEnvironmentVariableW and the C runtime's copy (_putenv_s).
inline void unset_env_native(const char* name) noexcept;

/// The running executable's path, for fork_self.
///   POSIX: readlink("/proc/self/exe") on Linux; elsewhere ENOTSUP.   Win32: GetModuleFileNameW.
inline auto self_exe_native() -> result<std::string>;

}  // namespace childproc::inline v0::detail

#if CHILDPROC_WIN32
#  include "ipc.win32.hpp"
#else
#  include "ipc.posix.hpp"
#endif

#endif
