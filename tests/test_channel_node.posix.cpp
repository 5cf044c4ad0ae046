// Talking to real Node.js processes over Node's own IPC ('json' serialization), both ways:
// fork_node from C++, and this program as the child of a Node parent. Needs `node` in PATH.
#define DOCTEST_CONFIG_IMPLEMENT
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <fcntl.h>
#include <grp.h>  // setgroups
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>  // setrlimit
#include <sys/socket.h>
#include <unistd.h>
#include <system_error>
#include <thread>

namespace {
std::string write_script(const std::string& name, const std::string& text) {
  std::string path = write_temp_file(name, text);
  REQUIRE(!path.empty());
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

namespace {
// Random texts near JSON: a random value (strings with escapes, multi-byte UTF-8, "cmd" keys and
// NODE_ values), then up to three byte edits from an alphabet of JSON's own characters, stray
// control bytes and broken UTF-8. Seeded: CHILDPROC_TEST_SEED repeats or varies a run.
struct json_mutator {
  std::mt19937 rng;
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }
  void ws(std::string& s) {
    static const char* const w[] = {"", "", "", " ", "\t", "\r", "  "};
    s += w[pick(7)];
  }
  void str(std::string& s, bool node) {
    if (node && pick(2) == 0) {
      static const char* const cmds[] = {"\"NODE_HANDLE\"", "\"NODE_HANDLE\"", "\"NODE_SOCKET_GET_COUNT\"", "\"NODE_SOCKET_NOTIFY_CLOSE\""};
      return (void)(s += cmds[pick(4)]);
    }
    s += node ? "\"NODE_" : "\"";
    for (int i = pick(6); i > 0; --i) {
      static const char* const parts[] = {"a", "Z", "_", "\\n", "\\\"", "\\\\", "\\/", "\\u004e", "\\ud83d", "\xc3\xa9", "\xf0\x9f\x98\x80", "NODE_", "cmd"};
      s += parts[pick(13)];
    }
    s += '"';
  }
  void value(std::string& s, int depth) {
    ws(s);
    switch (depth > 3 ? pick(4) : pick(7)) {
      case 0: {
        static const char* const nums[] = {"0", "-1", "3.25", "1e9", "-0.5E-3", "12345678901234567890", "1E+2"};
        s += nums[pick(7)];
        break;
      }
      case 1: s += pick(3) == 0 ? "true" : pick(2) ? "false" : "null"; break;
      case 2: str(s, false); break;
      case 3: str(s, true); break;
      case 4:
        s += '[';
        for (int i = pick(4); i > 0; --i) {
          value(s, depth + 1);
          if (i > 1) s += ',';
        }
        s += ']';
        break;
      default:
        s += '{';
        for (int i = pick(4); i > 0; --i) {
          ws(s);
          const int k = pick(4);
          if (k < 3) s += k == 1 ? "\"cmd\"" : k == 2 ? "\"key\"" : "\"msg\"";
          else str(s, false);
          ws(s);
          s += ':';
          if (k == 1 && pick(2)) str(s, true);  // a "cmd" of Node's, often
          else value(s, depth + 1);
          if (i > 1) s += ',';
        }
        s += '}';
    }
    ws(s);
  }
  std::string text() {
    std::string s;
    value(s, 0);
    static const std::string alphabet = [] {
      std::string a = "{}[]\":,-+.0123456789eEtrufalsn\\/ \t\r\nNODE_cmd\x7f\xc3\xa9\xff\xed\xa0\x80\xef\xbb\xbf\x01";
      a += '\0';
      return a;
    }();
    for (int m = pick(4); m > 0; --m) {
      const std::size_t at = static_cast<std::size_t>(pick(static_cast<int>(s.size()) + 1));
      const char c = alphabet[static_cast<std::size_t>(pick(static_cast<int>(alphabet.size())))];
      switch (pick(4)) {
        case 0: s.insert(at, 1, c); break;
        case 1: if (at < s.size()) s.erase(at, 1); break;
        case 2: if (at < s.size()) s[at] = c; break;
        default: s.insert(at, s.substr(at / 2, static_cast<std::size_t>(pick(6))));
      }
    }
    return s;
  }
};

std::string hex(const std::string& s) {
  static const char* const digits = "0123456789abcdef";
  std::string h;
  for (unsigned char c : s) (h += digits[c >> 4]) += digits[c & 15];
  return h;
}

unsigned test_seed() {
  const char* s = std::getenv("CHILDPROC_TEST_SEED");
  return s ? static_cast<unsigned>(std::strtoul(s, nullptr, 10)) : 20261201u;
}
}  // namespace

// The check against JSON.parse itself, on 20,000 random texts: where Node parses a text (valid
// UTF-8, no raw line feed) the check passes it, and where Node throws the check refuses it; Node's
// own messages, NODE_HANDLE among them, are told apart the same way, and the text the check finds
// for the member "msg" parses to what JSON.parse gives for it. Then every text the check passes
// goes to a real Node peer over the channel, which survives them all and counts them.
TEST_CASE("the JSON check agrees with JSON.parse on 20,000 random texts, and a Node peer survives every text it passes") {
  const unsigned seed = test_seed();
  INFO("CHILDPROC_TEST_SEED=" << seed);
  json_mutator gen{std::mt19937(seed)};
  // Each line: the text, and the "msg" and "key" members the check found in it ("-": none).
  std::vector<std::string> texts;
  std::string input;
  for (int i = 0; i < 20000; ++i) {
    texts.push_back(gen.text());
    const auto v = cp::detail::check_json_message(texts.back());
    ((input += hex(texts.back())) += ' ') += v.has_msg ? hex(texts.back().substr(v.msg_at, v.msg_size)) : "-";
    (input += ' ') += v.has_key ? hex(texts.back().substr(v.key_at, v.key_size)) : "-";
    input += '\n';
  }
  const std::string judge = write_script("childproc-json-judge.js", R"(
const out = [];
require('readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const [h, sub, keysub] = line.split(' ');
  const buf = Buffer.from(h, 'hex');
  const text = buf.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(buf)) return out.push('utf8');
  let m;
  try { m = JSON.parse(text); } catch (e) { return out.push('bad'); }
  const object = m !== null && typeof m === 'object';
  const internal = object && typeof m.cmd === 'string' && m.cmd.length > 5 && m.cmd.slice(0, 5) === 'NODE_';
  const member = (name, found) => {  // the check's member against JSON.parse's
    if (object && !Array.isArray(m) && Object.prototype.hasOwnProperty.call(m, name)) {
      try { return JSON.stringify(JSON.parse(Buffer.from(found, 'hex').toString('utf8'))) === JSON.stringify(m[name]) ? 'same' : 'differs'; }
      catch (e) { return 'differs'; }
    }
    return found !== '-' ? 'extra' : 'none';
  };
  const cmd = !internal ? '-' : m.cmd === 'NODE_HANDLE' ? 'handle' : m.cmd === 'NODE_SOCKET_GET_COUNT' ? 'count'
            : m.cmd === 'NODE_SOCKET_NOTIFY_CLOSE' ? 'close' : '-';
  out.push((internal ? 'internal' : 'ok') + ' ' + cmd + ' ' + member('msg', sub) + ' ' + member('key', keysub));
}).on('close', () => process.stdout.write(out.join('\n') + '\n'));
)");
  auto verdicts = cp::exec_file("node", {judge}, {.input = input}).value();
  REQUIRE(verdicts.ok());
  std::vector<std::string> node;
  for (std::size_t at = 0, nl; (nl = verdicts.out.find('\n', at)) != std::string::npos; at = nl + 1)
    node.push_back(verdicts.out.substr(at, nl - at));
  REQUIRE(node.size() == texts.size());
  int passed = 0, handles = 0, sockets = 0, msgs = 0, keys = 0, counts[4] = {};
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const auto v = cp::detail::check_json_message(texts[i]);
    const bool ok = v.what == cp::detail::json_verdict::kind::ok;
    INFO("text #" << i << " (hex " << hex(texts[i]) << "): Node says " << node[i]);
    if (node[i] == "utf8") {
      CHECK(!ok);
      ++counts[0];
    } else if (texts[i].find('\n') != std::string::npos) {
      CHECK(!ok);
      ++counts[1];
    } else if (node[i] == "bad") {
      CHECK(!ok);
      ++counts[2];
    } else {
      REQUIRE(ok);
      const char* cmd = v.handle ? " handle" : v.get_count ? " count" : v.notify_close ? " close" : " -";
      const std::string words = std::string(v.internal ? "internal" : "ok") + cmd + (v.has_msg ? " same" : " none") + (v.has_key ? " same" : " none");
      CHECK(node[i] == words);
      handles += v.handle;
      sockets += v.get_count || v.notify_close;
      msgs += v.has_msg;
      keys += v.has_key;
      ++counts[3];
    }
    passed += ok && !v.internal;
  }
  MESSAGE("seed " << seed << ": " << counts[0] << " not UTF-8, " << counts[1] << " with a line feed, " << counts[2]
                  << " JSON.parse refused, " << counts[3] << " JSON.parse took (" << handles << " NODE_HANDLE, " << sockets
                  << " NODE_SOCKET_GET_COUNT or NOTIFY_CLOSE, " << msgs << " with \"msg\", " << keys << " with \"key\"); "
                  << passed << " sendable");
  CHECK(counts[2] > 1000);  // the mix reaches both sides of the check
  CHECK(counts[3] > 1000);
  CHECK(counts[3] - passed > 50);  // and Node's own messages among what JSON.parse took,
  CHECK(handles > 50);             // handle messages among them (about 90 a seed),
  CHECK(sockets > 40);             // a server's requests (about 90),
  CHECK(msgs > 500);               // and members "msg" and "key" whose text is checked
  CHECK(keys > 500);
  std::remove(judge.c_str());

  const std::string counter = write_script("childproc-json-counter.js", R"(
let n = 0;
process.on('message', (m) => { if (m === 'count?') process.send(n); else ++n; });
)");
  auto js = cp::fork_node(counter).value();
  int sent = 0;
  for (const auto& t : texts)
    if (js.send(t)) ++sent;
  CHECK(sent == passed);
  REQUIRE(js.send(std::string("\"count?\"")));
  CHECK(js.receive_sync<std::string>().value() == std::to_string(passed));
  js.disconnect();
  CHECK(js.wait()->exit_code() == 0);
  std::remove(counter.c_str());
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

// Node's lifecycle. A peer that ends with messages of ours unread resets the socket: the reader
// takes that as the end (Node does), and a send afterwards is refused (EPIPE), nothing raised.
TEST_CASE("a Node peer that exits with messages unread: end_of_stream, not ECONNRESET; a later send says EPIPE") {
  const std::string flag = (std::filesystem::temp_directory_path() / "childproc-node-unread.flag").string();
  const std::string script = write_script("childproc-node-unread.js", R"(
const fs = require('fs');
while (!fs.existsSync(process.argv[2])) {}  // busy, so the channel is never read
process.exit(3);
)");
  for (const bool on_loop : {false, true}) {
    CAPTURE(on_loop);
    std::remove(flag.c_str());
    auto js = cp::fork_node(script, {flag}).value();
    for (int i = 0; i < 10; ++i) REQUIRE(js.send("{\"i\":" + std::to_string(i) + "}"));
    REQUIRE(js.channel().flush());  // all in the socket before Node may exit
    REQUIRE(!write_temp_file("childproc-node-unread.flag", "").empty());
    CHECK(js.wait()->exit_code() == 3);
    if (on_loop) {
      cp::sync_wait([&]() -> cp::task<> {
        auto m = co_await js.receive();
        REQUIRE(!m);
        CHECK(m.error() == cp::errc::end_of_stream);
      }());
    } else {
      auto m = js.receive_sync();
      REQUIRE(!m);
      CHECK(m.error() == cp::errc::end_of_stream);
    }
    auto late = js.send(std::string("{}"));
    REQUIRE(!late);
    CHECK(late.error() == std::errc::broken_pipe);
    CHECK(late.error().message() == "send EPIPE");
    CHECK(js.receive_sync().error() == std::errc::broken_pipe);  // from now on, the first failure says why
  }
  std::remove(flag.c_str());
  std::remove(script.c_str());
}

CHILDPROC_ENTRY(node_bye)(cp::channel& parent) {
  if (!parent.send(std::string("{\"bye\":1}"))) return 3;
  parent.disconnect();
  auto late = parent.send(std::string("{}"));
  if (late) return 4;
  while (std::fgetc(stdin) != EOF) {}  // the Node parent closes stdin once it saw the disconnect
  std::printf("child: %s\n", late.error().message().c_str());
  return 0;
}

TEST_CASE("disconnect from a C++ child: the Node parent gets the message, then 'disconnect', then the exit") {
  const std::string script = write_script("childproc-node-bye.js", R"(
const { spawn } = require('child_process');
const c = spawn(process.argv[2], [], { stdio: ['pipe', 'inherit', 'inherit', 'ipc'],
                                       env: { ...process.env, CHILDPROC_ENTRY: 'node_bye' } });
c.on('message', (m) => console.log('message ' + JSON.stringify(m)));
c.on('disconnect', () => { console.log('disconnect, connected=' + c.connected); c.stdin.end(); });
c.on('exit', (code) => console.log('exit ' + code));
)");
  const std::string self = cp::detail::self_exe_native({}).value();
  auto out = cp::exec_file("node", {script, self}).value();
  CHECK(out.err == "");
  CHECK(out.out == "message {\"bye\":1}\ndisconnect, connected=false\nchild: send: the channel is closed\nexit 0\n");
  std::remove(script.c_str());
}

TEST_CASE("disconnect from C++: the Node child gets 'disconnect', its sends fail, and it exits by itself") {
  const std::string script = write_script("childproc-node-left.js", R"(
process.on('message', (m) => {
  process.send({ got: m });
});
process.on('disconnect', () => {
  console.log('disconnect, connected=' + process.connected);
  process.send({ late: 1 }, (e) => console.log(e ? e.code : 'sent'));
});
)");
  auto js = cp::fork_node(script, {}, {.stdio = {cp::inherit, cp::pipe, cp::inherit, cp::ipc}}).value();
  REQUIRE(js.send(R"({"x":1})"));
  CHECK(js.receive_sync<std::string>().value() == R"({"got":{"x":1}})");
  js.disconnect();
  CHECK(js.out().read_all().value() == "disconnect, connected=false\nERR_IPC_CHANNEL_CLOSED\n");
  CHECK(js.wait()->exit_code() == 0);
  std::remove(script.c_str());
}

namespace {
// A json channel whose peer is the test, playing Node on the other end of a socket pair.
struct played_node {
  std::size_t fds_before = open_fds().size();
  cp::detail::pipe_pair pair = cp::detail::create_duplex_native().value();
  cp::channel ch{cp::stream(std::move(pair.parent)), cp::default_max_message_size, cp::serialization::json};
  int node = pair.child.get();
  // Both ends closed: every descriptor the test received or sent is closed too.
  void end() {
    ch.disconnect();
    pair.child.reset();
    CHECK(open_fds().size() == fds_before);
  }
};

// The read end of a pipe that holds `text`, its write end closed.
cp::stream pipe_holding(const char* text) {
  auto p = cp::make_pipe().value();
  REQUIRE(p.write.write(text));
  p.write.close();
  return std::move(p.read);
}

// One read, once there is something (descriptors from Node are non-blocking); "" after 30 s.
std::string read_once(int sock) {
  pollfd p{sock, POLLIN, 0};
  if (::poll(&p, 1, 30000) != 1) return {};
  char buf[4096];
  const ssize_t n = ::read(sock, buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}
}  // namespace

// Node's handle protocol, spoken by a test playing Node on a socket pair: a NODE_HANDLE line
// with a descriptor is the user's "msg" with that handle, and is acknowledged; one without a
// descriptor is not delivered and gets a NACK (Node sends it again); a descriptor that came with
// an ordinary line is closed; Node's other internal messages are skipped.
TEST_CASE_FIXTURE(played_node, "NODE_HANDLE from a Node peer: msg and handle delivered, ACK sent; no descriptor: NACK; strays closed") {
  cp::stream p = pipe_holding("through the pipe");
  const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(devnull >= 0);

  // Without a descriptor: NACK, and the line is not the user's.
  REQUIRE(send_with_fd(node, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"n\":1}}\n{\"plain\":0}\n", -1));
  CHECK(ch.receive_sync<std::string>().value() == R"({"plain":0})");
  CHECK(read_once(node) == "{\"cmd\":\"NODE_HANDLE_NACK\"}\n");
  // Node sends it again, this time with the descriptor: the message and its handle; ACK.
  REQUIRE(send_with_fd(node, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"n\":1}}\n", p.handle()));
  auto m = ch.receive_sync().value();
  CHECK(m.str() == R"({"n":1})");
  auto h = m.take_handle();
  REQUIRE(h);
  CHECK(cp::stream(std::move(h)).read_all().value() == "through the pipe");
  CHECK(read_once(node) == "{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
  // A descriptor with an ordinary line, and Node's other bookkeeping (unanswered): neither reaches the user.
  REQUIRE(send_with_fd(node, "{\"stray\":true}\n", devnull));
  REQUIRE(send_with_fd(node, "{\"cmd\":\"NODE_SOCKET_ALL_CLOSED\",\"key\":\"k\"}\n{\"cmd\":\"NODE_HANDLE\",\"msg\":\"no type\"}\n", devnull));
  auto stray = ch.receive_sync().value();
  CHECK(stray.str() == R"({"stray":true})");
  CHECK(!stray.take_handle());
  auto typeless = ch.receive_sync().value();
  CHECK(typeless.str() == R"("no type")");
  CHECK(typeless.take_handle());  // closes as it goes
  CHECK(read_once(node) == "{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
  // The same on a loop: the ACK goes out from the loop's writer.
  REQUIRE(send_with_fd(node, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":[2]}\n", devnull));
  cp::sync_wait([&]() -> cp::task<> {
    auto lm = co_await ch.receive();
    REQUIRE(lm);
    CHECK(lm->str() == "[2]");
    CHECK(lm->take_handle());
  }());
  CHECK(read_once(node) == "{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
  ::close(devnull);
  p.close();
  end();
}

// What Node needs of a sender, checked on the bytes: the read that brings a NODE_HANDLE's
// descriptor ends that line (Node pairs the last descriptor read with the next line that ends).
// A descriptor that comes with any byte of a NODE_HANDLE line is its handle. A NACK (Node's read
// lost the descriptor and dropped the message) is told by the next send, once.
TEST_CASE_FIXTURE(played_node, "NODE_HANDLE to a Node peer, played by hand: the descriptor ends its line; one with any byte of a line is taken; a NACK fails the next send") {
  cp::stream p = pipe_holding("through the pipe");
  const std::string big(200000, 'x');
  const std::string line = "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"big\":\"" + big + "\"}}\n";
  std::string got;
  std::vector<std::size_t> fd_ends;  // how many bytes had arrived when each descriptor came
  int fd_got = -1;
  std::thread peer([&] {  // reads as Node does: 64 KiB at a time, with room for descriptors
    while (got.size() < line.size()) {
      std::vector<cp::unique_handle> fds;
      char buf[65536];
      auto n = cp::detail::try_recv_posix(node, {buf, sizeof buf}, &fds);
      if (!n) {
        if (n.error().value() != EAGAIN) return;
        pollfd w{node, POLLIN, 0};
        ::poll(&w, 1, 30000);
        continue;
      }
      if (*n == 0) return;
      got.append(buf, *n);
      for (auto& f : fds) {
        fd_ends.push_back(got.size());
        fd_got = f.release();
      }
    }
  });
  REQUIRE(ch.send("{\"big\":\"" + big + "\"}", p.handle()));
  peer.join();
  p.close();
  CHECK(got == line);
  CHECK(fd_ends == std::vector<std::size_t>{line.size()});
  REQUIRE(fd_got >= 0);
  CHECK(cp::stream(cp::unique_handle(fd_got)).read_all().value() == "through the pipe");

  // Receiving: a descriptor with the line's last byte, or with one in its middle.
  const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(devnull >= 0);
  const std::string head = "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":";
  REQUIRE(send_with_fd(node, head + "[1]}", -1));
  REQUIRE(send_with_fd(node, "\n", devnull));
  REQUIRE(send_with_fd(node, head, -1));
  REQUIRE(send_with_fd(node, "[2", devnull));
  REQUIRE(send_with_fd(node, "]}\n", -1));
  for (const char* want : {"[1]", "[2]"}) {
    auto m = ch.receive_sync().value();
    CHECK(m.str() == want);
    CHECK(m.take_handle());
  }
  CHECK(read_once(node) == "{\"cmd\":\"NODE_HANDLE_ACK\"}\n{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
  // A descriptor whose read ended past a line is not that line's: the line without one of its
  // own is NACKed (and not delivered); the next, whose descriptor it is, gets it.
  REQUIRE(send_with_fd(node, head + "[3]", -1));
  REQUIRE(send_with_fd(node, "}\n" + head + "[4]}\n", devnull));
  auto fourth = ch.receive_sync().value();
  CHECK(fourth.str() == "[4]");
  CHECK(fourth.take_handle());
  CHECK(read_once(node) == "{\"cmd\":\"NODE_HANDLE_NACK\"}\n{\"cmd\":\"NODE_HANDLE_ACK\"}\n");

  // Node's NACK: the next send fails, naming it, and writes nothing; the one after goes.
  REQUIRE(send_with_fd(node, "{\"cmd\":\"NODE_HANDLE_NACK\"}\n{\"cmd\":\"NODE_HANDLE_NACK\"}\n{\"after\":1}\n", -1));
  CHECK(ch.receive_sync<std::string>().value() == R"({"after":1})");
  auto refused = ch.send(std::string("1"));
  REQUIRE(!refused);
  CHECK(refused.error() == std::errc::protocol_error);
  CHECK(refused.error().message() == "send: the Node peer did not get the descriptor of 2 earlier handle sends (it answered "
                                     "NODE_HANDLE_NACK and dropped the message); this message was not sent EPROTO");
  REQUIRE(ch.send(std::string("2")));
  CHECK(read_once(node) == "2\n");
  ::close(devnull);
  end();
}

// A Node server that sent us its connections asks how many are still open here
// (server.getConnections()) and, closing, to be told when none is (server.close()): answered
// as Node's own workers do, counting the descriptors the user has not closed.
TEST_CASE_FIXTURE(played_node, "a Node server's accounting, played by hand: NODE_SOCKET_COUNT counts what the user holds; ALL_CLOSED when none is") {
  auto conn = [&](const char* key) {  // Node sends one of its server's connections
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    REQUIRE(send_with_fd(node, std::string("{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":\"c\",\"key\":") + key + "}\n", sv[0]));
    ::close(sv[0]);
    ::close(sv[1]);
    auto m = ch.receive_sync().value();
    CHECK(m.str() == R"("c")");
    CHECK(read_once(node) == "{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
    return m.take_handle();
  };
  auto ask = [&](const std::string& line) {  // a request, then a message for receive to return
    REQUIRE(send_with_fd(node, line + "\n{\"next\":1}\n", -1));
    CHECK(ch.receive_sync<std::string>().value() == R"({"next":1})");
    return read_once(node);
  };
  auto a1 = conn(R"("4:127.0.0.1:80")");
  auto a2 = conn(R"("4:127.0.0.1:80")");
  auto b1 = conn(R"("b\"\\")");
  CHECK(ask(R"({"cmd":"NODE_SOCKET_GET_COUNT","key":"4:127.0.0.1:80"})") == "{\"cmd\":\"NODE_SOCKET_COUNT\",\"key\":\"4:127.0.0.1:80\",\"count\":2}\n");
  CHECK(ask(R"({"cmd":"NODE_SOCKET_GET_COUNT","key":"b\"\\"})") == "{\"cmd\":\"NODE_SOCKET_COUNT\",\"key\":\"b\\\"\\\\\",\"count\":1}\n");
  CHECK(ask(R"({"cmd":"NODE_SOCKET_GET_COUNT","key":"never sent"})") == "{\"cmd\":\"NODE_SOCKET_COUNT\",\"key\":\"never sent\",\"count\":0}\n");
  // Closed by the user: not counted, even when its number comes back on something else.
  const int a1_number = a1.get();
  a1.reset();
  const int other = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(other == a1_number);
  CHECK(ask(R"({"cmd":"NODE_SOCKET_GET_COUNT","key":"4:127.0.0.1:80"})") == "{\"cmd\":\"NODE_SOCKET_COUNT\",\"key\":\"4:127.0.0.1:80\",\"count\":1}\n");
  ::close(other);
  // Nothing open for b once b1 closes: ALL_CLOSED at once.
  b1.reset();
  CHECK(ask(R"({"cmd":"NODE_SOCKET_NOTIFY_CLOSE","key":"b\"\\"})") == "{\"cmd\":\"NODE_SOCKET_ALL_CLOSED\",\"key\":\"b\\\"\\\\\"}\n");
  // a2 still open: no answer yet (a request without a key has none either)...
  REQUIRE(send_with_fd(node, "{\"cmd\":\"NODE_SOCKET_NOTIFY_CLOSE\",\"key\":\"4:127.0.0.1:80\"}\n{\"cmd\":\"NODE_SOCKET_GET_COUNT\"}\n{\"next\":2}\n", -1));
  CHECK(ch.receive_sync<std::string>().value() == R"({"next":2})");
  pollfd pf{node, POLLIN, 0};
  CHECK(::poll(&pf, 1, 100) == 0);
  // ...until it closes, by another thread, while this one waits in receive_sync: the wait looks again.
  std::thread closer([&] {
    ::usleep(100 * 1000);
    a2.reset();
  });
  std::thread peer([&] {
    const std::string got = read_once(node);
    (void)send_with_fd(node, "{\"seen\":" + std::string(got == "{\"cmd\":\"NODE_SOCKET_ALL_CLOSED\",\"key\":\"4:127.0.0.1:80\"}\n" ? "true" : "false") + "}\n", -1);
  });
  CHECK(ch.receive_sync<std::string>().value() == R"({"seen":true})");
  closer.join();
  peer.join();
  // On a loop: the request is taken by a receive() while the connection is open; closed, the
  // answer leaves with the next send, ahead of it.
  auto c1 = conn(R"("loop")");
  REQUIRE(send_with_fd(node, "{\"cmd\":\"NODE_SOCKET_NOTIFY_CLOSE\",\"key\":\"loop\"}\n{\"next\":3}\n", -1));
  std::optional<cp::event_loop> loop(std::in_place);  // its own descriptors close before the count below
  loop->run([&]() -> cp::task<> {
    auto m = co_await ch.receive<std::string>();
    CHECK((m && *m == R"({"next":3})"));
    pollfd none{node, POLLIN, 0};
    CHECK(::poll(&none, 1, 50) == 0);  // not yet: c1 is open
    c1.reset();
    CHECK(ch.send(std::string(R"({"after":1})")));
  }());
  loop.reset();
  std::string got;
  while (got.find("{\"after\":1}\n") == std::string::npos) {
    const std::string more = read_once(node);
    if (more.empty()) break;
    got += more;
  }
  CHECK(got == "{\"cmd\":\"NODE_SOCKET_ALL_CLOSED\",\"key\":\"loop\"}\n{\"after\":1}\n");
  // A co_await receive() that waits on a loop looks again every 20 ms, as receive_sync does: a
  // stop the caller asks for ends it (cancelled) while the connection stays open, then another
  // thread closes the connection while it waits, ALL_CLOSED goes, and the peer's reply to
  // that ends the wait. A loop destroyed while such a wait is pending ends it cancelled.
  auto c2 = conn(R"("loop2")");
  REQUIRE(send_with_fd(node, "{\"cmd\":\"NODE_SOCKET_NOTIFY_CLOSE\",\"key\":\"loop2\"}\n", -1));
  loop.emplace();
  std::stop_source asked;
  std::thread stopper([&] {
    ::usleep(150 * 1000);  // past several looks
    asked.request_stop();
  });
  loop->run([](cp::channel& ch, std::stop_token stop) -> cp::task<> {
    auto m = co_await ch.receive<std::string>(stop);
    CHECK((!m && m.error() == cp::errc::cancelled));
  }(ch, asked.get_token()));
  stopper.join();
  pollfd quiet{node, POLLIN, 0};
  CHECK(::poll(&quiet, 1, 0) == 0);  // c2 still open: nothing was answered
  std::thread closer2([&] {
    ::usleep(100 * 1000);
    c2.reset();
  });
  std::thread peer2([&] {
    const std::string seen = read_once(node);
    (void)send_with_fd(node, "{\"seen\":" + std::string(seen == "{\"cmd\":\"NODE_SOCKET_ALL_CLOSED\",\"key\":\"loop2\"}\n" ? "true" : "false") + "}\n", -1);
  });
  loop->run([](cp::channel& ch) -> cp::task<> {
    auto m = co_await ch.receive<std::string>();
    CHECK((m && *m == R"({"seen":true})"));
  }(ch));
  closer2.join();
  peer2.join();
  auto c3 = conn(R"("loop3")");
  REQUIRE(send_with_fd(node, "{\"cmd\":\"NODE_SOCKET_NOTIFY_CLOSE\",\"key\":\"loop3\"}\n{\"next\":4}\n", -1));
  CHECK(ch.receive_sync<std::string>().value() == R"({"next":4})");
  auto ended = std::make_shared<std::optional<cp::result<std::string>>>();
  loop->run([](cp::channel& ch, std::shared_ptr<std::optional<cp::result<std::string>>> ended) -> cp::task<> {
    // The receive loses the race and waits on, its look armed, when run returns.
    auto r = co_await cp::when_any(
        [](cp::channel& ch, std::shared_ptr<std::optional<cp::result<std::string>>> ended) -> cp::task<> {
          ended->emplace(co_await ch.receive<std::string>());
        }(ch, ended),
        []() -> cp::task<> { (void)co_await cp::event_loop::current()->sleep(std::chrono::milliseconds(70)); }());
    CHECK(r.index == 1);
  }(ch, ended));
  CHECK(!ended->has_value());
  loop.reset();
  REQUIRE(ended->has_value());
  CHECK((!**ended && (**ended).error() == cp::errc::cancelled));
  c3.reset();
  CHECK(ch.send(std::string("5")));  // the answer leaves with the next send, ahead of it
  std::string last;
  while (last.find("5\n") == std::string::npos) {
    const std::string more = read_once(node);
    if (more.empty()) break;
    last += more;
  }
  CHECK(last == "{\"cmd\":\"NODE_SOCKET_ALL_CLOSED\",\"key\":\"loop3\"}\n5\n");
  // The same socket back at a number the kernel gave again (Node's keepOpen send), and keys that
  // Node's `if (message.key)` would not count.
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  auto again = [&] {
    REQUIRE(send_with_fd(node, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":0,\"key\":\"same\"}\n", sv[0]));
    auto m = ch.receive_sync().value();
    CHECK(read_once(node) == "{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
    return m.take_handle();
  };
  auto first = again();
  const int number = first.get();
  first.reset();
  auto second = again();
  CHECK(second.get() == number);
  CHECK(ask(R"({"cmd":"NODE_SOCKET_GET_COUNT","key":"same"})") == "{\"cmd\":\"NODE_SOCKET_COUNT\",\"key\":\"same\",\"count\":1}\n");
  second.reset();
  for (const char* key : {R"("")", "null", "false", "0", "-0.0e5"}) {
    REQUIRE(send_with_fd(node, std::string("{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":0,\"key\":") + key + "}\n", sv[0]));
    auto m = ch.receive_sync().value();
    CHECK(read_once(node) == "{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
    auto h = m.take_handle();
    REQUIRE(h);
    CHECK(ask(std::string(R"({"cmd":"NODE_SOCKET_GET_COUNT","key":)") + key + "}") ==
          std::string(R"({"cmd":"NODE_SOCKET_COUNT","key":)") + key + ",\"count\":0}\n");
  }
  ::close(sv[0]);
  ::close(sv[1]);
  end();
}

// A receive() that looks again every 20 ms for a closing Node server, against what else ends
// or takes its read: each case ends as it would without the look.
namespace {
// A connection from a Node server (key "k"), and its NOTIFY_CLOSE taken: node_close_pending() holds.
cp::unique_handle closing_conn(played_node& p) {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  REQUIRE(send_with_fd(p.node, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":\"c\",\"key\":\"k\"}\n", sv[0]));
  ::close(sv[0]);
  ::close(sv[1]);
  auto m = p.ch.receive_sync().value();
  CHECK(read_once(p.node) == "{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
  REQUIRE(send_with_fd(p.node, "{\"cmd\":\"NODE_SOCKET_NOTIFY_CLOSE\",\"key\":\"k\"}\n{\"ready\":1}\n", -1));
  CHECK(p.ch.receive_sync<std::string>().value() == R"({"ready":1})");
  return m.take_handle();
}
using slot_t = std::shared_ptr<std::optional<cp::result<std::string>>>;
std::string show(const slot_t& s) { if (!s->has_value()) return "(pending)"; const auto& r = **s; return r ? *r : "error: " + r.error().message(); }
cp::task<> receive_into(cp::channel& ch, slot_t s, std::stop_token st = {}) { s->emplace(co_await ch.receive<std::string>(st)); }
// Ends in the round where the poll armed just before it (20 ms) fires too, after it.
cp::task<> end_with_poll(cp::detail::reactor_clock::time_point t0) {
  (void)co_await cp::event_loop::current()->sleep(std::chrono::milliseconds(1));
  ::usleep(40 * 1000);  // the poll is due meanwhile
  (void)co_await cp::event_loop::current()->sleep_until(t0);
}
}  // namespace

TEST_CASE_FIXTURE(played_node, "a receive() awaited on no loop while a closing Node server waits: no_event_loop") {
  auto c = closing_conn(*this);
  cp::detail::when_all_slot<cp::result<std::string>> slot;
  cp::detail::when_all_latch latch{1, {}, {}};
  cp::detail::run_into(ch.receive<std::string>(), slot, latch);  // on no loop
  REQUIRE(latch.remaining == 0);
  REQUIRE(slot);
  CHECK(slot->error() == cp::errc::no_event_loop);
}

TEST_CASE_FIXTURE(played_node, "a looking receive() whose read a receive_sync took back ends cancelled and takes no message") {
  auto c = closing_conn(*this);
  std::optional<cp::event_loop> loop(std::in_place);
  auto x = std::make_shared<std::optional<cp::result<std::string>>>();
  loop->run([](cp::channel& ch, slot_t x) -> cp::task<> {
    const auto t0 = cp::detail::reactor_clock::now();
    auto r = co_await cp::when_any(receive_into(ch, x), end_with_poll(t0));
    CHECK(r.index == 1);
  }(ch, x));
  REQUIRE(!x->has_value());
  REQUIRE(send_with_fd(node, "{\"a\":1}\n{\"b\":2}\n", -1));
  CHECK(ch.receive_sync<std::string>().value() == R"({"a":1})");  // takes back the read left on the loop
  loop.reset();  // the receive left there resumes: it should end cancelled
  REQUIRE(x->has_value());
  CHECK(show(x) == "error: read: cancelled");
  CHECK(ch.receive_sync<std::string>().value() == R"({"b":2})");
}

TEST_CASE_FIXTURE(played_node, "the look of a receive() whose read was taken back in its round cancels nobody else's read") {
  auto c = closing_conn(*this);
  cp::event_loop loop;
  auto x = std::make_shared<std::optional<cp::result<std::string>>>();
  auto y = std::make_shared<std::optional<cp::result<std::string>>>();
  std::thread peer([&] {
    ::usleep(80 * 1000);  // Y waits in receive_sync by then
    (void)send_with_fd(node, "{\"first\":1}\n", -1);
    ::usleep(300 * 1000);
    (void)send_with_fd(node, "{\"second\":2}\n", -1);
  });
  loop.run([](cp::channel& ch, slot_t x, slot_t y) -> cp::task<> {
    const auto t0 = cp::detail::reactor_clock::now();
    co_await cp::when_all(receive_into(ch, x), [](cp::channel& ch, slot_t y, cp::detail::reactor_clock::time_point t0) -> cp::task<> {
      (void)co_await cp::event_loop::current()->sleep(std::chrono::milliseconds(1));
      ::usleep(40 * 1000);
      (void)co_await cp::event_loop::current()->sleep_until(t0);  // runs ahead of X's poll, in its round
      auto first = ch.receive_sync<std::string>();              // takes X's read back
      CHECK((first && *first == R"({"first":1})"));
      y->emplace(co_await ch.receive<std::string>());           // no stop asked: should get {"second":2}
    }(ch, y, t0));
  }(ch, x, y));
  peer.join();
  REQUIRE(x->has_value());
  REQUIRE(y->has_value());
  CHECK(show(x) == "error: read: cancelled");  // taken back
  CHECK(show(y) == R"({"second":2})");
}

TEST_CASE_FIXTURE(played_node, "disconnect() in the round a receive()'s look fires: cancelled as without the look") {
  auto c = closing_conn(*this);
  cp::event_loop loop;
  auto x = std::make_shared<std::optional<cp::result<std::string>>>();
  loop.run([](cp::channel& ch, slot_t x) -> cp::task<> {
    const auto t0 = cp::detail::reactor_clock::now();
    co_await cp::when_all(receive_into(ch, x), [](cp::channel& ch, cp::detail::reactor_clock::time_point t0) -> cp::task<> {
      (void)co_await cp::event_loop::current()->sleep(std::chrono::milliseconds(1));
      ::usleep(40 * 1000);
      (void)co_await cp::event_loop::current()->sleep_until(t0);  // ahead of the poll in its round
      ch.disconnect();
    }(ch, t0));
  }(ch, x));
  REQUIRE(x->has_value());
  CHECK(show(x) == "error: read: cancelled");  // what a disconnect gives without the look
}

TEST_CASE_FIXTURE(played_node, "a receive() that ends in a nested run() of its loop: its look is not run later (ASan)") {
  auto c = closing_conn(*this);
  cp::event_loop loop;
  auto x = std::make_shared<std::optional<cp::result<std::string>>>();
  loop.run([](cp::channel& ch, slot_t x, int node) -> cp::task<> {
    const auto t0 = cp::detail::reactor_clock::now();
    co_await cp::when_all(receive_into(ch, x), [](int node, cp::detail::reactor_clock::time_point t0) -> cp::task<> {
      (void)co_await cp::event_loop::current()->sleep(std::chrono::milliseconds(1));
      ::usleep(40 * 1000);
      (void)co_await cp::event_loop::current()->sleep_until(t0);  // X's poll is in this round's batch, after us
      (void)send_with_fd(node, "{\"n\":1}\n", -1);
      // A nested run of the same loop: X's read completes in it, X ends, its frame goes.
      cp::event_loop::current()->run([]() -> cp::task<> { (void)co_await cp::event_loop::current()->sleep(std::chrono::milliseconds(30)); }());
    }(node, t0));
  }(ch, x, node));
  REQUIRE(x->has_value());
  CHECK((**x && ***x == R"({"n":1})"));
}

TEST_CASE_FIXTURE(played_node, "messages arriving around a receive()'s looks all come in order; stops from another thread end it cancelled") {
  auto c = closing_conn(*this);
  cp::event_loop loop;
  constexpr int n = 150;
  std::thread peer([&] {
    std::mt19937 rng(7);
    for (int i = 0; i < n; ++i) {
      ::usleep(rng() % 25000);
      (void)send_with_fd(node, "{\"i\":" + std::to_string(i) + "}\n", -1);
    }
  });
  int got = 0, wrong = 0;
  loop.run([](cp::channel& ch, int& got, int& wrong) -> cp::task<> {
    for (int i = 0; i < n; ++i) {
      auto m = co_await ch.receive<std::string>();
      if (!m) break;
      if (*m != "{\"i\":" + std::to_string(i) + "}") ++wrong;
      ++got;
    }
  }(ch, got, wrong));
  peer.join();
  CHECK(got == n);
  CHECK(wrong == 0);
  // Stops at random instants, from another thread.
  std::mt19937 rng(11);
  int not_cancelled = 0;
  for (int k = 0; k < 60; ++k) {
    std::stop_source s;
    const unsigned us = 15000 + rng() % 10000;  // around the first poll
    std::thread stopper([&] { ::usleep(us); s.request_stop(); });
    auto r = loop.run(ch.receive<std::string>(s.get_token()));
    stopper.join();
    if (r || r.error() != cp::errc::cancelled) ++not_cancelled;
  }
  CHECK(not_cancelled == 0);
}

TEST_CASE_FIXTURE(played_node, "a receive() that looks every 20 ms for 1 s does not spin") {
  auto c = closing_conn(*this);
  cp::event_loop loop;
  rusage a{}, b{};
  ::getrusage(RUSAGE_SELF, &a);
  std::stop_source s;
  std::thread stopper([&] { ::usleep(1000 * 1000); s.request_stop(); });
  auto r = loop.run(ch.receive<std::string>(s.get_token()));
  stopper.join();
  ::getrusage(RUSAGE_SELF, &b);
  const double cpu = (b.ru_utime.tv_sec - a.ru_utime.tv_sec) + (b.ru_stime.tv_sec - a.ru_stime.tv_sec) + ((b.ru_utime.tv_usec - a.ru_utime.tv_usec) + (b.ru_stime.tv_usec - a.ru_stime.tv_usec)) / 1e6;
  CHECK((!r && r.error() == cp::errc::cancelled));
  CHECK(cpu < 0.5);  // a look re-armed at 0 ms spins: about 1 s
}


// The real thing: a Node child sends a listening server and a connected socket with
// process.send(msg, handle), and a message after each, which Node holds back until the ACK.
TEST_CASE("a Node child sends a net.Server and a net.Socket: C++ gets both as descriptors that work") {
  const std::string script = write_script("childproc-node-handles.js", R"(
const net = require('net');
const server = net.createServer((s) => {
  s.on('data', (d) => { process.send({ server_got: String(d) }); s.end('pong'); });
});
server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  process.send({ listening: port }, server);
  process.send({ after: 'server' });
  const client = net.connect(port, '127.0.0.1', () => {
    process.send({ socket: 1 }, client);
    process.send({ after: 'socket' });
  });
});
process.on('message', (m) => { if (m === 'bye') { server.close(); process.disconnect(); } });
)");
  auto js = cp::fork_node(script).value();
  auto listening = js.receive_sync().value();
  const std::string text = listening.str();
  REQUIRE(text.rfind("{\"listening\":", 0) == 0);
  const int port = std::stoi(text.substr(13));
  auto srv = listening.take_handle();
  REQUIRE(srv);
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(srv.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  CHECK(ntohs(addr.sin_port) == port);  // the very socket Node listens on
  int accepting = 0;
  len = sizeof accepting;
  REQUIRE(::getsockopt(srv.get(), SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0);
  CHECK(accepting == 1);
  CHECK(js.receive_sync<std::string>().value() == R"({"after":"server"})");  // Node had our ACK

  auto sock = js.receive_sync().value();
  CHECK(sock.str() == R"({"socket":1})");
  auto client = sock.take_handle();
  REQUIRE(client);
  CHECK(js.receive_sync<std::string>().value() == R"({"after":"socket"})");
  REQUIRE(::write(client.get(), "ping", 4) == 4);  // Node's copy is closed: this one is the client now
  CHECK(js.receive_sync<std::string>().value() == R"({"server_got":"ping"})");
  CHECK(read_once(client.get()) == "pong");
  client.reset();  // Node's end of the connection closes, so Node can exit
  srv.reset();
  REQUIRE(js.send(std::string("\"bye\"")));
  CHECK(js.wait()->exit_code() == 0);
  std::remove(script.c_str());
}

// The real thing: a Node server hands its connections to this process, as to a cluster worker,
// and its getConnections() and close() count them here until they close.
TEST_CASE("a Node server sends its connections: getConnections() counts those open here, close() waits for them") {
  const std::string script = write_script("childproc-node-accounting.js", R"(
const net = require('net');
const server = net.createServer((s) => process.send('conn', s));
const connect = () => {
  const c = net.connect(server.address().port, '127.0.0.1');
  c.on('end', () => c.end());
  c.resume();
};
server.listen(0, '127.0.0.1', connect);
process.on('message', (m) => {
  if (m === 'count') server.getConnections((e, n) => process.send({ count: n, err: e ? String(e) : null }));
  else if (m === 'another') connect();
  else if (m === 'close') server.close((e) => process.send({ closed: e ? String(e) : null }));
  else if (m === 'bye') process.disconnect();
});
)");
  auto js = cp::fork_node(script).value();
  auto first = js.receive_sync().value();
  CHECK(first.str() == R"("conn")");
  auto sock1 = first.take_handle();
  REQUIRE(sock1);
  REQUIRE(js.send(std::string(R"("count")")));
  CHECK(js.receive_sync<std::string>().value() == R"({"count":1,"err":null})");
  sock1.reset();
  REQUIRE(js.send(std::string(R"("count")")));
  CHECK(js.receive_sync<std::string>().value() == R"({"count":0,"err":null})");
  REQUIRE(js.send(std::string(R"("another")")));
  auto second = js.receive_sync().value();
  CHECK(second.str() == R"("conn")");
  auto sock2 = second.take_handle();
  REQUIRE(sock2);
  // close() waits for sock2, which another thread closes while this one waits for the answer.
  REQUIRE(js.send(std::string(R"("close")")));
  std::atomic<bool> closed{false};
  std::thread closer([&] {
    ::usleep(200 * 1000);
    closed = true;
    sock2.reset();
  });
  CHECK(js.receive_sync<std::string>().value() == R"({"closed":null})");
  CHECK(closed.load());
  closer.join();
  REQUIRE(js.send(std::string(R"("bye")")));
  CHECK(js.wait()->exit_code() == 0);
  std::remove(script.c_str());
}

// The same on a loop: a co_await receive() waiting for the answer to server.close() notices the
// connection another thread closes meanwhile (it looks again every 20 ms, as receive_sync).
TEST_CASE("a Node server's close() waits for a connection held here while a co_await receive() waits: answered when it closes") {
  const std::string script = write_script("childproc-node-accounting-loop.js", R"(
const net = require('net');
const server = net.createServer((s) => process.send('conn', s));
server.listen(0, '127.0.0.1', () => {
  const c = net.connect(server.address().port, '127.0.0.1');
  c.on('end', () => c.end());
  c.resume();
});
process.on('message', (m) => {
  if (m === 'close') server.close((e) => process.send({ closed: e ? String(e) : null }));
  else if (m === 'bye') process.disconnect();
});
)");
  auto js = cp::fork_node(script).value();
  cp::event_loop loop;
  std::atomic<bool> closed{false};
  loop.run([](cp::process& js, std::atomic<bool>& closed) -> cp::task<> {
    auto conn = co_await js.receive();
    REQUIRE(conn);
    CHECK(conn->str() == R"("conn")");
    auto sock = conn->take_handle();
    REQUIRE(sock);
    REQUIRE(js.send(std::string(R"("close")")));
    std::thread closer([&] {
      ::usleep(200 * 1000);
      closed = true;
      sock.reset();
    });
    auto answer = co_await js.receive<std::string>();
    closer.join();
    CHECK((answer && *answer == R"({"closed":null})"));
    CHECK(closed.load());
    REQUIRE(js.send(std::string(R"("bye")")));
  }(js, closed));
  CHECK(js.wait()->exit_code() == 0);
  std::remove(script.c_str());
}

// The other way: C++ sends a pipe, a connected socket and a listening server to a Node child,
// which takes each as Node does (net.Native, net.Socket, net.Server) and uses it.
TEST_CASE("send(msg, h) to a Node child: a pipe, a socket and a server arrive as Node's own handles and work") {
  const auto fds_before = open_fds().size();
  const std::string script = write_script("childproc-node-takes.js", R"(
const net = require('net');
process.on('message', (m, h) => {
  if (m.kind === 'pipe') {  // net.Native: the raw pipe, read through a socket around it
    let got = '';
    const s = new net.Socket({ handle: h, readable: true, writable: false });
    s.on('data', (d) => { got += d; });
    s.on('end', () => process.send({ pipe: got }));
  } else if (m.kind === 'socket') {
    h.end('hello from node');
    process.send({ socket: h instanceof net.Socket });
  } else if (m.kind === 'server') {
    h.on('connection', (c) => { c.end('served by node'); h.close(); });
    process.send({ server: h instanceof net.Server && h.listening });
  } else if (m === 'bye') process.disconnect();
});
)");
  auto js = cp::fork_node(script).value();
  // a pipe holding a text, then closed on our side
  auto p = cp::make_pipe().value();
  REQUIRE(js.send(R"({"kind":"pipe"})", p.read.handle()));
  p.read.close();  // Node has its own copy
  REQUIRE(p.write.write("through a pipe"));
  p.write.close();
  CHECK(js.receive_sync<std::string>().value() == R"({"pipe":"through a pipe"})");
  // one end of a connected socket pair
  int pair[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  REQUIRE(js.send(R"({"kind":"socket"})", pair[1]));
  ::close(pair[1]);
  CHECK(js.receive_sync<std::string>().value() == R"({"socket":true})");
  std::string from_node;
  for (std::string part; !(part = read_once(pair[0])).empty();) from_node += part;
  CHECK(from_node == "hello from node");
  ::close(pair[0]);
  // a listening TCP socket: Node accepts on it
  const int lsn = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(lsn >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lsn, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(lsn, 4) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(lsn, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  REQUIRE(js.send(R"({"kind":"server"})", lsn));
  ::close(lsn);  // only Node's copy listens now
  CHECK(js.receive_sync<std::string>().value() == R"({"server":true})");
  const int conn = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(::connect(conn, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  std::string served;
  for (std::string part; !(part = read_once(conn)).empty();) served += part;
  CHECK(served == "served by node");
  ::close(conn);
  // what Node cannot take is refused, nothing written: a regular file
  const int file = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  auto refused = js.send(R"({"kind":"file"})", file);
  REQUIRE(!refused);
  CHECK(refused.error() == cp::errc::invalid_argument);
  CHECK(refused.error().message() == "send: fd " + std::to_string(file) +
                                         " cannot go to a Node process, which takes TCP and Unix stream sockets and pipes only");
  ::close(file);
  // So is a stream socket of a family libuv cannot take: Node would keep it in its one pending
  // slot and NACK every handle after it.
  if (const int vs = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0); vs >= 0) {
    auto other = js.send(R"({"kind":"vsock"})", vs);
    REQUIRE(!other);
    CHECK(other.error().message() == "send: fd " + std::to_string(vs) +
                                         " cannot go to a Node process, which takes TCP and Unix stream sockets and pipes only");
    ::close(vs);
  } else {
    MESSAGE("no AF_VSOCK sockets on this machine: the other-family refusal was not tried");
  }
  auto spare = cp::make_pipe().value();
  auto bad = js.send("not json", spare.read.handle());
  REQUIRE(!bad);
  CHECK(bad.error().message() == "send: a message to a Node process must be one JSON text; this one is not valid JSON (at byte 0)");
  spare.read.close();
  spare.write.close();
  REQUIRE(js.send(std::string("\"bye\"")));
  CHECK(js.wait()->exit_code() == 0);
  js = cp::process();
  CHECK(open_fds().size() == fds_before);  // every copy sent was closed once written
  std::remove(script.c_str());
}

// Node keeps one received descriptor at a time (the last read's) and gives it to the next
// NODE_HANDLE line that ends: a descriptor that arrives before the line it came with has ended
// takes the place of the one before. Sends made back to back, blocking and queued in one round
// of a loop, with lines far longer than one socket buffer: each arrives with its own pipe.
TEST_CASE("handle sends to a Node child, back to back, 100 B to 300 KiB lines: each message gets its own descriptor, none lost") {
  const auto fds_before = open_fds().size();
  const std::string script = write_script("childproc-node-pairs.js", R"(
const net = require('net');
let received = 0, matched = 0, open = 0, done = false;
const report = () => { if (done && open === 0) { process.send({ received, matched }); done = false; } };
process.on('message', (m, h) => {
  if (m === 'done') { done = true; report(); return; }
  received++;
  if (!h) return;
  open++;
  let got = '';
  const s = new net.Socket({ handle: h, readable: true, writable: false });
  s.on('data', (d) => { got += d; });
  s.on('end', () => { if (got === String(m.id)) matched++; open--; report(); });
});
)");
  auto js = cp::fork_node(script).value();
  int id = 0;
  // One message with a pipe that holds its id, written and closed on our side.
  auto send_one = [&](std::size_t pad) {
    auto p = cp::make_pipe().value();
    REQUIRE(p.write.write(std::to_string(id)));
    p.write.close();
    const std::string msg = "{\"id\":" + std::to_string(id) + ",\"pad\":\"" + std::string(pad, 'x') + "\"}";
    REQUIRE(js.send(msg, p.read.handle()));
    ++id;
  };
  const std::size_t sizes[] = {100, 40 * 1024, 100 * 1024, 300 * 1024};
  SUBCASE("blocking sends") {
    for (std::size_t pad : sizes)
      for (int i = 0; i < 50; ++i) send_one(pad);
    REQUIRE(js.send(std::string("\"done\"")));
  }
  SUBCASE("queued on a loop, written together") {
    cp::event_loop loop;
    auto r = loop.run([&]() -> cp::task<cp::result<void>> {
      for (std::size_t pad : sizes)
        for (int i = 0; i < 50; ++i) send_one(pad);
      co_return co_await js.send_async(std::string("\"done\""));
    }());
    REQUIRE(r);
  }
  CHECK(js.receive_sync<std::string>().value() == R"({"received":200,"matched":200})");
  js.disconnect();
  CHECK(js.wait()->exit_code() == 0);
  js = cp::process();
  CHECK(open_fds().size() == fds_before);
  std::remove(script.c_str());
}

// This program as Node's child, both ways: it takes the server Node sends, checks it is the one
// listening on the port named, and sends back a socket whose other end it writes to.
CHILDPROC_ENTRY(node_handles)(cp::channel& parent) {
  auto m = parent.receive_sync();
  if (!m) return 3;
  auto srv = m->take_handle();
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  if (!srv || ::getsockname(srv.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 4;
  const bool same = m->str() == "{\"port\":" + std::to_string(ntohs(addr.sin_port)) + "}";
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return 5;
  if (!parent.send(std::string("{\"same_server\":") + (same ? "true" : "false") + "}", pair[1])) return 6;
  ::close(pair[1]);
  if (::write(pair[0], "hi from C++", 11) != 11) return 7;
  ::close(pair[0]);
  return parent.receive_sync().error() == cp::errc::end_of_stream ? 0 : 8;
}

TEST_CASE("a Node parent and a C++ child pass handles both ways: a server down, a socket up") {
  const std::string script = write_script("childproc-node-parent-handles.js", R"(
const net = require('net');
const { spawn } = require('child_process');
const c = spawn(process.argv[2], [], { stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
                                       env: { ...process.env, CHILDPROC_ENTRY: 'node_handles' } });
const srv = net.createServer();
srv.listen(0, '127.0.0.1', () => c.send({ port: srv.address().port }, srv));
c.on('message', (m, sock) => {
  let got = '';
  sock.on('data', (d) => { got += d; });
  sock.on('end', () => { console.log(JSON.stringify(m) + ' ' + got); srv.close(); c.disconnect(); });
});
c.on('exit', (code) => console.log('exit ' + code));
)");
  const std::string self = cp::detail::self_exe_native({}).value();
  auto out = cp::exec_file("node", {script, self}).value();
  CHECK(out.err == "");
  CHECK(out.out == "{\"same_server\":true} hi from C++\nexit 0\n");
  std::remove(script.c_str());
}

namespace {
// What a peer playing Node saw of the handles sent to it.
struct batches_seen {
  int lines = 0;        // NODE_HANDLE lines
  int fds = 0;          // descriptors that came with them (each closed)
  int most = 0;         // the most lines ever unanswered at once
  int batches = 0;      // ACK batches sent
  int early_lines = -1; // whole lines readable once the sender slept, the first batch unanswered
  bool broken = false;  // the stream ended first
};

// Whether thread `tid` of process `pid` sleeps in a system call, or is gone: either way it
// sends nothing more now (/proc's "syscall" names the call while it is blocked, and says
// "running" while it runs).
bool sleeping_in_syscall(pid_t pid, pid_t tid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/syscall").c_str(), "r");
  if (!f) return true;
  char word[32] = {};
  const bool got = std::fscanf(f, "%31s", word) == 1;
  std::fclose(f);
  return !got || std::string_view(word) != "running";
}

// One read of `sock` (`wait`: blocking), its descriptors kept in `fds`; <= 0 at the end or when
// nothing is there.
ssize_t read_keeping_fds(int sock, std::string& text, std::vector<int>& fds, bool wait) {
  char buf[65536];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 64)];
  iovec iov{buf, sizeof buf};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | (wait ? 0 : MSG_DONTWAIT));
  if (n <= 0) return n;
  for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
      for (std::size_t k = 0; k < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++k) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof fd);
        fds.push_back(fd);
      }
  text.append(buf, static_cast<std::size_t>(n));
  return n;
}

// The same, the descriptors closed and counted.
ssize_t read_closing_fds(int sock, std::string& text, int& fds, bool wait) {
  std::vector<int> got;
  const ssize_t n = read_keeping_fds(sock, text, got, wait);
  for (int fd : got) ::close(fd);
  fds += static_cast<int>(got.size());
  return n;
}

// Plays Node's receiver, but answers handles only in batches: reads NODE_HANDLE lines, and once
// `batch` are unanswered (or all `total` came) writes a user line {"before":k} and then an ACK
// for each. The first time, it first waits until the sender (thread `tid` of `pid`) sleeps and
// counts the whole lines it can read then: a sender that waits for answers has sent none.
batches_seen answer_in_batches(int sock, int total, int batch, pid_t pid, pid_t tid) {
  batches_seen seen;
  std::string text;
  int answered = 0;
  for (;;) {
    for (std::size_t nl; (nl = text.find('\n')) != std::string::npos; text.erase(0, nl + 1))
      if (text.starts_with("{\"cmd\":\"NODE_HANDLE\"")) ++seen.lines;
    seen.most = std::max(seen.most, seen.lines - answered);
    if (seen.lines - answered == batch && seen.batches == 0) {
      while (!sleeping_in_syscall(pid, tid)) std::this_thread::yield();
      while (read_closing_fds(sock, text, seen.fds, false) > 0) {}
      seen.early_lines = static_cast<int>(std::count(text.begin(), text.end(), '\n'));
    }
    if (seen.lines - answered == batch || seen.lines == total) {
      std::string answers = "{\"before\":" + std::to_string(seen.batches++) + "}\n";
      for (; answered < seen.lines; ++answered) answers += "{\"cmd\":\"NODE_HANDLE_ACK\"}\n";
      if (!send_with_fd(sock, answers, -1) && seen.lines < total) {  // after the last, the sender may be gone
        seen.broken = true;
        return seen;
      }
    }
    if (seen.lines >= total) return seen;
    if (read_closing_fds(sock, text, seen.fds, true) <= 0) {
      seen.broken = true;
      return seen;
    }
  }
}
}  // namespace

// The documented number of handles a channel sends to Node ahead of its answers.
constexpr int handles_ahead = 16;

// Node's sender waits for each handle's ACK; childproc's keeps up to 16 unanswered and then
// waits, reading (the answers arrive behind whatever the peer sends first, which stays to be
// received in order). Without it, a peer that does not read lets descriptors pile up in flight.
TEST_CASE_FIXTURE(played_node, "handles to Node: at most 16 unanswered, blocking and on a loop; what came before the answers is received in order") {
  const int total = 200;
  const std::size_t fds_now = open_fds().size();
  int batches = 0;  // what the peer sent: as many lines to receive
  SUBCASE("blocking sends") {
    std::thread node_side([&, tid = static_cast<pid_t>(::gettid())] {
      const batches_seen seen = answer_in_batches(node, total, handles_ahead, ::getpid(), tid);
      CHECK(!seen.broken);
      CHECK(seen.early_lines == 0);  // the sender slept with 16 unanswered, the 17th line not ended
      CHECK(seen.lines == total);
      CHECK(seen.fds == total);
      CHECK(seen.most == handles_ahead);  // never more, and pipelined up to the cap
      CHECK(seen.batches == 13);
      batches = seen.batches;
    });
    int sent = 0;
    for (int i = 0; i < total; ++i) {
      int p[2];
      REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
      sent += bool(ch.send("{\"n\":" + std::to_string(i) + "}", p[0]));
      ::close(p[0]);
      ::close(p[1]);
    }
    CHECK(sent == total);
    node_side.join();
  }
  SUBCASE("queued on a loop") {
    std::thread node_side([&, tid = static_cast<pid_t>(::gettid())] {
      const batches_seen seen = answer_in_batches(node, total, handles_ahead, ::getpid(), tid);
      CHECK(!seen.broken);
      CHECK(seen.early_lines == 0);  // the loop slept with 16 unanswered
      CHECK(seen.fds == total);
      CHECK(seen.most == handles_ahead);
      CHECK(seen.batches == 13);
      batches = seen.batches;
    });
    cp::event_loop loop;
    const int sent = loop.run([&]() -> cp::task<int> {
      int n = 0;
      for (int i = 0; i < total; ++i) {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) co_return -1;
        n += bool(ch.send("{\"n\":" + std::to_string(i) + "}", p[0]));  // queued: the copy is the channel's
        ::close(p[0]);
        ::close(p[1]);
      }
      n += bool(co_await ch.send_async(std::string("{\"last\":1}")));  // once everything before it is written
      co_return n;
    }());
    CHECK(sent == total + 1);
    node_side.join();
  }
  // The peer's own lines, sent ahead of each batch of answers, come in order; no answer does.
  int in_order = 0;
  for (int k = 0; k < batches; ++k) in_order += ch.receive_sync<std::string>().value() == "{\"before\":" + std::to_string(k) + "}";
  CHECK(in_order == 13);
  CHECK(open_fds().size() == fds_now);  // every copy sent is closed here
  end();
}

// The failure the wait prevents: a user that is not privileged may have at most RLIMIT_NOFILE
// descriptors in flight; a child dropped to `nobody` with a limit of 32 sends 200 handles to a
// peer that reads nothing until 16 have been sent. It waits instead of failing (ETOOMANYREFS).
CHILDPROC_ENTRY(node_handles_unprivileged)(cp::channel& parent) {
  auto m = parent.receive_sync();
  if (!m || !m->has_handle()) return 3;
  cp::channel node(cp::stream(m->take_handle()), cp::default_max_message_size, cp::serialization::json);
  if (::geteuid() == 0 && (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0)) return 4;
  const rlimit limit{32, 32};
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) return 5;
  for (int i = 0; i < 200; ++i) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return 6;
    auto e = node.send("{\"n\":" + std::to_string(i) + "}", p[0]);
    ::close(p[0]);
    ::close(p[1]);
    if (!e) {
      std::fprintf(stderr, "send %d: %s\n", i, e.error().message().c_str());
      return 7;
    }
    if (i == handles_ahead - 1 && !parent.send(std::string("16 sent"))) return 8;
  }
  return 0;
}

TEST_CASE("handles to Node from a user that is not privileged: 200 to a peer that reads late, none fails ETOOMANYREFS") {
  auto pair = cp::detail::create_duplex_native().value();
  auto w = cp::fork_self("node_handles_unprivileged", {}, {.stdio = {cp::inherit, cp::inherit, cp::pipe}}).value();
  REQUIRE(w.send(std::string("the socket"), pair.parent.get()));
  pair.parent.reset();
  CHECK(w.receive_sync<std::string>().value() == "16 sent");  // until now nothing was read
  const batches_seen seen = answer_in_batches(pair.child.get(), 200, handles_ahead, w.pid(), w.pid());
  CHECK(!seen.broken);
  CHECK(seen.early_lines == 0);
  CHECK(seen.fds == 200);
  CHECK(seen.most == handles_ahead);
  CHECK(w.err().read_all().value() == "");
  CHECK(w.wait()->exit_code() == 0);
}


namespace {
// A pipe's read end that holds `text` (its write end closed), as a raw descriptor.
int pipe_with(const std::string& text) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return -1;
  const bool ok = ::write(p[1], text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(p[1]);
  if (!ok) {
    ::close(p[0]);
    return -1;
  }
  return p[0];
}

// All that a descriptor's pipe holds (to its end).
std::string drain(int fd) {
  std::string text;
  char buf[256];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
  return text;
}

// Reads NODE_HANDLE lines from a played Node peer until `lines` came (their descriptors closed
// and counted); what else it read is left in `text`.
int read_handle_lines(int sock, int lines, std::string& text, int& fds) {
  int seen = 0;
  while (seen < lines) {
    const std::size_t nl = text.find('\n');
    if (nl == std::string::npos) {
      if (read_closing_fds(sock, text, fds, true) <= 0) return seen;
      continue;
    }
    seen += text.starts_with("{\"cmd\":\"NODE_HANDLE\"");
    text.erase(0, nl + 1);
  }
  return seen;
}

// One side of two childproc processes speaking json: 200 handle sends (a pipe holding "<i>"
// each) before it receives any of the peer's; how many it then received right.
int handles_both_ways_blocking(cp::channel& ch) {
  for (int i = 0; i < 200; ++i) {
    const int fd = pipe_with(std::to_string(i));
    auto e = ch.send("{\"n\":" + std::to_string(i) + "}", fd);
    ::close(fd);
    if (!e) {
      std::fprintf(stderr, "send %d: %s\n", i, e.error().message().c_str());
      return -1;
    }
  }
  int right = 0;
  for (int i = 0; i < 200; ++i) {
    auto m = ch.receive_sync();
    if (!m) return right;
    auto h = m->take_handle();
    right += *m == "{\"n\":" + std::to_string(i) + "}" && h && drain(h.get()) == std::to_string(i);
  }
  return right;
}

int handles_both_ways_on_a_loop(cp::channel& ch) {
  cp::event_loop loop;
  return loop.run([&]() -> cp::task<int> {
    for (int i = 0; i < 200; ++i) {
      const int fd = pipe_with(std::to_string(i));
      auto e = ch.send("{\"n\":" + std::to_string(i) + "}", fd);  // queued: the copy is the channel's
      ::close(fd);
      if (!e) co_return -1;
    }
    if (auto e = co_await ch.send_async(std::string("{\"last\":true}")); !e) co_return -2;  // all written by now
    int right = 0;
    for (int i = 0; i < 200; ++i) {
      auto m = co_await ch.receive();
      if (!m) co_return right;
      auto h = m->take_handle();
      right += *m == "{\"n\":" + std::to_string(i) + "}" && h && drain(h.get()) == std::to_string(i);
    }
    auto last = co_await ch.receive<std::string>();
    co_return last && *last == "{\"last\":true}" ? right : -3;
  }());
}
}  // namespace

// Both ends wait for answers past 16 unanswered, and each answers the other's handles while it
// waits (answers skip the sends held): two ends sending many before receiving do not deadlock.
TEST_CASE("two childproc ends on a json channel each send 200 handles before receiving one: all arrive, in order, with their handles") {
  const std::size_t fds_now = open_fds().size();
  {
    auto pair = cp::detail::create_duplex_native().value();
    cp::channel a{cp::stream(std::move(pair.parent)), cp::default_max_message_size, cp::serialization::json};
    cp::channel b{cp::stream(std::move(pair.child)), cp::default_max_message_size, cp::serialization::json};
    int got_a = 0, got_b = 0;
    SUBCASE("blocking") {
      std::thread other([&] { got_b = handles_both_ways_blocking(b); });
      got_a = handles_both_ways_blocking(a);
      other.join();
    }
    SUBCASE("each on its own loop") {
      std::thread other([&] { got_b = handles_both_ways_on_a_loop(b); });
      got_a = handles_both_ways_on_a_loop(a);
      other.join();
    }
    SUBCASE("one blocking, one on a loop") {
      std::thread other([&] { got_b = handles_both_ways_on_a_loop(b); });
      got_a = handles_both_ways_blocking(a);
      if (got_a == 200) got_a += a.receive_sync<std::string>().value() == "{\"last\":true}" ? 0 : 1000;
      REQUIRE(a.send(std::string("{\"last\":true}")));  // what the loop's side waits for at its end
      other.join();
    }
    CHECK(got_a == 200);
    CHECK(got_b == 200);
  }
  CHECK(open_fds().size() == fds_now);
}

// The peer goes away while sends wait for its answers: they fail (EPIPE, saying why), their
// handles close, and so does every send after.
TEST_CASE_FIXTURE(played_node, "a Node peer that ends with handle sends held for its answers: EPIPE, the held handles closed") {
  std::string text;
  int fds = 0;
  std::thread node_side([&] {
    CHECK(read_handle_lines(node, 16, text, fds) == 16);
    CHECK(fds == 16);
    CHECK(text == "");
    pair.child.reset();  // gone, 16 unanswered
  });
  const auto expect_epipe = [](const cp::result<void>& e, const char* dropped) {
    REQUIRE(!e);
    CHECK(e.error() == std::errc::broken_pipe);
    CHECK(e.error().message() == std::string("send: the Node peer ended before it answered the handles sent (") + dropped + " after them dropped) EPIPE");
  };
  SUBCASE("blocking") {
    for (int i = 0; i < 16; ++i) {
      const int fd = pipe_with("x");
      REQUIRE(ch.send("{\"n\":" + std::to_string(i) + "}", fd));
      ::close(fd);
    }
    const int fd = pipe_with("x");
    expect_epipe(ch.send(std::string("{\"n\":16}"), fd), "1 send");  // waited, then the peer ended
    ::close(fd);
  }
  SUBCASE("on a loop: send_async") {
    cp::event_loop loop;
    auto e = loop.run([&]() -> cp::task<cp::result<void>> {
      for (int i = 0; i < 20; ++i) {
        const int fd = pipe_with("x");
        if (auto q = ch.send("{\"n\":" + std::to_string(i) + "}", fd); !q) co_return q;
        ::close(fd);
      }
      co_return co_await ch.send_async(std::string("{\"after\":1}"));
    }());
    expect_epipe(e, "5 sends");
  }
  node_side.join();
  auto next = ch.send(std::string("{}"));
  REQUIRE(!next);
  CHECK(next.error() == std::errc::broken_pipe);
  end();
}

// What the peer sends ahead of its answers is kept for receive, up to the high-water mark: there
// a blocking send stops reading and says so, its message not queued; sent again once the lines
// are received and the answers came, it goes.
TEST_CASE_FIXTURE(played_node, "handle sends held for answers behind more than the high-water mark of the peer's lines: queue_full, nothing lost") {
  ch.set_high_water_mark(1000);
  for (int i = 0; i < 16; ++i) {
    const int fd = pipe_with("x");
    REQUIRE(ch.send("{\"n\":" + std::to_string(i) + "}", fd));
    ::close(fd);
  }
  std::string text;
  int fds = 0;
  REQUIRE(read_handle_lines(node, 16, text, fds) == 16);
  std::string lines;
  const std::string pad(82, 'p');
  for (int k = 0; k < 20; ++k) lines += "{\"k\":" + std::to_string(k + 10) + ",\"pad\":\"" + pad + "\"}\n";  // 100 bytes each
  REQUIRE(lines.size() == 2000);
  REQUIRE(send_with_fd(node, lines, -1));  // no answers yet
  const int fd = pipe_with("seventeen");
  auto e = ch.send(std::string("{\"n\":16}"), fd);
  REQUIRE(!e);
  CHECK(e.error() == cp::errc::queue_full);
  CHECK(e.error().message() == "send: waiting for the Node peer's answers to the handles sent, 1993 bytes it sent wait to be "
                               "received (the high-water mark): receive them first; this message was not sent (nothing of it queued)");
  CHECK(ch.buffered() == 1993);  // 7 lines parsed (99 bytes and the keep of a message each), 13 not yet
  int in_order = 0;
  for (int k = 0; k < 20; ++k) in_order += ch.receive_sync<std::string>().value() == "{\"k\":" + std::to_string(k + 10) + ",\"pad\":\"" + pad + "\"}";
  CHECK(in_order == 20);
  std::string acks;
  for (int i = 0; i < 16; ++i) acks += "{\"cmd\":\"NODE_HANDLE_ACK\"}\n";
  REQUIRE(send_with_fd(node, acks, -1));
  REQUIRE(ch.send(std::string("{\"n\":16}"), fd));  // waits for the answers, then goes
  ::close(fd);
  std::string line;
  std::vector<int> got;
  REQUIRE(read_keeping_fds(node, line, got, true) > 0);
  CHECK(line == "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"n\":16}}\n");
  REQUIRE(got.size() == 1);
  CHECK(drain(got[0]) == "seventeen");
  ::close(got[0]);
  end();
}

// The end arriving early: the loop's run ends with sends held (they are written before run
// returns, once answered), or the loop is destroyed with them held (the next flush writes them).
TEST_CASE_FIXTURE(played_node, "handle sends held for answers when the loop ends, or is destroyed: they go, in order, once answered") {
  std::string order;
  int fds = 0;
  std::atomic<bool> go{true};
  // Plays Node: reads all 33 lines; after the first 16 handles it says so and waits for `go`,
  // then answers them; the last 14 are answered as they come.
  std::thread node_side([&] {
    std::string text;
    int lines = 0, handles = 0;
    while (lines < 33) {
      const std::size_t nl = text.find('\n');
      if (nl == std::string::npos) {
        if (read_closing_fds(node, text, fds, true) <= 0) break;
        continue;
      }
      const std::string line = text.substr(0, nl);
      text.erase(0, nl + 1);
      ++lines;
      if (!line.starts_with("{\"cmd\":\"NODE_HANDLE\"")) {
        order += line + "\n";
        continue;
      }
      order += line.substr(line.find("\"msg\":") + 6) + "\n";
      std::string answer = "{\"cmd\":\"NODE_HANDLE_ACK\"}\n";
      if (++handles == 16) {
        if (!send_with_fd(node, "{\"read\":16}\n", -1)) break;
        while (!go) std::this_thread::yield();
        for (int k = 1; k < 16; ++k) answer += "{\"cmd\":\"NODE_HANDLE_ACK\"}\n";
      } else if (handles < 16) {
        continue;
      }
      if (!send_with_fd(node, answer, -1)) break;
    }
  });
  const auto queue_30 = [&]() -> cp::task<bool> {
    bool ok = true;
    for (int i = 0; i < 30; ++i) {
      const int fd = pipe_with("x");
      ok = ok && ch.send("{\"n\":" + std::to_string(i) + "}", fd);
      ::close(fd);
      if (i % 10 == 9) ok = ok && ch.send("{\"plain\":" + std::to_string(i) + "}");
    }
    auto read = co_await ch.receive<std::string>();  // 16 written, the rest held
    co_return ok && read && *read == "{\"read\":16}";
  };
  std::string expect;
  for (int i = 0; i < 30; ++i) {
    expect += "{\"n\":" + std::to_string(i) + "}}\n";
    if (i % 10 == 9) expect += "{\"plain\":" + std::to_string(i) + "}\n";
  }
  SUBCASE("run ends") {
    cp::event_loop loop;
    CHECK(loop.run(queue_30()));  // returns once all is written: 14 sends waited for the answers
  }
  SUBCASE("destroyed first") {
    go = false;
    {
      cp::event_loop loop;
      CHECK_THROWS_AS(loop.run([&]() -> cp::task<void> {  // a task that throws: the loop hands its work back
        if (co_await queue_30()) throw std::runtime_error("stop");
      }()),
                      std::runtime_error);
    }
    go = true;
    REQUIRE(ch.flush());  // what was held goes now, blocking, once answered
  }
  node_side.join();
  CHECK(order == expect);
  CHECK(fds == 30);
  end();
}

// A peer that sends a handle and goes at once: the ACK for it cannot be written. That costs the
// user nothing: the message is received, flush() has nothing of the user's to fail, receive ends
// cleanly; only the next send says the peer is gone.
TEST_CASE_FIXTURE(played_node, "a Node peer that sends a handle and disconnects before the ACK: the message, then end_of_stream; the next send EPIPE") {
  const int fd = pipe_with("its pipe");
  REQUIRE(send_with_fd(node, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"last\":1}}\n", fd));
  ::close(fd);
  pair.child.reset();  // gone before it could read an answer
  auto m = ch.receive_sync();
  REQUIRE(m);
  CHECK(*m == "{\"last\":1}");
  auto h = m->take_handle();
  CHECK(drain(h.get()) == "its pipe");
  CHECK(ch.flush());
  auto end_ = ch.receive_sync();
  REQUIRE(!end_);
  CHECK(end_.error() == cp::errc::end_of_stream);
  auto next = ch.send(std::string("{}"));
  REQUIRE(!next);
  CHECK(next.error() == std::errc::broken_pipe);
  h.reset();
  end();
}

namespace {
// Sends `n` handles (pipes holding "x") on `ch`, checking each is accepted.
void send_handles(cp::channel& ch, int n) {
  for (int i = 0; i < n; ++i) {
    const int fd = pipe_with("x");
    REQUIRE(ch.send("{\"n\":" + std::to_string(i) + "}", fd));
    ::close(fd);
  }
}

// The high-water mark set to `mark`, 16 handles sent, and their lines read by the played Node
// peer, unanswered: the next handle send is held.
void sixteen_unanswered(played_node& p, std::size_t mark) {
  p.ch.set_high_water_mark(mark);
  send_handles(p.ch, 16);
  std::string text;
  int fds = 0;
  REQUIRE(read_handle_lines(p.node, 16, text, fds) == 16);
  REQUIRE(fds == 16);
}

std::string acks(int n) {
  std::string text;
  for (int i = 0; i < n; ++i) text += "{\"cmd\":\"NODE_HANDLE_ACK\"}\n";
  return text;
}
}  // namespace

// The answers can arrive behind a reply in the same read: a receive() that takes the reply
// leaves them parsed by no one unless the waiting write looks again.
TEST_CASE_FIXTURE(played_node, "on a loop: a receive() takes a reply that came with the answers behind it; the held sends go on") {
  std::thread node_side([&] {
    std::string text;
    int fds = 0;
    CHECK(read_handle_lines(node, 16, text, fds) == 16);
    CHECK(send_with_fd(node, "{\"hello\":1}\n" + acks(16), -1));  // one write: the reply, then the answers
    CHECK(read_handle_lines(node, 1, text, fds) == 1);
    while (text.find('\n') == std::string::npos && read_closing_fds(node, text, fds, true) > 0) {}
    CHECK(text == "{\"after\":1}\n");
    CHECK(fds == 17);
  });
  auto loop = std::make_unique<cp::event_loop>();
  const bool ok = loop->run([&]() -> cp::task<bool> {
    auto sender = [&]() -> cp::task<bool> {
      for (int i = 0; i < 17; ++i) {
        const int fd = pipe_with("x");
        const bool sent = bool(ch.send("{\"n\":" + std::to_string(i) + "}", fd));
        ::close(fd);
        if (!sent) co_return false;
      }
      co_return bool(co_await ch.send_async(std::string("{\"after\":1}")));
    };
    auto receiver = [&]() -> cp::task<bool> {
      auto m = co_await ch.receive<std::string>();
      co_return m && *m == "{\"hello\":1}";
    };
    auto [a, b] = co_await cp::when_all(sender(), receiver());
    co_return a && b;
  }());
  CHECK(ok);
  node_side.join();
  loop.reset();
  end();
}

// The pump stops at the high-water mark; the receives that take the channel back under it let
// the waiting write read again, and the answers in the socket come in.
TEST_CASE_FIXTURE(played_node, "on a loop: held sends wait at the high-water mark; receiving below it lets the answers in") {
  ch.set_high_water_mark(1000);
  std::thread node_side([&] {
    std::string text;
    int fds = 0;
    CHECK(read_handle_lines(node, 16, text, fds) == 16);
    std::string lines;
    const std::string pad(82, 'p');
    for (int k = 0; k < 20; ++k) lines += "{\"k\":" + std::to_string(k) + ",\"pad\":\"" + pad + "\"}\n";  // 100 bytes each
    CHECK(send_with_fd(node, lines + acks(16), -1));  // the answers past the mark
    CHECK(read_handle_lines(node, 1, text, fds) == 1);
    while (text.find('\n') == std::string::npos && read_closing_fds(node, text, fds, true) > 0) {}
    CHECK(text == "{\"after\":1}\n");
  });
  auto loop = std::make_unique<cp::event_loop>();
  const int got = loop->run([&]() -> cp::task<int> {
    for (int i = 0; i < 17; ++i) {
      const int fd = pipe_with("x");
      const bool sent = bool(ch.send("{\"n\":" + std::to_string(i) + "}", fd));
      ::close(fd);
      if (!sent) co_return -1;
    }
    auto after = [&]() -> cp::task<bool> { co_return bool(co_await ch.send_async(std::string("{\"after\":1}"))); };
    auto first = [&]() -> cp::task<int> {  // 15 of the 20 lines: then the answers must come in
      int n = 0;
      for (int k = 0; k < 15; ++k) n += (co_await ch.receive<std::string>()).value_or("").starts_with("{\"k\":" + std::to_string(k) + ",");
      co_return n;
    };
    auto [written, n] = co_await cp::when_all(after(), first());
    if (!written) co_return -2;
    for (int k = 15; k < 20; ++k) n += (co_await ch.receive<std::string>()).value_or("").starts_with("{\"k\":" + std::to_string(k) + ",");
    co_return n;
  }());
  CHECK(got == 20);
  node_side.join();
  loop.reset();
  end();
}

// A peer that floods lines (empty ones, the cheapest to send) and never answers: the messages
// kept for receive count their own keep against the mark, so memory stays bounded.
TEST_CASE_FIXTURE(played_node, "handle sends held for a peer that floods empty lines and never answers: queue_full at the mark, nothing queued, memory bounded") {
  sixteen_unanswered(*this, 1000);
  std::atomic<long> flooded{0};
  std::thread flood([&] {
    const std::string newlines(4096, '\n');
    for (int k = 0; k < 256 && send_with_fd(node, newlines, -1); ++k) flooded += 4096;  // up to 1 MiB
  });
  const int fd = pipe_with("x");
  auto e = ch.send(std::string("{\"n\":16}"), fd);
  ::close(fd);
  REQUIRE(!e);
  CHECK(e.error() == cp::errc::queue_full);
  CHECK(e.error().message().ends_with(" bytes it sent wait to be received (the high-water mark): receive them first; this message "
                                      "was not sent (nothing of it queued)"));
  CHECK(ch.buffered() <= 1000 + 65536);  // the mark, and at most one read past it
  ch.disconnect();  // the flood ends
  flood.join();
  CHECK(flooded < 1 << 20);  // it was stopped by the socket, not read
  pair.child.reset();
  CHECK(open_fds().size() == fds_before);
}

// While answers are awaited, the handles parsed for receive are limited by the descriptor
// limit (a quarter of it): past it, the kernel would drop those still arriving (the peer's line
// NACKed, its message lost). The blocking send says queue_full instead; nothing is lost.
TEST_CASE("handle sends held while the peer sends more handles than the descriptor budget: queue_full, not one lost") {
  rlimit before{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &before) == 0);
  rlimit lowered = before;
  lowered.rlim_cur = 256;  // a budget of 64
  {
    played_node p;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);  // after the channel was made: it reads the limit as it goes
    send_handles(p.ch, 16);
    std::string text;
    int fds = 0;
    REQUIRE(read_handle_lines(p.node, 16, text, fds) == 16);
    for (int k = 0; k < 100; ++k) {  // 100 handles of the peer's, its own answers not yet sent
      const int fd = pipe_with("peer " + std::to_string(k));
      REQUIRE(send_with_fd(p.node, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":" + std::to_string(k) + "}\n", fd));
      ::close(fd);
    }
    const int fd = pipe_with("x");
    auto e = p.ch.send(std::string("{\"n\":16}"), fd);
    ::close(fd);
    REQUIRE(!e);
    CHECK(e.error() == cp::errc::queue_full);
    CHECK(e.error().message() == "send: waiting for the Node peer's answers to the handles sent, 64 descriptors it sent wait to be "
                                 "received (the most held while answers are awaited): receive them first; this message was not "
                                 "sent (nothing of it queued)");
    int right = 0;
    for (int k = 0; k < 100; ++k) {
      auto m = p.ch.receive_sync();
      if (!m) break;
      auto h = m->take_handle();
      right += *m == std::to_string(k) && h && drain(h.get()) == "peer " + std::to_string(k);
    }
    CHECK(right == 100);
    REQUIRE(send_with_fd(p.node, acks(16), -1));
    const int again = pipe_with("seventeen");
    CHECK(p.ch.send(std::string("{\"n\":16}"), again));  // sent now: the answers came
    ::close(again);
    std::string last;
    std::vector<int> got;
    while (last.find('\n') == std::string::npos) REQUIRE(read_keeping_fds(p.node, last, got, true) > 0);
    const std::size_t answers = last.find("{\"cmd\":\"NODE_HANDLE\"");  // our ACKs to the peer's 100 come first
    CHECK(last.substr(0, answers) == acks(100).substr(0, answers));
    for (int g : got) ::close(g);
    p.end();
  }
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &before) == 0);
}

// run(task) ends with sends held while a task that owns the channel still waits in send_async;
// the answers complete it during run's final write, and it destroys the channel there: nothing
// of the channel is touched after (ASan in CI).
TEST_CASE("run ends with handle sends held and the channel owned by a task still in send_async: it completes, the channel goes, run returns") {
  auto pair = cp::detail::create_duplex_native().value();
  const int node = pair.child.get();
  std::atomic<bool> main_ended{false};
  std::string text;
  int fds = 0;
  std::thread node_side([&] {
    CHECK(read_handle_lines(node, 16, text, fds) == 16);
    while (!main_ended) std::this_thread::yield();
    CHECK(send_with_fd(node, acks(16), -1));
    CHECK(read_handle_lines(node, 1, text, fds) == 1);
    while (text.find('\n') == std::string::npos && read_closing_fds(node, text, fds, true) > 0) {}
  });
  bool completed = false;
  cp::event_loop loop;
  loop.run([&]() -> cp::task<void> {
    // The channel lives in this frame; no captures: the lambda goes with the task that made it,
    // before this coroutine ends (parameters are kept in the frame).
    auto owner = [](cp::channel c, bool& done) -> cp::task<void> {
      send_handles(c, 17);
      done = bool(co_await c.send_async(std::string("{\"after\":1}")));
    };
    auto quick = []() -> cp::task<void> { co_return; };
    co_await cp::when_any(owner(cp::channel(cp::stream(std::move(pair.parent)), cp::default_max_message_size, cp::serialization::json),
                                completed),
                          quick());
    main_ended = true;
  }());
  node_side.join();
  CHECK(completed);
  CHECK(text == "{\"after\":1}\n");
  CHECK(fds == 17);
}

// A blocking send taken back (queue_full) leaves nothing of itself behind: a later failure that
// costs only an answer to Node is still not the user's.
TEST_CASE_FIXTURE(played_node, "a handle send taken back at the mark, then a peer that sends a handle and goes: flush succeeds, end_of_stream") {
  sixteen_unanswered(*this, 1000);
  std::string lines;
  for (int k = 0; k < 20; ++k) lines += "{\"k\":" + std::to_string(k + 10) + ",\"pad\":\"" + std::string(82, 'p') + "\"}\n";
  REQUIRE(send_with_fd(node, lines, -1));
  const int fd = pipe_with("x");
  auto e = ch.send(std::string("{\"n\":16}"), fd);
  ::close(fd);
  REQUIRE(!e);
  CHECK(e.error() == cp::errc::queue_full);
  int received = 0;
  for (int k = 0; k < 20; ++k) received += bool(ch.receive_sync());
  CHECK(received == 20);
  const int last = pipe_with("last");
  REQUIRE(send_with_fd(node, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"last\":1}}\n", last));
  ::close(last);
  pair.child.reset();  // gone before the ACK
  auto m = ch.receive_sync();
  REQUIRE(m);
  CHECK(*m == "{\"last\":1}");
  CHECK(ch.flush());
  auto end_ = ch.receive_sync();
  REQUIRE(!end_);
  CHECK(end_.error() == cp::errc::end_of_stream);
  m->take_handle().reset();  // its pipe closed before the count of descriptors
  end();
}

int main(int argc, char** argv) {
  cp::dispatch_entry(argc, argv);  // a child started by Node (or fork_self) runs its entry point here
  doctest::Context context(argc, argv);
  return context.run();
}
