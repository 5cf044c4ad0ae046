// Streams a long-running command line by line, stamping each line with the time it arrived:
// the coroutine form of Node's `child.stdout.on('data')` + readline.
#include <childproc.hpp>

#include <chrono>
#include <cstdio>

namespace cp = childproc;

static cp::task<int> stream(cp::process& p) {
  const auto t0 = std::chrono::steady_clock::now();
  int lines = 0;
  // read_line yields result<std::string>: the loop ends at errc::end_of_stream (or an error).
  while (auto line = co_await p.out().read_line()) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    std::printf("[%5lld ms] %s\n", static_cast<long long>(ms.count()), line->c_str());
    ++lines;
  }
  auto status = co_await p.exit();  // Node's 'exit'; the stream above already reached its end ('close')
  std::printf("%d lines, %s\n", lines, status ? status->to_string().c_str() : status.error().message().c_str());
  co_return lines;
}

int main() {
  // One line every 100 ms: each is printed as it comes, not when the command ends.
  auto p = cp::spawn("sh", {"-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done"},
                     {.stdio = {cp::ignore, cp::pipe, cp::inherit}});
  if (!p) {
    std::printf("%s\n", p.error().message().c_str());
    return 1;
  }
  return cp::sync_wait(stream(*p)) == 5 ? 0 : 1;
}
