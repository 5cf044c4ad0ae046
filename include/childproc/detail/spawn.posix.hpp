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
  std::vector<bool> was_open(static_cast<std::size_t>(plan.count));
  for (int i = 0; i < plan.count; ++i) {
    const auto at = static_cast<std::size_t>(i);
    if (i >= 3 || (at < specs.size() && specs[at].how == stdio_spec::kind::inherit)) was_open[at] = fd_is_open(i);
  }
  for (int i = 0; i < plan.count; ++i) {
    const stdio_spec spec = static_cast<std::size_t>(i) < specs.size() ? specs[static_cast<std::size_t>(i)] : pipe;
    const std::string where = req.context + ": stdio[" + std::to_string(i) + "]";
    int source = -1;
    auto take = [&](int fd) { plan.keep.emplace_back(fd); source = fd; };
    switch (spec.how) {
      case stdio_spec::kind::pipe:
      case stdio_spec::kind::ipc: {
        auto p = spec.how == stdio_spec::kind::ipc ? create_channel_native()
                 : i < 3                           ? create_pipe_native(i == 0)
                                                   : create_duplex_native();
        if (!p) return error(p.error().code(), where + " " + p.error().context());
        plan.parent[static_cast<std::size_t>(i)] = std::move(p->parent);
        take(p->child.release());
        break;
      }
      case stdio_spec::kind::inherit:
        if (was_open[static_cast<std::size_t>(i)]) source = i;
        break;
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
      if (i >= 3 && was_open[static_cast<std::size_t>(i)]) plan.actions.push_back({-1, i});
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

// Closes every descriptor from `first` on but `keep`, in a forked child: async-signal-safe (no
// allocation, no locks). close_range where the kernel has it (5.9); else the descriptors listed
// in /proc/self/fd, read with getdents64 into the stack; else each one below the soft
// RLIMIT_NOFILE. CHILDPROC_NO_CLOSE_RANGE takes the path of older kernels (for the tests).
inline void close_from_posix(int first, int keep) noexcept {
#if defined(SYS_close_range) && !defined(CHILDPROC_NO_CLOSE_RANGE)
  if ((keep == first || keep < first || ::syscall(SYS_close_range, first, keep - 1, 0) == 0) &&
      ::syscall(SYS_close_range, keep < first ? first : keep + 1, ~0U, 0) == 0)
    return;
#endif
#if defined(SYS_getdents64)
  const int dir = ::open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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
      if (::lseek(dir, 0, SEEK_SET) != 0) break;
      for (long n; (n = ::syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0;)
        for (long at = 0; at < n;) {
          const auto* e = reinterpret_cast<const entry*>(buf + at);
          at += e->reclen;
          int fd = 0;
          const char* c = e->name;
          for (; *c >= '0' && *c <= '9'; ++c) fd = fd * 10 + (*c - '0');
          if (*c || c == e->name || fd < first || fd == keep || fd == dir) continue;  // ".", "..", kept
          ::close(fd);
          closed = true;
        }
    }
    ::close(dir);
    return;
  }
#endif
  rlimit limit{};
  const long top = ::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY
                       ? static_cast<long>(limit.rlim_cur) : 1L << 20;
  for (long fd = first; fd < top; ++fd)
    if (fd != keep) ::close(static_cast<int>(fd));
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
    for (const auto& a : plan.actions) {
      if (a.source < 0) {
        ::close(a.target);
      } else if (a.source == a.target) {
        const int flags = ::fcntl(a.source, F_GETFD);
        if (flags < 0 || ::fcntl(a.source, F_SETFD, flags & ~FD_CLOEXEC) < 0) fail(errno);
      } else if (::dup2(a.source, a.target) < 0) {
        fail(errno);
      }
    }
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
  const bool fallback = o.uid || o.gid || o.kill_on_parent_exit || (!CHILDPROC_HAS_ADDCHDIR && !o.cwd.empty()) ||
                        (!CHILDPROC_HAS_ADDCLOSEFROM && o.close_other_fds);
  auto pid = fallback ? fork_exec_posix(req, *path, *plan, argv.data(), envp.data())
                      : posix_spawn_posix(req, *path, *plan, argv.data(), envp.data());
  if (!pid) return std::move(pid).error();
  spawned out;
  out.child.pid = *pid;
  adopt_child_posix(out.child);
  out.stdio = std::move(plan->parent);
  return out;
}

}  // namespace childproc::inline v0::detail

#endif
