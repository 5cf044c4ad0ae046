// Runs 50 commands with at most 4 at once on one event loop, printing a progress line as each
// finishes, while a heartbeat shows the loop stays responsive: no threads involved.
#include <childproc.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace cp = childproc;
using namespace std::chrono_literals;

struct job_state {
  int next = 0;      // the next command to start
  int done = 0;      // commands finished
  int failed = 0;
  bool finished = false;
};

// One of the N workers: takes the next command until none is left.
static cp::task<> worker(job_state& s, int total) {
  while (s.next < total) {
    const int id = s.next++;
    auto p = cp::spawn("sh", {"-c", "sleep 0.0" + std::to_string(id % 10) + "; echo job " + std::to_string(id)},
                       {.stdio = {cp::ignore, cp::pipe, cp::inherit}});
    if (!p) {
      ++s.failed;
      continue;
    }
    auto out = co_await p->out().async_read_all();
    auto status = co_await p->exit();
    ++s.done;
    if (!out || !status || !status->success()) ++s.failed;
    std::printf("[%2d/%d] %s", s.done, total, out ? out->c_str() : "(no output)\n");
  }
}

static cp::task<> heartbeat(job_state& s) {
  int beats = 0;
  while (!s.finished) {
    (void)co_await cp::event_loop::current()->sleep(100ms);
    if (!s.finished) std::printf("  . heartbeat %d (%d running)\n", ++beats, s.next - s.done);
  }
}

static cp::task<> run_all(job_state& s, int total, int parallel) {
  std::vector<cp::task<>> workers;
  for (int i = 0; i < parallel; ++i) workers.push_back(worker(s, total));
  co_await cp::when_all(std::move(workers));
  s.finished = true;
}

int main() {
  job_state s;
  const auto t0 = std::chrono::steady_clock::now();
  cp::sync_wait(cp::when_all(run_all(s, 50, 4), heartbeat(s)));
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  std::printf("%d commands, %d failed, %lld ms\n", s.done, s.failed, static_cast<long long>(ms.count()));
  return s.done == 50 && s.failed == 0 ? 0 : 1;
}
