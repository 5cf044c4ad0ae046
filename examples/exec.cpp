// SPDX-License-Identifier: BSL-1.0
// exec: run a command line through /bin/sh and capture what it prints (Node's exec / execSync).
// Use it when you want the shell: pipes, redirections, globs, variables. For untrusted
// arguments use exec_file instead (no shell, nothing to escape).
#include <childproc.hpp>

#include <chrono>
#include <cstdio>
#include <string>

namespace cp = childproc;
using namespace std::chrono_literals;

// Prints captured text, cut to one short line when it is long.
static void print_text(const char* name, const std::string& text) {
  if (text.empty()) return;
  if (text.size() <= 60) std::printf("  %s: %s", name, text.c_str());
  else std::printf("  %s: %.40s... (%zu bytes)\n", name, text.c_str(), text.size());
}

// Prints one outcome: the command, how it ended and what it printed.
static bool show(const char* what, const cp::result<cp::output>& r) {
  std::printf("\n-- %s\n", what);
  if (!r) {  // only "could not start it" is an error; exit codes are data
    std::printf("error: %s\n", r.error().message().c_str());
    return false;
  }
  std::printf("$ %s\n  %s%s\n", r->command.c_str(), r->status.to_string().c_str(), r->timed_out ? " (timed out)" : "");
  print_text("stdout", r->out);
  print_text("stderr", r->err);
  return true;
}

int main() {
  bool ok = true;

  // Shell syntax works: a pipeline and a command substitution.
  auto words = cp::exec("echo one two three four | wc -w | tr -d ' '");
  ok &= show("a pipeline", words) && words->out == "4\n";

  // stdout and stderr are captured separately; the exit code is in status.
  auto both = cp::exec("echo to stdout; echo to stderr >&2; exit 7");
  ok &= show("stdout, stderr and an exit code", both) && both->status.exit_code() == 7 && both->err == "to stderr\n";

  // .cwd and .env apply to the shell and so to everything it runs.
  auto where = cp::exec("echo \"$PWD says $GREETING\"",
                        {.cwd = "/", .env = cp::environment::extend({{"GREETING", "hi"}})});
  ok &= show("cwd and env", where) && where->out == "/ says hi\n";

  // .max_buffer caps each captured stream: past it the output is truncated and the child killed.
  auto big = cp::exec("head -c 100000 /dev/zero | tr '\\0' x", {.max_buffer = 1000});
  ok &= show("max_buffer 1000 on 100000 bytes", big) && big->out.size() == 1000 && big->max_buffer_exceeded == 1;
  if (big) std::printf("  max_buffer_exceeded on fd %d\n", big->max_buffer_exceeded.value_or(0));

  // .timeout: SIGTERM after 100 ms. It goes to the shell only (as in Node); `exec` makes sleep
  // replace the shell, so sleep gets it. Otherwise an orphaned sleep would hold the output pipes
  // and exec would return only after drain_timeout (1 s).
  auto slow = cp::exec("exec sleep 3", {.timeout = 100ms});
  ok &= show("timeout 100ms", slow) && slow->timed_out;

  // A missing shell is the one way exec itself fails: the message names the shell, as in Node.
  auto no_shell = cp::exec("true", {.shell = "/no/such/sh"});
  std::printf("\n-- a shell that does not exist\nerror: %s\n", no_shell ? "none?" : no_shell.error().message().c_str());
  ok &= !no_shell;

  std::printf("\nexec example %s\n", ok ? "done" : "FAILED");
  return ok ? 0 : 1;
}
