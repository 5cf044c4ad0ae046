// SPDX-License-Identifier: BSL-1.0
// How much does childproc add to starting and reaping a child, and does a large parent slow it
// down? Each figure runs N spawn+wait pairs of a tiny static child that exits at once; all
// figures take turns for `rounds` rounds so that drift of the machine hits them alike. Printed:
// microseconds per spawn, median and min-max over the rounds, and the ratio to raw posix_spawn +
// waitpid from a parent of the same size; plus FIGURE lines for tests/bench/run.py.
//
//   usage: bench_spawn_wait [--parent-mib M[,M...]] [N=300] [rounds=7]
//   --parent-mib 2048,8192   also measure from a parent that has touched 2 GiB and 8 GiB (N/10
//                            spawns per round there: fork from 8 GiB takes ~0.1 s)
//   CHILDPROC_BENCH_CHILD=path   another child program
//   CHILDPROC_BENCH_QUICK=1      a short run for CI (N=20, rounds=3) unless N and rounds are given
//
// Peers, each skipped with a note when absent: Boost.Process v2 (compiled in when its header was
// found), Node.js spawnSync and Python subprocess.run (spawn_peer.js / spawn_peer.py, from a
// parent as started; run.py runs them from large parents).
//
// Informational only: it fails when a child cannot be run, never because of a time.
#include <childproc.hpp>

#include "figure.hpp"

#if CHILDPROC_BENCH_BOOST
// Boost 1.81's v2 with BOOST_PROCESS_USE_STD_FS (so that no Boost.Filesystem library is needed)
// names boost::optional and Boost's type traits without including them.
#  include <boost/optional.hpp>
#  include <boost/type_traits.hpp>
#  include <boost/asio/io_context.hpp>
#  include <boost/process/v2.hpp>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <sched.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace cp = childproc;

namespace {

constexpr const char* usage = "bench_spawn_wait [--parent-mib M[,M...]] [N=300] [rounds=7]";

[[noreturn]] void die(const char* what, const std::string& why) {
  std::fprintf(stderr, "bench_spawn_wait: %s: %s\n", what, why.c_str());
  std::exit(1);
}
[[noreturn]] void die_errno(const char* what, int err) { die(what, std::strerror(err)); }

void reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) die_errno("waitpid", errno);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    die("child", "did not exit 0 (wait status " + std::to_string(status) + ")");
}

// ---- the raw floors ----

// posix_spawn (clone(CLONE_VM|CLONE_VFORK) in glibc), stdio inherited.
void raw_posix_spawn(const char* path, int n) {
  char* argv[] = {const_cast<char*>(path), nullptr};
  for (int i = 0; i < n; ++i) {
    pid_t pid;
    if (int rc = ::posix_spawn(&pid, path, nullptr, nullptr, argv, environ); rc != 0) die_errno("posix_spawn", rc);
    reap(pid);
  }
}

// vfork shares the parent's memory until execve: no page tables to copy. In its own function
// so that no caller's locals live across vfork.
[[gnu::noinline]] pid_t vfork_exec(const char* path, char* const* argv) {
  const pid_t pid = ::vfork();
  if (pid == 0) {
    ::execve(path, argv, environ);
    ::_exit(127);
  }
  return pid;
}
void raw_vfork(const char* path, int n) {
  char* argv[] = {const_cast<char*>(path), nullptr};
  for (int i = 0; i < n; ++i) {
    const pid_t pid = vfork_exec(path, argv);
    if (pid < 0) die_errno("vfork", errno);
    reap(pid);
  }
}

// fork copies the page tables (copy-on-write): grows with the parent's size.
void raw_fork(const char* path, int n) {
  char* argv[] = {const_cast<char*>(path), nullptr};
  for (int i = 0; i < n; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::execve(path, argv, environ);
      ::_exit(127);
    }
    if (pid < 0) die_errno("fork", errno);
    reap(pid);
  }
}

// What spawn_sync does, by hand: three pipes, stdin closed, stdout and stderr drained with poll.
void raw_posix_spawn_pipes(const char* path, int n) {
  char* argv[] = {const_cast<char*>(path), nullptr};
  char buf[4096];
  for (int i = 0; i < n; ++i) {
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
      die_errno("pipe2", errno);
    posix_spawn_file_actions_t fa;
    ::posix_spawn_file_actions_init(&fa);
    ::posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    ::posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    ::posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    pid_t pid;
    const int rc = ::posix_spawn(&pid, path, &fa, nullptr, argv, environ);
    ::posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) die_errno("posix_spawn", rc);
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    ::close(in[1]);  // no input: the child sees end of file
    pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    for (int open = 2; open > 0;) {
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        die_errno("poll", errno);
      }
      for (auto& f : fds) {
        if (f.fd < 0 || f.revents == 0) continue;
        const ssize_t got = ::read(f.fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
          ::close(f.fd);
          f.fd = -1;
          --open;
        }
      }
    }
    reap(pid);
  }
}

// ---- childproc ----

const cp::options inherit_all{.stdio = {cp::inherit, cp::inherit, cp::inherit}};

// `n` spawns with options `o`, each waited for: the blocking API.
void spawn_wait_loop(const char* path, int n, const cp::options& o, const char* what) {
  for (int i = 0; i < n; ++i) {
    auto p = cp::spawn(path, {}, o);
    if (!p) die(what, p.error().message());
    auto st = p->wait();
    if (!st || !st->success()) die("child", st ? st->to_string() : st.error().message());
  }
}

// The blocking API: spawn with the parent's stdio (as the raw posix_spawn loop), then wait().
void cp_spawn(const char* path, int n) { spawn_wait_loop(path, n, inherit_all, "cp::spawn"); }

// The same through the posix_spawn path (the Linux clone path turned off for the figure).
void cp_spawn_posix_path(const char* path, int n) {
#if CHILDPROC_CLONE_SPAWN
  cp::detail::clone_refused_linux = true;
  cp_spawn(path, n);
  cp::detail::clone_refused_linux = false;
#else
  cp_spawn(path, n);
#endif
}

// Spawns that once needed fork + execve: uid and gid set (to our own), and a parent-death signal.
void cp_spawn_ids(const char* path, int n) {
  spawn_wait_loop(path, n, {.stdio = {cp::inherit, cp::inherit, cp::inherit}, .uid = ::getuid(), .gid = ::getgid()},
                  "cp::spawn uid/gid");
}

void cp_spawn_pdeath(const char* path, int n) {
  spawn_wait_loop(path, n, {.stdio = {cp::inherit, cp::inherit, cp::inherit}, .kill_on_parent_exit = true},
                  "cp::spawn kill_on_parent_exit");
}

// The async API: spawn, then co_await exit() on an event loop (the pidfd in epoll).
void cp_async(const char* path, int n) {
  cp::sync_wait([&]() -> cp::task<> {
    for (int i = 0; i < n; ++i) {
      auto p = cp::spawn(path, {}, inherit_all);
      if (!p) die("cp::spawn", p.error().message());
      auto st = co_await p->exit();
      if (!st || !st->success()) die("child", st ? st->to_string() : st.error().message());
    }
  }());
}

// The sync API (spawnSync; exec_file is the same call): three pipes, output captured.
void cp_spawn_sync(const char* path, int n) {
  const cp::options o{};
  for (int i = 0; i < n; ++i) {
    auto r = cp::spawn_sync(path, {}, o);
    if (!r) die("cp::spawn_sync", r.error().message());
    if (!r->ok()) die("child", r->status.to_string());
  }
}

#if CHILDPROC_BENCH_BOOST
// Boost.Process v2 with its defaults: the default launcher (fork + execve), stdio inherited.
void boost_spawn(const char* path, int n) {
  namespace bp2 = boost::process::v2;
  boost::asio::io_context ctx;
  for (int i = 0; i < n; ++i) {
    bp2::process p(ctx, path, std::vector<std::string>{});
    if (const int rc = p.wait(); rc != 0) die("boost child", "exit code " + std::to_string(rc));
  }
}
#endif

// ---- peers in other languages: their own scripts, timing only their spawn loop ----

// Runs a peer script for one round and returns the value of its one FIGURE line.
double run_peer(const char* interpreter, const char* script, std::vector<std::string> args) {
  args.insert(args.begin(), std::string(CHILDPROC_BENCH_SOURCE_DIR) + "/" + script);
  auto r = cp::exec_file(interpreter, args, {.stdio = {cp::ignore, cp::pipe, cp::pipe}});
  if (!r || !r->ok()) die(script, r ? r->err + r->status.to_string() : r.error().message());
  const auto eq = r->out.find('=');
  if (r->out.rfind("FIGURE ", 0) != 0 || eq == std::string::npos) die(script, "unexpected output: " + r->out);
  return std::stod(r->out.substr(eq + 1));
}

bool have(const char* program, const char* arg) {
  auto r = cp::exec_file(program, {arg});
  return r && r->ok();
}

// ---- the parent's size ----

// Touched memory, one region per requested size (the first region up to the first size, the
// next one the rest up to the second, ...). Pages are touched once, at start. A round for a
// smaller size marks the regions beyond it MADV_DONTFORK: fork then neither copies their page
// tables nor maps them in the child, exactly as if they did not exist, while they stay resident.
// So every size runs in this one process, interleaved with the others.
struct region {
  char* base;
  std::size_t bytes;
  long upto_mib;
};
std::vector<region> ballast;

long mem_available_mib() { return static_cast<long>(bench::proc_field_mib("/proc/meminfo", "MemAvailable")); }

void grow_ballast(long mib) {
  const long have = ballast.empty() ? 0 : ballast.back().upto_mib;
  const std::size_t bytes = static_cast<std::size_t>(mib - have) << 20;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die_errno("mmap", errno);
  const long page = ::sysconf(_SC_PAGESIZE);
  for (std::size_t at = 0; at < bytes; at += static_cast<std::size_t>(page)) static_cast<volatile char*>(p)[at] = 1;
  ballast.push_back({static_cast<char*>(p), bytes, mib});
}

void set_parent_size(long mib) {
  for (const auto& r : ballast)
    if (::madvise(r.base, r.bytes, r.upto_mib <= mib ? MADV_DOFORK : MADV_DONTFORK) != 0) die_errno("madvise", errno);
}

long vm_rss_mib() { return static_cast<long>(bench::proc_field_mib("/proc/self/status", "VmRSS")); }

// ---- reporting ----

// "static" or "dynamic" from the child's ELF program headers (a PT_INTERP names the loader).
const char* linkage(const char* path) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "unreadable";
  ElfW(Ehdr) eh{};
  const char* kind = "not a native ELF file";
  if (::pread(fd, &eh, sizeof eh, 0) == static_cast<ssize_t>(sizeof eh) &&
      std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_phentsize == sizeof(ElfW(Phdr))) {
    kind = "static";
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
      ElfW(Phdr) ph{};
      const auto at = static_cast<off_t>(eh.e_phoff + i * sizeof ph);
      if (::pread(fd, &ph, sizeof ph, at) != static_cast<ssize_t>(sizeof ph)) break;
      if (ph.p_type == PT_INTERP) kind = "dynamic";
    }
  }
  ::close(fd);
  return kind;
}

void print_machine() {
  cpu_set_t set;
  CPU_ZERO(&set);
  const int usable = ::sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
  utsname u{};
  ::uname(&u);
  std::printf("machine:  nproc %d (online %ld), %s %s %s\n", usable, ::sysconf(_SC_NPROCESSORS_ONLN), u.sysname,
              u.release, u.machine);
#if defined(__clang__)
  std::printf("compiler: clang %s", __clang_version__);
#else
  std::printf("compiler: g++ %s", __VERSION__);
#endif
#if defined(__OPTIMIZE__)
  std::printf(", optimized\n");
#else
  std::printf(", NOT optimized\n");
#endif
}

std::string size_label(long mib) { return mib ? std::to_string(mib) + "M" : "small"; }

}  // namespace

int main(int argc, char** argv) {
  std::vector<long> sizes = {0};
  int at = 1;
  if (at < argc && std::strcmp(argv[at], "--parent-mib") == 0) {
    if (at + 1 >= argc) die("usage", usage);
    for (const char* s = argv[at + 1]; *s;) {
      const char* comma = std::strchr(s, ',');
      const std::string one(s, comma ? static_cast<std::size_t>(comma - s) : std::strlen(s));
      const long mib = bench::parse_count(one.c_str(), "MiB", usage, 1L << 24);
      if (mib <= sizes.back()) die("usage", "--parent-mib sizes must ascend");
      sizes.push_back(mib);
      s = comma ? comma + 1 : s + one.size();
    }
    at += 2;
  }
  const bool quick = bench::quick();
  const int n = at < argc ? static_cast<int>(bench::parse_count(argv[at], "N", usage)) : quick ? 20 : 300;
  const int rounds = at + 1 < argc ? static_cast<int>(bench::parse_count(argv[at + 1], "rounds", usage)) : quick ? 3 : 7;
  const int n_big = std::max(3, n / 10);

  const char* child = CHILDPROC_BENCH_TINY;
  if (const char* env = std::getenv("CHILDPROC_BENCH_CHILD"); env && *env) child = env;
  if (::access(child, X_OK) != 0) die(child, "not an executable file (set CHILDPROC_BENCH_CHILD)");
#ifdef CHILDPROC_BENCH_NOLIBC
  const char* nolibc = CHILDPROC_BENCH_NOLIBC;
#else
  const char* nolibc = nullptr;
  bench::note("no-libc child: not built (x86-64 Linux only, and not under a sanitizer)");
#endif

  std::printf("childproc spawn+wait benchmark\n");
  print_machine();
  const char* kind = linkage(child);
  const bool built_dynamic = !CHILDPROC_BENCH_TINY_STATIC && std::strcmp(child, CHILDPROC_BENCH_TINY) == 0;
  std::printf("child:    %s (%s%s)\n", child, kind,
              built_dynamic ? ": no static libc to link with, or a sanitizer build; exec includes ld.so" : "");
  if (std::strcmp(kind, "static") != 0) bench::note(std::string("the tiny child is ") + kind + ": its exec includes the dynamic loader");

  // Large parents: only what fits, with 1 GiB to spare for the children and the peers.
  if (sizes.size() > 1) {
    const long avail = mem_available_mib();
    while (sizes.size() > 1 && avail >= 0 && sizes.back() + 1024 > avail) {
      bench::note("parent of " + std::to_string(sizes.back()) + " MiB skipped: MemAvailable is " + std::to_string(avail) + " MiB");
      sizes.pop_back();
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 1; i < sizes.size(); ++i) grow_ballast(sizes[i]);
    if (sizes.size() > 1)
      std::printf("parent:   %ld MiB touched in %.1f s (VmRSS %ld MiB)\n", sizes.back(),
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), vm_rss_mib());
  }

  const bool node = have("node", "--version"), python = have("python3", "--version");
  if (!node) bench::note("Node.js spawnSync: skipped, `node` is not on PATH");
  if (!python) bench::note("Python subprocess.run: skipped, `python3` is not on PATH");
#if !CHILDPROC_BENCH_BOOST
  bench::note("Boost.Process v2: skipped, <boost/process/v2.hpp> was not found at build time");
#endif

  // One figure per (parent size, method); each run selects its parent size first. On some
  // machines (VMs especially) a fork-based spawn leaves work behind after its child exits: page
  // tables to free, freed memory handed back to the host. That work slows down whatever spawns
  // next, whatever its method, for a second or more. So the fork-based figures and the peers
  // (which fork, or start an interpreter) run at the end of each round and are each followed by
  // a pause, those from a large parent (0.1 s and more per spawn) run in rounds of their own,
  // after the rest, and every other run starts with a tenth of its spawns untimed.
  enum when { first, last_in_round, own_rounds };
  std::vector<bench::figure> figs;
  std::vector<when> order;                 // per figure
  std::vector<std::size_t> first_of_size;  // index of each size's posix_spawn figure
  using method = void (*)(const char*, int);
  auto add = [&](long mib, const char* name, const char* key, method m, const char* path, bool forks = false) {
    const int count = mib ? n_big : n;
    const when w = !forks ? first : mib ? own_rounds : last_in_round;
    if (w != own_rounds) m(path, std::min(count, mib ? 2 : 20));  // warm-up: page cache, allocator, lazy binding
    order.push_back(w);
    figs.push_back({name, "spawn." + size_label(mib) + "." + key, "us", [=] {
                      set_parent_size(mib);
                      if (w != own_rounds) m(path, std::max(2, count / 10));  // untimed: absorbs what came before
                      const auto t0 = std::chrono::steady_clock::now();
                      m(path, count);
                      return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / count;
                    }});
  };
  const std::string n_str = std::to_string(n);
  auto add_peer = [&](const char* name, const char* key, const char* interpreter, const char* script, const char* mode) {
    order.push_back(last_in_round);
    figs.push_back({name, key, "us", [=] { return run_peer(interpreter, script, {mode, child, n_str, "1", "0"}); }});
  };
  for (const long mib : sizes) {
    set_parent_size(mib);
    first_of_size.push_back(figs.size());
    add(mib, "(a) posix_spawn + waitpid", "posix_spawn", raw_posix_spawn, child);
    add(mib, "(b) vfork + execve + waitpid", "vfork", raw_vfork, child);
    add(mib, "(c) cp::spawn, stdio inherited + wait()", "cp_spawn", cp_spawn, child);
    add(mib, "(d) cp::spawn + co_await exit()", "cp_async", cp_async, child);
    add(mib, "(e) cp::spawn_sync, 3 pipes captured", "cp_spawn_sync", cp_spawn_sync, child);
    add(mib, "(c2) cp::spawn, posix_spawn path", "cp_spawn_posix", cp_spawn_posix_path, child);
    add(mib, "(c3) cp::spawn with uid + gid", "cp_spawn_ids", cp_spawn_ids, child);
    add(mib, "(c4) cp::spawn with kill_on_parent_exit", "cp_spawn_pdeath", cp_spawn_pdeath, child);
    if (mib == 0) add(mib, "(f) posix_spawn, 3 pipes + poll drain", "posix_spawn_pipes", raw_posix_spawn_pipes, child);
    add(mib, "(g) fork + execve + waitpid", "fork", raw_fork, child, true);
#if CHILDPROC_BENCH_BOOST
    add(mib, "(h) Boost.Process v2 process + wait()", "boost", boost_spawn, child, true);
#endif
    // The peers run as their own processes, so only from a parent as started (run.py grows them).
    if (mib == 0 && node)
      add_peer("(i) Node.js spawnSync (3 pipes captured)", "spawn.small.node_spawnsync", "node", "spawn_peer.js", "spawnsync");
    if (mib == 0 && python)
      add_peer("(j) Python subprocess.run (defaults)", "spawn.small.python_run", "python3", "spawn_peer.py", "run");
  }
  const std::size_t nolibc_at = figs.size();
  if (nolibc) {
    auto add_nolibc = [&](const char* name, const char* key, method m, bool forks = false) {
      m(nolibc, 20);
      order.push_back(forks ? last_in_round : first);
      figs.push_back({name, std::string("nolibc.") + key, "us", [=] {
                        set_parent_size(0);
                        m(nolibc, std::max(2, n / 10));  // untimed: absorbs what came before
                        const auto t0 = std::chrono::steady_clock::now();
                        m(nolibc, n);
                        return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / n;
                      }});
    };
    add_nolibc("(a) posix_spawn + waitpid", "posix_spawn", raw_posix_spawn);
    add_nolibc("(b) vfork + execve + waitpid", "vfork", raw_vfork);
    add_nolibc("(c) cp::spawn, stdio inherited + wait()", "cp_spawn", cp_spawn);
    add_nolibc("(c2) cp::spawn, posix_spawn path", "cp_spawn_posix", cp_spawn_posix_path);
    add_nolibc("(g) fork + execve + waitpid", "fork", raw_fork, true);
  }

  std::printf("runs:     %d spawn+wait per round (%d from a large parent), %d rounds, figures interleaved%s%s\n", n, n_big,
              rounds, " (in a new order each round; the fork-based ones and the peers last, those from a large parent in rounds of their own)",
              quick ? " (CHILDPROC_BENCH_QUICK)" : "");
  const auto settle = std::chrono::milliseconds(quick ? 0 : 500);
  auto run_one = [&](std::size_t i) {
    figs[i].values.push_back(figs[i].run());
    if (order[i] != first) std::this_thread::sleep_for(settle);
  };
  // The others in a new order each round (a fixed seed, so runs are comparable): what lingers
  // after a round's fork-based figures then hits a different figure each round, not always one.
  std::vector<std::size_t> shuffled;
  for (std::size_t i = 0; i < figs.size(); ++i)
    if (order[i] == first) shuffled.push_back(i);
  std::mt19937 rng(20240601);
  for (int r = 0; r < rounds; ++r) {
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    for (const std::size_t i : shuffled) run_one(i);
    for (std::size_t i = 0; i < figs.size(); ++i)
      if (order[i] == last_in_round) run_one(i);
  }
  for (int r = 0; r < rounds; ++r)
    for (std::size_t i = 0; i < figs.size(); ++i)
      if (order[i] == own_rounds) run_one(i);

  // One table per parent size, each against its own posix_spawn figure.
  auto table = [&](const char* title, std::size_t from, std::size_t to, std::size_t base_at) {
    std::printf("\n%s\n%-44s %10s %21s %10s\n", title, "figure", "us/spawn", "(min - max)", "vs (a)");
    const double base = figs[base_at].median();
    for (std::size_t i = from; i < to; ++i) {
      char range[64];
      std::snprintf(range, sizeof range, "(%.1f - %.1f)", figs[i].min(), figs[i].max());
      std::printf("%-44s %10.1f %21s %9.2fx\n", figs[i].name.c_str(), figs[i].median(), range, figs[i].median() / base);
    }
  };
  for (std::size_t s = 0; s < sizes.size(); ++s) {
    const std::size_t to = s + 1 < sizes.size() ? first_of_size[s + 1] : nolibc_at;
    const std::string title = sizes[s] ? "from a parent that touched " + std::to_string(sizes[s]) + " MiB:" : "tiny static child:";
    table(title.c_str(), first_of_size[s], to, first_of_size[s]);
  }
  if (nolibc) table("child without libc (-nostdlib -static, exit_group only):", nolibc_at, figs.size(), nolibc_at);
  std::printf("\n");
  bench::report(figs);
  return 0;
}
