// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_OPTIONS_HPP
#define CHILDPROC_OPTIONS_HPP

#include "detail/framing.hpp"  // serialization
#include "detail/handle.hpp"

#include <chrono>            // timeouts
#include <csignal>           // SIGTERM
#include <cstddef>           // std::size_t
#include <cstdint>           // std::uint8_t
#include <initializer_list>  // environment helpers
#include <limits>            // unlimited
#include <optional>          // argv0, uid, gid
#include <stop_token>        // stop_token
#include <string>            // paths, variables
#include <utility>           // std::pair
#include <vector>            // stdio entries, variables

namespace childproc::inline v0 {

/// Where one of the child's descriptors (stdin, stdout, stderr, or an extra index) comes from.
struct stdio_spec {
  enum class kind : std::uint8_t {
    pipe,         ///< a pipe to the parent (fd 0-2); a duplex socket for indexes >= 3
    inherit,      ///< the parent's descriptor with the same index
    ignore,       ///< /dev/null (NUL) for 0-2; closed for indexes >= 3
    file_read,    ///< a file opened for reading
    file_write,   ///< a file created or truncated
    file_append,  ///< a file created or appended to
    handle,       ///< an existing descriptor or HANDLE of the parent (duplicated; the parent keeps its own)
    same_as_stdout,  ///< the child's stdout (stderr only: `2>&1`)
    ipc,          ///< the message channel (Node's 'ipc'): process::channel() in the parent, parent_channel() in the child
    socket_pipe,  ///< POSIX: a socketpair to the parent (what libuv makes for Node's 'pipe'); Win32: a pipe
  };
  kind how = kind::pipe;
  std::string path = {};        // file_*
  native_handle fd = native_handle();  // handle
};

/// A pipe to the parent: Node's 'pipe'.
inline const stdio_spec pipe{stdio_spec::kind::pipe};
/// A pipe made of a Unix socketpair, as Node's 'pipe' is (POSIX; Win32: a pipe): large outputs
/// stream faster (1 MiB send buffers), but the child cannot open /dev/stdout (ENXIO) or splice.
inline const stdio_spec socket_pipe{stdio_spec::kind::socket_pipe};
/// The parent's own descriptor: Node's 'inherit'.
inline const stdio_spec inherit{stdio_spec::kind::inherit};
/// The null device: Node's 'ignore'.
inline const stdio_spec ignore{stdio_spec::kind::ignore};
/// The message channel at this index (Node's 'ipc'); at most one per child. fork() adds one.
inline const stdio_spec ipc{stdio_spec::kind::ipc};
/// For stderr: whatever stdout is (`2>&1`).
inline const stdio_spec same_as_stdout{stdio_spec::kind::same_as_stdout};
/// A file: read for stdin, created or truncated for an output.
inline stdio_spec file(std::string path) { return {stdio_spec::kind::file_write, std::move(path)}; }
/// A file opened for reading (use for stdin).
inline stdio_spec file_read(std::string path) { return {stdio_spec::kind::file_read, std::move(path)}; }
/// A file created or appended to.
inline stdio_spec file_append(std::string path) { return {stdio_spec::kind::file_append, std::move(path)}; }
/// An existing descriptor or HANDLE of the parent, duplicated into the child.
inline stdio_spec fd(native_handle h) { return {stdio_spec::kind::handle, {}, h}; }

/// The child's environment: the parent's (default), changed by `set` and `unset`, or replaced.
struct environment {
  bool inherit = true;                                    ///< start from the parent's environment
  std::vector<std::pair<std::string, std::string>> set = {};  ///< added or overwritten, in order
  std::vector<std::string> unset = {};                    ///< removed (after `set`)

  /// Only these variables (Node's `env: {...}`).
  static environment replace(std::vector<std::pair<std::string, std::string>> vars) {
    return {false, std::move(vars), {}};
  }
  /// The parent's variables plus these, minus `remove` (Node's `env: {...process.env, ...}`).
  static environment extend(std::vector<std::pair<std::string, std::string>> vars,
                            std::vector<std::string> remove = {}) {
    return {true, std::move(vars), std::move(remove)};
  }
};

/// Node's `shell` option: off, the default shell (`true`), or a shell program.
struct shell_spec {
  bool enabled = false;
  std::string program = {};  // empty: /bin/sh (POSIX), %ComSpec% (Win32)
  shell_spec() = default;
  shell_spec(bool on) : enabled(on) {}
  shell_spec(const char* path) : enabled(true), program(path) {}
  shell_spec(std::string path) : enabled(true), program(std::move(path)) {}
};

/// No limit, for max_buffer.
inline constexpr std::size_t unlimited = std::numeric_limits<std::size_t>::max();

/// Everything spawn, exec, exec_file and spawn_sync take, as one aggregate.
/// Designated initializers must follow this order: `{.cwd = d, .timeout = 5s, .max_buffer = 1 << 20}`.
struct options {
  std::string cwd = {};                   ///< working directory; empty inherits the parent's
  environment env = {};                   ///< see environment
  std::optional<std::string> argv0 = {};  ///< argv[0] as the child sees it; default: the program
  /// One entry per child descriptor. spawn: {pipe, pipe, pipe} as in Node; missing 0-2 entries are pipes.
  std::vector<stdio_spec> stdio = {pipe, pipe, pipe};
  shell_spec shell = {};                  ///< run `program args...` joined by spaces through the shell
  bool detached = false;                  ///< new session (POSIX setsid) / new process group; outlives `process`
  bool new_process_group = false;         ///< POSIX: the child leads a new process group
  std::optional<unsigned> uid = {};       ///< POSIX: run as this user
  std::optional<unsigned> gid = {};       ///< POSIX: run as this group
  bool close_other_fds = true;            ///< close every descriptor not named in stdio (POSIX)
  /// The child dies with its parent. Win32: always so unless detached (a kill-on-close job).
  /// Linux: SIGKILL when the *thread* that spawned it ends (PR_SET_PDEATHSIG; spawns by fork);
  /// a set-user-ID program clears it. Other POSIX: ENOTSUP. Not with `detached`.
  bool kill_on_parent_exit = false;

  // Used by exec, exec_file and spawn_sync:
  std::string input = {};                          ///< bytes written to stdin, which is then closed
  std::chrono::milliseconds timeout{0};            ///< 0: none; else the child gets kill_signal
  int kill_signal = SIGTERM;                       ///< signal for timeout and max_buffer
  std::chrono::milliseconds kill_grace{2000};      ///< after kill_signal, SIGKILL if still running
  std::size_t max_buffer = 1024 * 1024;            ///< per output stream; exceeded: truncated, child killed
  std::chrono::milliseconds drain_timeout{1000};   ///< after exit, how long pipes held by grandchildren are read

  /// Node's `signal` (AbortSignal): once stop is requested (from any thread) the child gets
  /// kill_signal. exec & co. then report output::cancelled (and SIGKILL follows after kill_grace).
  std::stop_token stop_token = {};

  /// fork and `ipc`: the largest message the parent's channel accepts, either way (64 MiB).
  std::size_t max_message_size = std::size_t{64} << 20;
  /// fork and `ipc`: how many bytes the parent's channel holds queued for sending, and received
  /// while a blocking send waits, before it pushes back; 0: twice max_message_size (128 MiB).
  std::size_t high_water_mark = 0;
  /// fork and `ipc`: how the channel frames messages (Node's `serialization`). `json` talks to a
  /// Node child: it finds the channel in NODE_CHANNEL_FD (NODE_CHANNEL_SERIALIZATION_MODE=json),
  /// and CHILDPROC_CHANNEL is not set. `advanced` (V8's format) is refused with ENOTSUP.
  childproc::serialization serialization = childproc::serialization::childproc;
  /// fork_node: the Node binary to run (Node's `execPath`); empty: `node` from PATH.
  std::string exec_path = {};

  bool windows_hide = false;                 ///< Win32: no console window
  bool windows_verbatim_arguments = false;   ///< Win32: pass the arguments unquoted
};

/// The options spawn takes (the same aggregate).
using spawn_options = options;
/// The options exec, exec_file and spawn_sync take (the same aggregate).
using exec_options = options;

}  // namespace childproc::inline v0

#endif
