// SPDX-License-Identifier: BSL-1.0
// exec_file: run a program with an argument list, no shell, and capture its output (Node's execFile).
// Arguments reach the program exactly as given, so they need no quoting and cannot inject commands.
#include <childproc.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace cp = childproc;

int main() {
  bool ok = true;

  // Arguments are passed verbatim: spaces, '$', '*' and ';' are just characters here.
  std::printf("-- arguments, verbatim\n");
  auto args = cp::exec_file("printf", {"[%s]\\n", "two words", "$HOME", "*", "; rm -rf /"});
  if (!args) return std::printf("error: %s\n", args.error().message().c_str()), 1;
  std::printf("%s", args->out.c_str());
  ok &= args->out == "[two words]\n[$HOME]\n[*]\n[; rm -rf /]\n";

  // Any range of strings works as the argument list, e.g. one built at run time.
  std::printf("\n-- arguments from a std::vector\n");
  std::vector<std::string> files{"/", "/no/such/dir"};
  auto ls = cp::exec_file("ls", files);
  if (!ls) return std::printf("error: %s\n", ls.error().message().c_str()), 1;
  // ls lists what it can and fails on the rest: status and stderr tell which.
  std::printf("ls %s: %s\n  stdout: %zu bytes\n  stderr: %s", files[1].c_str(), ls->status.to_string().c_str(),
              ls->out.size(), ls->err.c_str());
  ok &= !ls->ok() && !ls->out.empty() && !ls->err.empty();

  // .env replace: the child sees only these variables (the PATH search uses the child's PATH).
  std::printf("\n-- a replaced environment\n");
  auto env = cp::exec_file("env", {}, {.env = cp::environment::replace({{"PATH", "/usr/bin:/bin"}, {"ONLY", "me"}})});
  if (!env) return std::printf("error: %s\n", env.error().message().c_str()), 1;
  std::printf("%s", env->out.c_str());
  ok &= env->out == "PATH=/usr/bin:/bin\nONLY=me\n";

  // .cwd: where the program runs; a missing directory is a spawn error that names it.
  std::printf("\n-- cwd\n");
  auto pwd = cp::exec_file("pwd", {}, {.cwd = "/tmp"});
  if (!pwd) return std::printf("error: %s\n", pwd.error().message().c_str()), 1;
  std::printf("pwd in /tmp: %s", pwd->out.c_str());
  auto bad_cwd = cp::exec_file("pwd", {}, {.cwd = "/no/such/dir"});
  std::printf("pwd in /no/such/dir: %s\n", bad_cwd ? "ran?" : bad_cwd.error().message().c_str());
  ok &= !bad_cwd;

  // .argv0: what the program sees as its own name (here, what sh reports as $0).
  std::printf("\n-- argv0\n");
  auto named = cp::exec_file("sh", {"-c", "echo \"\\$0 is $0\""}, {.argv0 = "my-shell"});
  if (!named) return std::printf("error: %s\n", named.error().message().c_str()), 1;
  std::printf("%s", named->out.c_str());
  ok &= named->out == "$0 is my-shell\n";

  // A file that exists but cannot be executed: EACCES, as execvp would say.
  std::printf("\n-- not executable\n");
  auto denied = cp::exec_file("/etc/passwd");
  std::printf("/etc/passwd: %s\n", denied ? "ran?" : denied.error().message().c_str());
  ok &= !denied;

  std::printf("\nexec_file example %s\n", ok ? "done" : "FAILED");
  return ok ? 0 : 1;
}
