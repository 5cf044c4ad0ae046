// Request/response with a forked child program (examples/fork_child.cpp): Node's
// `const c = fork('child.js'); c.send(x); c.on('message', ...)`.
#include <childproc.hpp>

#include <cstdio>
#include <string>

namespace cp = childproc;

int main(int argc, char** argv) {
  // fork_child sits next to this program.
  std::string self = argc > 0 ? argv[0] : "fork_parent";
  const auto slash = self.find_last_of("/\\");
  const std::string dir = slash == std::string::npos ? "." : self.substr(0, slash);
  auto child = cp::fork(dir + "/fork_child");
  if (!child) {
    std::printf("%s\n", child.error().message().c_str());
    return 1;
  }
  auto talk = [&]() -> cp::task<int> {
    for (const char* request : {"upper:hello, child", "len:twelve chars", "what?"}) {
      if (auto s = child->send(request); !s) co_return 1;
      auto reply = co_await child->receive<std::string>();
      if (!reply) co_return 1;
      std::printf("%-20s -> %s\n", request, reply->c_str());
    }
    co_return 0;
  };
  const int rc = cp::sync_wait(talk());
  child->disconnect();  // the child's receive ends and it exits
  auto st = child->wait();
  std::printf("child %s\n", st ? st->to_string().c_str() : st.error().message().c_str());
  return rc || !st || !st->success();
}
