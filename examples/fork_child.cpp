// The child of fork_parent: answers each request ("upper:<text>" or "len:<text>") until the
// parent disconnects. Started by fork(), it finds its channel with parent_channel().
#include <childproc.hpp>

#include <cctype>
#include <cstdio>
#include <string>

namespace cp = childproc;

int main() {
  cp::channel* parent = cp::parent_channel();
  if (!parent) {
    std::fprintf(stderr, "fork_child: start me with cp::fork (no channel to a parent)\n");
    return 2;
  }
  while (auto request = parent->receive_sync<std::string>()) {
    std::string reply;
    if (request->rfind("upper:", 0) == 0) {
      for (char c : request->substr(6)) reply += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    } else if (request->rfind("len:", 0) == 0) {
      reply = std::to_string(request->size() - 4);
    } else {
      reply = "error: unknown request";
    }
    if (!parent->send(reply)) return 1;
  }
  return 0;  // end_of_stream: the parent disconnected (or died)
}
