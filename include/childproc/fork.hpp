// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_FORK_HPP
#define CHILDPROC_FORK_HPP

#include "channel.hpp"
#include "detail/ipc.hpp"
#include "options.hpp"
#include "process.hpp"
#include "result.hpp"
#include "spawn.hpp"

#include <algorithm>         // the ipc entry
#include <cstdio>            // the child's message for an unknown entry
#include <cstdlib>           // getenv, exit
#include <filesystem>        // argv[0] resolved, for fork_self without /proc
#include <initializer_list>  // fork("./worker", {"--jobs", "4"})
#include <map>               // registered entry points
#include <optional>          // the child's channel
#include <string>            // names
#include <string_view>       // program
#include <vector>            // arguments

namespace childproc::inline v0 {

/// The exit code of a fork_self child asked for an entry point it does not have.
inline constexpr int unknown_entry_exit_code = 127;

namespace detail {

inline constexpr const char* entry_env = "CHILDPROC_ENTRY";

// fork's stdio: the caller's, plus the channel after it; Node's [0, 1, 2, 'ipc'] (inherit) when
// the caller left stdio at spawn's default of three pipes nobody would read.
inline options fork_options(const options& o) {
  options f = o;
  const bool has_ipc = std::any_of(f.stdio.begin(), f.stdio.end(), [](const stdio_spec& s) { return s.how == stdio_spec::kind::ipc; });
  if (has_ipc) return f;
  const bool spawn_default = f.stdio.size() == 3 && std::all_of(f.stdio.begin(), f.stdio.end(), [](const stdio_spec& s) {
                               return s.how == stdio_spec::kind::pipe;
                             });
  if (spawn_default) f.stdio = {inherit, inherit, inherit};
  if (f.stdio.size() < 3) f.stdio.resize(3, inherit);
  f.stdio.push_back(ipc);
  return f;
}

inline std::map<std::string, int (*)(channel&)>& entries() {
  static std::map<std::string, int (*)(channel&)> registered;
  return registered;
}

inline std::vector<std::string>& entry_arguments() {
  static std::vector<std::string> args;
  return args;
}

/// This executable's path as dispatch_entry found it from argv[0]: fork_self's fallback where
/// the OS cannot say (POSIX without /proc).
inline std::string& recorded_self() {
  static std::string path;
  return path;
}

/// argv[0] as an absolute path: made absolute against the working directory when it has a '/',
/// else the first regular file of that name in `path_env` (as the shell found it); empty when
/// nothing matches. Call it early, before the working directory changes.
inline std::string resolve_argv0(std::string_view argv0, const char* path_env) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (argv0.empty()) return {};
  if (argv0.find('/') != std::string_view::npos) {
    const fs::path p = fs::absolute(fs::path(argv0), ec);
    return ec ? std::string() : p.lexically_normal().string();
  }
  std::string_view dirs = path_env ? path_env : "";
  while (true) {
    const auto colon = dirs.find(':');
    const std::string_view dir = dirs.substr(0, colon);
    const fs::path candidate = fs::path(dir.empty() ? std::string_view(".") : dir) / argv0;
    if (fs::is_regular_file(candidate, ec)) {
      const fs::path p = fs::absolute(candidate, ec);
      return ec ? std::string() : p.lexically_normal().string();
    }
    if (colon == std::string_view::npos) return {};
    dirs.remove_prefix(colon + 1);
  }
}

/// What CHILDPROC_ENTRY expands to: registers `fn` under `name` before main runs.
struct entry_registration {
  entry_registration(const char* name, int (*fn)(channel&)) { entries()[name] = fn; }
};

/// The channel end whose descriptor number the variable `var` holds, taken out of reach of
/// grandchildren (the variable is removed, the descriptor made close-on-exec / non-inheritable).
inline std::optional<stream> adopt_channel_from_env(const char* var) {
  const char* value = std::getenv(var);
  if (!value || !*value) return std::nullopt;
  const std::string number = value;
  unset_env_native(var);
  char* end = nullptr;
  const long fd = std::strtol(number.c_str(), &end, 10);
  if (end == number.c_str() || *end != '\0' || fd < 0 || fd > 1 << 20) return std::nullopt;
  auto h = adopt_channel_native(static_cast<int>(fd));
  if (!h) return std::nullopt;
  return stream(std::move(*h));
}

}  // namespace detail

/// Starts `program` with a message channel to it (Node's fork): the child finds it with
/// parent_channel(). Everything spawn offers applies; stdio defaults to Node's fork default
/// (inherit 0-2, the channel as fd 3) unless it names an `ipc` entry or is not spawn's default.
template <argument_range Args>
result<process> fork(std::string_view program, const Args& args, const options& o = {}) {
  return detail::spawn_watched(program, detail::to_strings(args), detail::fork_options(o));
}

/// fork with arguments given inline: fork("./worker", {"--jobs", "4"}).
inline result<process> fork(std::string_view program, std::initializer_list<std::string_view> args = {},
                            const options& o = {}) {
  return detail::spawn_watched(program, detail::to_strings(args), detail::fork_options(o));
}

/// In a child started by fork, fork_self, or Node's fork() / spawn(..., {stdio: [..., 'ipc']}):
/// the channel to the parent, made once, on the first call; nullptr in a process that was not
/// started so, or whose channel could not be taken. Under Node its serialization() is `json`
/// (messages are JSON texts); under Node's 'advanced' serialization every send and receive fails
/// with ENOTSUP, saying so. The variables (CHILDPROC_CHANNEL, or NODE_CHANNEL_FD and
/// NODE_CHANNEL_SERIALIZATION_MODE) are removed, so grandchildren do not take the channel.
inline channel* parent_channel() {
  static std::optional<channel> ch = []() -> std::optional<channel> {
    if (auto own = detail::adopt_channel_from_env(detail::channel_env)) return channel(std::move(*own));
    const char* mode = std::getenv(detail::node_serialization_env);
    const serialization s = mode && std::string_view(mode) == "advanced" ? serialization::advanced : serialization::json;
    auto node = detail::adopt_channel_from_env(detail::node_channel_env);
    detail::unset_env_native(detail::node_serialization_env);
    if (!node) return std::nullopt;
    return channel(std::move(*node), default_max_message_size, s);
  }();
  return ch ? &*ch : nullptr;
}

/// parent_channel() when the parent is Node (its serialization() is not childproc), else nullptr.
inline channel* node_parent_channel() {
  channel* c = parent_channel();
  return c && c->serialization() != serialization::childproc ? c : nullptr;
}

/// Runs `node script args...` with a channel Node's child finds as its own `process.send` /
/// `process.on('message')` (Node's fork(), from C++): messages are JSON texts, one per send.
/// `node` is looked up in PATH unless options.exec_path names it; stdio as fork's.
template <argument_range Args>
result<process> fork_node(std::string_view script, const Args& args, const options& o = {}) {
  options n = o;
  n.serialization = serialization::json;
  std::vector<std::string> argv{std::string(script)};
  for (auto&& a : args) argv.emplace_back(std::string_view(a));
  return detail::spawn_watched(o.exec_path.empty() ? std::string_view("node") : std::string_view(o.exec_path), std::move(argv),
                               detail::fork_options(n));
}

/// fork_node with arguments given inline (or none): fork_node("worker.js", {"--fast"}).
inline result<process> fork_node(std::string_view script, std::initializer_list<std::string_view> args = {},
                                 const options& o = {}) {
  return fork_node(script, detail::to_strings(args), o);
}

/// In a fork_self child: the arguments given to fork_self (argv without the program).
inline const std::vector<std::string>& entry_args() { return detail::entry_arguments(); }

/// Call first in main: in a child started by fork_self, runs the requested entry point with its
/// channel and exits with what it returns; in any other process it returns at once. An unknown
/// name prints the names it knows to stderr and exits with unknown_entry_exit_code.
inline void dispatch_entry(int argc, char** argv) {
  if (argc > 0 && argv[0]) detail::recorded_self() = detail::resolve_argv0(argv[0], std::getenv("PATH"));
  const char* requested = std::getenv(detail::entry_env);
  if (!requested) return;
  const std::string name = requested;
  detail::unset_env_native(detail::entry_env);
  for (int i = 1; i < argc; ++i) detail::entry_arguments().emplace_back(argv[i]);
  const auto& known = detail::entries();
  const auto it = known.find(name);
  if (it == known.end()) {
    std::string names;
    for (const auto& [n, fn] : known) names += (names.empty() ? "" : ", ") + n;
    std::fprintf(stderr, "childproc: fork_self: no entry point named \"%s\" in %s (known: %s)\n", name.c_str(),
                 argc > 0 ? argv[0] : "this program", names.empty() ? "none" : names.c_str());
    std::exit(unknown_entry_exit_code);
  }
  channel* parent = parent_channel();
  if (!parent) {
    std::fprintf(stderr, "childproc: fork_self: entry point \"%s\" started without a channel\n", name.c_str());
    std::exit(unknown_entry_exit_code);
  }
  const int code = it->second(*parent);
  (void)parent->flush();
  std::exit(code);
}

/// Runs the entry point `entry` (registered with CHILDPROC_ENTRY) of this very executable in a
/// child with a channel: "fork without fork", safe with threads, and the same on Win32.
/// The executable must call dispatch_entry(argc, argv) at the top of main.
template <argument_range Args>
result<process> fork_self(std::string_view entry, const Args& args, const options& o = {}) {
  auto self = detail::self_exe_native(detail::recorded_self());
  if (!self) return std::move(self).error();
  options with_entry = o;
  with_entry.env.set.emplace_back(detail::entry_env, std::string(entry));
  return fork(*self, args, with_entry);
}

/// fork_self with arguments given inline (or none).
inline result<process> fork_self(std::string_view entry, std::initializer_list<std::string_view> args = {},
                                 const options& o = {}) {
  return fork_self(entry, detail::to_strings(args), o);
}

}  // namespace childproc::inline v0

/// Registers an entry point for fork_self: `CHILDPROC_ENTRY(square) (cp::channel& parent) { ... return 0; }`.
/// The function returns the child's exit code.
#define CHILDPROC_ENTRY(name)                                                                             \
  static int childproc_entry_##name(::childproc::channel&);                                              \
  static const ::childproc::detail::entry_registration childproc_entry_registration_##name{#name,         \
                                                                                          &childproc_entry_##name}; \
  static int childproc_entry_##name

#endif
