// SPDX-License-Identifier: BSL-1.0
// How much does childproc add to starting and reaping a child? Each figure runs N spawn+wait
// pairs of a tiny child that exits at once; the figures take turns for `reps` rounds so that
// drift of the machine hits all of them alike. Printed: microseconds per spawn, median and
// min-max over the rounds, and the ratio to raw posix_spawn + waitpid.
//
//   usage: bench_spawn_wait [N=300] [reps=7]
//   CHILDPROC_BENCH_CHILD=path   another child program
//   CHILDPROC_BENCH_QUICK=1      a short run for CI (N=30, reps=3) unless N and reps are given
//
// Informational only: it fails when a child cannot be run, never because of a time.
#include <childproc.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <sched.h>
#include <spawn.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CHILDPROC_BENCH_TINY
#  define CHILDPROC_BENCH_TINY "bench_tiny"
#  define CHILDPROC_BENCH_TINY_STATIC 0
#endif

extern char** environ;

namespace cp = childproc;

namespace {

const char* child_path = CHILDPROC_BENCH_TINY;
char* child_argv[2] = {};

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

// (a) The floor: what libc's posix_spawn (clone(CLONE_VM|CLONE_VFORK) on glibc) costs.
void raw_posix_spawn(int n) {
  for (int i = 0; i < n; ++i) {
    pid_t pid;
    if (int rc = ::posix_spawn(&pid, child_path, nullptr, nullptr, child_argv, environ); rc != 0)
      die_errno("posix_spawn", rc);
    reap(pid);
  }
}

// (b) vfork shares the parent's memory until execve: no page tables to copy.
// Kept in its own function so no caller's locals live across vfork.
[[gnu::noinline]] pid_t vfork_exec() {
  const pid_t pid = ::vfork();
  if (pid == 0) {
    ::execve(child_path, child_argv, environ);
    ::_exit(127);
  }
  return pid;
}
void raw_vfork(int n) {
  for (int i = 0; i < n; ++i) {
    const pid_t pid = vfork_exec();
    if (pid < 0) die_errno("vfork", errno);
    reap(pid);
  }
}

// (c) fork copies the page tables (copy-on-write): grows with the parent's size.
void raw_fork(int n) {
  for (int i = 0; i < n; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::execve(child_path, child_argv, environ);
      ::_exit(127);
    }
    if (pid < 0) die_errno("fork", errno);
    reap(pid);
  }
}

// (d) childproc with no pipes: argument and environment copies, /dev/null x3, pidfd, closefrom.
void cp_spawn_ignore(int n) {
  const cp::options o{.stdio = {cp::ignore, cp::ignore, cp::ignore}};
  for (int i = 0; i < n; ++i) {
    auto p = cp::spawn(child_path, {}, o);
    if (!p) die("cp::spawn", p.error().message());
    auto st = p->wait();
    if (!st) die("wait", st.error().message());
    if (!st->success()) die("child", st->to_string());
  }
}

// (e) childproc's spawnSync: three pipes, a private reactor, output captured into strings.
void cp_spawn_sync(int n) {
  const cp::options o{};
  for (int i = 0; i < n; ++i) {
    auto r = cp::spawn_sync(child_path, {}, o);
    if (!r) die("cp::spawn_sync", r.error().message());
    if (!r->ok()) die("child", r->status.to_string());
  }
}

// (f) What (e) does, by hand: three pipes, stdin closed, stdout and stderr drained with poll.
void raw_posix_spawn_pipes(int n) {
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
    const int rc = ::posix_spawn(&pid, child_path, &fa, nullptr, child_argv, environ);
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

struct figure {
  const char* name;
  void (*run)(int);
  std::vector<double> us;  // per spawn, one value per round
  double median() const {
    std::vector<double> v = us;
    std::sort(v.begin(), v.end());
    const std::size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  }
};

int parse_count(const char* s, const char* what) {
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < 1 || v > 1000000) {
    std::fprintf(stderr, "usage: bench_spawn_wait [N=300] [reps=7]\nbad %s: %s\n", what, s);
    std::exit(2);
  }
  return static_cast<int>(v);
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

}  // namespace

int main(int argc, char** argv) {
  const char* quick_env = std::getenv("CHILDPROC_BENCH_QUICK");
  const bool quick = quick_env && *quick_env && std::strcmp(quick_env, "0") != 0;
  const int n = argc > 1 ? parse_count(argv[1], "N") : quick ? 30 : 300;
  const int reps = argc > 2 ? parse_count(argv[2], "reps") : quick ? 3 : 7;
  if (const char* env = std::getenv("CHILDPROC_BENCH_CHILD"); env && *env) child_path = env;
  child_argv[0] = const_cast<char*>(child_path);
  if (::access(child_path, X_OK) != 0) die(child_path, "not an executable file (set CHILDPROC_BENCH_CHILD)");

  std::printf("childproc spawn+wait benchmark\n");
  print_machine();
  const char* kind = linkage(child_path);
  const bool built_dynamic = !CHILDPROC_BENCH_TINY_STATIC && std::strcmp(child_path, CHILDPROC_BENCH_TINY) == 0;
  std::printf("child:    %s (%s%s)\n", child_path, kind,
              built_dynamic ? ": no static libc to link with, or a sanitizer build; exec includes ld.so" : "");
  std::printf("runs:     %d spawn+wait per round, %d rounds, figures interleaved%s\n\n", n, reps,
              quick ? " (CHILDPROC_BENCH_QUICK)" : "");

  figure figs[] = {
      {"(a) posix_spawn + waitpid", raw_posix_spawn, {}},
      {"(b) vfork + execve + waitpid", raw_vfork, {}},
      {"(c) fork + execve + waitpid", raw_fork, {}},
      {"(d) cp::spawn, stdio ignore + wait", cp_spawn_ignore, {}},
      {"(e) cp::spawn_sync, 3 pipes captured", cp_spawn_sync, {}},
      {"(f) posix_spawn, 3 pipes + poll drain", raw_posix_spawn_pipes, {}},
  };

  for (auto& f : figs) f.run(std::min(n, 20));  // warm-up: page cache, allocator, lazy binding
  using clock = std::chrono::steady_clock;
  for (int r = 0; r < reps; ++r) {
    for (auto& f : figs) {
      const auto t0 = clock::now();
      f.run(n);
      const std::chrono::duration<double, std::micro> took = clock::now() - t0;
      f.us.push_back(took.count() / n);
    }
  }

  const double base = figs[0].median();
  std::printf("%-40s %12s %21s %12s\n", "figure", "us/spawn", "(min - max)", "vs (a)");
  for (const auto& f : figs) {
    const auto [lo, hi] = std::minmax_element(f.us.begin(), f.us.end());
    char range[64];
    std::snprintf(range, sizeof range, "(%.1f - %.1f)", *lo, *hi);
    std::printf("%-40s %12.1f %21s %11.2fx\n", f.name, f.median(), range, f.median() / base);
  }
  std::printf("\n(e) vs (f), the cost of the captured-output machinery: %.2fx\n", figs[4].median() / figs[5].median());
  std::printf("(d) vs (a), the cost of a plain cp::spawn:               %.2fx\n", figs[3].median() / figs[0].median());
  return 0;
}
