// SPDX-License-Identifier: BSL-1.0
// spawn_sync: run a child to completion, feeding it input and capturing its output (Node's
// spawnSync). Input is written while output is read, so large data in both directions cannot
// deadlock on full pipes.
#include <childproc.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>

#ifndef SIGKILL
#  define SIGKILL 9  // Win32's <csignal> lacks it; childproc's kill() takes the POSIX number there
#endif

namespace cp = childproc;
using namespace std::chrono_literals;

static bool ran(const char* what, const cp::result<cp::output>& r) {
  if (!r) std::printf("%s: error: %s\n", what, r.error().message().c_str());
  return r.has_value();
}

int main() {
  bool ok = true;

  // .input goes to stdin, then stdin is closed: sort sees end of file and prints.
  std::printf("-- input: sort\n");
  auto sorted = cp::spawn_sync("sort", {}, {.input = "cherry\napple\nbanana\n"});
  if (!ran("sort", sorted)) return 1;
  std::printf("%s", sorted->out.c_str());
  ok &= sorted->out == "apple\nbanana\ncherry\n";

  // A megabyte through cat: written and read at the same time, so neither pipe fills up.
  std::printf("\n-- 1 MiB round trip through cat\n");
  const std::string big(1 << 20, 'x');
  auto echoed = cp::spawn_sync("cat", {}, {.input = big, .max_buffer = cp::unlimited});
  if (!ran("cat", echoed)) return 1;
  std::printf("sent %zu bytes, got %zu back, identical: %s\n", big.size(), echoed->out.size(),
              echoed->out == big ? "yes" : "no");
  ok &= echoed->out == big;

  // stderr into stdout (2>&1): one string, in the order the child wrote.
  std::printf("\n-- stderr merged into stdout\n");
  auto merged = cp::spawn_sync("sh", {"-c", "echo out; echo err >&2; echo out again"},
                               {.stdio = {cp::pipe, cp::pipe, cp::same_as_stdout}});
  if (!ran("sh", merged)) return 1;
  std::printf("%s", merged->out.c_str());
  ok &= merged->out == "out\nerr\nout again\n" && merged->err.empty();

  // .timeout + .kill_grace: a child that ignores SIGTERM gets SIGKILL once the grace is over.
  std::printf("\n-- timeout 100ms on a child that ignores SIGTERM, kill_grace 200ms\n");
  const auto start = std::chrono::steady_clock::now();
  auto stubborn = cp::spawn_sync("sh", {"-c", "trap '' TERM; exec sleep 5"}, {.timeout = 100ms, .kill_grace = 200ms});
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  if (!ran("sh", stubborn)) return 1;
  std::printf("timed_out: %s, status: %s, after %lld ms\n", stubborn->timed_out ? "true" : "false",
              stubborn->status.to_string().c_str(), static_cast<long long>(took.count()));
  ok &= stubborn->timed_out && stubborn->status.signal() == SIGKILL;

  // .kill_signal: the signal the timeout sends (here SIGINT instead of SIGTERM).
  std::printf("\n-- timeout with kill_signal SIGINT\n");
  auto interrupted = cp::spawn_sync("sleep", {"5"}, {.timeout = 100ms, .kill_signal = SIGINT});
  if (!ran("sleep", interrupted)) return 1;
  std::printf("status: %s\n", interrupted->status.to_string().c_str());
  ok &= interrupted->status.signal() == SIGINT;

  // The outcome is data: exit code, signal and output are all in the result, nothing throws.
  std::printf("\n-- a crash\n");
  // (ulimit -c 0: no core file is left behind.)
  auto crashed = cp::spawn_sync("sh", {"-c", "ulimit -c 0; kill -SEGV $$"});
  if (!ran("sh", crashed)) return 1;
  std::printf("status: %s, crashed(): %s, exit_code(): %s\n", crashed->status.to_string().c_str(),
              crashed->status.crashed() ? "true" : "false", crashed->status.exit_code() ? "set" : "none");
  ok &= crashed->status.crashed();

  std::printf("\nspawn_sync example %s\n", ok ? "done" : "FAILED");
  return ok ? 0 : 1;
}
