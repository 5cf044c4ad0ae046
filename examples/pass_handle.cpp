// Passing a handle with a message: Node's `child.send(message, sendHandle)`. The parent makes
// one pipe and hands its write end to three workers (fork_self); they write their results
// straight into it, and the parent reads one merged stream without relaying any of it.
// The same works for files and sockets (SCM_RIGHTS on POSIX, DuplicateHandle or
// WSADuplicateSocketW on Win32).
#include <childproc.hpp>

#include <algorithm>  // std::count
#include <cstdio>
#include <string>
#include <vector>

namespace cp = childproc;

// A worker: takes the pipe that comes with the first message and writes its lines into it.
CHILDPROC_ENTRY(writer)(cp::channel& parent) {
  auto job = parent.receive_sync();
  if (!job || !job->has_handle()) return 1;
  cp::stream out(job->take_handle());  // ours now: closed when `out` goes
  const std::string name = job->str();
  for (int i = 1; i <= 3; ++i) {
    const std::string line = name + ": line " + std::to_string(i) + "\n";  // short writes to a pipe are atomic
    if (!out.write(line)) return 2;
  }
  return 0;
}

int main(int argc, char** argv) {
  cp::dispatch_entry(argc, argv);  // in a worker, runs `writer` and exits

  auto pipe = cp::make_pipe();
  if (!pipe) {
    std::printf("%s\n", pipe.error().message().c_str());
    return 1;
  }
  std::vector<cp::process> workers;
  for (int i = 1; i <= 3; ++i) {
    auto w = cp::fork_self("writer");
    if (!w) {
      std::printf("%s\n", w.error().message().c_str());
      return 1;
    }
    if (auto sent = w->send("worker " + std::to_string(i), pipe->write.handle()); !sent) {
      std::printf("%s\n", sent.error().message().c_str());
      return 1;
    }
    workers.push_back(std::move(*w));
  }
  pipe->write.close();  // now only the workers hold write ends: the stream ends when they are done

  auto all = pipe->read.read_all();
  if (!all) {
    std::printf("%s\n", all.error().message().c_str());
    return 1;
  }
  std::printf("%s", all->c_str());
  int failed = 0;
  for (auto& w : workers) {
    auto st = w.wait();
    failed += !st || !st->success();
  }
  const auto lines = std::count(all->begin(), all->end(), '\n');
  std::printf("%d lines from %zu workers, %d failed\n", static_cast<int>(lines), workers.size(), failed);
  return failed != 0 || lines != 9;
}
