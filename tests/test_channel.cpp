// The message channel, fork and fork_self: the children are entry points of this very test
// program (fork_self), so each test's child is written next to it.
#define DOCTEST_CONFIG_IMPLEMENT
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#ifdef _WIN32
#  define CHILDPROC_TEST_DIE() TerminateProcess(GetCurrentProcess(), 9)
#else
#  define CHILDPROC_TEST_DIE() ::_exit(9)
#endif

namespace {
struct pair32 {
  std::int32_t a, b;
};
}  // namespace

// ---- the children ----

// Sends back every message as it came, blocking, until the parent disconnects.
CHILDPROC_ENTRY(echo)(cp::channel& parent) {
  for (;;) {
    auto m = parent.receive_sync();
    if (!m) return m.error() == cp::errc::end_of_stream ? 0 : 3;
    if (!parent.send(m->bytes())) return 4;
  }
}

// The same on an event loop, with co_await.
CHILDPROC_ENTRY(echo_async)(cp::channel& parent) {
  return cp::sync_wait([&]() -> cp::task<int> {
    for (;;) {
      auto m = co_await parent.receive();
      if (!m) co_return m.error() == cp::errc::end_of_stream ? 0 : 3;
      if (!co_await parent.send_async(m->bytes())) co_return 4;
    }
  }());
}

// The same on an event loop with send(): replies queue up and leave in few writes.
CHILDPROC_ENTRY(echo_loop)(cp::channel& parent) {
  return cp::sync_wait([&]() -> cp::task<int> {
    for (;;) {
      auto m = co_await parent.receive();
      if (!m) co_return m.error() == cp::errc::end_of_stream ? 0 : 3;
      if (!parent.send(m->bytes())) co_return 4;
    }
  }());
}

// Echoes messages of up to 512 MiB.
CHILDPROC_ENTRY(big_echo)(cp::channel& parent) {
  parent.set_max_message_size(std::size_t{512} << 20);
  auto m = parent.receive_sync();
  if (!m) return 3;
  return parent.send(m->bytes()) ? 0 : 4;
}

// Adds the two numbers of each pair32 and answers with an int64.
CHILDPROC_ENTRY(sum)(cp::channel& parent) {
  while (auto p = parent.receive_sync<pair32>()) {
    const std::int64_t s = std::int64_t{p->a} + p->b;
    if (!parent.send(s)) return 4;
  }
  return 0;
}

// Reports what it sees of its own environment.
CHILDPROC_ENTRY(env_check)(cp::channel& parent) {
  const char* v = std::getenv("CHILDPROC_CHANNEL");
  const char* e = std::getenv("CHILDPROC_ENTRY");
  std::string args;
  for (const auto& a : cp::entry_args()) args += "[" + a + "]";
  (void)parent.send(std::string(v ? "channel set" : "channel unset") + ", " + (e ? "entry set" : "entry unset") + ", args " + args);
  return 0;
}

// Sends "before", then a message of entry_args()[0] bytes.
CHILDPROC_ENTRY(send_n)(cp::channel& parent) {
  (void)parent.send(std::string("before"));
  (void)parent.send(std::string(std::stoul(cp::entry_args().at(0)), 'n'));
  return 0;
}

// Sends "whole", then dies half-way through a frame.
CHILDPROC_ENTRY(half_frame)(cp::channel& parent) {
  (void)parent.send(std::string("whole"));
  (void)parent.transport().write(std::string("\0\0\1\0abc", 7));  // a 256-byte frame, 3 bytes of it
  CHILDPROC_TEST_DIE();
  return 0;
}

// Announces a 4 GiB - 1 frame, then waits for the parent to hang up.
CHILDPROC_ENTRY(huge_length)(cp::channel& parent) {
  (void)parent.transport().write(std::string("\xff\xff\xff\xff", 4));
  auto m = parent.receive_sync();
  return m.error() == cp::errc::end_of_stream ? 0 : 3;
}

// Waits for the channel's end, then says so on stdout.
CHILDPROC_ENTRY(wait_eof)(cp::channel& parent) {
  auto m = parent.receive_sync();
  std::printf("%s\n", !m && m.error() == cp::errc::end_of_stream ? "eof" : "not eof");
  std::fflush(stdout);
  return 0;
}

// Starts wait_eof as its own child (sharing its stdout), says "ready", and dies abruptly.
CHILDPROC_ENTRY(middle)(cp::channel& parent) {
  auto g = cp::fork_self("wait_eof", {}, {.stdio = {cp::ignore, cp::inherit, cp::inherit}});
  if (!g) return 3;
  g->detach();
  (void)parent.send(std::string("ready"));
  (void)parent.receive_sync();  // the parent answers, then we die without closing anything
  CHILDPROC_TEST_DIE();
  return 0;
}

// Disconnects at once, then sleeps until killed.
CHILDPROC_ENTRY(disconnect_and_sleep)(cp::channel& parent) {
  parent.disconnect();
  std::this_thread::sleep_for(std::chrono::hours(1));
  return 0;
}

CHILDPROC_ENTRY(exit_now)(cp::channel&) { return 0; }

// ---- the tests ----

TEST_CASE("fork_self: a message there and back, sync on both sides") {
  auto w = cp::fork_self("echo").value();
  CHECK(w.connected());
  REQUIRE(w.send(std::string("hello")));
  auto reply = w.receive_sync();
  REQUIRE(reply);
  CHECK(*reply == "hello");
  w.disconnect();  // the child's receive ends: it exits 0
  CHECK(!w.connected());
  CHECK(w.wait()->success());
}

TEST_CASE("the sketch: send, then co_await receive; the child runs a loop too") {
  auto w = cp::fork_self("echo_async").value();
  auto reply = cp::sync_wait([&]() -> cp::task<cp::result<cp::message>> {
    REQUIRE(w.send("hello"));  // a string literal: its characters, not its NUL
    co_return co_await w.receive();
  }());
  REQUIRE(reply);
  CHECK(reply->str() == "hello");
  CHECK(reply->size() == 5);
  w.disconnect();
  CHECK(w.wait()->success());
}

TEST_CASE("every built-in message type round-trips") {
  auto w = cp::fork_self("echo").value();
  const std::string text("nul\0inside", 10);
  REQUIRE(w.send(text));
  CHECK(w.receive_sync<std::string>().value() == text);
  REQUIRE(w.send(std::string_view("view")));
  CHECK(w.receive_sync<std::string>().value() == "view");
  REQUIRE(w.send(std::string()));  // zero-length messages are allowed
  CHECK(w.receive_sync()->empty());
  const std::vector<unsigned char> bytes = {0, 1, 254, 255};
  REQUIRE(w.send(bytes));
  CHECK(w.receive_sync<std::vector<unsigned char>>().value() == bytes);
  const std::vector<std::byte> raw = {std::byte{7}, std::byte{0}};
  REQUIRE(w.send(raw));
  CHECK(w.receive_sync<std::vector<std::byte>>().value() == raw);
  REQUIRE(w.send(std::vector<char>{'a', 'b'}));
  CHECK(w.receive_sync<std::vector<char>>().value() == std::vector<char>{'a', 'b'});
  REQUIRE(w.send(std::span<const std::byte>(raw)));
  CHECK(w.receive_sync<std::vector<std::byte>>().value() == raw);
  REQUIRE(w.send(pair32{-5, 7}));
  auto p = w.receive_sync<pair32>().value();
  CHECK(p.a == -5);
  CHECK(p.b == 7);
  REQUIRE(w.send(std::int64_t{1} << 40));
  CHECK(w.receive_sync<std::int64_t>().value() == std::int64_t{1} << 40);
  REQUIRE(w.send(std::string("abc")));
  auto wrong = w.receive_sync<std::int64_t>();  // 3 bytes are not an int64: an error, nothing lost
  REQUIRE(!wrong);
  CHECK(wrong.error() == cp::errc::invalid_argument);
  CHECK(wrong.error().message() == "message: 3 bytes, expected 8");
  w.disconnect();
  CHECK(w.wait()->success());
}

TEST_CASE("typed messages: a worker that adds") {
  auto w = cp::fork_self("sum").value();
  REQUIRE(w.send(pair32{40, 2}));
  REQUIRE(w.send(pair32{2147483647, 1}));
  CHECK(w.receive_sync<std::int64_t>().value() == 42);
  CHECK(w.receive_sync<std::int64_t>().value() == 2147483648LL);
  w.disconnect();
  CHECK(w.wait()->success());
}

TEST_CASE("1,000,000 small messages each way, in order, on one loop") {
  constexpr int count = 1000000;
  auto w = cp::fork_self("echo_loop").value();
  auto [sent, received] = cp::sync_wait(cp::when_all(
      [&]() -> cp::task<int> {
        for (int i = 0; i < count; ++i) {
          if (!w.send(std::to_string(i))) co_return i;
          if (i % 4096 == 0) (void)co_await cp::event_loop::current()->sleep(std::chrono::milliseconds(0));
        }
        co_return count;
      }(),
      [&]() -> cp::task<int> {
        for (int i = 0; i < count; ++i) {
          auto m = co_await w.receive();
          if (!m || *m != std::to_string(i)) co_return i;
        }
        co_return count;
      }()));
  CHECK(sent == count);
  CHECK(received == count);
  w.disconnect();
  CHECK(w.wait()->success());
}

TEST_CASE("a 256 MiB message") {
  auto w = cp::fork_self("big_echo", {}, {.max_message_size = std::size_t{512} << 20}).value();
  std::string big(std::size_t{256} << 20, '\0');
  for (std::size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>(i / 4096);
  auto back = cp::sync_wait([&]() -> cp::task<cp::result<std::string>> {
    REQUIRE(co_await w.send_async(big));
    co_return co_await w.receive<std::string>();
  }());
  REQUIRE(back);
  CHECK(back->size() == big.size());
  CHECK(*back == big);
  CHECK(w.wait()->success());
}

TEST_CASE("max_message_size + 1: refused when sending; when received, an error after the earlier messages") {
  auto w = cp::fork_self("send_n", {"1001"}, {.max_message_size = 1000}).value();
  auto too_big = w.send(std::string(1001, 'x'));
  REQUIRE(!too_big);
  CHECK(too_big.error() == cp::errc::message_too_large);
  CHECK(too_big.error().message() == "send: a message of 1001 bytes, more than max_message_size 1000");
  CHECK(w.receive_sync().value() == "before");  // received before the bad frame: kept
  auto bad = w.receive_sync();
  REQUIRE(!bad);
  CHECK(bad.error() == cp::errc::message_too_large);
  CHECK(bad.error().message() == "receive: a message of 1001 bytes, more than max_message_size 1000");
  CHECK(!w.connected());
  CHECK(w.wait()->success());
}

TEST_CASE("a child that dies in the middle of a frame: the whole messages, then bad_frame") {
  auto w = cp::fork_self("half_frame").value();
  CHECK(w.receive_sync().value() == "whole");
  auto cut = w.receive_sync();
  REQUIRE(!cut);
  CHECK(cut.error() == cp::errc::bad_frame);
  CHECK(cut.error().message() == "receive: the stream ended inside a frame (7 bytes of 260)");
  CHECK(w.wait()->exit_code() == 9);
}

TEST_CASE("a peer that announces a 4 GiB frame is cut off, nobody crashes") {
  auto w = cp::fork_self("huge_length").value();
  auto r = cp::sync_wait(w.receive());
  REQUIRE(!r);
  CHECK(r.error() == cp::errc::message_too_large);
  CHECK(!w.connected());  // the channel was closed: the child sees its end and exits 0
  CHECK(w.wait()->success());
}

TEST_CASE("the child exits: the parent's receive ends; a send after that is EPIPE, never SIGPIPE") {
  auto w = cp::fork_self("exit_now").value();
  auto end = w.receive_sync();
  CHECK(end.error() == cp::errc::end_of_stream);
  CHECK(w.wait()->success());
  auto late = w.send(std::string(1 << 20, 'x'));
  REQUIRE(!late);
  CHECK(late.error() == std::errc::broken_pipe);
}

TEST_CASE("the child disconnects: the parent sees end_of_stream while the child still runs") {
  auto w = cp::fork_self("disconnect_and_sleep").value();
  CHECK(w.receive_sync().error() == cp::errc::end_of_stream);
  CHECK(!w.try_wait().value());
  REQUIRE(w.kill(SIGKILL));
  CHECK(w.wait()->signal() == SIGKILL);
}

TEST_CASE("the parent disconnects: sends are refused with channel_closed") {
  auto w = cp::fork_self("echo").value();
  w.disconnect();
  auto r = w.send(std::string("late"));
  CHECK(r.error() == cp::errc::channel_closed);
  CHECK(r.error().message() == "send: the channel is closed");
  CHECK(w.receive_sync().error() == cp::errc::channel_closed);
  CHECK(w.wait()->success());
}

TEST_CASE("a parent that dies: its child's receive ends and the child exits cleanly") {
  auto m = cp::fork_self("middle", {}, {.stdio = {cp::ignore, cp::pipe, cp::inherit}}).value();
  CHECK(m.receive_sync().value() == "ready");
  REQUIRE(m.send(std::string("die now")));
  CHECK(m.wait()->exit_code() == 9);
  CHECK(m.out().read_all().value() == "eof\n");  // written by the orphaned grandchild, which then ended
}

TEST_CASE("in the child: the variables are gone, the arguments arrive; here there is no channel") {
  auto w = cp::fork_self("env_check", {"a b", ""}).value();
  CHECK(w.receive_sync().value() == "channel unset, entry unset, args [a b][]");
  CHECK(w.wait()->success());
  CHECK(cp::parent_channel() == nullptr);  // this test program was not forked
}

TEST_CASE("fork_self with an unknown entry: a clear error in the child, its status in the parent") {
  auto w = cp::fork_self("no_such_entry", {}, {.stdio = {cp::ignore, cp::ignore, cp::pipe}}).value();
  const auto err = w.err().read_all().value();
  CHECK(err.find("childproc: fork_self: no entry point named \"no_such_entry\"") != std::string::npos);
  CHECK(err.find("echo") != std::string::npos);  // the known names are listed
  CHECK(w.wait()->exit_code() == cp::unknown_entry_exit_code);
  CHECK(w.receive_sync().error() == cp::errc::end_of_stream);
}

TEST_CASE("fork of a program by path, and an ipc entry at any stdio index") {
  const std::string self = cp::detail::self_exe_native().value();
  auto w = cp::fork(self, {"x"}, {.env = cp::environment::extend({{"CHILDPROC_ENTRY", "env_check"}})}).value();
  CHECK(w.receive_sync().value() == "channel unset, entry unset, args [x]");
  CHECK(w.wait()->success());
  auto s = cp::spawn(self, {}, {.env = cp::environment::extend({{"CHILDPROC_ENTRY", "echo"}}),
                                .stdio = {cp::ignore, cp::inherit, cp::inherit, cp::ignore, cp::ipc}})
               .value();
  REQUIRE(s.send(std::string("at 4")));
  CHECK(s.receive_sync().value() == "at 4");
  s.disconnect();
  CHECK(s.wait()->success());
  auto two = cp::spawn(self, {}, {.stdio = {cp::ipc, cp::ipc}});
  CHECK(two.error() == cp::errc::invalid_argument);
  CHECK(two.error().message().find("more than one ipc entry") != std::string::npos);
}

TEST_CASE("a process without a channel") {
  auto p = cp::spawn(child_path(), {"exit", "0"}).value();
  CHECK(!p.connected());
  CHECK(p.send(std::string("x")).error() == cp::errc::channel_closed);
  CHECK(p.wait()->success());
}

int main(int argc, char** argv) {
  cp::dispatch_entry(argc, argv);  // a fork_self child runs its entry point and exits here
  doctest::Context context(argc, argv);
  return context.run();
}
