// Exact accounting under load: descriptors, zombies, and foreign fds in children of many threads.
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <algorithm>
#include <atomic>
#include <fcntl.h>
#include <cstdlib>
#include <sstream>
#include <thread>

TEST_CASE("2,000 sequential spawns: the parent's fd count is unchanged and no zombie is left") {
  (void)cp::spawn_sync(child_path(), {"exit", "0"});  // warm-up: lazily opened state, if any
  const auto before = open_fds();
  for (int i = 0; i < 2000; ++i) REQUIRE(spawn_once(i));

  CHECK(open_fds() == before);
  CHECK(zombie_children() == 0);
}

TEST_CASE("8 threads spawning at once: every child sees exactly 0 1 2") {
  constexpr int threads = 8, per_thread = 40;
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
  constexpr int threads = 8, per_thread = 40;
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
