// Talking to real Node.js processes over Node's own IPC ('json' serialization), both ways:
// fork_node from C++, and this program as the child of a Node parent. Needs `node` in PATH.
#define DOCTEST_CONFIG_IMPLEMENT
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace {
std::string write_script(const std::string& name, const std::string& text) {
  const std::string path = (std::filesystem::temp_directory_path() / name).string();
  FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f);
  std::fputs(text.c_str(), f);
  std::fclose(f);
  return path;
}

const char* square_js = R"(
process.on('message', (m) => {
  if (typeof m.n === 'number') process.send({ sq: m.n * m.n });
  else process.send({ clean: process.env.CHILDPROC_CHANNEL === undefined && process.env.NODE_CHANNEL_FD === undefined });
});
)";
}  // namespace

// Node's fork() from C++: the sketch's own example.
TEST_CASE("fork_node: a Node worker gets JSON messages and answers them; disconnect lets it exit 0") {
  const std::string script = write_script("childproc-square.js", square_js);
  auto js = cp::fork_node(script).value();
  CHECK(js.channel().serialization() == cp::serialization::json);
  REQUIRE(js.send(R"({"n": 12})"));
  CHECK(js.receive_sync<std::string>().value() == R"({"sq":144})");
  REQUIRE(js.send(std::string(R"({"env":"?"})")));
  CHECK(js.receive_sync<std::string>().value() == R"({"clean":true})");  // no CHILDPROC_CHANNEL leaks to Node
  cp::sync_wait([&]() -> cp::task<> {  // on a loop as well
    for (int n = 1; n <= 50; ++n) REQUIRE(js.send("{\"n\":" + std::to_string(n) + "}"));
    for (int n = 1; n <= 50; ++n) {
      auto m = co_await js.receive();
      REQUIRE(m);
      CHECK(m->str() == "{\"sq\":" + std::to_string(n * n) + "}");
    }
  }());
  js.disconnect();
  auto st = js.wait().value();
  CHECK(st.exit_code() == 0);
  std::remove(script.c_str());
}

TEST_CASE("send refuses what would kill the Node peer (not one JSON text, or Node's own cmd): nothing is written") {
  const std::string script = write_script("childproc-square2.js", square_js);
  auto js = cp::fork_node(script).value();
  struct bad_case {
    std::string text, words;
  };
  const bad_case cases[] = {
      {"", "empty (no JSON value) (at byte 0)"},
      {"{", "not valid JSON (at byte 1)"},
      {"1 2", "more than one JSON value (at byte 2)"},
      {"{\n}", "a raw line feed (Node reads one message per line) (at byte 1)"},
      {"\"\xff\"", "not valid UTF-8 (at byte 1)"},
      {"{'a':1}", "not valid JSON (at byte 1)"},
  };
  for (const auto& c : cases) {
    auto r = js.send(c.text);
    REQUIRE(!r);
    CHECK(r.error() == cp::errc::invalid_argument);
    CHECK(r.error().message() == "send: a message to a Node process must be one JSON text; this one is " + c.words);
  }
  auto own = js.send(R"({"cmd":"NODE_HANDLE_ACK"})");
  REQUIRE(!own);
  CHECK(own.error().message() == "send: a \"cmd\" starting with NODE_ marks Node's own messages; this one is refused");
  REQUIRE(js.send(R"({"n":3})"));  // the peer saw none of the above and is alive
  CHECK(js.receive_sync<std::string>().value() == R"({"sq":9})");
  js.disconnect();
  CHECK(js.wait()->exit_code() == 0);
  std::remove(script.c_str());
}

TEST_CASE("Node's own messages from the peer are not delivered; the user's around them are, in order") {
  const std::string script = write_script("childproc-internal.js", R"(
process.send({ a: 1 });
process.send({ cmd: 'NODE_FAKE_INTERNAL', x: 2 });
process.send({ cmd: 'NODE_', b: 3 });
process.send({ c: 4 });
process.on('message', () => {});
)");
  auto js = cp::fork_node(script).value();
  CHECK(js.receive_sync<std::string>().value() == R"({"a":1})");
  CHECK(js.receive_sync<std::string>().value() == R"({"cmd":"NODE_","b":3})");  // "NODE_" alone is not Node's
  CHECK(js.receive_sync<std::string>().value() == R"({"c":4})");
  js.disconnect();
  CHECK(js.wait()->exit_code() == 0);
  std::remove(script.c_str());
}

TEST_CASE("fork_node: the binary named by exec_path, and clear errors") {
  auto missing = cp::fork_node("x.js", {}, {.exec_path = "/nonexistent/node"});
  REQUIRE(!missing);
  CHECK(missing.error().message() == "spawn /nonexistent/node ENOENT");
  auto advanced = cp::fork("node", {"x.js"}, {.serialization = cp::serialization::advanced});
  REQUIRE(!advanced);
  CHECK(advanced.error() == std::errc::not_supported);
  CHECK(advanced.error().message() == "spawn node: serialization 'advanced' (V8's format) is not supported; use json ENOTSUP");
  // fork with json, for a node started another way: here through sh
  const std::string script = write_script("childproc-square3.js", square_js);
  auto viash = cp::fork("sh", {"-c", "exec node \"$0\"", script}, {.serialization = cp::serialization::json}).value();
  REQUIRE(viash.send(R"({"n":5})"));
  CHECK(viash.receive_sync<std::string>().value() == R"({"sq":25})");
  viash.disconnect();
  CHECK(viash.wait()->exit_code() == 0);
  std::remove(script.c_str());
}

// This program as the child of a Node parent: parent_channel() finds Node's channel.
CHILDPROC_ENTRY(node_square)(cp::channel& parent) {
  const bool clean = parent.serialization() == cp::serialization::json && !std::getenv("NODE_CHANNEL_FD") &&
                     !std::getenv("NODE_CHANNEL_SERIALIZATION_MODE") && !std::getenv("CHILDPROC_CHANNEL");
  auto m = parent.receive_sync<std::string>();
  if (!m) return 3;
  if (!parent.send("{\"got\":" + *m + ",\"clean\":" + (clean ? "true" : "false") + "}")) return 4;
  return parent.receive_sync().error() == cp::errc::end_of_stream ? 0 : 5;  // Node disconnected
}

CHILDPROC_ENTRY(node_advanced)(cp::channel& parent) {
  auto m = parent.receive_sync();
  if (m || m.error() != std::errc::not_supported) return 3;
  std::fprintf(stderr, "%s\n", m.error().message().c_str());
  return parent.send(std::string("{}")).error() == std::errc::not_supported ? 0 : 4;
}

TEST_CASE("a Node parent spawns this program with 'ipc': parent_channel() speaks json, and takes the variables away") {
  const std::string script = write_script("childproc-node-parent2.js", R"(
const { spawn } = require('child_process');
const c = spawn(process.argv[2], [], { stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
                                       env: { ...process.env, CHILDPROC_ENTRY: 'node_square' } });
c.on('message', (m) => { console.log(JSON.stringify(m)); c.disconnect(); });
c.on('exit', (code) => console.log('exit ' + code));
c.send({ n: 7, s: 'caf\u00e9' });
)");
  const std::string self = cp::detail::self_exe_native({}).value();
  auto out = cp::exec_file("node", {script, self}).value();
  CHECK(out.err == "");
  CHECK(out.out == "{\"got\":{\"n\":7,\"s\":\"caf\xc3\xa9\"},\"clean\":true}\nexit 0\n");
  std::remove(script.c_str());
}

TEST_CASE("a Node parent with serialization 'advanced': the child's channel says ENOTSUP, naming the mode") {
  const std::string script = write_script("childproc-node-advanced.js", R"(
const { spawn } = require('child_process');
const c = spawn(process.argv[2], [], { stdio: ['inherit', 'inherit', 'pipe', 'ipc'], serialization: 'advanced',
                                       env: { ...process.env, CHILDPROC_ENTRY: 'node_advanced' } });
let err = '';
c.stderr.on('data', (d) => { err += d; });
c.on('exit', (code) => { console.log(err.trim()); console.log('exit ' + code); process.exit(0); });
)");
  const std::string self = cp::detail::self_exe_native({}).value();
  auto out = cp::exec_file("node", {script, self}).value();
  CHECK(out.out == "receive: Node's 'advanced' serialization (V8's format) is not supported; start the Node side with "
                   "serialization: 'json' ENOTSUP\nexit 0\n");
  std::remove(script.c_str());
}

int main(int argc, char** argv) {
  cp::dispatch_entry(argc, argv);  // a child started by Node (or fork_self) runs its entry point here
  doctest::Context context(argc, argv);
  return context.run();
}
