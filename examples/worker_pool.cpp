// A pool of worker processes made by fork_self (one per hardware thread), counting primes in
// ranges handed out over their channels, while the parent's loop prints a heartbeat. Then the
// same work done in the parent alone, for comparison. Node's cluster/fork pattern, in C++.
#include <childproc.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

namespace cp = childproc;
using namespace std::chrono_literals;

namespace {

struct job {
  std::uint64_t from, to;  // [from, to)
};

std::uint64_t count_primes(job j) {
  std::uint64_t n = 0;
  for (std::uint64_t x = std::max<std::uint64_t>(j.from, 2); x < j.to; ++x) {
    bool prime = true;
    for (std::uint64_t d = 2; d * d <= x; ++d)
      if (x % d == 0) {
        prime = false;
        break;
      }
    n += prime;
  }
  return n;
}

}  // namespace

// The worker: runs in a child of this same program, started by fork_self("primes").
CHILDPROC_ENTRY(primes)(cp::channel& parent) {
  while (auto j = parent.receive_sync<job>()) {  // ends with end_of_stream when the parent disconnects
    if (!parent.send(count_primes(*j))) return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  cp::dispatch_entry(argc, argv);  // in a worker, this runs `primes` and exits

  constexpr std::uint64_t limit = 4'000'000, chunk = 50'000;
  std::vector<job> jobs;
  for (std::uint64_t f = 0; f < limit; f += chunk) jobs.push_back({f, std::min(f + chunk, limit)});
  const unsigned n = std::max(1u, std::thread::hardware_concurrency());

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<cp::process> workers;
  for (unsigned i = 0; i < n; ++i) {
    auto w = cp::fork_self("primes");
    if (!w) {
      std::printf("%s\n", w.error().message().c_str());
      return 1;
    }
    workers.push_back(std::move(*w));
  }

  std::size_t next = 0, done = 0;
  std::uint64_t total = 0;
  auto serve = [&](cp::process& w) -> cp::task<bool> {
    while (next < jobs.size()) {
      if (!w.send(jobs[next++])) co_return false;
      auto r = co_await w.receive<std::uint64_t>();
      if (!r) co_return false;
      total += *r;
      ++done;
    }
    w.disconnect();  // the worker's receive ends: it exits 0
    co_return true;
  };
  auto heartbeat = [&]() -> cp::task<bool> {
    while (done < jobs.size()) {
      (void)co_await cp::event_loop::current()->sleep(100ms);
      std::printf("heartbeat: %zu of %zu ranges done\n", done, jobs.size());
    }
    co_return true;
  };
  std::vector<cp::task<bool>> tasks;
  for (auto& w : workers) tasks.push_back(serve(w));
  tasks.push_back(heartbeat());
  const auto ok = cp::sync_wait(cp::when_all(std::move(tasks)));
  for (auto& w : workers)
    if (!w.wait().value().success()) return 1;
  const auto pooled = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const auto t1 = std::chrono::steady_clock::now();
  std::uint64_t alone = 0;
  for (const auto& j : jobs) alone += count_primes(j);
  const auto serial = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();

  std::printf("%llu primes below %llu: %u workers %.2f s, the parent alone %.2f s (%.1fx)\n",
              static_cast<unsigned long long>(total), static_cast<unsigned long long>(limit), n, pooled, serial,
              serial / pooled);
  return std::all_of(ok.begin(), ok.end(), [](bool b) { return b; }) && total == alone ? 0 : 1;
}
