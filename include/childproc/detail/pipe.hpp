// SPDX-License-Identifier: BSL-1.0
// Contract: pipes between parent and child, and blocking reads and writes on the parent's end.
#ifndef CHILDPROC_DETAIL_PIPE_HPP
#define CHILDPROC_DETAIL_PIPE_HPP

#include "../result.hpp"
#include "handle.hpp"

#include <cstddef>  // std::size_t
#include <span>     // buffers

namespace childproc::inline v0::detail {

/// Two ends: the parent keeps one, the child gets the other at spawn.
struct pipe_pair {
  unique_handle parent;
  unique_handle child;
};

/// A one-way pipe; `child_reads` says which way it flows.
///   POSIX: pipe2(O_CLOEXEC), then O_NONBLOCK on the parent's end only.
///   Win32: an overlapped named pipe for the parent, a synchronous inheritable client end for the child.
inline auto create_pipe_native(bool child_reads) -> result<pipe_pair>;

/// A duplex stream, for stdio entries past stderr.
///   POSIX: socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC), parent end non-blocking.
///   Win32: a duplex overlapped named pipe.
inline auto create_duplex_native() -> result<pipe_pair>;

/// A pipe whose two ends are blocking (synchronous) and not inheritable, to hand to two children
/// (a pipeline); `parent` is the read end, `child` the write end.
///   POSIX: pipe2(O_CLOEXEC).   Win32: CreatePipe without inheritance.
inline auto create_plain_pipe_native() -> result<pipe_pair>;

/// Reads at least one byte, blocking as needed; 0 means end of stream.
///   POSIX: read(2), and poll(2) while it would block.
///   Win32: ReadFile with an OVERLAPPED and a wait; ERROR_BROKEN_PIPE is end of stream.
inline auto read_some_native(native_handle h, std::span<char> buffer) -> result<std::size_t>;

/// Writes at least one byte, blocking as needed. A reader that is gone is EPIPE, never a signal.
///   POSIX: write(2) with SIGPIPE blocked in this thread only, a raised SIGPIPE consumed; poll(2) while full.
///   Win32: WriteFile with an OVERLAPPED and a wait; ERROR_NO_DATA is reported as EPIPE.
inline auto write_some_native(native_handle h, std::span<const char> data) -> result<std::size_t>;

/// Writes what fits now, without waiting: 0 when nothing fits (a channel coalescing many sends).
///   POSIX: one write(2) on the non-blocking end, EAGAIN as 0.   Win32: always 0 (no such write on
///   an overlapped handle: the completion port does the writing).
inline auto write_now_native(native_handle h, std::span<const char> data) -> result<std::size_t>;

}  // namespace childproc::inline v0::detail

#if CHILDPROC_WIN32
#  include "pipe.win32.hpp"
#else
#  include "pipe.posix.hpp"
#endif

#endif
