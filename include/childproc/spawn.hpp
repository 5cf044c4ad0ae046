// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_SPAWN_HPP
#define CHILDPROC_SPAWN_HPP

#include "detail/ipc.hpp"
#include "detail/spawn.hpp"
#include "options.hpp"
#include "process.hpp"
#include "result.hpp"

#include <algorithm>         // the ipc entry
#include <concepts>          // argument_range
#include <initializer_list>  // spawn("ls", {"-l"})
#include <optional>          // options with the channel's variable
#include <ranges>            // argument_range
#include <string>            // arguments
#include <string_view>       // program
#include <vector>            // arguments

namespace childproc::inline v0 {

/// Any range of string-likes: std::vector<std::string>, std::span<const char*>, ...
template <class R>
concept argument_range = std::ranges::input_range<R> &&
                         std::convertible_to<std::ranges::range_reference_t<R>, std::string_view>;

namespace detail {
template <class R>
std::vector<std::string> to_strings(const R& args) {
  std::vector<std::string> out;
  for (auto&& a : args) out.emplace_back(std::string_view(a));
  return out;
}

inline result<process> spawn_strings(std::string_view program, std::vector<std::string> args, const options& o) {
  const auto ipc_at = std::find_if(o.stdio.begin(), o.stdio.end(), [](const stdio_spec& s) { return s.how == stdio_spec::kind::ipc; });
  const auto ipc_index = static_cast<std::size_t>(ipc_at - o.stdio.begin());
  std::optional<options> with_channel;  // the request points into it: it lives until the spawn is done
  if (ipc_at != o.stdio.end()) {        // the child finds its channel's fd in the environment
    if (o.serialization == serialization::advanced)
      return error(std::make_error_code(std::errc::not_supported),
                   "spawn " + std::string(program) + ": serialization 'advanced' (V8's format) is not supported; use json");
    with_channel.emplace(o);
    auto& set = with_channel->env.set;
    if (o.serialization == serialization::json) {  // where Node looks, and nothing a C++ grandchild would take
      set.emplace_back(node_channel_env, std::to_string(ipc_index));
      set.emplace_back(node_serialization_env, "json");
      with_channel->env.unset.emplace_back(channel_env);
    } else {
      // A Node channel this process was given is not the child's (unless the caller says so).
      const bool by_hand = std::any_of(set.begin(), set.end(), [](const auto& kv) { return kv.first == node_channel_env; });
      set.emplace_back(channel_env, std::to_string(ipc_index));
      if (!by_hand) {
        with_channel->env.unset.emplace_back(node_channel_env);
        with_channel->env.unset.emplace_back(node_serialization_env);
      }
    }
  }
  auto req = make_spawn_request(std::string(program), std::move(args), with_channel ? *with_channel : o);
  if (!req) return std::move(req).error();
  auto s = spawn_native(*req);
  if (!s) return std::move(s).error();
  std::vector<stream> streams;
  streams.reserve(s->stdio.size());
  for (auto& h : s->stdio) streams.emplace_back(std::move(h));
  channel ch;
  if (ipc_at != o.stdio.end()) {
    ch = channel(std::move(streams[ipc_index]), o.max_message_size, o.serialization);
    ch.set_high_water_mark(o.high_water_mark);
    ch.set_peer(channel_peer_native(ch.transport().handle(), &s->child));  // where handles sent to it go
  }
  return process(std::move(s->child), std::move(streams), o.detached, std::move(ch));
}

inline result<process> spawn_watched(std::string_view program, std::vector<std::string> args, const options& o) {
  auto p = spawn_strings(program, std::move(args), o);
  if (p && o.stop_token.stop_possible()) p->kill_on_stop(o.stop_token, o.kill_signal);
  return p;
}
}  // namespace detail

/// Starts `program` with `args` (no shell unless options.shell); the process owns the child.
/// With options.stop_token, the child gets kill_signal once stop is requested (Node's `signal`).
/// Errors say what failed in Node's words: "spawn nosuchprog ENOENT".
template <argument_range Args>
result<process> spawn(std::string_view program, const Args& args, const options& o = {}) {
  return detail::spawn_watched(program, detail::to_strings(args), o);
}

/// Starts `program` with `args` given inline: spawn("ls", {"-l", "/tmp"}).
inline result<process> spawn(std::string_view program, std::initializer_list<std::string_view> args = {},
                             const options& o = {}) {
  return detail::spawn_watched(program, detail::to_strings(args), o);
}

}  // namespace childproc::inline v0

#endif
