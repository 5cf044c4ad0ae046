// SPDX-License-Identifier: BSL-1.0
// Many children: (1) children per second with 8 in flight, childproc's async API against a raw
// posix_spawn loop keeping 8 outstanding and against Node.js with 8 concurrent spawns; (2) what
// 1,000 live children cost the parent's memory (VmRSS before and after spawning them).
//
//   usage: bench_many [children=2000] [rounds=5] [live=1000]
//   CHILDPROC_BENCH_QUICK=1   a short run for CI (100 children, 2 rounds, 100 live)
//
// Informational only: it fails when a child cannot be run, never because of a time.
#include <childproc.hpp>

#include "figure.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace cp = childproc;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr const char* usage = "bench_many [children=2000] [rounds=5] [live=1000]";
constexpr int in_flight = 8;
const char* child = CHILDPROC_BENCH_TINY;
int total = 2000;

[[noreturn]] void die(const char* what, const std::string& why) {
  std::fprintf(stderr, "bench_many: %s: %s\n", what, why.c_str());
  std::exit(1);
}

double seconds_since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

// ---- children per second, 8 in flight ----

// The floor: posix_spawn until 8 run, then wait(2) for any one and start the next. This process
// has no other children meanwhile, so waiting for any child is safe here.
double raw_in_flight() {
  char* argv[] = {const_cast<char*>(child), nullptr};
  const auto t0 = clock_type::now();
  int started = 0, running = 0;
  while (started < total || running > 0) {
    while (running < in_flight && started < total) {
      pid_t pid;
      if (int rc = ::posix_spawn(&pid, child, nullptr, nullptr, argv, environ); rc != 0) die("posix_spawn", std::strerror(rc));
      ++started;
      ++running;
    }
    int status = 0;
    if (::wait(&status) < 0) {
      if (errno == EINTR) continue;
      die("wait", std::strerror(errno));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("child", "did not exit 0");
    --running;
  }
  return total / seconds_since(t0);
}

// childproc: 8 coroutines on one event loop, each spawning and awaiting exit() in turn.
double cp_in_flight() {
  const cp::options o{.stdio = {cp::inherit, cp::inherit, cp::inherit}};
  int started = 0;
  auto worker = [&]() -> cp::task<> {
    while (started < total) {
      ++started;
      auto p = cp::spawn(child, {}, o);
      if (!p) die("cp::spawn", p.error().message());
      auto st = co_await p->exit();
      if (!st || !st->success()) die("child", st ? st->to_string() : st.error().message());
    }
  };
  const auto t0 = clock_type::now();
  std::vector<cp::task<>> workers;
  for (int i = 0; i < in_flight; ++i) workers.push_back(worker());
  cp::sync_wait(cp::when_all(std::move(workers)));
  return total / seconds_since(t0);
}

// Node.js: spawn_peer.js keeps 8 spawns in flight and reports children per second. It starts
// children several times slower, so it gets a quarter of the count (its rate is its own).
double node_in_flight() {
  auto r = cp::exec_file("node", {std::string(CHILDPROC_BENCH_SOURCE_DIR) + "/spawn_peer.js", "inflight", child,
                                  std::to_string(std::max(16, total / 4)), "1"});
  if (!r || !r->ok()) die("node", r ? r->err + r->status.to_string() : r.error().message());
  const auto eq = r->out.find('=');
  if (eq == std::string::npos) die("node", "unexpected output: " + r->out);
  return std::stod(r->out.substr(eq + 1));
}

// ---- memory of live children ----

double vm_rss_mib() { return bench::proc_field_mib("/proc/self/status", "VmRSS"); }

// Enough descriptors for `live` children (a pipe and a pidfd each), or fewer children.
int fit_descriptors(int live) {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  const rlim_t want = static_cast<rlim_t>(live) * 2 + 64;
  if (rl.rlim_cur < want) {
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < want) {
    const int fit = static_cast<int>((rl.rlim_cur - 64) / 2);
    bench::note(std::to_string(live) + " live children need " + std::to_string(want) + " descriptors, the limit is " +
                std::to_string(rl.rlim_cur) + ": " + std::to_string(fit) + " children");
    return fit;
  }
  return live;
}

// cp::spawn `live` children that block reading their stdin (a pipe; stdout and stderr
// inherited), and VmRSS before and after; then closes every stdin and reaps them all.
double cp_live_growth(int live) {
  const cp::options o{.stdio = {cp::pipe, cp::inherit, cp::inherit}};
  { auto warm = cp::spawn(child, {"wait"}, o).value(); warm.in().close(); (void)warm.wait(); }  // lazy setup first
  const double before = vm_rss_mib();
  std::vector<cp::process> kids;
  kids.reserve(static_cast<std::size_t>(live));  // part of the parent's cost, so inside the measure
  for (int i = 0; i < live; ++i) {
    auto p = cp::spawn(child, {"wait"}, o);
    if (!p) die("cp::spawn", p.error().message());
    kids.push_back(std::move(*p));
  }
  const double after = vm_rss_mib();
  for (auto& k : kids) k.in().close();
  for (auto& k : kids)
    if (auto st = k.wait(); !st || !st->success()) die("live child", st ? st->to_string() : st.error().message());
  return after - before;
}

// The same with raw calls: a pipe and a pid per child in a plain array.
double raw_live_growth(int live) {
  struct kid {
    pid_t pid;
    int in;
  };
  char* argv[] = {const_cast<char*>(child), const_cast<char*>("wait"), nullptr};
  const double before = vm_rss_mib();
  std::vector<kid> kids;
  kids.reserve(static_cast<std::size_t>(live));
  for (int i = 0; i < live; ++i) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) die("pipe2", std::strerror(errno));
    posix_spawn_file_actions_t fa;
    ::posix_spawn_file_actions_init(&fa);
    ::posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
    pid_t pid;
    const int rc = ::posix_spawn(&pid, child, &fa, nullptr, argv, environ);
    ::posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) die("posix_spawn", std::strerror(rc));
    ::close(fds[0]);
    kids.push_back({pid, fds[1]});
  }
  const double after = vm_rss_mib();
  for (auto& k : kids) ::close(k.in);
  for (auto& k : kids) {
    int status = 0;
    while (::waitpid(k.pid, &status, 0) < 0 && errno == EINTR) {}
  }
  return after - before;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = bench::quick();
  total = argc > 1 ? static_cast<int>(bench::parse_count(argv[1], "children", usage)) : quick ? 100 : 2000;
  const int rounds = argc > 2 ? static_cast<int>(bench::parse_count(argv[2], "rounds", usage)) : quick ? 2 : 5;
  int live = argc > 3 ? static_cast<int>(bench::parse_count(argv[3], "live", usage, 100000)) : quick ? 100 : 1000;
  if (const char* env = std::getenv("CHILDPROC_BENCH_CHILD"); env && *env) child = env;
  if (::access(child, X_OK) != 0) die(child, "not an executable file (set CHILDPROC_BENCH_CHILD)");
  auto node_ok = cp::exec_file("node", {"--version"});
  const bool node = node_ok && node_ok->ok();
  if (!node) bench::note("Node.js 8 in flight: skipped, `node` is not on PATH");

  std::printf("childproc many-children benchmark: %d children per round, %d in flight, %d rounds%s\n", total, in_flight,
              rounds, quick ? " (CHILDPROC_BENCH_QUICK)" : "");

  // The live children first, once each (their cost is memory, not time), while the heap is
  // fresh: memory freed by the timed figures would otherwise absorb their growth. Raw first.
  live = fit_descriptors(live);
  const double raw_mib = raw_live_growth(live), cp_mib = cp_live_growth(live);
  std::vector<bench::figure> figs = {
      {"(a) raw posix_spawn, 8 outstanding + wait(2)", "many.raw", "/s", raw_in_flight},
      {"(b) cp::spawn + co_await exit(), 8 coroutines", "many.cp_async", "/s", cp_in_flight},
  };
  if (node) figs.push_back({"(c) Node.js spawn + 'exit', 8 concurrent", "many.node", "/s", node_in_flight});
  const int saved = total;
  total = std::min(total, 40);
  for (auto& f : figs)
    if (f.key != "many.node") f.run();  // warm-up
  total = saved;
  bench::run_rounds(figs, rounds);

  std::printf("\n%-46s %14s %10s\n", "figure", "children/s", "vs (a)");
  for (const auto& f : figs) std::printf("%-46s %14.0f %9.2fx\n", f.name.c_str(), f.median(), f.median() / figs[0].median());

  std::printf("\n%d live children (blocked reading stdin), parent VmRSS growth:\n", live);
  std::printf("%-46s %10.2f MiB (%.1f KiB per child)\n", "raw posix_spawn, a pipe + pid each", raw_mib, raw_mib * 1024 / live);
  std::printf("%-46s %10.2f MiB (%.1f KiB per child)\n", "cp::spawn, a cp::process each", cp_mib, cp_mib * 1024 / live);
  std::printf("\n");
  bench::report(figs);
  bench::report("live.count", live, "children");
  bench::report("live.raw", raw_mib, "MiB");
  bench::report("live.cp", cp_mib, "MiB");
  return 0;
}
