// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_SPAWN_HPP
#define CHILDPROC_SPAWN_HPP

#include "detail/spawn.hpp"
#include "options.hpp"
#include "process.hpp"
#include "result.hpp"

#include <concepts>          // argument_range
#include <initializer_list>  // spawn("ls", {"-l"})
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
  auto req = make_spawn_request(std::string(program), std::move(args), o);
  if (!req) return std::move(req).error();
  auto s = spawn_native(*req);
  if (!s) return std::move(s).error();
  std::vector<stream> streams;
  streams.reserve(s->stdio.size());
  for (auto& h : s->stdio) streams.emplace_back(std::move(h));
  return process(std::move(s->child), std::move(streams), o.detached);
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
