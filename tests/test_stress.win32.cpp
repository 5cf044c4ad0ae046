// Exact accounting on Win32: the process's handle count after many spawns, and threads spawning at once.
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <atomic>
#include <thread>

static DWORD handle_count() {
  DWORD n = 0;
  GetProcessHandleCount(GetCurrentProcess(), &n);
  return n;
}

TEST_CASE("300 sequential spawns: the handle count is unchanged") {
  (void)cp::spawn_sync(child_path(), {"exit", "0"});  // warm-up: the thread pool behind exit waits
  const DWORD before = handle_count();
  for (int i = 0; i < 300; ++i) REQUIRE(spawn_once(i));

  CHECK(handle_count() == before);
}

TEST_CASE("8 threads spawning at once: every child gets its own pipes and output") {
  constexpr int threads = 8, per_thread = 10;
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        const std::string mark = std::to_string(t) + ":" + std::to_string(i);
        auto r = cp::spawn_sync(child_path(), {"echo"}, {.input = mark});
        if (!r || !r->ok()) ++failed;
        else if (r->out != mark) ++wrong;
      }
    });
  for (auto& t : pool) t.join();
  CHECK(failed == 0);
  CHECK(wrong == 0);
}

TEST_CASE("an existing handle as stdout, windows_hide and a new process group") {
  SECURITY_ATTRIBUTES sa{sizeof sa, nullptr, FALSE};
  HANDLE read_end = nullptr, write_end = nullptr;
  REQUIRE(CreatePipe(&read_end, &write_end, &sa, 0));
  auto r = cp::spawn(child_path(), {"print-then-sleep", "via handle", "0"},
                     {.stdio = {cp::ignore, cp::fd(write_end), cp::inherit}, .new_process_group = true, .windows_hide = true});
  REQUIRE(r);
  CHECK(r->wait()->success());
  CloseHandle(write_end);  // the parent keeps its own: spawn duplicated it
  char buf[32] = {};
  DWORD n = 0;
  REQUIRE(ReadFile(read_end, buf, sizeof buf, &n, nullptr));
  CHECK(std::string(buf, n) == "via handle");
  CloseHandle(read_end);
}

TEST_CASE("a bad handle in stdio is EBADF naming the entry") {
  auto r = cp::spawn(child_path(), {"exit", "0"}, {.stdio = {cp::ignore, cp::fd(INVALID_HANDLE_VALUE), cp::inherit}});
  REQUIRE(!r);
  CHECK(r.error() == std::errc::bad_file_descriptor);
  CHECK(r.error().message() == "spawn " + child_path() + ": stdio[1] handle EBADF");
}
