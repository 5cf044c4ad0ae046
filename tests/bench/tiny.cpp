// SPDX-License-Identifier: BSL-1.0
// The child of the spawn benchmarks: starts and exits 0, so what is measured is the spawn itself.
// Linked statically where the static libc exists, so no dynamic loader time is added.
// With an argument ("wait") it first reads stdin to its end: a child that stays alive until the
// parent closes the pipe (the live-children figure of bench_many).
#include <unistd.h>

int main(int argc, char**) {
  char buf[256];
  if (argc > 1)
    while (::read(0, buf, sizeof buf) > 0) {
    }
  return 0;
}
