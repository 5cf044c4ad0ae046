// SPDX-License-Identifier: BSL-1.0
// Contract: pipes between parent and child, and blocking reads and writes on the parent's end.
#ifndef CHILDPROC_DETAIL_PIPE_HPP
#define CHILDPROC_DETAIL_PIPE_HPP

#include "../result.hpp"
#include "handle.hpp"

#include <atomic>   // the grown pipes' budget
#include <cstddef>  // std::size_t
#include <span>     // buffers
#include <vector>   // descriptors received with the bytes

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

/// The transport of stdio's socket_pipe at 0-2 (`child_reads`: stdin).
///   POSIX: socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC), one way (the end that only reads
///          shut for writing), parent end non-blocking, both ends' send buffers asked to hold
///          grown_pipe_size (as a grown pipe; net.core.wmem_max caps it without an error, and it
///          is a limit, not memory taken).
///   Win32: create_pipe_native (no socket can be a child's stdio handle there).
inline auto create_socket_pipe_native(bool child_reads) -> result<pipe_pair>;

/// A pipe whose two ends are blocking (synchronous) and not inheritable, to hand to two children
/// (a pipeline); `parent` is the read end, `child` the write end.
///   POSIX: pipe2(O_CLOEXEC).   Win32: CreatePipe without inheritance.
inline auto create_plain_pipe_native() -> result<pipe_pair>;

/// Makes a channel's socket blocking so that a blocking receive is one recvmsg(2) (no poll first);
/// the library's other reads and writes on it then pass MSG_DONTWAIT (the loop's among them).
/// 0: left as it is (not a socket, or no MSG_DONTWAIT); 1: a socket that was blocking already;
/// 2: a socket made blocking (undo_blocking_socket_native gives O_NONBLOCK back).
///   POSIX: fstat(2), then fcntl(2) clearing O_NONBLOCK.   Win32: 0 (overlapped handles).
inline int make_blocking_socket_native(native_handle h) noexcept;

/// Gives a socket made blocking its O_NONBLOCK back (its stream lets the handle go).
///   POSIX: fcntl(2).   Win32: nothing.
inline void undo_blocking_socket_native(native_handle h) noexcept;

/// Whether `h` has something to read (bytes, or the end) within `timeout_ms` (0: now).
///   POSIX: poll(2).   Win32: PeekNamedPipe, looked at again every millisecond (only a channel
///   that waits for sockets a Node server sent uses it, and no socket comes from Node on Win32).
inline auto wait_readable_native(native_handle h, int timeout_ms) -> result<bool>;

/// Reads at least one byte, blocking as needed; 0 means end of stream. With `received`, descriptors
/// that arrive with the bytes (a channel passing handles) are appended to it. `wait_first` is a
/// hint that the last read emptied the handle (it returned less than asked), so a read now would
/// most likely find nothing (a reply not yet written): wait first, then read. A wrong hint costs
/// one poll(2) (recvmsg(2) also stops early where passed descriptors arrive). `blocking_socket`:
/// `h` went through make_blocking_socket_native, so one call waits.
///   POSIX: read(2), or recvmsg(2) on a socket, taking SCM_RIGHTS (MSG_CMSG_CLOEXEC) into
///   `received` (else the kernel discards them); poll(2) while it would block (before the first
///   read with `wait_first`); a blocking socket: one recvmsg(2).
///   Win32: ReadFile with an OVERLAPPED and a wait; ERROR_BROKEN_PIPE is end of stream. `received`
///   stays empty: handles travel as values in the bytes (see ipc.hpp). `wait_first` changes
///   nothing (the overlapped read waits anyway).
inline auto read_some_native(native_handle h, std::span<char> buffer, std::vector<unique_handle>* received = nullptr,
                             bool wait_first = false, bool blocking_socket = false) -> result<std::size_t>;

/// Writes at least one byte, blocking as needed. A reader that is gone is EPIPE, never a signal.
/// A valid `attach` is sent along with the first byte (a channel passing a handle). `socket` says
/// the handle is a socket (a channel's), which lets POSIX skip the signal mask.
///   POSIX: write(2) with SIGPIPE blocked in this thread only, a raised SIGPIPE consumed; on a
///   socket, send(2) with MSG_NOSIGNAL (sendmsg(2) with SCM_RIGHTS for `attach`); poll(2) while full.
///   Win32: WriteFile with an OVERLAPPED and a wait; ERROR_NO_DATA is reported as EPIPE. `attach` is
///   ignored (it was duplicated into the peer already).
inline auto write_some_native(native_handle h, std::span<const char> data, native_handle attach = invalid_handle(),
                              bool socket = false) -> result<std::size_t>;

/// Where a blocking write puts what its handle delivers while the write waits (a channel's
/// receive buffer), so that a peer writing to us at the same time is never blocked by us.
struct read_sink {
  /// Where the next read may go; empty: read nothing more for now (the sink is full).
  virtual std::span<char> room() = 0;
  /// The outcome of one read into room(): bytes (0: the peer's end of stream) or an error.
  virtual void arrived(result<std::size_t> r) = 0;
  /// Descriptors that arrive with the bytes (POSIX channels), or nullptr.
  std::vector<unique_handle>* received = nullptr;

 protected:
  ~read_sink() = default;
};

/// write_some_native that reads while it waits: each time nothing can be written and the handle
/// has bytes for us, they are read into `sink` (after its end of stream, or while room() is
/// empty, it only waits to write).
///   POSIX: poll(2) for POLLOUT | POLLIN; recvmsg(2) / read(2) as read_some_native.
///   Win32: the overlapped WriteFile and an overlapped ReadFile both pending, each on its own
///   event; a read still pending when the write completes is cancelled (CancelIoEx) and its
///   outcome, bytes included, still goes to the sink.
inline auto write_some_reading_native(native_handle h, std::span<const char> data, native_handle attach, bool socket,
                                      read_sink& sink) -> result<std::size_t>;

/// Writes what fits now, without waiting: 0 when nothing fits (a channel coalescing many sends).
///   POSIX: one write(2) on the non-blocking end (send(2) on a socket, sendmsg(2) with `attach`),
///   EAGAIN as 0.
///   Win32: always 0 (no such write on an overlapped handle: the completion port does the writing).
inline auto write_now_native(native_handle h, std::span<const char> data, native_handle attach = invalid_handle(),
                             bool socket = false) -> result<std::size_t>;

/// How many bytes the pipe `h` holds when full; 0 if it is not a pipe whose size can change.
///   POSIX: fcntl(F_GETPIPE_SZ) (Linux; 0 elsewhere).   Win32: 0 (a pipe's buffer is set at creation).
inline std::size_t pipe_capacity_native(native_handle h) noexcept;

/// Asks for the pipe `h` to hold `size` bytes: its capacity after, 0 if refused (the per-user
/// pipe memory limit, or more than /proc/sys/fs/pipe-max-size).
///   POSIX: fcntl(F_SETPIPE_SZ) (Linux; 0 elsewhere).   Win32: 0.
inline std::size_t grow_pipe_native(native_handle h, std::size_t size) noexcept;

/// The size a child's output pipe grows to when its reader keeps finding it full (a 64 KiB pipe
/// costs a context switch per 64 KiB: the figures in the README), and the most bytes of grown
/// pipes one process holds at once. Linux charges pipes to the user's pipe memory (soft limit
/// 64 MiB by default, past which new pipes get one page): 16 grown pipes are a quarter of it, and
/// any number of children that are not streaming fast keep the default size.
inline constexpr std::size_t grown_pipe_size = std::size_t{1} << 20;
inline constexpr std::size_t grown_pipes_budget = std::size_t{16} << 20;
inline std::atomic<std::size_t> grown_pipe_bytes{0};  // held now, by every stream of the process

}  // namespace childproc::inline v0::detail

#if CHILDPROC_WIN32
#  include "pipe.win32.hpp"
#else
#  include "pipe.posix.hpp"
#endif

#endif
