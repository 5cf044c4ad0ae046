// SPDX-License-Identifier: BSL-1.0
// Contract: the OS side of the message channel and of fork_self: the duplex transport, the
// child's pickup of its end, and the path of the running executable.
#ifndef CHILDPROC_DETAIL_IPC_HPP
#define CHILDPROC_DETAIL_IPC_HPP

#include "../result.hpp"
#include "handle.hpp"
#include "pipe.hpp"
#include "wait.hpp"

#include <cstddef>  // sizes
#include <cstdint>  // handle values
#include <string>   // paths, control payloads
#include <string_view>  // received payloads
#include <vector>   // received descriptors

namespace childproc::inline v0::detail {

/// The environment variable that tells a forked child where its channel is (a descriptor number).
inline constexpr const char* channel_env = "CHILDPROC_CHANNEL";
// Where Node's fork() puts its channel, and the serialization it speaks there.
inline constexpr const char* node_channel_env = "NODE_CHANNEL_FD";
inline constexpr const char* node_serialization_env = "NODE_CHANNEL_SERIALIZATION_MODE";

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

/// A handle on its way to the channel's peer, from send() until its bytes are written.
struct outgoing_handle {
  std::string payload;        ///< what the control frame carries (8 to 1024 bytes; see below)
  unique_handle own;          ///< POSIX: our duplicate, sent by SCM_RIGHTS then closed. Win32: empty.
  std::uint64_t remote = 0;   ///< Win32: its value in the peer process, to close it on a drop.
  native_handle peer = invalid_handle();  ///< Win32: the peer process (borrowed).
};

/// The process at the other end of a channel, which handles are duplicated into.
///   POSIX: not needed (descriptors travel with the bytes): an empty handle.
///   Win32: the child's process handle duplicated (parent side, `child` given), or the named
///   pipe's server process opened with PROCESS_DUP_HANDLE and its pid readable (child side: GetNamedPipeServerProcessId).
inline auto channel_peer_native(native_handle transport, const native_child* child) -> result<unique_handle>;

/// Makes the copy of `h` that travels to the peer; `h` stays the caller's.
///   POSIX: fcntl(F_DUPFD_CLOEXEC); the payload is 8 zero bytes (the descriptor goes by SCM_RIGHTS).
///   Win32: a socket (ws2_32 loaded and getsockopt works) by WSADuplicateSocketW for the peer's
///   pid: payload 8 zero bytes + its WSAPROTOCOL_INFOW; anything else by DuplicateHandle into
///   `peer` (same access), *marked inheritable* there: payload its value, 8 bytes little-endian.
///   The mark is what the receiver checks (and clears) before it takes the value as its own.
inline auto prepare_handle_native(native_handle h, native_handle peer) -> result<outgoing_handle>;

/// The bytes announcing `h` were written: the peer has it.
///   POSIX: closes our duplicate (the kernel holds the descriptor in flight).   Win32: nothing
///   (the handle is in the peer already).
inline void sent_handle_native(outgoing_handle& h) noexcept;

/// Closes a handle whose message was never written (the channel closed first).
///   POSIX: closes our duplicate.   Win32: DuplicateHandle(peer, remote, DUPLICATE_CLOSE_SOURCE);
///   a socket is left alone: WSADuplicateSocketW has made it in the peer already, where only the
///   peer can reach it (it stays there until that process exits: a known limit).
inline void drop_handle_native(outgoing_handle& h) noexcept;

/// The handle a received control frame announced, owned by the caller. `received` is the
/// descriptor that arrived with the frame's bytes (POSIX), `peer` the sending process (Win32).
///   POSIX: `received` itself; none is a bad_frame.
///   Win32: a socket made from the description (WSASocketW, overlapped, not inheritable; WSAStartup
///   is called for a process that had not), or the value, taken only if it names an open handle
///   of ours marked inheritable (the sender's mark; the mark is then cleared): a forged value that
///   names one of our other handles is refused, and that handle is left alone. (It could still
///   name a handle this program made inheritable itself: the library makes none.)
inline auto take_received_handle_native(std::string_view payload, unique_handle received, native_handle peer)
    -> result<unique_handle>;

/// How many received handles a channel holds for receive (not yet taken) before it stops
/// reading: past the process's descriptor limit the kernel would drop those still arriving.
///   POSIX: a quarter of the soft RLIMIT_NOFILE now (at least 1).   Win32: 16384 (no such
///   limit; sends are never held there).
inline std::size_t held_descriptors_native() noexcept;

/// Whether Node's channel wraps each write in one of libuv's IPC frames (uv_frames).
///   POSIX: no (JSON lines on the socket, descriptors by SCM_RIGHTS).   Win32: yes (libuv's pipe
///   IPC: a 16-byte header per write, a socket's description inside the frame).
inline bool node_frames_native() noexcept;

/// What Node calls `h` in a NODE_HANDLE message, or why Node could not take it.
///   POSIX: a listening TCP or Unix stream socket is "net.Server", a connected one "net.Socket",
///   a pipe or FIFO "net.Native"; anything else (a file, a datagram socket, a terminal, a stream
///   socket of another family, which libuv cannot take) is refused.
///   Win32: a listening TCP socket is "net.Server", a connected one "net.Socket" (it goes inside
///   one of libuv's frames: uv_frames); a TCP socket that is neither, or another kind of socket,
///   is refused (invalid_argument), and anything not a socket is ENOTSUP (libuv passes TCP
///   sockets only there). The channel also checks each socket Node sends with it.
inline auto node_handle_type_native(native_handle h) -> result<std::string>;

/// Which open file (socket) a descriptor refers to: a Node server that sent us a connection
/// counts it as its own until it closes here, and only the descriptor's number is kept.
struct handle_identity {
  std::uint64_t a = 0, b = 0;
  friend bool operator==(const handle_identity&, const handle_identity&) = default;
};

/// The identity of what `h` refers to now ({} if none).
///   POSIX: fstat's st_dev and st_ino (sockets have inodes of their own).   Win32: {} (a socket
///   made from a description is not tracked: a Node server's getConnections() counts those sent
///   here as closed).
inline handle_identity handle_identity_native(native_handle h) noexcept;

/// Whether `h` is still open on the file `id` named: false once the user closed it, even if the
/// number now holds something else.   POSIX: fstat.   Win32: false.
inline bool handle_still_native(native_handle h, const handle_identity& id) noexcept;

/// The running executable's path, for fork_self. `recorded` is what dispatch_entry found from
/// argv[0] at startup (empty if it was not called).
///   POSIX: readlink("/proc/self/exe") (Linux), else "/proc/curproc/file" (BSD procfs), else
///   `recorded`; ENOTSUP if none.   Win32: GetModuleFileNameW.
inline auto self_exe_native(const std::string& recorded) -> result<std::string>;

}  // namespace childproc::inline v0::detail

#if CHILDPROC_WIN32
#  include "ipc.win32.hpp"
#else
#  include "ipc.posix.hpp"
#endif

#endif
