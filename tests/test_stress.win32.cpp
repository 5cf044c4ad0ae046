// Exact accounting on Win32: the process's handle count after many spawns, and threads spawning at once.
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <algorithm>
#include <cstdint>
#include <atomic>
#include <thread>
#include <vector>

// The process's open handles, counted by probing every handle value up to 65536 (Wine's
// GetProcessHandleCount always says 0, so it cannot show a leak there).
static DWORD handle_count() {
  DWORD n = 0, flags = 0;
  for (std::uintptr_t h = 4; h < 65536; h += 4) n += GetHandleInformation(reinterpret_cast<HANDLE>(h), &flags) != 0;
  return n;
}

// The open Event handles. The thread pool behind RegisterWaitForSingleObject (exit waits) keeps
// one thread per 63 waits, and under Wine each has an Event of its own that stays after its waits
// end: seen as the "one handle more" these tests met under load (NtQueryObject named its type).
// So Events may grow by one per 63 concurrent waits; every other handle must come back exactly.
static DWORD event_count() {
  using query_fn = LONG(NTAPI*)(HANDLE, int, void*, ULONG, ULONG*);
  static const auto query = reinterpret_cast<query_fn>(reinterpret_cast<void*>(GetProcAddress(GetModuleHandleA("ntdll.dll"), "NtQueryObject")));
  DWORD n = 0, flags = 0;
  for (std::uintptr_t h = 4; h < 65536; h += 4) {
    if (!GetHandleInformation(reinterpret_cast<HANDLE>(h), &flags)) continue;
    alignas(8) unsigned char info[512];
    ULONG len = 0;
    if (!query || query(reinterpret_cast<HANDLE>(h), 2 /* ObjectTypeInformation */, info, sizeof info, &len) != 0) continue;
    const auto* name = reinterpret_cast<const std::uint16_t*>(*reinterpret_cast<void* const*>(info + sizeof(void*)));
    const std::size_t chars = *reinterpret_cast<const unsigned short*>(info) / 2;  // UNICODE_STRING: Length, then Buffer
    n += chars == 5 && name[0] == 'E' && name[1] == 'v' && name[2] == 'e' && name[3] == 'n' && name[4] == 't';
  }
  return n;
}

TEST_CASE("sequential spawns (300 under Wine, where a process start costs ~10 ms): no handle leaks per spawn") {
  (void)cp::spawn_sync(child_path(), {"exit", "0"});  // warm-up: the thread pool behind exit waits
  {  // and the process-wide completion port every loop's reads go through (one handle, for good)
    auto p = cp::spawn(child_path(), {"write-out", "10"}, {.stdio = {cp::ignore, cp::pipe, cp::ignore}}).value();
    REQUIRE(cp::sync_wait(p.out().async_read_all()).value().size() == 10);
    REQUIRE(p.wait());
  }
  for (int i = 0; i < 20; ++i) REQUIRE(spawn_once(i));
  const DWORD before = handle_count(), events_before = event_count();
  REQUIRE(before > 3);  // the probe sees handles at all (stdio, the exe's sections, ...)
  const int n = stress_count("SPAWNS", 300);
  for (int i = 0; i < n; ++i) REQUIRE(spawn_once(i));
  const DWORD events = event_count() - events_before;
  CHECK(events <= 1);  // one wait at a time: at most one more thread-pool wait thread's Event
  CHECK(handle_count() - events == before);  // every other handle came back: none leaks per spawn
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

TEST_CASE("children alive at once on one loop (200 under Wine): every one waited for, no handle left") {
  const int n = stress_count("ALIVE", 200);
  HANDLE read = nullptr, write = nullptr;
  REQUIRE(CreatePipe(&read, &write, nullptr, 0));
  const DWORD before = handle_count(), events_before = event_count();
  std::vector<cp::process> kids;
  for (int i = 0; i < n; ++i) {  // each reads the one gate pipe until its end: all alive until it closes
    auto p = cp::spawn(child_path(), {"count-stdin"}, {.stdio = {cp::fd(read), cp::ignore, cp::ignore}});
    REQUIRE(p);
    kids.push_back(std::move(*p));
  }
  int running = 0;
  for (auto& k : kids) running += k.try_wait().value() == std::nullopt;
  CHECK(running == n);
  CloseHandle(write);
  const auto statuses = exit_codes_on_one_loop(kids);
  CHECK(std::count(statuses.begin(), statuses.end(), 0) == n);
  kids.clear();
  CloseHandle(read);
  const DWORD events = event_count() - events_before;
  CHECK(events <= static_cast<DWORD>((n + 62) / 63));  // the thread pool's wait threads, one Event each
  CHECK(handle_count() - events + 2 == before);  // the gate's two ends were counted in `before`
}
