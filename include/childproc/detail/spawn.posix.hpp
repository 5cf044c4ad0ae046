// SPDX-License-Identifier: BSL-1.0
// POSIX backend of spawn.hpp.
#ifndef CHILDPROC_DETAIL_SPAWN_POSIX_HPP
#define CHILDPROC_DETAIL_SPAWN_POSIX_HPP

#include "ipc.hpp"
#include "os.posix.hpp"

#include <atomic>  // the pidfd_open probe
#include <cerrno>  // errno

namespace childproc::inline v0::detail {

inline std::vector<std::string> parent_environment_native() {
  std::vector<std::string> env;
  for (char** p = environ; p && *p; ++p) env.emplace_back(*p);
  return env;
}

inline std::string default_shell_native(const std::vector<std::string>&) { return "/bin/sh"; }

// One dup2 the child performs: `source` (a parent fd, or an earlier target) becomes `target`;
// source -1 closes `target`.
struct fd_action {
  int source;
  int target;
};

// execvp's search, done in the parent so that the error names the program: the PATH of the
// child's environment (Node's rule), "/usr/bin:/bin" without one; EACCES if only non-executable
// matches exist. Relative PATH entries are taken from the child's cwd.
inline auto find_program_posix(const spawn_request& req) -> result<std::string> {
  if (req.program.find('/') != std::string::npos) return req.program;
  const std::string* entry = env_find(req.env, "PATH", false);
  const std::string_view path = entry ? env_value(*entry) : std::string_view("/usr/bin:/bin");
  bool denied = false;
  for (std::size_t start = 0;;) {
    const auto end = std::min(path.find(':', start), path.size());
    std::string dir(path.substr(start, end - start));
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + req.program;  // relative entries: from the child's cwd
    const std::string seen = dir[0] != '/' && !req.opts->cwd.empty() ? req.opts->cwd + "/" + candidate : candidate;
    struct stat st;
    if (::stat(seen.c_str(), &st) == 0) {
      if (S_ISREG(st.st_mode) && ::access(seen.c_str(), X_OK) == 0) return candidate;
      denied = true;
    }
    if (end == path.size()) break;
    start = end + 1;
  }
  return last_os_error(denied ? EACCES : ENOENT, req.context);
}

// Whether the parent has `fd` open.
inline bool fd_is_open(int fd) noexcept { return ::fcntl(fd, F_GETFD) != -1; }

// The descriptor flags of the parent's `fd` (FD_CLOEXEC or 0), or -1 where it is not open.
inline int fd_flags(int fd) noexcept { return ::fcntl(fd, F_GETFD); }

// The parent's side of stdio: pipes and files opened (all CLOEXEC), and the dup2 list for the child.
struct stdio_plan {
  std::vector<unique_handle> parent;  // per index
  std::vector<unique_handle> keep;    // child ends and files, closed once the child has them
  std::vector<fd_action> actions;
  int count = 0;
};

inline auto plan_stdio_posix(const spawn_request& req) -> result<stdio_plan> {
  const auto& specs = req.opts->stdio;
  stdio_plan plan;
  plan.count = static_cast<int>(std::max<std::size_t>(specs.size(), 3));
  plan.parent.resize(static_cast<std::size_t>(plan.count));
  bool stderr_to_stdout = false;
  // Which of the parent's fds in the target range are open, before this call opens any of its own;
  // asked only where it matters (inherit, and past stderr), so a plain spawn makes no extra syscall.
  std::vector<int> was_open(static_cast<std::size_t>(plan.count), -1);  // its flags, or -1: closed
  for (int i = 0; i < plan.count; ++i) {
    const auto at = static_cast<std::size_t>(i);
    if (i >= 3 || (at < specs.size() && specs[at].how == stdio_spec::kind::inherit)) was_open[at] = fd_flags(i);
  }
  for (int i = 0; i < plan.count; ++i) {
    const stdio_spec spec = static_cast<std::size_t>(i) < specs.size() ? specs[static_cast<std::size_t>(i)] : pipe;
    const std::string where = req.context + ": stdio[" + std::to_string(i) + "]";
    int source = -1;
    auto take = [&](int fd) { plan.keep.emplace_back(fd); source = fd; };
    switch (spec.how) {
      case stdio_spec::kind::pipe:
      case stdio_spec::kind::socket_pipe:
      case stdio_spec::kind::ipc: {
        auto p = spec.how == stdio_spec::kind::ipc           ? create_channel_native()
                 : i >= 3                                     ? create_duplex_native()
                 : spec.how == stdio_spec::kind::socket_pipe ? create_socket_pipe_native(i == 0)
                                                              : create_pipe_native(i == 0);
        if (!p) return error(p.error().code(), where + " " + p.error().context());
        plan.parent[static_cast<std::size_t>(i)] = std::move(p->parent);
        take(p->child.release());
        break;
      }
      case stdio_spec::kind::inherit: {
        const int flags = was_open[static_cast<std::size_t>(i)];
        if (flags >= 0 && !(flags & FD_CLOEXEC)) continue;  // it reaches the child as it is: nothing to do there
        if (flags >= 0) source = i;                           // the child clears FD_CLOEXEC
        break;
      }
      case stdio_spec::kind::ignore:
        if (i < 3) {
          const int fd = ::open("/dev/null", (i == 0 ? O_RDONLY : O_RDWR) | O_CLOEXEC);
          if (fd < 0) return last_os_error(errno, where + " open /dev/null");
          take(fd);
        }
        break;
      case stdio_spec::kind::file_read:
      case stdio_spec::kind::file_write:
      case stdio_spec::kind::file_append: {
        if (has_nul(spec.path)) return error(errc::invalid_argument, where + ": the file path contains a NUL byte");
        const int flags = spec.how == stdio_spec::kind::file_read    ? O_RDONLY
                          : spec.how == stdio_spec::kind::file_write ? O_WRONLY | O_CREAT | O_TRUNC
                                                                     : O_WRONLY | O_CREAT | O_APPEND;
        const int fd = ::open(spec.path.c_str(), flags | O_CLOEXEC, 0666);
        if (fd < 0) return last_os_error(errno, where + " open " + spec.path);
        take(fd);
        break;
      }
      case stdio_spec::kind::handle:
        if (!fd_is_open(spec.fd)) return last_os_error(EBADF, where + " fd " + std::to_string(spec.fd));
        source = spec.fd;
        break;
      case stdio_spec::kind::same_as_stdout:
        stderr_to_stdout = true;
        break;
    }
    if (source < 0) {
      // Nothing for this index: an fd the parent has there must not reach the child (closefrom
      // starts above the stdio range).
      if (i >= 3 && was_open[static_cast<std::size_t>(i)] >= 0) plan.actions.push_back({-1, i});
      continue;
    }
    // A source inside the target range could be overwritten by an earlier dup2: move it above.
    if (source != i && source < plan.count) {
      const int moved = ::fcntl(source, F_DUPFD_CLOEXEC, plan.count);
      if (moved < 0) return last_os_error(errno, where + " fcntl");
      plan.keep.emplace_back(moved);
      source = moved;
    }
    plan.actions.push_back({source, i});
  }
  if (stderr_to_stdout) plan.actions.push_back({1, 2});
  return plan;
}

// Pointers into the request's strings, NULL-terminated, as execve wants them.
inline std::vector<char*> c_strings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// Closes every descriptor from `first` on but `keep`, in a child before execve: async-signal-safe
// (no allocation, no locks), raw system calls on Linux (the clone path's child must not touch C
// library state: open is a cancellation point, a first call may bind lazily). close_range where
// the kernel has it (5.9); else the descriptors listed in /proc/self/fd, read with getdents64 into
// the stack; else each one below the soft RLIMIT_NOFILE. CHILDPROC_NO_CLOSE_RANGE takes the path
// of older kernels (for the tests).
inline void close_from_posix(int first, int keep) noexcept {
#if defined(SYS_close_range) && !defined(CHILDPROC_NO_CLOSE_RANGE)
  if ((keep == first || keep < first || ::syscall(SYS_close_range, first, keep - 1, 0) == 0) &&
      ::syscall(SYS_close_range, keep < first ? first : keep + 1, ~0U, 0) == 0)
    return;
#endif
#if defined(SYS_getdents64)
  const int dir = static_cast<int>(::syscall(SYS_openat, AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir >= 0) {
    struct entry {  // struct linux_dirent64
      unsigned long long ino;
      long long off;
      unsigned short reclen;
      unsigned char type;
      char name[1];
    };
    alignas(8) char buf[4096];
    // Closing while listing may hide entries from the listing: list again until a pass closes none.
    for (bool closed = true; closed;) {
      closed = false;
      if (::syscall(SYS_lseek, dir, 0, SEEK_SET) != 0) break;
      for (long n; (n = ::syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0;)
        for (long at = 0; at < n;) {
          const auto* e = reinterpret_cast<const entry*>(buf + at);
          at += e->reclen;
          int fd = 0;
          const char* c = e->name;
          for (; *c >= '0' && *c <= '9'; ++c) fd = fd * 10 + (*c - '0');
          if (*c || c == e->name || fd < first || fd == keep || fd == dir) continue;  // ".", "..", kept
          ::syscall(SYS_close, fd);
          closed = true;
        }
    }
    ::syscall(SYS_close, dir);
    return;
  }
#endif
  rlimit limit{};
#if defined(__linux__)
  const bool known = ::syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, nullptr, &limit) == 0;
#else
  const bool known = ::getrlimit(RLIMIT_NOFILE, &limit) == 0;
#endif
  const long top = known && limit.rlim_cur != RLIM_INFINITY ? static_cast<long>(limit.rlim_cur) : 1L << 20;
  for (long fd = first; fd < top; ++fd) {
    if (fd == keep) continue;
#if defined(__linux__)
    ::syscall(SYS_close, fd);
#else
    ::close(static_cast<int>(fd));
#endif
  }
}

// Moves the plan's descriptors into place in a child before execve: the errno of the step that
// failed, or 0. Raw system calls on Linux, as close_from_posix (the clone path's child).
inline int apply_stdio_posix(const stdio_plan& plan) noexcept {
  for (const auto& a : plan.actions) {
#if defined(__linux__)
    const long rc = a.source < 0 ? ::syscall(SYS_close, a.target)
                    : a.source == a.target ? ::syscall(SYS_fcntl, a.source, F_SETFD, 0)  // FD_CLOEXEC is its one flag
                                           : ::syscall(SYS_dup3, a.source, a.target, 0);
#else
    const int rc = a.source < 0 ? ::close(a.target)
                   : a.source == a.target ? ::fcntl(a.source, F_SETFD, 0)
                                          : ::dup2(a.source, a.target);
#endif
    if (rc < 0 && a.source >= 0) return errno;  // a close that fails leaves the target closed all the same
  }
  return 0;
}

// The one fallback for what posix_spawn cannot express (uid/gid, the parent-death signal, or an
// old libc): fork + execve. Between fork and execve the child calls only async-signal-safe
// functions and reports a failed step through a CLOEXEC pipe. fork, not vfork: setuid in a vfork
// child would reach the parent's threads.
inline auto fork_exec_posix(const spawn_request& req, const std::string& path, const stdio_plan& plan,
                            char* const* argv, char* const* envp) -> result<pid_t> {
  const options& o = *req.opts;
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return last_os_error(errno, req.context + ": pipe");
  unique_handle report_read(report[0]), report_write(report[1]);
  if (report[1] < plan.count) {  // keep it clear of the dup2 targets
    report_write.reset(::fcntl(report[1], F_DUPFD_CLOEXEC, plan.count));
    if (!report_write) return last_os_error(errno, req.context + ": fcntl");
    report[1] = report_write.get();
  }
  sigset_t all, old;
  sigfillset(&all);
  const pid_t parent = ::getpid();
  pthread_sigmask(SIG_SETMASK, &all, &old);  // no parent handler may run in the child
  const pid_t pid = ::fork();
  if (pid == 0) {
    int err = 0;
    auto fail = [&](int e) {
      (void)!::write(report[1], &e, sizeof e);
      _exit(127);
    };
    for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
    if (const int e = apply_stdio_posix(plan)) fail(e);
    if (o.detached && ::setsid() < 0) fail(errno);
    if (!o.detached && o.new_process_group && ::setpgid(0, 0) < 0) fail(errno);
    if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) < 0) fail(errno);
    if (o.gid || o.uid) (void)::setgroups(0, nullptr);  // best effort, as libuv
    if (o.gid && ::setgid(*o.gid) < 0) fail(errno);
    if (o.uid && ::setuid(*o.uid) < 0) fail(errno);
#if defined(__linux__)
    // After setuid/setgid, which clear it. A parent that died before prctl is caught by getppid.
    if (o.kill_on_parent_exit) {
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail(errno);
      if (::getppid() != parent) ::kill(::getpid(), SIGKILL);
    }
#else
    (void)parent;
#endif
    if (o.close_other_fds) close_from_posix(plan.count, report[1]);  // the report pipe closes itself at execve
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(path.c_str(), argv, envp);
    err = errno;
    fail(err);
  }
  const int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return last_os_error(fork_errno, req.context);
  report_write.reset();
  int child_errno = 0;
  ssize_t n;
  do n = ::read(report_read.get(), &child_errno, sizeof child_errno);
  while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return last_os_error(child_errno, req.context);
  }
  return pid;
}

inline auto posix_spawn_posix(const spawn_request& req, const std::string& path, const stdio_plan& plan,
                              char* const* argv, char* const* envp) -> result<pid_t> {
  const options& o = *req.opts;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_init(&actions);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  if (o.detached) flags |= POSIX_SPAWN_SETSID;
  else if (o.new_process_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, 0);
  }
  posix_spawnattr_setflags(&attr, flags);
  int rc = 0;
  for (const auto& a : plan.actions)
    if (rc == 0)
      rc = a.source < 0 ? posix_spawn_file_actions_addclose(&actions, a.target)
                        : posix_spawn_file_actions_adddup2(&actions, a.source, a.target);
#if CHILDPROC_HAS_ADDCHDIR
  if (rc == 0 && !o.cwd.empty()) rc = posix_spawn_file_actions_addchdir_np(&actions, o.cwd.c_str());
#endif
#if CHILDPROC_HAS_ADDCLOSEFROM
  if (rc == 0 && o.close_other_fds) rc = posix_spawn_file_actions_addclosefrom_np(&actions, plan.count);
#endif
  pid_t pid = -1;
  if (rc == 0) rc = ::posix_spawn(&pid, path.c_str(), &actions, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return last_os_error(rc, req.context);
  return pid;
}

// The Linux spawn path: clone(CLONE_VM | CLONE_VFORK) runs the child's set-up in our memory, on a
// stack of its own, while the calling thread sleeps until execve or _exit (what vfork does, with
// every option served: no page tables copied, so a large parent spawns as fast as a small one).
// glibc 2.24 on (before it, its clone with CLONE_VM overwrote the caller's cached pid); other C
// libraries untested. Off under ThreadSanitizer (its interceptors would run in the child on the
// parent thread's state) and with CHILDPROC_NO_CLONE_SPAWN (to test the posix_spawn path).
#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__)) && defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 24)) && !defined(CHILDPROC_NO_CLONE_SPAWN) && \
    !defined(__SANITIZE_THREAD__)
#  if defined(__has_feature)
#    if __has_feature(thread_sanitizer)
#      define CHILDPROC_CLONE_SPAWN 0
#    endif
#  endif
#  ifndef CHILDPROC_CLONE_SPAWN
#    define CHILDPROC_CLONE_SPAWN 1
#  endif
#else
#  define CHILDPROC_CLONE_SPAWN 0
#endif

#if CHILDPROC_CLONE_SPAWN
// The kernel's struct sigaction (x86_64 and arm64 alike): the child sets dispositions with the
// raw system call, which also reaches the C library's own signals (32 and 33).
struct kernel_sigaction_linux {
  void* handler;
  unsigned long flags;
  void* restorer;
  unsigned long mask;
};

// What the parent prepared, read by the child; the child writes only `err`.
struct clone_job_linux {
  const options* o;
  const stdio_plan* plan;
  const char* path;
  char* const* argv;
  char* const* envp;
  long parent;          // our pid, for the parent-death check
  std::atomic<int> err{0};  // the errno of the step that failed; 0 while execve has not returned
};

// In the child, every disposition back to the default, while every signal is still blocked (a
// handler left here could run once the mask empties, on the parent's memory; an ignored signal
// would stay ignored after execve). All 62: read in the parent instead, a handler another
// thread installed after the read would be missed; and the child's own /proc/self/status, which
// would say exactly which to reset, costs more to open and read (a new pid's entry) than the 62
// calls (measured: a spawn 14 us slower; the read alone 12 us, the 62 calls 10 us).
inline void reset_dispositions_linux() noexcept {
  const kernel_sigaction_linux dfl{};  // SIG_DFL, no flags, nothing masked
  for (int sig = 1; sig <= 64; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, sizeof(unsigned long));
}

// The child, sharing our memory: raw system calls only (no allocation, no lock, no C library
// state), reading the job and writing nothing but `err` before it execs or exits.
inline int clone_child_linux(void* arg) noexcept {
  auto* j = static_cast<clone_job_linux*>(arg);
  const options& o = *j->o;
  const auto fail = [j](int e) {
    j->err.store(e ? e : EINVAL, std::memory_order_relaxed);
    ::syscall(SYS_exit_group, 127);
  };
  reset_dispositions_linux();
  if (const int e = apply_stdio_posix(*j->plan)) fail(e);
  if (o.detached && ::syscall(SYS_setsid) < 0) fail(errno);
  if (!o.detached && o.new_process_group && ::syscall(SYS_setpgid, 0, 0) < 0) fail(errno);
  if (!o.cwd.empty() && ::syscall(SYS_chdir, o.cwd.c_str()) < 0) fail(errno);
  // The raw calls change this process alone: the C library's setuid would signal every thread
  // of the parent (whose memory this is) to change theirs.
  if (o.gid || o.uid) (void)::syscall(SYS_setgroups, 0, nullptr);  // best effort, as libuv
  if (o.gid && ::syscall(SYS_setgid, *o.gid) < 0) fail(errno);
  if (o.uid && ::syscall(SYS_setuid, *o.uid) < 0) fail(errno);
  if (o.kill_on_parent_exit) {  // after setuid/setgid, which clear it; a parent gone already is caught by getppid
    if (::syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail(errno);
    if (::syscall(SYS_getppid) != j->parent) ::syscall(SYS_kill, ::syscall(SYS_getpid), SIGKILL);
  }
  if (o.close_other_fds) close_from_posix(j->plan->count, -1);
  const unsigned long none = 0;
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof none);
  ::syscall(SYS_execve, j->path, j->argv, j->envp);
  fail(errno);
  return 127;
}

// Set when a thread's clone stack is gone: at thread exit thread_local objects end before the
// last ones made earlier (or atexit handlers) may still spawn, which then take the other paths.
// A plain bool: never destroyed, and not a member (stores in a destructor may be dropped).
inline thread_local bool clone_stack_gone_linux = false;

// The child's stack: one per thread (a thread sleeps while its child uses it), made on the
// thread's first spawn and kept, with a guard page below it.
struct clone_stack_linux {
  static constexpr std::size_t size = 64 * 1024, guard = 4096;
  void* base = nullptr;
  ~clone_stack_linux() {
    if (base) ::munmap(base, size + guard);
    clone_stack_gone_linux = true;
  }
  char* top() noexcept {
    if (!base) {
      void* m = ::mmap(nullptr, size + guard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
      if (m == MAP_FAILED) return nullptr;
      (void)::mprotect(m, guard, PROT_NONE);
      base = m;
    }
    return static_cast<char*>(base) + size + guard;
  }
};

// Whether the kernel refused the clone (seccomp, a sandbox): the other paths serve from then on.
inline std::atomic<bool> clone_refused_linux{false};

// Whether the kernel refused CLONE_PIDFD (EINVAL: a seccomp filter or a kernel that checks the
// flag and lacks it): the clone goes on without it, and pidfd_open serves.
inline std::atomic<bool> clone_pidfd_refused_linux{false};

#ifndef CLONE_PIDFD
#  define CHILDPROC_CLONE_PIDFD 0x00001000  // Linux 5.2; older headers lack the name
#else
#  define CHILDPROC_CLONE_PIDFD CLONE_PIDFD
#endif

// Starts the child on the clone path: its pid (0 when the clone was refused) and, where the
// kernel made one with the child, its pidfd (-1 else), or an error.
inline auto clone_exec_linux(const spawn_request& req, const std::string& path, const stdio_plan& plan,
                             char* const* argv, char* const* envp) -> result<std::pair<pid_t, int>> {
  const std::pair<pid_t, int> refused{0, -1};
  if (clone_stack_gone_linux) return refused;  // this thread is ending: its stack is gone
  thread_local clone_stack_linux stack;
  char* top = stack.top();
  if (!top) return refused;  // no memory for a stack: the other paths need none
  clone_job_linux j;
  j.o = req.opts;
  j.plan = &plan;
  j.path = path.c_str();
  j.argv = argv;
  j.envp = envp;
  j.parent = req.opts->kill_on_parent_exit ? static_cast<long>(::getpid()) : 0;
  // Every signal blocked in this thread (the C library's own too), so no handler of ours runs on
  // the child's side before it has reset them; the child starts with this mask and empties it.
  const unsigned long all = ~0UL;
  unsigned long old = 0;
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof all);
  // CLONE_PIDFD: the pidfd comes with the child, so it names this child even if SIGCHLD is
  // ignored and the child is gone and its pid reused before we look (pidfd_open cannot know).
  // A kernel before 5.2 ignores the flag and leaves `pidfd` at -1. (CHILDPROC_NO_PIDFD: the
  // path of kernels without pidfds, for the tests.)
  int pidfd = -1;
#ifdef CHILDPROC_NO_PIDFD
  const bool with_pidfd = false;
#else
  const bool with_pidfd = !clone_pidfd_refused_linux.load(std::memory_order_relaxed);
#endif
  int pid = ::clone(&clone_child_linux, top, CLONE_VM | CLONE_VFORK | SIGCHLD | (with_pidfd ? CHILDPROC_CLONE_PIDFD : 0),
                    &j, &pidfd);
  int clone_errno = errno;
  // Refused with the flag: again without it. EMFILE / ENFILE: no descriptor free for the pidfd
  // now (the child runs by pid, as before pidfds); EINVAL (Linux 5.2 wants *parent_tid 0, a
  // filter), EPERM, ENOSYS: for good.
  if (pid < 0 && with_pidfd &&
      (clone_errno == EMFILE || clone_errno == ENFILE || clone_errno == EINVAL || clone_errno == EPERM || clone_errno == ENOSYS)) {
    if (clone_errno != EMFILE && clone_errno != ENFILE) clone_pidfd_refused_linux.store(true, std::memory_order_relaxed);
    pidfd = -1;
    pid = ::clone(&clone_child_linux, top, CLONE_VM | CLONE_VFORK | SIGCHLD, &j);
    clone_errno = errno;
  }
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, nullptr, sizeof old);
  if (pid < 0) {
    if (clone_errno == ENOSYS || clone_errno == EPERM || clone_errno == EINVAL) {
      clone_refused_linux.store(true, std::memory_order_relaxed);
      return refused;
    }
    return last_os_error(clone_errno, req.context);
  }
  unique_handle owned(pidfd);  // closed on the error below
  if (const int e = j.err.load(std::memory_order_relaxed)) {  // a step before execve failed: the child has exited
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return last_os_error(e, req.context);
  }
  return std::pair<pid_t, int>{static_cast<pid_t>(pid), owned.release()};
}
#endif

// pidfd_open is probed once: ENOSYS (old kernel) switches to the pid fallback for good.
// Takes hold of the child `c.pid` just spawned: its pidfd. With SIGCHLD ignored (or a handler
// that reaps every child) the kernel may have reaped it already and given its pid to another
// process: a pidfd that names no child of ours, or none at all, marks it gone, so that nothing
// is ever signalled or waited for by that pid. CHILDPROC_NO_PIDFD takes the path of kernels
// before 5.3 (for the tests).
inline void adopt_child_posix(native_child& c) noexcept {
#if defined(SYS_pidfd_open) && !defined(CHILDPROC_NO_PIDFD)
  static std::atomic<bool> missing{false};
  if (missing.load(std::memory_order_relaxed)) return;
  const long fd = ::syscall(SYS_pidfd_open, c.pid, 0);
  if (fd < 0) {
    if (errno == ENOSYS) missing.store(true, std::memory_order_relaxed);
    if (errno == ESRCH) c.gone = true;  // ended and reaped already
    return;
  }
  unique_handle h(static_cast<int>(fd));
  siginfo_t info{};
  int rc;
  do rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fd), &info, WEXITED | WNOHANG | WNOWAIT);
  while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno == ECHILD) {  // not our child: ours was reaped and its pid reused
    c.gone = true;
    return;
  }
  c.handle = std::move(h);  // (EINVAL: Linux 5.3 has no P_PIDFD; the pidfd still signals safely)
#else
  (void)c;
#endif
}

inline auto spawn_native(const spawn_request& req) -> result<spawned> {
  const options& o = *req.opts;
#if !defined(__linux__)
  if (o.kill_on_parent_exit)  // no parent-death signal to ask for (FreeBSD's procctl is untested here)
    return last_os_error(ENOTSUP, req.context + ": kill_on_parent_exit (Linux only on POSIX)");
#endif
  auto path = find_program_posix(req);
  if (!path) return std::move(path).error();
  if (!o.cwd.empty()) {  // checked here so the error names the directory, not only the program
    struct stat st;
    if (::stat(o.cwd.c_str(), &st) != 0) return last_os_error(errno, req.context + ": cwd " + o.cwd);
    if (!S_ISDIR(st.st_mode)) return last_os_error(ENOTDIR, req.context + ": cwd " + o.cwd);
  }
  auto plan = plan_stdio_posix(req);
  if (!plan) return std::move(plan).error();
  const auto argv = c_strings(req.argv);
  const auto envp = c_strings(req.env);
  result<pid_t> pid = pid_t{0};
  unique_handle pidfd;  // made with the child (the clone path), or -1
#if CHILDPROC_CLONE_SPAWN
  if (!clone_refused_linux.load(std::memory_order_relaxed)) {
    auto cloned = clone_exec_linux(req, *path, *plan, argv.data(), envp.data());
    if (!cloned) return std::move(cloned).error();
    pid = cloned->first;
    pidfd = unique_handle(cloned->second);
  }
#endif
  if (pid && *pid == 0) {  // elsewhere, or the clone was refused
    const bool fallback = o.uid || o.gid || o.kill_on_parent_exit || (!CHILDPROC_HAS_ADDCHDIR && !o.cwd.empty()) ||
                          (!CHILDPROC_HAS_ADDCLOSEFROM && o.close_other_fds);
    pid = fallback ? fork_exec_posix(req, *path, *plan, argv.data(), envp.data())
                   : posix_spawn_posix(req, *path, *plan, argv.data(), envp.data());
  }
  if (!pid) return std::move(pid).error();
  spawned out;
  out.child.pid = *pid;
  if (pidfd) out.child.handle = std::move(pidfd);  // names this child for certain: nothing to check
  else adopt_child_posix(out.child);
  out.stdio = std::move(plan->parent);
  return out;
}

}  // namespace childproc::inline v0::detail

#endif
