// The C++ side of offload.js: a worker a Node program starts with an 'ipc' channel (Node's
// fork() or spawn(..., {stdio: [..., 'ipc']})). Each message is a JSON number N; the answer is
// {"below":N,"start":S,"steps":K}: the start below N with the longest Collatz chain, worked out
// here while Node's event loop stays free.
#include <childproc.hpp>

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

namespace cp = childproc;

namespace {

// The start below n with the longest Collatz chain, and its length: CPU-heavy on purpose.
std::pair<std::uint64_t, std::uint64_t> longest_collatz(std::uint64_t n) {
  std::uint64_t best = 1, best_steps = 0;
  for (std::uint64_t start = 1; start < n; ++start) {
    std::uint64_t steps = 0;
    for (std::uint64_t x = start; x != 1; ++steps) x = x % 2 ? 3 * x + 1 : x / 2;
    if (steps > best_steps) best = start, best_steps = steps;
  }
  return {best, best_steps};
}

}  // namespace

int main() {
  cp::channel* node = cp::parent_channel();  // Node's channel (NODE_CHANNEL_FD), json framing
  if (!node) {
    std::fprintf(stderr, "collatz_worker: start me from Node with an 'ipc' channel (see offload.js)\n");
    return 2;
  }
  while (auto text = node->receive_sync<std::string>()) {  // end_of_stream when Node disconnects
    const auto [start, steps] = longest_collatz(std::stoull(*text));
    const std::string answer = "{\"below\":" + *text + ",\"start\":" + std::to_string(start) + ",\"steps\":" + std::to_string(steps) + "}";
    if (!node->send(answer)) return 1;
  }
  return 0;
}
