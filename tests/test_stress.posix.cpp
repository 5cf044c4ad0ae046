// Exact accounting under load: descriptors, zombies, and foreign fds in children of many threads.
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fcntl.h>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <memory>
#include <random>
#include <string>
#include <thread>

#include <pthread.h>
#include <sched.h>  // unshare
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

TEST_CASE("sequential spawns (10,000): fds, threads and zombies unchanged, memory flat") {
  const int n = stress_count("SPAWNS", 10000);
  for (int i = 0; i < 200; ++i) REQUIRE(spawn_once(i));  // warm-up: lazily opened state, allocator pools
  const auto fds = open_fds();
  const int threads = thread_count();
  const auto rss = static_cast<long long>(resident_bytes());
  int failed = 0;
  for (int i = 0; i < n; ++i) failed += !spawn_once(i);

  CHECK(failed == 0);
  CHECK(open_fds() == fds);
  CHECK(thread_count() == threads);
  CHECK(zombie_children() == 0);
  const long long grown_kib = (static_cast<long long>(resident_bytes()) - rss) / 1024;
  MESSAGE(n << " spawns: resident memory grew by " << grown_kib << " KiB");
  if (!address_sanitizer) CHECK(grown_kib < 1024);
}

TEST_CASE("8 threads spawning 10,000 children at once: every child sees exactly 0 1 2") {
  const int threads = 8, per_thread = stress_count("THREAD_SPAWNS", 10000) / threads;
  std::atomic<int> foreign{0}, failed{0}, total{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        auto r = cp::spawn_sync(child_path(), {"fds"});
        if (!r || !r->ok()) {
          ++failed;
          continue;
        }
        ++total;
        if (r->out != "0 1 2\n") ++foreign;
      }
    });
  for (auto& t : pool) t.join();
  CHECK(failed == 0);
  CHECK(total == threads * per_thread);
  CHECK(foreign == 0);
  CHECK(zombie_children() == 0);
}

TEST_CASE("8 threads with close_other_fds off: the library's own fds never leak (CLOEXEC from birth)") {
  const int threads = 8, per_thread = stress_count("THREAD_SPAWNS", 10000) / threads / 5;
  std::atomic<int> foreign{0}, failed{0};
  const auto parent_fds = open_fds();
  std::ostringstream expected_prefix;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        auto r = cp::spawn_sync(child_path(), {"fds"}, {.close_other_fds = false});
        if (!r || !r->ok()) {
          ++failed;
          continue;
        }
        // Any fd beyond 0-2 must be one the parent had open without CLOEXEC before the test.
        std::istringstream in(r->out);
        for (int fd; in >> fd;)
          if (fd > 2 && (std::find(parent_fds.begin(), parent_fds.end(), fd) == parent_fds.end() ||
                         (fcntl(fd, F_GETFD) & FD_CLOEXEC)))
            ++foreign;
      }
    });
  for (auto& t : pool) t.join();
  CHECK(failed == 0);
  CHECK(foreign == 0);
}

TEST_CASE("1,000 children alive at once on one loop: every one reaped, nothing left") {
  const int n = stress_count("ALIVE", 1000);
  // A pidfd per child: lift the soft descriptor limit as far as the hard one allows (as Node does).
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  const rlimit old = lim;
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < static_cast<rlim_t>(n) + 64) {
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, static_cast<rlim_t>(n) + 64);
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  REQUIRE(lim.rlim_cur >= static_cast<rlim_t>(n) + 64);
  const auto fds = open_fds();
  int gate[2];
  REQUIRE(::pipe2(gate, O_CLOEXEC) == 0);
  std::vector<cp::process> kids;
  kids.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {  // each reads the one gate pipe until its end: all alive until it closes
    auto p = cp::spawn(child_path(), {"count-stdin"}, {.stdio = {cp::fd(gate[0]), cp::ignore, cp::ignore}});
    REQUIRE(p);
    kids.push_back(std::move(*p));
  }
  int running = 0;
  for (auto& k : kids) running += k.try_wait().value() == std::nullopt;
  CHECK(running == n);
  ::close(gate[0]);
  ::close(gate[1]);
  const auto statuses = exit_codes_on_one_loop(kids);
  CHECK(std::count(statuses.begin(), statuses.end(), 0) == n);
  CHECK(zombie_children() == 0);
  kids.clear();
  CHECK(open_fds() == fds);
  setrlimit(RLIMIT_NOFILE, &old);
}

// What a child must never see from its parent's signal handling, on whichever spawn path runs.
namespace {
std::atomic<long> handler_runs{0};
std::atomic<long> handler_runs_elsewhere{0};  // a handler that ran in another process (a child sharing our memory)
std::atomic<long> parent_pid{0};

extern "C" void counting_handler(int) {
  if (::syscall(SYS_getpid) == parent_pid.load()) handler_runs.fetch_add(1);
  else handler_runs_elsewhere.fetch_add(1);
}

// A handler on every signal that can have one, without SA_RESTART (calls in the library see EINTR).
std::vector<std::pair<int, struct sigaction>> handle_every_signal() {
  parent_pid = ::syscall(SYS_getpid);
  std::vector<std::pair<int, struct sigaction>> old;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction a {}, o {};
    a.sa_handler = counting_handler;
    sigemptyset(&a.sa_mask);
    if (::sigaction(sig, &a, &o) == 0) old.emplace_back(sig, o);
  }
  return old;
}

void restore(const std::vector<std::pair<int, struct sigaction>>& old) {
  for (const auto& [sig, o] : old) ::sigaction(sig, &o, nullptr);
}

const char* clean_child = "changed=none\nmask=empty\n";
}  // namespace

TEST_CASE("a parent with a handler on every signal and a full mask: the child has default dispositions and an empty mask") {
  const auto old = handle_every_signal();
  ::signal(SIGUSR2, SIG_IGN);  // ignored dispositions survive execve: they must be reset too
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t all, old_mask;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old_mask);
  for (const cp::options& o : {cp::options{}, cp::options{.uid = ::getuid()}, cp::options{.kill_on_parent_exit = true},
                               cp::options{.new_process_group = true}}) {
    auto r = cp::exec_file(child_path(), {"dispositions"}, o);
    REQUIRE(r);
    CHECK(r->out == clean_child);
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  restore(old);
  CHECK(handler_runs_elsewhere.load() == 0);
}

#ifdef __linux__
// Spawning needs no /proc (a container or chroot without it): not for the dispositions, not
// for the descriptors (close_range). A thread of its own gets a mount namespace
// (unshare(CLONE_NEWNS) is per thread: it unshares the thread's filesystem context too) with an
// empty tmpfs over /proc, and spawns from there, with handlers on every signal.
TEST_CASE("Linux, no /proc where the child runs: it still gets default dispositions and an empty mask") {
  std::string outcome;
  std::thread([&] {
    if (::unshare(CLONE_NEWNS) != 0) {
      outcome = std::string("unshare(CLONE_NEWNS): ") + std::strerror(errno);
      return;
    }
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("none", "/proc", "tmpfs", 0, nullptr) != 0) {
      outcome = std::string("mount: ") + std::strerror(errno);
      return;
    }
    if (::access("/proc/self/status", F_OK) == 0) {
      outcome = "/proc/self/status is still there";
      return;
    }
    const auto old = handle_every_signal();
    ::signal(SIGUSR2, SIG_IGN);
    for (const cp::options& o : {cp::options{}, cp::options{.uid = ::getuid()}}) {
      auto r = cp::exec_file(child_path(), {"dispositions"}, o);
      if (!r) outcome += r.error().message() + ";";
      else outcome += r->out + ";";
    }
    restore(old);
    ::signal(SIGUSR2, SIG_DFL);
  }).join();
  if (::geteuid() != 0 && outcome.rfind("unshare", 0) == 0) {
    MESSAGE("not run: a mount namespace needs root here (" << outcome << "); CI runs it as root");
    return;
  }
  CHECK(outcome == std::string(clean_child) + ";" + clean_child + ";");
  CHECK(handler_runs_elsewhere.load() == 0);
}
#endif

TEST_CASE("8 threads spawning while others malloc, fork, change handlers and signal the spawning threads") {
  const int per_thread = stress_count("SIGNAL_SPAWNS", 150);
  const auto old = handle_every_signal();
  const long runs_before = handler_runs.load();
  std::atomic<bool> done{false};
  std::vector<pthread_t> spawners(8);
  std::atomic<int> started{0}, finished{0};
  std::atomic<int> failures{0}, wrong_output{0};
  std::vector<std::string> first_error(8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      spawners[static_cast<std::size_t>(t)] = ::pthread_self();
      started.fetch_add(1);
      for (int i = 0; i < per_thread; ++i) {
        auto r = cp::exec_file(child_path(), {"dispositions"}, i % 3 == 1 ? cp::options{.uid = ::getuid()} : cp::options{});
        if (!r || !r->status.success()) {
          if (failures.fetch_add(1) == 0) first_error[static_cast<std::size_t>(t)] = r ? r->status.to_string() : r.error().message();
        } else if (r->out != clean_child) {
          wrong_output.fetch_add(1);
        }
      }
      finished.fetch_add(1);
    });
  while (started.load() < 8) std::this_thread::yield();
  std::vector<std::thread> noise(5);  // assigned, not emplaced: g++ 12 warns falsely on the first emplace_back
  std::size_t k_noise = 0;
  noise[k_noise++] = std::thread([&] {  // malloc and free, as other parts of a program do
    while (!done.load()) {
      std::vector<std::unique_ptr<char[]>> blocks;
      for (int i = 0; i < 64; ++i) blocks.emplace_back(new char[static_cast<std::size_t>(16 + i * 512)]);
    }
  });
  noise[k_noise++] = std::thread([&] {  // fork, the child exits at once
    while (!done.load()) {
      const pid_t pid = ::fork();
      if (pid == 0) ::_exit(0);
      if (pid > 0) while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {}
    }
  });
  noise[k_noise++] = std::thread([&] {  // change dispositions back and forth, to the default too where that ignores
    struct sigaction ign {}, counting {}, dfl {};
    ign.sa_handler = SIG_IGN;
    counting.sa_handler = counting_handler;
    dfl.sa_handler = SIG_DFL;
    const struct sigaction* const cycle[] = {&counting, &dfl, &ign};
    for (unsigned k = 0; !done.load(); ++k) {
      ::sigaction(SIGWINCH, cycle[k % 3], nullptr);  // SIGWINCH and SIGURG are ignored by default
      ::sigaction(SIGURG, cycle[(k + 1) % 3], nullptr);
      ::sigaction(SIGUSR2, k % 2 ? &ign : &counting, nullptr);  // never its default: that would end the test
    }
  });
  noise[k_noise++] = std::thread([&] {  // SIGWINCH and SIGURG at the children as they start, before their execve too
    while (!done.load()) {
      std::filesystem::directory_iterator tasks("/proc/self/task"), end;
      for (; tasks != end; ++tasks) {
        std::ifstream list(tasks->path() / "children");
        for (long pid; list >> pid;) {
          ::kill(static_cast<pid_t>(pid), SIGWINCH);
          ::kill(static_cast<pid_t>(pid), SIGURG);
        }
      }
    }
  });
  noise[k_noise++] = std::thread([&] {  // signals at the spawning threads
    const int sigs[] = {SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH, SIGRTMIN, SIGRTMIN + 3};
    for (unsigned k = 0; !done.load(); ++k) {
      ::pthread_kill(spawners[k % 8], sigs[k % 6]);
      if (k % 64 == 0) std::this_thread::yield();
    }
  });
  // The noise ends before the spawning threads are joined: pthread_kill on a joined thread is
  // undefined (an exited one not yet joined is fine).
  while (finished.load() < 8) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  done = true;
  for (auto& t : noise) t.join();
  for (auto& t : threads) t.join();
  restore(old);
  for (const auto& e : first_error) if (!e.empty()) MESSAGE("first failure: " << e);
  CHECK(failures.load() == 0);
  CHECK(wrong_output.load() == 0);
  CHECK(handler_runs_elsewhere.load() == 0);      // no handler ran in a child
  CHECK(handler_runs.load() - runs_before > 100);  // while the spawning threads were signalled often
  CHECK(zombie_children() == 0);
}
