// SPDX-License-Identifier: BSL-1.0
// A tour of childproc: Node's child_process calls, in C++20. Each step prints what it runs and
// what came back, and the tour checks each result. Only POSIX tools (sh, sort, uname, tr,
// sleep) are used, and this program itself as a worker.
#include <childproc.hpp>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <string>
#include <system_error>
#include <vector>

namespace cp = childproc;
using namespace std::chrono_literals;

// A heading per step, so the output reads top to bottom.
static void step(const char* title) { std::printf("\n== %s\n", title); }

// A worker: this same program, started by fork_self("shout"). It answers each message with
// the message in capitals, until the parent disconnects (receive_sync ends with end_of_stream).
CHILDPROC_ENTRY(shout)(cp::channel& parent) {
  while (auto m = parent.receive_sync<std::string>()) {
    for (char& c : *m) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (!parent.send(*m)) return 1;
  }
  return 0;
}

// A coroutine that prints a running child's lines as they arrive, then its exit status.
static cp::task<std::vector<std::string>> follow(cp::process& p) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> lines;
  while (auto line = co_await p.out().read_line()) {  // ends with errc::end_of_stream
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    std::printf("[%4lld ms] %s\n", static_cast<long long>(ms.count()), line->c_str());
    lines.push_back(std::move(*line));
  }
  auto status = co_await p.exit();
  std::printf("-> %s\n", status ? status->to_string().c_str() : status.error().message().c_str());
  co_return lines;
}

int main(int argc, char** argv) {
  cp::dispatch_entry(argc, argv);  // in the worker started below, this runs `shout` and exits

  // exec: one command line through /bin/sh, so pipes, redirections and globs work.
  // The result is an error only if the child could not be started; its outcome is data.
  step("exec: a shell pipeline");
  auto sorted = cp::exec("printf 'pear\\napple\\nfig\\n' | sort | head -n 2");
  if (!sorted) return std::printf("error: %s\n", sorted.error().message().c_str()), 1;
  std::printf("$ %s\n%s-> %s\n", sorted->command.c_str(), sorted->out.c_str(), sorted->status.to_string().c_str());

  // exec_file: a program and its arguments, no shell: nothing is quoted or expanded.
  step("exec_file: uname -s");
  auto os = cp::exec_file("uname", {"-s"});
  if (!os) return std::printf("error: %s\n", os.error().message().c_str()), 1;
  std::printf("kernel: %s", os->out.c_str());

  // spawn_sync with .input: the bytes go to the child's stdin, which is then closed (EOF).
  step("spawn_sync with input: tr a-z A-Z");
  auto upper = cp::spawn_sync("tr", {"a-z", "A-Z"}, {.input = "hello from the parent\n"});
  if (!upper) return std::printf("error: %s\n", upper.error().message().c_str()), 1;
  std::printf("stdout: %s", upper->out.c_str());

  // .timeout: the child gets kill_signal (SIGTERM) when it runs too long; timed_out says so.
  step("spawn_sync with a timeout: sleep 5, timeout 200ms");
  const auto start = std::chrono::steady_clock::now();
  auto slow = cp::spawn_sync("sleep", {"5"}, {.timeout = 200ms});
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  if (!slow) return std::printf("error: %s\n", slow.error().message().c_str()), 1;
  std::printf("timed_out: %s, status: %s, after %lld ms\n", slow->timed_out ? "true" : "false",
              slow->status.to_string().c_str(), static_cast<long long>(took.count()));

  // A program that does not exist: an error value with Node's message, not an exception.
  step("a program that does not exist");
  auto missing = cp::exec_file("no-such-program-xyz");
  if (missing) return std::printf("unexpected: it ran\n"), 1;
  std::printf("error: %s\n", missing.error().message().c_str());
  std::printf("is ENOENT: %s\n", missing.error() == std::errc::no_such_file_or_directory ? "yes" : "no");

  // check(): a non-zero exit (or timeout, or overflow) becomes errc::command_failed with
  // Node's "Command failed" message and the tail of stderr.
  step("check() on a failing command");
  auto failing = cp::exec("echo 'disk is full' >&2; exit 3");
  if (!failing) return std::printf("error: %s\n", failing.error().message().c_str()), 1;
  std::printf("exit code: %d, ok(): %s\n", failing->status.exit_code().value_or(-1), failing->ok() ? "true" : "false");
  if (auto checked = failing->check(); !checked) std::printf("check(): %s", checked.error().message().c_str());

  // The same with exceptions: .value() throws std::system_error carrying that message.
  step("the same, with exceptions");
  try {
    cp::exec("exit 1").value().check().value();
  } catch (const std::system_error& e) {
    const std::string what = e.what();  // the message, then the code's own text
    std::printf("caught std::system_error: %s\n", what.substr(0, what.find('\n')).c_str());
  }

  // spawn: a running child; a coroutine on an event loop reads its lines while it runs.
  step("spawn + co_await read_line: a child's output, line by line as it runs");
  auto ticker = cp::spawn("sh", {"-c", "for i in 1 2 3 4; do echo tick $i; sleep 0.05; done"},
                          {.stdio = {cp::ignore, cp::pipe, cp::inherit}});
  if (!ticker) return std::printf("error: %s\n", ticker.error().message().c_str()), 1;
  const std::vector<std::string> ticks = cp::sync_wait(follow(*ticker));

  // fork_self: a worker process with a message channel (Node's fork + send + 'message').
  step("fork_self: a worker answering messages");
  auto worker = cp::fork_self("shout");
  if (!worker) return std::printf("error: %s\n", worker.error().message().c_str()), 1;
  std::vector<std::string> answers;
  for (const char* word : {"ping", "hello worker"}) {
    if (auto sent = worker->send(std::string(word)); !sent) return std::printf("error: %s\n", sent.error().message().c_str()), 1;
    auto answer = worker->receive_sync<std::string>();
    if (!answer) return std::printf("error: %s\n", answer.error().message().c_str()), 1;
    std::printf("sent \"%s\", got \"%s\"\n", word, answer->c_str());
    answers.push_back(*answer);
  }
  worker->disconnect();  // the worker's receive ends: it exits 0
  auto worker_status = worker->wait();
  std::printf("worker pid %ld -> %s\n", static_cast<long>(worker->pid()),
              worker_status ? worker_status->to_string().c_str() : worker_status.error().message().c_str());

  // The tour expects each step above to behave as shown; anything else is a failure.
  const bool as_expected = sorted->out == "apple\nfig\n" && os->ok() && !os->out.empty() &&
                           upper->out == "HELLO FROM THE PARENT\n" && slow->timed_out &&
                           missing.error() == std::errc::no_such_file_or_directory && failing->status.exit_code() == 3 &&
                           ticks == std::vector<std::string>{"tick 1", "tick 2", "tick 3", "tick 4"} &&
                           answers == std::vector<std::string>{"PING", "HELLO WORKER"} && worker_status &&
                           worker_status->exit_code() == 0;
  std::printf("\ntour %s\n", as_expected ? "done" : "FAILED");
  return as_expected ? 0 : 1;
}
