// SPDX-License-Identifier: BSL-1.0
// spawn: start a child and talk to it while it runs (Node's spawn). The process object owns the
// child: wait for it, poll it, signal it. Its stdin/stdout/stderr are streams you read and write.
#include <childproc.hpp>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>

namespace cp = childproc;
using namespace std::chrono_literals;

// Prints an error and makes main fail.
static int fail(const char* what, const cp::error& e) {
  std::printf("%s: %s\n", what, e.message().c_str());
  return 1;
}

int main() {
  // 1. Pipes both ways: write to tr's stdin, close it (EOF), then read its stdout to the end.
  //    The stdout pipe holds 64 KiB, so for small data writing everything first cannot block.
  std::printf("-- pipes: tr a-z A-Z\n");
  auto tr = cp::spawn("tr", {"a-z", "A-Z"});
  if (!tr) return fail("spawn", tr.error());
  std::printf("started tr, pid %d\n", static_cast<int>(tr->pid()));
  if (auto w = tr->in().write("streams are plain bytes\n"); !w) return fail("write", w.error());
  tr->in().close();
  auto text = tr->out().read_all();
  if (!text) return fail("read", text.error());
  auto tr_status = tr->wait();
  if (!tr_status) return fail("wait", tr_status.error());
  std::printf("read back: %sstatus: %s\n", text->c_str(), tr_status->to_string().c_str());

  // 2. Reading as output arrives: read_some returns each chunk, end_of_stream at the end.
  std::printf("\n-- reading chunks as they come\n");
  auto ticker = cp::spawn("sh", {"-c", "for i in 1 2 3; do echo tick $i; sleep 0.05; done"});
  if (!ticker) return fail("spawn", ticker.error());
  std::array<char, 256> buf;
  for (;;) {
    auto n = ticker->out().read_some(buf);
    if (!n) {
      if (n.error() == cp::errc::end_of_stream) break;
      return fail("read", n.error());
    }
    std::printf("chunk of %zu bytes: %.*s", *n, static_cast<int>(*n), buf.data());
  }
  auto ticker_status = ticker->wait();
  if (!ticker_status) return fail("wait", ticker_status.error());

  // 3. A long-running child: poll it, wait with a limit, then kill it. Its stdio goes to
  //    /dev/null (cp::ignore) because nobody reads it.
  std::printf("\n-- killing a sleep\n");
  auto sleeper = cp::spawn("sleep", {"30"}, {.stdio = {cp::ignore, cp::ignore, cp::ignore}});
  if (!sleeper) return fail("spawn", sleeper.error());
  auto polled = sleeper->try_wait();
  if (!polled) return fail("try_wait", polled.error());
  std::printf("try_wait: %s\n", *polled ? "ended?" : "still running");
  auto waited = sleeper->wait_for(100ms);
  if (!waited) return fail("wait_for", waited.error());
  std::printf("wait_for(100ms): %s\n", *waited ? "ended?" : "still running");
  if (auto k = sleeper->kill(); !k) return fail("kill", k.error());  // SIGTERM by default
  auto sleeper_status = sleeper->wait();
  if (!sleeper_status) return fail("wait", sleeper_status.error());
  std::printf("after kill(): %s (signal %d)\n", sleeper_status->to_string().c_str(),
              sleeper_status->signal().value_or(0));
  // Once reaped, its pid may be reused: kill refuses rather than signal a stranger.
  auto again = sleeper->kill();
  std::printf("kill() again: %s\n", again ? "sent?" : again.error().message().c_str());

  // 4. Inheriting the parent's stdout: the child writes straight to our terminal or log.
  std::printf("\n-- inherited stdout\n");
  std::fflush(stdout);  // our buffered text first, then the child's
  auto echo = cp::spawn("echo", {"this line comes from the child"}, {.stdio = {cp::ignore, cp::inherit, cp::inherit}});
  if (!echo) return fail("spawn", echo.error());
  auto echo_status = echo->wait();
  if (!echo_status) return fail("wait", echo_status.error());

  // A process object that goes out of scope with its child still running kills and reaps it,
  // so no zombie is left behind. detach() is the way to let a child outlive its object.
  const bool ok = *text == "STREAMS ARE PLAIN BYTES\n" && tr_status->success() && ticker_status->success() &&
                  sleeper_status->signal() == SIGTERM && !again && echo_status->success();
  std::printf("\nspawn example %s\n", ok ? "done" : "FAILED");
  return ok ? 0 : 1;
}
