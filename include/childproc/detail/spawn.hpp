// SPDX-License-Identifier: BSL-1.0
// Contract: starting a child. The platform-free steps (checks, shell, environment) come after the backend.
#ifndef CHILDPROC_DETAIL_SPAWN_HPP
#define CHILDPROC_DETAIL_SPAWN_HPP

#include "../options.hpp"
#include "../result.hpp"
#include "env_block.hpp"
#include "quote.hpp"
#include "handle.hpp"
#include "pipe.hpp"
#include "wait.hpp"

#include <algorithm>  // count_if
#include <string>  // program, arguments
#include <vector>  // argv, environment, stdio

namespace childproc::inline v0::detail {

/// What the backend starts: everything already checked and expanded.
struct spawn_request {
  std::string program;            ///< as the user gave it (after the shell rewrite); searched in PATH
  std::vector<std::string> argv;  ///< argv[0] included
  std::vector<std::string> env;   ///< "KEY=VALUE" entries
  const options* opts = nullptr;  ///< cwd, stdio, flags
  bool verbatim = false;          ///< Win32: arguments joined unquoted (options, or the cmd.exe shell)
  std::string context;            ///< "spawn <program>", for messages
};

/// A started child and the parent's end of each stdio entry (invalid where there is no pipe).
struct spawned {
  native_child child;
  std::vector<unique_handle> stdio;
};

/// Whether a string holds a NUL byte, which no OS string can carry.
inline bool has_nul(std::string_view s) noexcept { return s.find('\0') != std::string_view::npos; }

/// The parent's environment as "KEY=VALUE" entries.
///   POSIX: environ.   Win32: GetEnvironmentStringsW, converted to UTF-8.
inline std::vector<std::string> parent_environment_native();

/// The shell for `exec` and options.shell when none is named.
///   POSIX: /bin/sh.   Win32: %ComSpec% of the child's environment, else cmd.exe.
inline std::string default_shell_native(const std::vector<std::string>& env);

/// Finds the program, builds the child's descriptors and starts it.
///   POSIX: PATH search like execvp (in the parent), then an empty signal mask and default
///          dispositions in the child. Linux: clone(CLONE_VM | CLONE_VFORK) serving every option
///          (stdio, close_range, cwd, setsid / process group, uid / gid, PR_SET_PDEATHSIG) with raw
///          system calls; where the kernel refuses that clone, and on other systems, posix_spawn
///          with dup2 / addchdir_np / addclosefrom_np actions, and one fork + execve path for what
///          posix_spawn cannot express (uid / gid, kill_on_parent_exit, an old libc). A pidfd is
///          opened where the kernel has one.
///   Win32: PATH + PATHEXT search, CreateProcessW with STARTUPINFOEXW and an explicit handle list,
///          created suspended, put in a kill-on-close job, then resumed.
inline auto spawn_native(const spawn_request& request) -> result<spawned>;

}  // namespace childproc::inline v0::detail

#if CHILDPROC_WIN32
#  include "spawn.win32.hpp"
#else
#  include "spawn.posix.hpp"
#endif

namespace childproc::inline v0::detail {

/// Whether a shell is cmd.exe, which takes Node's `/d /s /c "..."` form.
inline bool is_cmd_shell(std::string_view shell) noexcept {
  const auto sep = shell.find_last_of("\\/");
  std::string_view name = sep == std::string_view::npos ? shell : shell.substr(sep + 1);
  return (name.size() == 3 && ends_with_ci(name, "cmd")) || (name.size() == 7 && ends_with_ci(name, "cmd.exe"));
}

/// The platform-free part of spawn: checks every input, applies `shell`, builds the environment.
inline auto make_spawn_request(std::string program, std::vector<std::string> args, const options& o)
    -> result<spawn_request> {
  spawn_request req;
  req.opts = &o;
  if (program.empty()) return error(errc::invalid_argument, "spawn: the program name is empty");
  req.context = "spawn " + program.substr(0, program.find('\0'));
  if (has_nul(program)) return error(errc::invalid_argument, req.context + ": the program name contains a NUL byte");
  for (std::size_t i = 0; i < args.size(); ++i)
    if (has_nul(args[i]))
      return error(errc::invalid_argument, req.context + ": argument " + std::to_string(i + 1) + " contains a NUL byte");
  if (has_nul(o.cwd)) return error(errc::invalid_argument, req.context + ": cwd contains a NUL byte");
  if (o.argv0 && has_nul(*o.argv0)) return error(errc::invalid_argument, req.context + ": argv0 contains a NUL byte");
  if (o.shell.enabled && has_nul(o.shell.program))
    return error(errc::invalid_argument, req.context + ": the shell contains a NUL byte");
  for (std::size_t i = 0; i < o.stdio.size(); ++i)
    if (o.stdio[i].how == stdio_spec::kind::same_as_stdout && i != 2)
      return error(errc::invalid_argument, req.context + ": same_as_stdout is only for stderr (stdio[2])");
  if (std::count_if(o.stdio.begin(), o.stdio.end(), [](const stdio_spec& s) { return s.how == stdio_spec::kind::ipc; }) > 1)
    return error(errc::invalid_argument, req.context + ": more than one ipc entry in stdio");
  if (o.detached && o.kill_on_parent_exit)
    return error(errc::invalid_argument, req.context + ": detached and kill_on_parent_exit exclude each other");

  auto env = build_env_block(o.env.inherit ? parent_environment_native() : std::vector<std::string>(), o.env,
                             CHILDPROC_WIN32, req.context);
  if (!env) return std::move(env).error();
  req.env = std::move(*env);
  req.verbatim = o.windows_verbatim_arguments;
  if (o.shell.enabled) {  // Node: the command and its arguments joined by spaces, unescaped
    std::string command = std::move(program);
    for (auto& a : args) command += " " + a;
    program = !o.shell.program.empty() ? o.shell.program : default_shell_native(req.env);
    if (CHILDPROC_WIN32 && is_cmd_shell(program)) {  // Node's form: cmd /d /s /c "<command>", verbatim
      args = {"/d", "/s", "/c", "\"" + command + "\""};
      req.verbatim = true;
    } else {
      args = {"-c", std::move(command)};
    }
    req.context = "spawn " + program;  // Node names the shell: "spawn /bin/sh ENOENT"
  }
  req.argv.reserve(args.size() + 1);
  req.argv.push_back(o.argv0 ? *o.argv0 : program);
  for (auto& a : args) req.argv.push_back(std::move(a));
  req.program = std::move(program);
  return req;
}

}  // namespace childproc::inline v0::detail

#endif
