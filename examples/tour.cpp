// SPDX-License-Identifier: BSL-1.0
// A tour of childproc: Node's child_process calls, in C++20. Each step prints what it runs and
// what came back. Only POSIX tools (sh, sort, uname, tr, sleep) are used.
#include <childproc.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <system_error>

namespace cp = childproc;
using namespace std::chrono_literals;

// A heading per step, so the output reads top to bottom.
static void step(const char* title) { std::printf("\n== %s\n", title); }

int main() {
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

  // The tour expects each step above to behave as shown; anything else is a failure.
  const bool as_expected = sorted->ok() && os->ok() && upper->out == "HELLO FROM THE PARENT\n" && slow->timed_out &&
                           failing->status.exit_code() == 3;
  std::printf("\ntour %s\n", as_expected ? "done" : "FAILED");
  return as_expected ? 0 : 1;
}
