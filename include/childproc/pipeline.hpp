// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_PIPELINE_HPP
#define CHILDPROC_PIPELINE_HPP

#include "detail/pipe.hpp"
#include "options.hpp"
#include "process.hpp"
#include "result.hpp"
#include "spawn.hpp"
#include "stream.hpp"
#include "task.hpp"

#include <cstddef>     // std::size_t
#include <stop_token>  // pump
#include <string>      // commands
#include <vector>      // stages

namespace childproc::inline v0 {

/// The two ends of an OS pipe, both blocking and not inherited by children unless handed over
/// with cp::fd(). For connecting two children; the async stream calls need a child's own pipes.
struct pipe_ends {
  stream read;
  stream write;
};

/// A new pipe (pipe2 / CreatePipe). Hand `write` to one child's stdout and `read` to another's
/// stdin with cp::fd(), then close both here so that the reader sees end of file.
inline result<pipe_ends> make_pipe() {
  auto p = detail::create_plain_pipe_native();
  if (!p) return std::move(p).error();
  return pipe_ends{stream(std::move(p->parent)), stream(std::move(p->child))};
}

/// One stage of spawn_pipeline.
struct command {
  std::string program;
  std::vector<std::string> args = {};
  options opts = {};  ///< stdio[0] (past the first stage) and stdio[1] (before the last) are replaced
};

/// Starts the commands with each one's stdout connected straight to the next one's stdin by an
/// OS pipe, as a shell's `a | b | c`: the bytes never pass through this process. The first
/// stage's stdin and the last stage's stdout are what their options say (pipes by default).
/// If a stage cannot start, the stages already started are killed and reaped, and the error
/// names the stage: "spawn nosuchprog ENOENT".
inline result<std::vector<process>> spawn_pipeline(std::vector<command> stages) {
  if (stages.empty()) return error(errc::invalid_argument, "spawn_pipeline: no commands");
  std::vector<process> started;
  started.reserve(stages.size());
  stream next_stdin;  // the read end for the next stage
  for (std::size_t i = 0; i < stages.size(); ++i) {
    options o = stages[i].opts;
    if (o.stdio.size() < 2) o.stdio.resize(2, pipe);
    pipe_ends link;
    if (i + 1 < stages.size()) {
      auto p = make_pipe();
      if (!p) return std::move(p).error();  // `started` is killed and reaped on the way out
      link = std::move(*p);
      o.stdio[1] = fd(link.write.handle());
    }
    if (i > 0) o.stdio[0] = fd(next_stdin.handle());
    auto child = detail::spawn_watched(stages[i].program, std::move(stages[i].args), o);
    if (!child) return std::move(child).error();
    started.push_back(std::move(*child));
    next_stdin = std::move(link.read);  // closes the previous read end: only the children hold it now
  }
  return started;
}

/// Copies `from` to `to` on the current event loop until `from` ends, then closes `to` (so its
/// reader sees end of file); the bytes copied. A write error (EPIPE: the reader is gone) ends
/// the pump with that error; a triggered `stop` with errc::cancelled. Both streams must be a
/// child's pipes (async-capable), e.g. one child's out() into another's in().
inline task<result<std::size_t>> pump(stream& from, stream& to, std::stop_token stop = {}) {
  std::vector<char> buffer(64 * 1024);
  std::size_t total = 0;
  for (;;) {
    auto n = co_await from.async_read_some(buffer, stop);
    if (!n) {
      if (n.error() != errc::end_of_stream) co_return std::move(n).error();
      to.close();
      co_return total;
    }
    if (auto w = co_await to.async_write({buffer.data(), *n}, stop); !w) co_return std::move(w).error();
    total += *n;
  }
}

}  // namespace childproc::inline v0

#endif
