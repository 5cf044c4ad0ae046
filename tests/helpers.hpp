// Shared by the test files: where the helper child is, and process-wide accounting.
#ifndef CHILDPROC_TESTS_HELPERS_HPP
#define CHILDPROC_TESTS_HELPERS_HPP

#include <childproc.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <csignal>
#if defined(_WIN32)
#  include <windows.h>
#  include <psapi.h>  // K32GetProcessMemoryInfo
#else
#  include <dirent.h>
#  include <poll.h>
#  include <unistd.h>
#endif

#ifndef SIGKILL
#  define SIGKILL 9  // Win32: kill() takes the POSIX numbers it emulates
#endif

namespace cp = childproc;

/// The test child built by meson (tests/child/child.cpp).
inline std::string child_path() {
  const char* p = std::getenv("CHILDPROC_TEST_CHILD");
  std::string path = p ? p : "child";
#if defined(_WIN32)
  if (!path.empty() && path[0] == '/') path = "Z:" + path;  // Wine: meson gives a Unix path
  for (char& c : path)
    if (c == '/') c = '\\';
#endif
  return path;
}

/// Sets a variable of this process (inherited by children that inherit the environment).
inline void set_env(const char* name, const char* value) {
#if defined(_WIN32)
  _putenv_s(name, value);
  SetEnvironmentVariableA(name, value);
#else
  setenv(name, value, 1);
#endif
}

/// Writes `text` to a file of that name in the temporary directory: its path, or "" if it failed.
inline std::string write_temp_file(const std::string& name, const std::string& text) {
  const std::string path = (std::filesystem::temp_directory_path() / name).string();
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) return {};
  const bool ok = std::fputs(text.c_str(), f) >= 0;
  return std::fclose(f) == 0 && ok ? path : std::string();
}

/// The child's argument list for a mode: {mode, args...}.
inline std::vector<std::string> mode(std::initializer_list<std::string> words) { return words; }

/// Each word followed by a NUL byte: what the child's `args` and `env-all` modes print.
inline std::string nul_joined(std::initializer_list<std::string> words) {
  std::string s;
  for (const auto& w : words) (s += w) += '\0';
  return s;
}

/// Whether this build runs under AddressSanitizer (its quarantine holds freed memory, so resident
/// memory grows by design and memory bounds are reported, not checked).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool address_sanitizer = true;
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
inline constexpr bool address_sanitizer = true;
#  else
inline constexpr bool address_sanitizer = false;
#  endif
#else
inline constexpr bool address_sanitizer = false;
#endif

/// How many times a stress test repeats: `normal` (what CI's main build runs); a fifth of it with
/// CHILDPROC_STRESS_SHORT set (CI's sanitizer and extra-reactor builds); CHILDPROC_STRESS_<name>
/// sets it outright (the long runs the README documents, such as 100,000 spawns).
inline int stress_count(const char* name, int normal) {
  if (const char* v = std::getenv((std::string("CHILDPROC_STRESS_") + name).c_str())) return std::atoi(v);
  return std::getenv("CHILDPROC_STRESS_SHORT") ? normal / 5 : normal;
}

/// Spawn number `i` of a sequential stress run: spawn_sync and spawn + wait in turn, statuses checked.
inline bool spawn_once(int i) {
  if (i % 2 == 0) {
    auto r = cp::spawn_sync(child_path(), {"exit", std::to_string(i % 7)});
    return r && r->status.exit_code() == i % 7;
  }
  auto p = cp::spawn(child_path(), {"exit", "0"}, {.stdio = {cp::pipe, cp::pipe, cp::ignore}});
  return p && p->wait() && p->status()->success();
}

/// Awaits every child's exit at once on one event loop: the exit codes in order (-1 for an error).
inline std::vector<int> exit_codes_on_one_loop(std::vector<cp::process>& kids) {
  return cp::sync_wait([&]() -> cp::task<std::vector<int>> {
    std::vector<cp::task<int>> waits;
    for (auto& k : kids)
      waits.push_back([](cp::process& p) -> cp::task<int> {
        auto st = co_await p.exit();
        co_return st ? st->exit_code().value_or(-1) : -1;
      }(k));
    co_return co_await cp::when_all(std::move(waits));
  }());
}

#if defined(_WIN32)
/// Whether a process still runs.
inline bool pid_exists(unsigned long pid) {
  HANDLE h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | SYNCHRONIZE, FALSE, pid);
  if (!h) return false;
  const bool running = WaitForSingleObject(h, 0) == WAIT_TIMEOUT;
  CloseHandle(h);
  return running;
}
#else
/// The descriptors this process has open, from /proc/self/fd.
inline std::vector<int> open_fds() {
  std::vector<int> fds;
  DIR* d = opendir("/proc/self/fd");
  const int own = dirfd(d);
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.' && std::atoi(e->d_name) != own) fds.push_back(std::atoi(e->d_name));
  closedir(d);
  return fds;
}

/// Children of this process that are zombies, from /proc/*/stat.
inline int zombie_children() {
  int zombies = 0;
  const std::string me = std::to_string(getpid());
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::string path = std::string("/proc/") + e->d_name + "/stat";
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) continue;
    char buf[512] = {};
    const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    std::string s(buf, n);
    const auto close = s.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(s.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && state == 'Z' &&
        std::to_string(ppid) == me)
      ++zombies;
  }
  closedir(d);
  return zombies;
}

/// The threads of this process, from /proc/self/task.
inline int thread_count() {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/// Whether a pid still exists (running or zombie).
inline bool pid_exists(int pid) { return ::kill(pid, 0) == 0; }

/// Writes `text` on a socket in one sendmsg, with `fd` attached (SCM_RIGHTS) unless it is -1,
/// waiting while the socket is full: what a peer that passes descriptors by hand does.
inline bool send_with_fd(int sock, const std::string& text, int fd) {
  for (;;) {
    auto n = cp::detail::try_send_posix(sock, text, fd);
    if (n) return *n == text.size();
    if (n.error().value() != EAGAIN) return false;
    pollfd p{sock, POLLOUT, 0};
    ::poll(&p, 1, -1);
  }
}
#endif

/// This process's resident memory in bytes (working set on Win32).
inline std::size_t resident_bytes() {
#if defined(_WIN32)
  PROCESS_MEMORY_COUNTERS pmc{};
  pmc.cb = sizeof pmc;
  return K32GetProcessMemoryInfo(GetCurrentProcess(), &pmc, sizeof pmc) ? pmc.WorkingSetSize : 0;
#else
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return static_cast<std::size_t>(resident) * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
#endif
}

/// The most memory a child has had resident so far (VmHWM; the peak working set on Win32), 0 if unknown.
inline std::size_t peak_resident_bytes(const cp::process& p) {
#if defined(_WIN32)
  PROCESS_MEMORY_COUNTERS pmc{};
  pmc.cb = sizeof pmc;
  return K32GetProcessMemoryInfo(p.handle(), &pmc, sizeof pmc) ? pmc.PeakWorkingSetSize : 0;
#else
  FILE* f = std::fopen(("/proc/" + std::to_string(p.pid()) + "/status").c_str(), "r");
  if (!f) return 0;
  char line[256];
  std::size_t kib = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "VmHWM: %zu kB", &kib) == 1) break;
  std::fclose(f);
  return kib * 1024;
#endif
}

#endif
