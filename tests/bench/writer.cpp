// SPDX-License-Identifier: BSL-1.0
// The child of the streaming benchmark: writes N bytes to stdout as fast as write(2) allows
// ("lines N": N bytes of 32-byte lines instead), from one static buffer, then exits 0.
#include <cstdlib>
#include <cstring>
#include <unistd.h>

static char chunk[1 << 20];

int main(int argc, char** argv) {
  const bool lines = argc > 2 && std::strcmp(argv[1], "lines") == 0;
  long long left = argc > 1 ? std::atoll(argv[argc - 1]) : 0;
  std::memset(chunk, 'x', sizeof chunk);
  if (lines)
    for (std::size_t i = 31; i < sizeof chunk; i += 32) chunk[i] = '\n';
  while (left > 0) {
    const ssize_t n = ::write(1, chunk, static_cast<std::size_t>(left < static_cast<long long>(sizeof chunk) ? left : sizeof chunk));
    if (n <= 0) return 1;
    left -= n;
  }
  return 0;
}
