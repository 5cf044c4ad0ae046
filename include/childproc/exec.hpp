// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_EXEC_HPP
#define CHILDPROC_EXEC_HPP

#include "detail/run_sync.hpp"
#include "options.hpp"
#include "output.hpp"
#include "result.hpp"
#include "spawn.hpp"

#include <initializer_list>  // exec_file("git", {"status"})
#include <string>            // the command line
#include <string_view>       // program, command
#include <vector>            // arguments

namespace childproc::inline v0 {

namespace detail {
inline result<output> run_sync_strings(std::string_view program, std::vector<std::string> args, const options& o,
                                       std::string command) {
  if (!o.input.empty() && !o.stdio.empty() && o.stdio[0].how != stdio_spec::kind::pipe &&
      o.stdio[0].how != stdio_spec::kind::socket_pipe) {
    options piped = o;  // Node: `input` overrides stdio[0]
    piped.stdio[0] = pipe;
    return run_sync_strings(program, std::move(args), piped, std::move(command));
  }
  auto p = spawn_strings(program, std::move(args), o);
  if (!p) return std::move(p).error();
  output out;
  out.pid = p->pid();
  out.command = std::move(command);
  sync_run run(*p, o, out);
  if (auto r = run.run(); !r) return std::move(r).error();  // the process destructor kills and reaps
  auto st = p->wait();
  if (!st) return std::move(st).error();
  out.status = *st;
  return out;
}

inline std::string command_line(std::string_view program, const std::vector<std::string>& args) {
  std::string s(program);
  for (const auto& a : args) (s += ' ') += a;
  return s;
}

inline result<output> spawn_sync_strings(std::string_view program, std::vector<std::string> args, const options& o) {
  auto command = command_line(program, args);
  return run_sync_strings(program, std::move(args), o, std::move(command));
}
}  // namespace detail

/// Runs `command` through the shell (/bin/sh -c, or %ComSpec% /d /s /c) and captures its output.
/// The error is only for "could not run it"; the child's exit, signal, timeout and overflow are in output.
inline result<output> exec(std::string_view command, const options& o = {}) {
  options with_shell = o;
  if (!with_shell.shell.enabled) with_shell.shell = true;
  return detail::run_sync_strings(command, {}, with_shell, std::string(command));
}

/// Runs `program` with `args`, no shell, and captures its output (Node's execFile).
template <argument_range Args>
result<output> exec_file(std::string_view program, const Args& args, const options& o = {}) {
  return detail::spawn_sync_strings(program, detail::to_strings(args), o);
}

/// Runs `program` with `args` given inline: exec_file("git", {"rev-parse", "HEAD"}).
inline result<output> exec_file(std::string_view program, std::initializer_list<std::string_view> args = {},
                                const options& o = {}) {
  return detail::spawn_sync_strings(program, detail::to_strings(args), o);
}

/// Node's spawnSync: the same as exec_file (stdin gets options.input, then end of file).
template <argument_range Args>
result<output> spawn_sync(std::string_view program, const Args& args, const options& o = {}) {
  return detail::spawn_sync_strings(program, detail::to_strings(args), o);
}

/// Node's spawnSync with arguments given inline.
inline result<output> spawn_sync(std::string_view program, std::initializer_list<std::string_view> args = {},
                                 const options& o = {}) {
  return detail::spawn_sync_strings(program, detail::to_strings(args), o);
}

}  // namespace childproc::inline v0

#endif
