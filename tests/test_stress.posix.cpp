// Exact accounting under load: descriptors, zombies, and foreign fds in children of many threads.
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <algorithm>
#include <atomic>
#include <fcntl.h>
#include <cstdlib>
#include <sstream>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>
#include <thread>

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
