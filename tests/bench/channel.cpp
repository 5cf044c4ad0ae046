// SPDX-License-Identifier: BSL-1.0
// How fast is the message channel? Three figures, each against a raw socketpair program doing
// the same framing by hand (fork + read/write loops) and against Node's fork() + send() when
// `node` is on PATH:
//   small: N one-way 32-byte messages (a send() per message, a receive() per message), msgs/s
//   round trip: ping-pong of 32-byte messages, µs per round trip
//   1 MiB: one-way 1 MiB messages, GB/s
// and, with `node`, Node's own json channel between a C++ and a Node process, each way
// (fork_node from C++; Node's spawn with 'ipc' of this program), against Node <-> Node: the
// 32-byte one-way rate and round trip. Every Node figure starts its clock at the child's first
// message, so Node's start-up is not counted.
//
//   usage: bench_channel [small=1000000] [rounds=5]
//   CHILDPROC_BENCH_QUICK=1   a short run for CI
//
// Also prints FIGURE lines for tests/bench/run.py.
//
// Informational only: it fails when a child cannot run or a count is wrong, never on a time.
#include <childproc.hpp>

#include "figure.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

namespace cp = childproc;
using clock_type = std::chrono::steady_clock;

namespace {

long small_count = 1000000, rtt_count = 20000, big_count = 256;
constexpr std::size_t big_size = 1 << 20;

[[noreturn]] void die(const char* what, const std::string& why) {
  std::fprintf(stderr, "bench_channel: %s: %s\n", what, why.c_str());
  std::exit(1);
}

// ---- childproc children (entry points of this program) ----

// Counts `n` messages, then answers with the count.
int count_messages(cp::channel& parent, long n) {
  long got = 0;
  while (got < n && parent.receive_sync()) ++got;
  return parent.send(std::int64_t{got}) ? 0 : 1;
}

}  // namespace

// The counts come as the entry's argument: the child does not see the parent's settings.
CHILDPROC_ENTRY(bench_count_small)(cp::channel& parent) { return count_messages(parent, std::stol(cp::entry_args().at(0))); }
CHILDPROC_ENTRY(bench_count_big)(cp::channel& parent) {
  parent.set_max_message_size(big_size);
  return count_messages(parent, std::stol(cp::entry_args().at(0)));
}
CHILDPROC_ENTRY(bench_echo)(cp::channel& parent) {
  while (auto m = parent.receive_sync())
    if (!parent.send(m->bytes())) return 1;
  return 0;
}

// Started by a Node parent ('ipc', json): says it is ready, then counts `n` messages and answers
// with the count, or echoes each one.
CHILDPROC_ENTRY(bench_json_count)(cp::channel& parent) {
  if (!parent.send(std::string("\"ready\""))) return 1;
  const long n = std::stol(cp::entry_args().at(0));
  long got = 0;
  while (got < n && parent.receive_sync()) ++got;
  return parent.send(std::to_string(got)) && parent.flush() ? 0 : 1;
}
CHILDPROC_ENTRY(bench_json_echo)(cp::channel& parent) {
  if (!parent.send(std::string("\"ready\""))) return 1;
  while (auto m = parent.receive_sync())
    if (!parent.send(m->str())) return 1;
  return 0;
}

namespace {

// ---- the childproc figures ----

double cp_small() {
  auto w = cp::fork_self("bench_count_small", {std::to_string(small_count)}).value();
  const std::string payload(32, 'm');
  const auto t0 = clock_type::now();
  const auto got = cp::sync_wait([&]() -> cp::task<std::int64_t> {
    for (long i = 0; i < small_count; ++i) (void)w.send(payload);
    co_return (co_await w.receive<std::int64_t>()).value();
  }());
  const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
  if (got != small_count) die("small", "count " + std::to_string(got));
  (void)w.wait();
  return s;
}

// Seconds for `count` round trips of `payload` with the echoing child `w`, which then ends.
double round_trips(cp::process& w, const std::string& payload, long count) {
  const auto t0 = clock_type::now();
  cp::sync_wait([&]() -> cp::task<> {
    for (long i = 0; i < count; ++i) {
      (void)w.send(payload);
      if (!co_await w.receive()) die("rtt", "no reply");
    }
  }());
  const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
  w.disconnect();
  (void)w.wait();
  return s;
}

double cp_rtt() {
  auto w = cp::fork_self("bench_echo").value();
  return round_trips(w, std::string(32, 'p'), rtt_count);
}

double cp_big() {
  auto w = cp::fork_self("bench_count_big", {std::to_string(big_count)}, {.max_message_size = big_size}).value();
  const std::string payload(big_size, 'b');
  const auto t0 = clock_type::now();
  const auto got = cp::sync_wait([&]() -> cp::task<std::int64_t> {
    for (long i = 0; i < big_count; ++i)
      if (!co_await w.send_async(payload)) die("1 MiB", "send failed");
    co_return (co_await w.receive<std::int64_t>()).value();
  }());
  const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
  if (got != big_count) die("1 MiB", "count " + std::to_string(got));
  (void)w.wait();
  return s;
}

// ---- the raw baselines: socketpair, fork, hand-written framing ----

void write_all(int fd, const char* p, std::size_t n) {
  while (n) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("raw write", std::strerror(errno));
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void append_frame(std::string& out, const char* p, std::uint32_t n) {
  const char h[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8), static_cast<char>(n)};
  out.append(h, 4);
  out.append(p, n);
}

// Reads frames from `fd` until `n` have arrived or the stream ends; `each` sees every payload.
long read_frames(int fd, long n, const std::function<void(std::string_view)>& each) {
  std::string buf(1 << 16, '\0');
  std::size_t head = 0, fill = 0;
  long got = 0;
  while (got < n) {
    while (fill - head >= 4) {
      const auto* u = reinterpret_cast<const unsigned char*>(buf.data() + head);
      const std::size_t len = (std::size_t{u[0]} << 24) | (std::size_t{u[1]} << 16) | (std::size_t{u[2]} << 8) | u[3];
      if (fill - head < 4 + len) {
        if (buf.size() < 4 + len) buf.resize(4 + len);
        break;
      }
      each({buf.data() + head + 4, len});
      head += 4 + len;
      if (++got == n) return got;
    }
    if (head == fill) head = fill = 0;
    if (head && fill == buf.size()) {
      std::memmove(buf.data(), buf.data() + head, fill - head);
      fill -= head;
      head = 0;
    }
    const ssize_t r = ::read(fd, buf.data() + fill, buf.size() - fill);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return got;
    fill += static_cast<std::size_t>(r);
  }
  return got;
}

// Runs `child(fd)` in a forked child on one end of a socketpair and `parent(fd)` here.
double raw_pair(const std::function<void(int)>& child, const std::function<void(int)>& parent) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair", std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) die("fork", std::strerror(errno));
  if (pid == 0) {
    ::close(sv[0]);
    child(sv[1]);
    ::_exit(0);
  }
  ::close(sv[1]);
  const auto t0 = clock_type::now();
  parent(sv[0]);
  const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
  ::close(sv[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return s;
}

void raw_count_child(int fd, long n) {
  long got = read_frames(fd, n, [](std::string_view) {});
  std::string out;
  append_frame(out, reinterpret_cast<const char*>(&got), sizeof got);
  write_all(fd, out.data(), out.size());
}

long raw_read_count(int fd) {
  long count = 0;
  read_frames(fd, 1, [&](std::string_view p) { std::memcpy(&count, p.data(), sizeof count); });
  return count;
}

double raw_small() {
  return raw_pair([](int fd) { raw_count_child(fd, small_count); },
                  [](int fd) {
                    const std::string payload(32, 'm');
                    std::string out;
                    for (long i = 0; i < small_count; ++i) {  // frames gathered, written 64 KiB at a time
                      append_frame(out, payload.data(), 32);
                      if (out.size() >= 65536) {
                        write_all(fd, out.data(), out.size());
                        out.clear();
                      }
                    }
                    write_all(fd, out.data(), out.size());
                    if (raw_read_count(fd) != small_count) die("raw small", "wrong count");
                  });
}

double raw_rtt() {
  return raw_pair(
      [](int fd) {
        std::string out;
        read_frames(fd, rtt_count, [&](std::string_view p) {
          out.clear();
          append_frame(out, p.data(), static_cast<std::uint32_t>(p.size()));
          write_all(fd, out.data(), out.size());
        });
      },
      [](int fd) {
        const std::string payload(32, 'p');
        std::string out;
        append_frame(out, payload.data(), 32);
        for (long i = 0; i < rtt_count; ++i) {
          write_all(fd, out.data(), out.size());
          if (read_frames(fd, 1, [](std::string_view) {}) != 1) die("raw rtt", "no reply");
        }
      });
}

double raw_big() {
  return raw_pair([](int fd) { raw_count_child(fd, big_count); },
                  [](int fd) {
                    const std::string payload(big_size, 'b');
                    const std::uint32_t n = big_size;
                    const char h[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                                       static_cast<char>(n)};
                    for (long i = 0; i < big_count; ++i) {
                      iovec iov[2] = {{const_cast<char*>(h), 4}, {const_cast<char*>(payload.data()), payload.size()}};
                      std::size_t left = 4 + payload.size();
                      int at = 0;
                      while (left) {
                        const ssize_t w = ::writev(fd, iov + at, 2 - at);
                        if (w < 0 && errno == EINTR) continue;
                        if (w <= 0) die("raw writev", std::strerror(errno));
                        left -= static_cast<std::size_t>(w);
                        std::size_t k = static_cast<std::size_t>(w);
                        while (at < 2 && k >= iov[at].iov_len) k -= iov[at++].iov_len;
                        if (at < 2) {
                          iov[at].iov_base = static_cast<char*>(iov[at].iov_base) + k;
                          iov[at].iov_len -= k;
                        }
                      }
                    }
                    if (raw_read_count(fd) != big_count) die("raw 1 MiB", "wrong count");
                  });
}

// ---- Node.js: fork() + send(), json serialization (its default) ----

std::string node_dir;

bool setup_node() {
  auto v = cp::exec_file("node", {"--version"});
  if (!v || !v->ok()) return false;
  char tmpl[] = "/tmp/childproc-bench-XXXXXX";
  if (!::mkdtemp(tmpl)) return false;
  node_dir = tmpl;
  std::ofstream(node_dir + "/child.js") << R"(
let n = 0; const want = Number(process.argv[2]); const mode = process.argv[3];
process.on('message', (m) => {
  if (mode === 'echo') { process.send(m); return; }
  if (++n === want) process.send(n, () => process.disconnect());
});
process.send('ready');
)";
  // argv: mode count size [a C++ child: this program, run with 'ipc' as Node's spawn does it]
  std::ofstream(node_dir + "/parent.js") << R"(
const { fork, spawn } = require('child_process');
const [mode, count, size, exe] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), process.argv[5]];
const payload = 'x'.repeat(size);
const c = exe ? spawn(exe, [String(count)], { stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
                      env: { ...process.env, CHILDPROC_ENTRY: mode === 'echo' ? 'bench_json_echo' : 'bench_json_count' } })
              : fork(__dirname + '/child.js', [String(count), mode]);
let t0;
const done = () => { console.log(Number(process.hrtime.bigint() - t0) / 1e9); c.disconnect(); };
c.once('message', () => {  // 'ready'
  t0 = process.hrtime.bigint();
  if (mode === 'echo') {
    let left = count;
    c.on('message', () => { if (--left === 0) done(); else c.send(payload); });
    c.send(payload);
  } else {
    c.on('message', () => done());
    for (let i = 0; i < count; ++i) c.send(payload);
  }
});
)";
  return true;
}

// A Node parent's run: seconds from its child's 'ready'. With `cpp_child`, the child is this program.
double node_run(const char* mode, long count, std::size_t size, bool cpp_child = false) {
  std::vector<std::string> args = {node_dir + "/parent.js", mode, std::to_string(count), std::to_string(size)};
  if (cpp_child) args.push_back(cp::detail::self_exe_native({}).value());
  auto r = cp::exec_file("node", args, {.max_buffer = cp::unlimited});
  if (!r || !r->ok()) die("node", r ? r->err : r.error().message());
  return std::stod(r->out);
}

// A C++ parent and a Node child (fork_node): 32-byte JSON strings, from the child's 'ready'.
double cp_node_small(long count) {
  auto js = cp::fork_node(node_dir + "/child.js", {std::to_string(count), "count"}).value();
  if (js.receive_sync<std::string>().value() != "\"ready\"") die("C++ -> Node", "no ready");
  const std::string payload = "\"" + std::string(32, 'x') + "\"";
  const auto t0 = clock_type::now();
  const auto got = cp::sync_wait([&]() -> cp::task<std::string> {
    for (long i = 0; i < count; ++i) (void)js.send(payload);
    co_return (co_await js.receive<std::string>()).value();
  }());
  const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
  if (got != std::to_string(count)) die("C++ -> Node", "count " + got);
  (void)js.wait();
  return s;
}

double cp_node_rtt(long count) {
  auto js = cp::fork_node(node_dir + "/child.js", {std::to_string(count), "echo"}).value();
  if (js.receive_sync<std::string>().value() != "\"ready\"") die("C++ <-> Node", "no ready");
  return round_trips(js, "\"" + std::string(32, 'x') + "\"", count);
}

}  // namespace

int main(int argc, char** argv) {
  cp::dispatch_entry(argc, argv);
  const bool quick = bench::quick();
  if (argc > 1) small_count = std::atol(argv[1]);
  else if (quick) small_count = 100000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : quick ? 2 : 5;
  if (quick) {
    rtt_count = 2000;
    big_count = 32;
  }
  if (small_count < 1 || rounds < 1) die("usage", "bench_channel [small=1000000] [rounds=5]");
  const bool node = setup_node();
  // Node's json channel is far slower: it gets fewer messages (its rates come from its own counts).
  const long node_small = std::max(1L, small_count / 10), node_rtt = std::max(1L, rtt_count / 4), node_big = std::max(1L, big_count / 8);

  // Each figure's value is its rate (M msgs/s, GB/s) or µs per round trip, from that round's seconds.
  auto small = [](std::function<double()> run, long count) {
    return [run = std::move(run), count] { return static_cast<double>(count) / run() / 1e6; };
  };
  auto rtt = [](std::function<double()> run, long count) {
    return [run = std::move(run), count] { return run() / static_cast<double>(count) * 1e6; };
  };
  auto big = [](std::function<double()> run, long count) {
    return [run = std::move(run), count] { return static_cast<double>(count) * big_size / run() / 1e9; };
  };
  std::vector<bench::figure> figs = {
      {"small: raw socketpair, 64 KiB writes", "channel.small.raw", "M/s", small(raw_small, small_count)},
      {"small: cp send() + receive()", "channel.small.cp", "M/s", small(cp_small, small_count)},
      {"round trip: raw", "channel.rtt.raw", "us", rtt(raw_rtt, rtt_count)},
      {"round trip: cp send() + co_await receive()", "channel.rtt.cp", "us", rtt(cp_rtt, rtt_count)},
      {"1 MiB: raw writev", "channel.big.raw", "GB/s", big(raw_big, big_count)},
      {"1 MiB: cp co_await send_async()", "channel.big.cp", "GB/s", big(cp_big, big_count)},
  };
  if (node) {
    figs.push_back({"small: Node fork() + send()", "channel.small.node", "M/s",
                    small([&] { return node_run("count", node_small, 32); }, node_small)});
    figs.push_back({"round trip: Node", "channel.rtt.node", "us", rtt([&] { return node_run("echo", node_rtt, 32); }, node_rtt)});
    figs.push_back({"1 MiB: Node", "channel.big.node", "GB/s",
                    big([&] { return node_run("count", node_big, big_size); }, node_big)});
    figs.push_back({"small json: C++ parent -> Node child", "channel.small.cp_node", "M/s",
                    small([&] { return cp_node_small(node_small); }, node_small)});
    figs.push_back({"small json: Node parent -> C++ child", "channel.small.node_cp", "M/s",
                    small([&] { return node_run("count", node_small, 32, true); }, node_small)});
    figs.push_back({"round trip json: C++ parent, Node child", "channel.rtt.cp_node", "us",
                    rtt([&] { return cp_node_rtt(node_rtt); }, node_rtt)});
    figs.push_back({"round trip json: Node parent, C++ child", "channel.rtt.node_cp", "us",
                    rtt([&] { return node_run("echo", node_rtt, 32, true); }, node_rtt)});
  } else {
    bench::note("Node.js channel: skipped, `node` is not on PATH");
  }
  bench::run_rounds(figs, rounds);

  std::printf("childproc channel benchmark: %ld small messages, %ld round trips, %ld x 1 MiB; %d rounds%s\n\n",
              small_count, rtt_count, big_count, rounds, quick ? " (CHILDPROC_BENCH_QUICK)" : "");
  std::printf("%-44s %16s %10s\n", "figure", "median", "vs raw");
  // Rates: this / raw (higher is better); round trip: this / raw (lower is better).
  auto line = [&](const bench::figure& f, const bench::figure& raw, int kind) {
    const double v = f.median(), ratio = v / raw.median();
    if (kind == 0) std::printf("%-44s %11.2f M/s %9.2fx\n", f.name.c_str(), v, ratio);
    if (kind == 1) std::printf("%-44s %12.1f us %9.2fx\n", f.name.c_str(), v, ratio);
    if (kind == 2) std::printf("%-44s %10.2f GB/s %9.2fx\n", f.name.c_str(), v, ratio);
  };
  for (std::size_t i = 0; i < 6; ++i) line(figs[i], figs[i / 2 * 2], static_cast<int>(i / 2));
  if (node) {
    for (std::size_t i = 6; i < 9; ++i) line(figs[i], figs[(i - 6) * 2], static_cast<int>(i - 6));
    // The mixed pairs against Node <-> Node (figs[6]: one way, figs[7]: round trip).
    std::printf("\n%-44s %16s %10s\n", "json, C++ and Node", "median", "vs Node");
    for (std::size_t i = 9; i < 13; ++i) line(figs[i], figs[i < 11 ? 6 : 7], i < 11 ? 0 : 1);
  } else
    std::printf("(Node.js figures skipped: `node` is not on PATH)\n");
  std::printf("\nvs raw, vs Node: msgs/s and GB/s as this rate / that rate (higher is better); round trip as this time / that time (lower is better).\n");
  if (node) {
    std::printf("Node ran %ld small messages, %ld round trips and %ld x 1 MiB per round (its rates are its own).\n", node_small,
                node_rtt, node_big);
    std::filesystem::remove_all(node_dir);
  }
  std::printf("\n");
  bench::report(figs);
  return 0;
}
