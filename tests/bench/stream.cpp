// SPDX-License-Identifier: BSL-1.0
// How fast does a child's stdout reach the parent? A writer child sends N bytes down its stdout
// pipe; each figure reads them all, and the figures take turns for `reps` rounds. Printed: GB/s
// (median, min-max) and the ratio to a raw posix_spawn + read(2) loop over a 64 KiB pipe; the
// same over stdio's socket_pipe beside a raw loop over a socketpair.
// Also lines per second through read_line, against a raw memchr splitter, and Node.js's
// 'data' events and readline when `node` is on PATH (skipped with a note otherwise).
//
//   usage: bench_stream [MiB=1024] [reps=5]
//   CHILDPROC_BENCH_QUICK=1   a short run for CI (64 MiB, 2 rounds) unless given
//
// Also prints FIGURE lines for tests/bench/run.py.
//
// Informational only: it fails when a child cannot be run or bytes go missing, never on a time.
#include <childproc.hpp>

#include "figure.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CHILDPROC_BENCH_WRITER
#  define CHILDPROC_BENCH_WRITER "bench_writer"
#endif

extern char** environ;

namespace cp = childproc;

namespace {

const char* writer = CHILDPROC_BENCH_WRITER;
long long total = 0;

[[noreturn]] void die(const char* what, const std::string& why) {
  std::fprintf(stderr, "bench_stream: %s: %s\n", what, why.c_str());
  std::exit(1);
}

void expect(long long got, const char* what) {
  if (got != total) die(what, "read " + std::to_string(got) + " bytes, expected " + std::to_string(total));
}

// posix_spawn of the writer with stdout on a fresh pipe (of `pipe_size` bytes if non-zero), or
// on a socketpair whose send buffers are asked for `pipe_size` bytes (as socket_pipe's), a
// blocking read(2) loop of 64 KiB, waitpid: the floor for this transport.
void raw(bool lines, int pipe_size, bool socket = false) {
  int fds[2];
  if (socket) {
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) die("socketpair", std::strerror(errno));
    const int half = pipe_size / 2;  // Linux doubles what it is asked
    for (int fd : fds) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &half, sizeof half);
  } else {
    if (::pipe2(fds, O_CLOEXEC) != 0) die("pipe2", std::strerror(errno));
    if (pipe_size) ::fcntl(fds[0], F_SETPIPE_SZ, pipe_size);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  const std::string n = std::to_string(total);
  char* argv[] = {const_cast<char*>(writer), const_cast<char*>(lines ? "lines" : n.c_str()),
                  lines ? const_cast<char*>(n.c_str()) : nullptr, nullptr};
  pid_t pid = 0;
  if (int e = ::posix_spawn(&pid, writer, &fa, nullptr, argv, environ)) die("posix_spawn", std::strerror(e));
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  static char buf[65536];
  long long got = 0, count = 0;
  for (;;) {
    const ssize_t r = ::read(fds[0], buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += r;
    if (lines)
      for (const char* p = buf; (p = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(buf + r - p)))); ++p) ++count;
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  expect(got, "raw");
  if (lines && count != total / 32) die("raw", "wrong line count");
}

cp::process start(bool lines, bool socket = false) {
  const std::string n = std::to_string(total);
  const cp::options o{.stdio = {cp::ignore, socket ? cp::socket_pipe : cp::pipe, cp::inherit}};
  auto p = lines ? cp::spawn(writer, {"lines", n}, o) : cp::spawn(writer, {n}, o);
  if (!p) die("spawn", p.error().message());
  return std::move(*p);
}

void finish(cp::process& p) {
  auto st = p.wait();
  if (!st || !st->success()) die("writer", st ? st->to_string() : st.error().message());
}

// cp::spawn, then the blocking stream::read_some.
void sync_read(bool socket) {
  auto p = start(false, socket);
  static char buf[65536];
  long long got = 0;
  while (auto r = p.out().read_some(buf)) got += static_cast<long long>(*r);
  finish(p);
  expect(got, "read_some");
}

// cp::spawn, then co_await async_read_some on an event loop.
void async_read(bool socket) {
  auto p = start(false, socket);
  auto run = [&]() -> cp::task<long long> {
    std::vector<char> buf(65536);
    long long got = 0;
    while (auto r = co_await p.out().async_read_some(buf)) got += static_cast<long long>(*r);
    co_return got;
  };
  const long long got = cp::sync_wait(run());
  finish(p);
  expect(got, "async_read_some");
}

// cp::spawn, then co_await read_line for every 32-byte line.
void lines_read() {
  auto p = start(true);
  auto run = [&]() -> cp::task<long long> {
    long long count = 0;
    while (auto line = co_await p.out().read_line()) ++count;
    co_return count;
  };
  const long long count = cp::sync_wait(run());
  finish(p);
  if (count != total / 32) die("read_line", "counted " + std::to_string(count) + " lines");
}

bool have_node() {
  auto r = cp::exec_file("node", {"--version"});
  return r && r->ok();
}

// Node: spawn the writer, count bytes in 'data' events (or lines with readline). The script
// reports its own elapsed time, so node's start-up is not counted against it.
void node(bool lines, double& seconds) {
  const std::string script = std::string(R"(
const { spawn } = require('child_process');
const t0 = process.hrtime.bigint();
const c = spawn(process.argv[1], process.argv.slice(2), { stdio: ['ignore', 'pipe', 'inherit'] });
let n = 0;
)") + (lines ? R"(require('readline').createInterface({ input: c.stdout }).on('line', () => n++);
)"
              : R"(c.stdout.on('data', (d) => { n += d.length; });
)") + R"(c.on('close', () => console.log(n, Number(process.hrtime.bigint() - t0) / 1e9));
)";
  const std::string n = std::to_string(total);
  auto r = lines ? cp::exec_file("node", {"-e", script, writer, "lines", n}) : cp::exec_file("node", {"-e", script, writer, n});
  if (!r || !r->ok()) die("node", r ? r->err : r.error().message());
  long long got = 0;
  if (std::sscanf(r->out.c_str(), "%lld %lf", &got, &seconds) != 2) die("node", "unexpected output: " + r->out);
  if (got != (lines ? total / 32 : total)) die("node", "wrong count " + std::to_string(got));
}

// One round of `read` as a figure's value: GB/s for bytes, M lines/s for lines.
double rate(bool lines, double seconds) {
  return lines ? static_cast<double>(total / 32) / seconds / 1e6 : static_cast<double>(total) / seconds / 1e9;
}

std::function<double()> timed(bool lines, std::function<void()> read) {
  return [lines, read = std::move(read)] {
    const auto t0 = std::chrono::steady_clock::now();
    read();
    return rate(lines, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  };
}

std::function<double()> node_figure(bool lines) {
  return [lines] {
    double s = 0;
    node(lines, s);
    return rate(lines, s);
  };
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = bench::quick();
  const long long mib = argc > 1 ? std::atoll(argv[1]) : quick ? 64 : 1024;
  const int reps = argc > 2 ? std::atoi(argv[2]) : quick ? 2 : 5;
  if (mib < 1 || reps < 1) die("usage", "bench_stream [MiB=1024] [reps=5]");
  total = mib << 20;
  if (::access(writer, X_OK) != 0) die(writer, "not an executable file");
  const bool node_ok = have_node();

  std::printf("childproc streaming benchmark: %lld MiB per run, %d rounds, figures interleaved%s\n", mib, reps,
              quick ? " (CHILDPROC_BENCH_QUICK)" : "");
  std::vector<bench::figure> bytes = {
      {"(a) raw posix_spawn + read(2), 64 KiB pipe", "stream.raw", "GB/s", timed(false, [] { raw(false, 0); })},
      {"(b) raw, pipe grown to 1 MiB (F_SETPIPE_SZ)", "stream.raw_1m", "GB/s", timed(false, [] { raw(false, 1 << 20); })},
      {"(c) cp::spawn + stream::read_some", "stream.cp_read_some", "GB/s", timed(false, [] { sync_read(false); })},
      {"(d) cp::spawn + co_await async_read_some", "stream.cp_async", "GB/s", timed(false, [] { async_read(false); })},
      {"(e) raw, socketpair, 1 MiB send buffer", "stream.raw_socket", "GB/s", timed(false, [] { raw(false, 1 << 20, true); })},
      {"(f) cp socket_pipe + stream::read_some", "stream.cp_socket_read_some", "GB/s", timed(false, [] { sync_read(true); })},
      {"(g) cp socket_pipe + co_await async_read_some", "stream.cp_socket_async", "GB/s", timed(false, [] { async_read(true); })},
  };
  if (node_ok) bytes.push_back({"(h) Node.js spawn, 'data' events", "stream.node", "GB/s", node_figure(false)});
  std::vector<bench::figure> lines = {
      {"(i) raw read(2) + memchr lines", "lines.raw", "M/s", timed(true, [] { raw(true, 0); })},
      {"(j) cp co_await read_line", "lines.cp_read_line", "M/s", timed(true, lines_read)},
  };
  if (node_ok) lines.push_back({"(k) Node.js readline 'line' events", "lines.node", "M/s", node_figure(true)});
  else bench::note("Node.js streaming: skipped, `node` is not on PATH");

  std::vector<bench::figure> figs = bytes;  // one list, so that all take turns
  figs.insert(figs.end(), lines.begin(), lines.end());
  bench::run_rounds(figs, reps);

  std::printf("\n%-46s %14s %10s\n", "figure", "median", "vs raw");
  const double raw_bytes = figs[0].median(), raw_lines = figs[bytes.size()].median();
  for (std::size_t i = 0; i < figs.size(); ++i) {
    const auto& f = figs[i];
    if (i < bytes.size()) std::printf("%-46s %9.2f GB/s %8.2fx\n", f.name.c_str(), f.median(), f.median() / raw_bytes);
    else std::printf("%-46s %9.1f M/s %9.2fx\n", f.name.c_str(), f.median(), f.median() / raw_lines);
  }
  if (!node_ok) std::printf("(Node.js figures skipped: `node` is not on PATH)\n");
  std::printf("\nvs raw: this rate / the raw rate (1.00x = as fast as the raw loop over a 64 KiB pipe).\n\n");
  bench::report(figs);
  return 0;
}
