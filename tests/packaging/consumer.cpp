// A program built against an installed (or copied, or subproject) childproc: it spawns a child
// and checks what came back, so a consumer that builds but cannot run the library fails.
#include <childproc.hpp>

#include <cstdio>

int main() {
  auto r = childproc::exec_file("sh", {"-c", "echo packaged; exit 7"});
  if (!r) return std::printf("consumer: %s\n", r.error().message().c_str()), 1;
  const bool ok = r->out == "packaged\n" && r->status.exit_code() == 7;
  std::printf("consumer: %s (out \"packaged\", exit code 7)\n", ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
