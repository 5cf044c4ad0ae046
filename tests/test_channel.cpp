// The message channel, fork and fork_self: the children are entry points of this very test
// program (fork_self), so each test's child is written next to it.
#define DOCTEST_CONFIG_IMPLEMENT
#include "raw_handles.hpp"  // first: on Win32 it needs winsock2.h before windows.h
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <atomic>
#include <cstddef>  // offsetof
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#  include <sys/prctl.h>  // PR_SET_CHILD_SUBREAPER
#  include <sys/wait.h>
#endif

#ifdef _WIN32
#  define CHILDPROC_TEST_DIE() TerminateProcess(GetCurrentProcess(), 9)
#else
#  define CHILDPROC_TEST_DIE() ::kill(::getpid(), SIGKILL)  // no cleanup of any kind, as a real kill -9
#endif

namespace {

// How a child that ended by CHILDPROC_TEST_DIE ends: SIGKILL (POSIX), TerminateProcess(9) (Win32).
bool killed_abruptly(const cp::exit_status& s) {
#ifdef _WIN32
  return s.exit_code() == 9;
#else
  return s.signal() == SIGKILL;
#endif
}

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

// Sends 64 KiB messages as fast as the channel takes them (send_async: backpressure) until the
// parent disconnects.
CHILDPROC_ENTRY(flood)(cp::channel& parent) {
  const std::string chunk(64 << 10, 'f');
  return cp::sync_wait([&]() -> cp::task<int> {
    for (;;)
      if (!co_await parent.send_async(chunk)) co_return 0;
  }());
}

// Starts wait_eof as its own child and keeps it (on Win32 it is in this process's job), sends
// its pid, and dies abruptly when the parent answers. Argument "kill": the child is spawned with
// kill_on_parent_exit, and is disconnect_and_sleep (which would outlive us unless killed).
CHILDPROC_ENTRY(middle_keeps)(cp::channel& parent) {
  const bool kill = !cp::entry_args().empty() && cp::entry_args()[0] == "kill";
  auto g = cp::fork_self(kill ? "disconnect_and_sleep" : "wait_eof", {},
                         {.stdio = {cp::ignore, cp::ignore, cp::ignore}, .kill_on_parent_exit = kill});
  if (!g) return 3;
  (void)parent.send(std::to_string(g->pid()));
  (void)parent.receive_sync();
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

// Uses the handles that come with the parent's messages, as each message says, and answers:
//   "read" -> the handle's contents;  "write:TEXT" / "sock:TEXT" -> TEXT written to it (a socket
//   with send), "ok";  "none" -> whether a handle came;  "drop" -> nothing (the handle closes
//   with the message);  "give" -> a pipe's read end back to the parent, "from the child" in it.
CHILDPROC_ENTRY(handle_user)(cp::channel& parent) {
  raw::start_sockets();
  for (;;) {
    auto m = parent.receive_sync();
    if (!m) return m.error() == cp::errc::end_of_stream ? 0 : 3;
    const std::string what = m->str();
    if (what == "read") {
      cp::unique_handle h = m->take_handle();
      if (!parent.send(h ? raw::read_all(h.get()) : std::string("(no handle)"))) return 4;
    } else if (what.rfind("write:", 0) == 0 || what.rfind("sock:", 0) == 0) {
      const bool socket = what[0] == 's';
      const bool ok = m->has_handle() && raw::write(m->handle(), what.substr(what.find(':') + 1), socket);
      if (socket) raw::close(m->take_handle().release(), true);
      if (!parent.send(std::string(ok ? "ok" : "write failed"))) return 4;
    } else if (what == "none") {
      if (!parent.send(std::string(m->has_handle() ? "a handle" : "no handle"))) return 4;
    } else if (what == "give") {
      auto p = cp::make_pipe().value();
      if (!parent.send(std::string("pipe"), p.read.handle())) return 5;
      p.read.close();
      if (!p.write.write("from the child")) return 6;
    }
  }
}

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

TEST_CASE("send_async completes when a receive in the same round sent its bytes first") {
  // A receive about to wait writes what this round queued; the send_async waiting for those
  // bytes must still be told (it once waited forever). Ten times, in both orders, on one loop.
  auto w = cp::fork_self("echo").value();
  const int matched = cp::sync_wait([&]() -> cp::task<int> {
    int ok = 0;
    for (int i = 0; i < 10; ++i) {
      const std::string text = "ping " + std::to_string(i);
      auto send = [&]() -> cp::task<bool> { co_return (co_await w.send_async(text)).has_value(); };
      auto reply = [&]() -> cp::task<std::string> {
        auto m = co_await w.receive();
        co_return m ? m->str() : m.error().message();
      };
      if (i % 2 == 0) {
        auto [sent, got] = co_await cp::when_all(send(), reply());
        ok += sent && got == text;
      } else {
        auto [got, sent] = co_await cp::when_all(reply(), send());
        ok += sent && got == text;
      }
    }
    co_return ok;
  }());
  CHECK(matched == 10);
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

TEST_CASE("messages sent just before the loop's task ends still leave") {
  auto w = cp::fork_self("echo").value();
  cp::sync_wait([&]() -> cp::task<void> {
    CHECK(w.send(std::string("one")));
    CHECK(w.send(std::string("two")));  // queued for the end of the round, which comes after the task
    co_return;
  }());
  CHECK(w.receive_sync().value() == "one");
  CHECK(w.receive_sync().value() == "two");
  w.disconnect();
  CHECK(w.wait()->success());
}

TEST_CASE("large messages leave from the caller's memory; what is sent meanwhile follows, in order") {
  auto w = cp::fork_self("echo").value();
  const std::string big(std::size_t{1} << 20, 'x');
  std::string second(300 * 1024, 'y');
  second[0] = 'z';
  cp::sync_wait([&]() -> cp::task<void> {
    auto large = [&]() -> cp::task<bool> { co_return static_cast<bool>(co_await w.send_async(big)); };
    auto small = [&]() -> cp::task<bool> { co_return static_cast<bool>(w.send(std::string("after"))); };
    auto [a, b] = co_await cp::when_all(large(), small());  // `small` runs while `large` waits to write
    CHECK(a);
    CHECK(b);
  }());
  CHECK(w.receive_sync().value() == big);  // (the echo blocks until it is read)
  CHECK(w.receive_sync().value() == "after");
  CHECK(w.send(second));  // no loop: written before send returns, straight from `second`
  CHECK(w.send(std::string("last")));
  CHECK(w.receive_sync().value() == second);
  CHECK(w.receive_sync().value() == "last");
  w.disconnect();
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
  CHECK(killed_abruptly(w.wait().value()));
}

TEST_CASE("a peer that announces a 4 GiB frame is cut off, nobody crashes") {
  auto w = cp::fork_self("huge_length").value();
  auto r = cp::sync_wait(w.receive());
  REQUIRE(!r);
  CHECK(r.error() == cp::errc::bad_frame);  // 0xFFFFFFFF: a control frame of 2 GiB, which cannot be
  CHECK(r.error().message() == "receive: not a frame");
  CHECK(!w.connected());  // the channel was closed: the child sees its end and exits 0
  CHECK(w.wait()->success());
}

TEST_CASE("a peer sending as fast as it can to a slow receiver: memory stays bounded on both sides") {
  auto w = cp::fork_self("flood").value();
  const auto before = static_cast<long long>(resident_bytes());
  constexpr int count = 2048;  // 128 MiB
  for (int i = 0; i < count; ++i) {
    auto m = w.receive_sync();
    REQUIRE(m);
    REQUIRE(m->size() == 65536);
    if (i % 64 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the slow part
  }
  const long long grown_mib = (static_cast<long long>(resident_bytes()) - before) >> 20;
  const long long child_peak_mib = static_cast<long long>(peak_resident_bytes(w)) >> 20;
  MESSAGE("after 128 MiB: the receiver grew by " << grown_mib << " MiB; the sender's peak is " << child_peak_mib << " MiB");
  if (!address_sanitizer) {
    CHECK(grown_mib < 8);
    CHECK(child_peak_mib > 0);
    CHECK(child_peak_mib < 48);  // its program and runtime, plus at most a few queued messages
  }
  w.disconnect();
  CHECK(w.wait()->exit_code() == 0);
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
  CHECK(killed_abruptly(m.wait().value()));
  CHECK(m.out().read_all().value() == "eof\n");  // written by the orphaned grandchild, which then ended
}

#if defined(__linux__)
TEST_CASE("Linux: kill_on_parent_exit: a parent killed while its child runs takes the child with it") {
  // This process adopts the orphan (a subreaper) for the test, so the orphan's end is read exactly.
  REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
  auto m = cp::fork_self("middle_keeps", {"kill"}, {.stdio = {cp::ignore, cp::ignore, cp::inherit}}).value();
  auto said = m.receive_sync();
  REQUIRE(said);
  const pid_t grandchild = static_cast<pid_t>(std::stol(said->str()));
  REQUIRE(m.send(std::string("die now")));
  CHECK(killed_abruptly(m.wait().value()));
  int status = 0;
  pid_t reaped = 0;
  for (int i = 0; i < 1000 && reaped == 0; ++i) {  // up to 10 s
    reaped = ::waitpid(grandchild, &status, WNOHANG);
    if (reaped == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (reaped == 0) {  // it outlived its parent: the failure below, and no process left behind
    ::kill(grandchild, SIGKILL);
    reaped = ::waitpid(grandchild, &status, 0);
    status = 0;
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  REQUIRE(reaped == grandchild);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
}
#endif

#if defined(_WIN32)
TEST_CASE("Win32: a parent killed while its child runs takes the child with it (the job closes)") {
  // By default, and with kill_on_parent_exit (the same job, which must then exist).
  for (const char* how : {"default", "kill"}) {
    CAPTURE(how);
    auto m = cp::fork_self("middle_keeps", {how}, {.stdio = {cp::ignore, cp::ignore, cp::inherit}}).value();
    auto said = m.receive_sync();
    REQUIRE(said);
    const unsigned long grandchild = std::stoul(said->str());
    CHECK(pid_exists(grandchild));
    REQUIRE(m.send(std::string("die now")));
    CHECK(killed_abruptly(m.wait().value()));
    bool gone = false;
    for (int i = 0; i < 1000 && !gone; ++i) {
      gone = !pid_exists(grandchild);
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(gone);
  }
}
#endif

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
  const std::string self = cp::detail::self_exe_native({}).value();
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

TEST_CASE("handles pass with messages: a pipe, a file and a socket, each way") {
  auto w = cp::fork_self("handle_user").value();
  SUBCASE("a pipe: the child reads what the parent writes after sending the read end") {
    auto p = cp::make_pipe().value();
    REQUIRE(w.send(std::string("read"), p.read.handle()));
    p.read.close();  // the child's duplicate is the only read end now
    REQUIRE(p.write.write("through a pipe"));
    p.write.close();
    CHECK(w.receive_sync().value() == "through a pipe");
  }
  SUBCASE("a file: the child writes into the parent's file") {
    const std::string path = "childproc-handle-test-" + std::to_string(w.pid()) + ".txt";
    const raw::handle f = raw::open_file(path);
    REQUIRE(f != cp::detail::invalid_handle());
    REQUIRE(w.send(std::string("write:written by the child"), f));
    raw::close(f);
    CHECK(w.receive_sync().value() == "ok");
    CHECK(raw::file_contents(path) == "written by the child");
    std::remove(path.c_str());
  }
  SUBCASE("a socket: the child sends on it, the parent reads the other end") {
    raw::handle a{}, b{};
    REQUIRE(raw::socket_pair(a, b));
    REQUIRE(w.send(std::string("sock:over a socket"), a));
    raw::close(a, true);
    CHECK(w.receive_sync().value() == "ok");
    CHECK(raw::read_all(b, true) == "over a socket");
    raw::close(b, true);
  }
  SUBCASE("the child passes a pipe to the parent") {
    REQUIRE(w.send(std::string("give")));
    auto m = w.receive_sync().value();
    CHECK(m == "pipe");
    REQUIRE(m.has_handle());
    cp::stream from(m.take_handle());
    CHECK(!m.has_handle());
    CHECK(from.read_all().value() == "from the child");
  }
  SUBCASE("in order, among messages without handles, on a loop") {
    auto p1 = cp::make_pipe().value();
    auto p2 = cp::make_pipe().value();
    cp::sync_wait([&]() -> cp::task<void> {
      CHECK(w.send(std::string("none")));
      CHECK(w.send(std::string("read"), p1.read.handle()));
      CHECK(w.send(std::string("none"), p2.write.handle()));  // arrives, reported, and closed in the child
      CHECK(co_await w.send_async(std::string("read"), p2.read.handle()));
      co_return;
    }());
    p1.read.close();
    p2.read.close();
    (void)p1.write.write("one");
    p1.write.close();
    (void)p2.write.write("two");
    p2.write.close();
    CHECK(w.receive_sync().value() == "no handle");
    CHECK(w.receive_sync().value() == "one");
    CHECK(w.receive_sync().value() == "a handle");
    CHECK(w.receive_sync().value() == "two");
  }
  w.disconnect();
  CHECK(w.wait()->success());
}

TEST_CASE("a handle whose message is dropped is closed on both sides") {
  auto w = cp::fork_self("handle_user").value();
  SUBCASE("the child never takes it: closed with the message") {
    auto p = cp::make_pipe().value();
    REQUIRE(w.send(std::string("drop"), p.write.handle()));
    p.write.close();
    REQUIRE(w.send(std::string("none")));
    CHECK(w.receive_sync().value() == "no handle");  // the child is alive and has handled "drop"
    CHECK(p.read.read_all().value().empty());        // so no write end is left anywhere
  }
  SUBCASE("the channel closes before the message is written: never sent, closed") {
    auto p = cp::make_pipe().value();
    cp::sync_wait([&]() -> cp::task<void> {
      CHECK(w.send(std::string("read"), p.write.handle()));  // queued for the end of the loop's round
      w.disconnect();
      co_return;
    }());
    p.write.close();
    CHECK(p.read.read_all().value().empty());
  }
  w.disconnect();
  CHECK(w.wait()->success());
}

TEST_CASE("handle passing errors") {
  auto w = cp::fork_self("handle_user").value();
  auto bad = w.send(std::string("read"), cp::detail::invalid_handle());
  REQUIRE(!bad);
  CHECK(bad.error() == std::errc::bad_file_descriptor);
#if defined(_WIN32)
  CHECK(bad.error().message() == "send: DuplicateHandle EBADF");
#else
  CHECK(bad.error().message() == "send: fd -1 EBADF");
#endif
  REQUIRE(w.send(std::string("none")));  // nothing of the refused message was sent
  CHECK(w.receive_sync().value() == "no handle");
  auto p = cp::make_pipe().value();
  cp::channel advanced(cp::stream(std::move(p.write)), cp::default_max_message_size, cp::serialization::advanced);
  auto refused = advanced.send(std::string("{}"), p.read.handle());
  CHECK(refused.error() == std::errc::not_supported);  // V8's format is not spoken (json: test_channel_node.posix.cpp)
  CHECK(refused.error().message() == "send: handles cannot be passed over a 'advanced' channel (not implemented) ENOTSUP");
  cp::channel none;
  CHECK(none.send(std::string("x"), p.read.handle()).error() == cp::errc::channel_closed);
  cp::message plain("text");
  CHECK(!plain.has_handle());
  CHECK(!plain.take_handle());
  w.disconnect();
  CHECK(w.wait()->success());
}

TEST_CASE("fork_self's fallback where the OS cannot name the executable: argv[0], resolved at startup") {
  CHECK(cp::detail::resolve_argv0("", nullptr).empty());
#if !defined(_WIN32)  // Win32 always has GetModuleFileNameW
  const std::string self = cp::detail::self_exe_native({}).value();
  const auto slash = self.find_last_of('/');
  const std::string dir = self.substr(0, slash), name = self.substr(slash + 1);
  namespace fs = std::filesystem;
  // With a slash: against the working directory.
  CHECK(cp::detail::resolve_argv0("./x/../prog", nullptr) == fs::current_path().string() + "/prog");
  CHECK(cp::detail::resolve_argv0(self, nullptr) == self);
  // Without: the first PATH entry holding a regular file of that name.
  const std::string path = "/nonexistent:" + dir + ":/usr/bin";
  CHECK(cp::detail::resolve_argv0(name, path.c_str()) == self);
  CHECK(cp::detail::resolve_argv0("no-such-program-here", path.c_str()).empty());
  // dispatch_entry recorded this program's path from argv[0].
  CHECK(fs::equivalent(cp::detail::recorded_self(), self));
#endif
}

// Sends the numbers 0 .. count - 1 and then `big` to an echoing peer, queued on a loop;
// how many came back, in order.
static int echoed_in_order(cp::process& p, int count, const std::string& big) {
  return cp::sync_wait([&]() -> cp::task<int> {
    for (int i = 0; i < count; ++i) (void)p.send(std::to_string(i));
    (void)p.send(big);
    int n = 0;
    for (int i = 0; i < count; ++i) {
      auto r = co_await p.receive<std::string>();
      n += r && *r == std::to_string(i);
    }
    auto b = co_await p.receive<std::string>();
    co_return n + (b && *b == big);
  }());
}

// A C++ child started with Node's channel (NODE_CHANNEL_FD, json) by a C++ parent: what a
// Node parent gives its child, spoken by both ends (plain lines on POSIX, libuv's frames on
// Win32). The child says whether Node's variables were taken away, then echoes.
CHILDPROC_ENTRY(json_child)(cp::channel& parent) {
  const bool clean = !std::getenv("NODE_CHANNEL_FD") && !std::getenv("NODE_CHANNEL_SERIALIZATION_MODE") && !std::getenv("CHILDPROC_CHANNEL");
  if (parent.serialization() != cp::serialization::json) return 3;
  if (!parent.send(std::string(clean ? R"({"clean":true})" : R"({"clean":false})"))) return 4;
  while (auto m = parent.receive_sync<std::string>())
    if (!parent.send(*m)) return 5;
  return 0;
}

TEST_CASE("a child given Node's channel (serialization json): parent_channel() speaks json, takes the variables, echoes in order") {
  auto w = cp::fork_self("json_child", {}, {.serialization = cp::serialization::json}).value();
  CHECK(w.channel().serialization() == cp::serialization::json);
  CHECK(w.receive_sync<std::string>().value() == R"({"clean":true})");
  const std::string text = R"({"s":"a\nb\"c\\d \u2028 é","n":[1,2.5,null,true,{}]})";
  REQUIRE(w.send(text));
  CHECK(w.receive_sync<std::string>().value() == text);
  const std::string big = "\"" + std::string(3 << 20, 'b') + "\"";
  const int in_order = echoed_in_order(w, 10000, big);
  CHECK(in_order == 10001);
  w.disconnect();
  CHECK(w.wait()->exit_code() == 0);
}

// A json channel between two childproc processes passes sockets as Node does (NODE_HANDLE and
// its ACK; on Win32 inside libuv's frames): the child says so on the one it gets, then sends
// one back, closing its copy once the parent says "done", and reads its own end to the end.
CHILDPROC_ENTRY(json_socket_child)(cp::channel& parent) {
  raw::start_sockets();
  auto m = parent.receive_sync();
  if (!m || *m != R"({"there":1})" || !m->has_handle()) return 3;
  auto got = m->take_handle();
  if (!raw::write(got.get(), "child here\n", true)) return 4;
  got.reset();
  raw::handle a{}, b{};
  if (!raw::socket_pair(a, b)) return 5;
  if (!parent.send(std::string(R"({"back":1})"), b)) return 6;
  auto done = parent.receive_sync<std::string>();
  if (!done || *done != R"("done")") return 7;
  raw::close(b, true);
  const bool read = raw::read_all(a, true) == "parent here\n";
  raw::close(a, true);
  return read ? 0 : 8;
}

TEST_CASE("a json channel between two childproc processes passes a socket each way, Node's way, with data through each") {
  raw::start_sockets();
  auto w = cp::fork_self("json_socket_child", {}, {.serialization = cp::serialization::json}).value();
  raw::handle a{}, b{};
  REQUIRE(raw::socket_pair(a, b));
  REQUIRE(w.send(std::string(R"({"there":1})"), b));
  auto back = w.receive_sync().value();  // sent after the child wrote on ours
  CHECK(back == R"({"back":1})");
  REQUIRE(back.has_handle());
  raw::close(b, true);
  CHECK(raw::read_all(a, true) == "child here\n");
  raw::close(a, true);
  auto theirs = back.take_handle();
  CHECK(raw::write(theirs.get(), "parent here\n", true));
  theirs.reset();
  REQUIRE(w.send(std::string(R"("done")")));
  CHECK(w.wait()->exit_code() == 0);
}

#if defined(_WIN32)
// Node's channel on Win32 is libuv's pipe IPC: each write one frame, a 16-byte header and then
// the data. The peer is the helper child reading as libuv does ("uv-node-echo"), which fails on
// any header libuv would refuse.
TEST_CASE("Win32: fork_node speaks libuv's frames: both ways, a line cut across frames, 1,000 pipelined, a bad header ends it") {
  auto js = cp::fork_node("uv-node-echo", {}, {.exec_path = child_path()}).value();
  CHECK(js.channel().serialization() == cp::serialization::json);
  CHECK(js.receive_sync<std::string>().value() == R"("hello")");
  const std::string text = R"({"s":"a\nb\"c\\d \u2028 é","n":[1,2.5,null,true]})";
  REQUIRE(js.send(text));
  CHECK(js.receive_sync<std::string>().value() == text);
  REQUIRE(js.send(std::string(R"("split")")));  // {"a":1} in two frames, [2] at the end of the second
  CHECK(js.receive_sync<std::string>().value() == R"({"a":1})");
  CHECK(js.receive_sync<std::string>().value() == "[2]");
  const std::string big = "\"" + std::string(1 << 20, 'b') + "\"";
  const int in_order = echoed_in_order(js, 1000, big);
  CHECK(in_order == 1001);
  auto bad = js.send(std::string("not json"));
  REQUIRE(!bad);
  CHECK(bad.error() == cp::errc::invalid_argument);
  REQUIRE(js.send(std::string(R"("after")")));
  CHECK(js.receive_sync<std::string>().value() == R"("after")");
  REQUIRE(js.send(std::string(R"("junk")")));  // answered with a line, then flags 9
  CHECK(js.receive_sync<std::string>().value() == R"("before")");  // what came before it is served
  auto broken = js.receive_sync();
  REQUIRE(!broken);
  CHECK(broken.error() == cp::errc::bad_frame);
  CHECK(broken.error().message() == "receive: not one of libuv's IPC frames (unknown flags)");
  CHECK(js.wait()->exit_code() == 0);  // our end closed: the peer's read ends
}
#endif

#if defined(_WIN32)
// libuv reads these fields of the description by name; node_handle_type_native by offset.
static_assert(sizeof(WSAPROTOCOL_INFOW) == 628);
static_assert(offsetof(WSAPROTOCOL_INFOW, iAddressFamily) == 76);
static_assert(offsetof(WSAPROTOCOL_INFOW, iSocketType) == 88);
static_assert(offsetof(WSAPROTOCOL_INFOW, iProtocol) == 92);

// The port in a {"port":N} message.
static std::uint16_t port_of(std::string_view text) {
  const auto at = text.find("\"port\":");
  return at == std::string_view::npos ? 0 : static_cast<std::uint16_t>(std::atoi(std::string(text.substr(at + 7)).c_str()));
}

// Node on Win32 passes TCP sockets inside libuv's frames: the WSAPROTOCOL_INFOW that
// WSADuplicateSocketW wrote for the receiving process, in the frame that carries the
// NODE_HANDLE line. The peer ("uv-node-echo") takes and sends them as libuv does.
TEST_CASE("Win32: sockets to and from Node in libuv's frames: servers and connections both ways with data; a stray closes; a line without its socket is NACKed; what Node cannot take is refused") {
  raw::start_sockets();
  auto js = cp::fork_node("uv-node-echo", {}, {.exec_path = child_path()}).value();
  REQUIRE(js.receive_sync<std::string>().value() == R"("hello")");
  const std::string pid = std::to_string(::GetCurrentProcessId());

  // To Node, a connection: it says so on it and closes; 50 pipelined, each answered in order.
  std::vector<raw::handle> ours, sent;
  for (int i = 0; i < 50; ++i) {
    raw::handle a{}, b{};
    REQUIRE(raw::socket_pair(a, b));
    ours.push_back(a);
    sent.push_back(b);
    REQUIRE(js.send("{\"n\":" + std::to_string(i) + "}", b));
  }
  for (int i = 0; i < 50; ++i)
    CHECK(js.receive_sync<std::string>().value() ==
          R"({"flags":7,"line":{"cmd":"NODE_HANDLE","type":"net.Socket","msg":{"n":)" + std::to_string(i) + "}}}");
  int via = 0;
  for (int i = 0; i < 50; ++i) {
    raw::close(sent[static_cast<std::size_t>(i)], true);  // after Node's ACK: Node has its own by then
    via += raw::read_all(ours[static_cast<std::size_t>(i)], true) == "via socket\n";
    raw::close(ours[static_cast<std::size_t>(i)], true);
  }
  CHECK(via == 50);

  // To Node, a server: it accepts one connection and says so on it.
  std::uint16_t port = 0;
  const raw::handle server = raw::tcp_listener(port);
  REQUIRE(reinterpret_cast<SOCKET>(server) != INVALID_SOCKET);
  REQUIRE(js.send(std::string("[2]"), server));
  const raw::handle client = raw::tcp_connect(port);
  REQUIRE(reinterpret_cast<SOCKET>(client) != INVALID_SOCKET);
  CHECK(raw::read_all(client, true) == "via server\n");
  raw::close(client, true);
  CHECK(js.receive_sync<std::string>().value() == R"({"flags":3,"line":{"cmd":"NODE_HANDLE","type":"net.Server","msg":[2]}})");
  raw::close(server, true);

  // From Node, a server: the message has it, listening here; Node is ACKed.
  REQUIRE(js.send("\"server " + pid + "\""));
  auto m = js.receive_sync().value();
  CAPTURE(m.str());
  REQUIRE(m.has_handle());
  const std::uint16_t node_port = port_of(m.bytes());
  CHECK(m == "{\"port\":" + std::to_string(node_port) + "}");
  const raw::handle to_it = raw::tcp_connect(node_port);
  REQUIRE(reinterpret_cast<SOCKET>(to_it) != INVALID_SOCKET);
  const SOCKET accepted = ::accept(reinterpret_cast<SOCKET>(m.handle()), nullptr, nullptr);
  REQUIRE(accepted != INVALID_SOCKET);
  CHECK(raw::write(reinterpret_cast<raw::handle>(accepted), "through\n", true));
  CHECK(raw::read_line(to_it) == "through\n");
  ::closesocket(accepted);
  raw::close(to_it, true);
  CHECK(js.receive_sync<std::string>().value() == R"({"acked":true})");

  // From Node, a connection: data both ways through it.
  REQUIRE(js.send("\"socket " + pid + "\""));
  auto c = js.receive_sync().value();
  REQUIRE(c.has_handle());
  CHECK(c == "{\"port\":" + std::to_string(port_of(c.bytes())) + "}");
  auto conn = c.take_handle();
  CHECK(raw::read_line(conn.get()) == "from node\n");
  CHECK(raw::write(conn.get(), "pong\n", true));
  CHECK(js.receive_sync<std::string>().value() == R"({"acked":true,"read":"pong"})");

  // A socket with a line that is not NODE_HANDLE is closed here: once Node's copy is closed too,
  // nothing listens on its port (it stayed open for good before).
  REQUIRE(js.send("\"stray " + pid + "\""));
  auto stray = js.receive_sync().value();
  CHECK(!stray.has_handle());
  const std::uint16_t stray_port = port_of(stray.bytes());
  CHECK(stray == "{\"stray\":{\"port\":" + std::to_string(stray_port) + "}}");
  CHECK(js.receive_sync<std::string>().value() == R"({"closed":true})");
  int refused = 0;
  CHECK(reinterpret_cast<SOCKET>(raw::tcp_connect(stray_port, &refused)) == INVALID_SOCKET);
  CHECK(refused == WSAECONNREFUSED);

  // A NODE_HANDLE line whose frame has no socket: answered NACK, not delivered.
  REQUIRE(js.send(std::string(R"("nosock")")));
  CHECK(js.receive_sync<std::string>().value() == R"({"answer":{"cmd":"NODE_HANDLE_NACK"}})");

  // A socket in a frame without data belongs to what follows it (libuv gives it to the next data).
  REQUIRE(js.send("\"bare " + pid + "\""));
  auto bare = js.receive_sync().value();
  CHECK(bare.has_handle());
  CHECK(bare == "{\"port\":" + std::to_string(port_of(bare.bytes())) + "}");
  CHECK(js.receive_sync<std::string>().value() == R"({"acked":true})");
  // One after a NODE_HANDLE line is not that line's (NACKed), and closes with the plain line after it.
  REQUIRE(js.send("\"late " + pid + "\""));
  auto after = js.receive_sync().value();
  CHECK(!after.has_handle());
  const std::uint16_t late_port = port_of(after.bytes());
  CHECK(after == "{\"after\":{\"port\":" + std::to_string(late_port) + "}}");
  CHECK(js.receive_sync<std::string>().value() == R"({"answer":{"cmd":"NODE_HANDLE_NACK"}})");
  int late_refused = 0;
  CHECK(reinterpret_cast<SOCKET>(raw::tcp_connect(late_port, &late_refused)) == INVALID_SOCKET);
  CHECK(late_refused == WSAECONNREFUSED);

  // What libuv cannot take on Win32 is refused, and nothing of it is written.
  const auto refuses = [&](raw::handle h, auto code, const std::string& text) {  // code: an errc of either kind
    auto e = js.send(std::string("{}"), h);
    REQUIRE(!e);
    CHECK(e.error() == code);
    CHECK(e.error().message() == text);
  };
  const SOCKET idle = ::WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, nullptr, 0, 0);  // neither listening nor connected
  REQUIRE(idle != INVALID_SOCKET);
  refuses(reinterpret_cast<raw::handle>(idle), cp::errc::invalid_argument,
          "send: socket " + std::to_string(idle) + " is neither listening nor connected, so Node could not take it");
  ::closesocket(idle);
  auto p = cp::make_pipe().value();
  refuses(p.read.handle(), std::errc::not_supported,
          "send: only TCP sockets can go to a Node process on Win32 (libuv passes no other handle there) ENOTSUP");
  const SOCKET udp = ::WSASocketW(AF_INET, SOCK_DGRAM, IPPROTO_UDP, nullptr, 0, 0);
  REQUIRE(udp != INVALID_SOCKET);
  refuses(reinterpret_cast<raw::handle>(udp), cp::errc::invalid_argument,
          "send: socket " + std::to_string(udp) + " cannot go to a Node process, which takes TCP sockets only on Win32");
  ::closesocket(udp);
  REQUIRE(js.send(std::string(R"("after")")));
  CHECK(js.receive_sync<std::string>().value() == R"("after")");
  js.disconnect();
  CHECK(js.wait()->exit_code() == 0);
}
#endif

#if defined(_WIN32)
// A sender that does not wait for answers (childproc's, on Win32) sends sockets back to back:
// a receiver that reads late finds ~90 frames in 64 KiB, each socket made as its description
// is read. Reads are cut so that one never holds more than the 64 the channel may hold.
TEST_CASE("Win32: 200 sockets sent back to back on a json channel to a receiver that reads late: every one with its message") {
  raw::start_sockets();
  auto pair = cp::detail::create_channel_native().value();  // the channel's own kind of pipe (overlapped)
  cp::channel tx(cp::stream(std::move(pair.parent)), cp::default_max_message_size, cp::serialization::json);
  cp::channel rx(cp::stream(std::move(pair.child)), cp::default_max_message_size, cp::serialization::json);
  std::vector<raw::handle> ours(200), theirs(200);
  for (int i = 0; i < 200; ++i) REQUIRE(raw::socket_pair(ours[static_cast<std::size_t>(i)], theirs[static_cast<std::size_t>(i)]));
  std::atomic<int> sent{0};
  std::thread sender([&] {
    for (int i = 0; i < 200; ++i) {
      if (!tx.send("{\"n\":" + std::to_string(i) + "}", theirs[static_cast<std::size_t>(i)])) return;
      raw::close(theirs[static_cast<std::size_t>(i)], true);
      ++sent;
    }
  });
  while (sent < 90) std::this_thread::yield();  // 90 frames (~63 KB) wait in the pipe's 64 KiB
  int right = 0;
  for (int i = 0; i < 200; ++i) {
    auto m = rx.receive_sync();
    if (!m) {
      CAPTURE(m.error().message());
      CHECK(m);
      break;
    }
    auto h = m->take_handle();
    right += *m == "{\"n\":" + std::to_string(i) + "}" && h && raw::write(h.get(), std::to_string(i) + "\n", true);
  }
  sender.join();
  CHECK(sent == 200);
  CHECK(right == 200);
  int through = 0;
  for (int i = 0; i < 200; ++i) {
    through += raw::read_line(ours[static_cast<std::size_t>(i)]) == std::to_string(i) + "\n";
    raw::close(ours[static_cast<std::size_t>(i)], true);
  }
  CHECK(through == 200);
}
#endif

#if !defined(_WIN32)  // Node is not installed under Wine here
// Where `node` is, or empty.
static std::string find_node() {
  auto r = cp::exec("command -v node");
  if (!r || !r->ok()) return {};
  std::string path = r->out;
  while (!path.empty() && path.back() == '\n') path.pop_back();
  return path;
}

static std::string write_script(const std::string& name, const std::string& text) {
  std::string path = write_temp_file(name, text);
  REQUIRE(!path.empty());
  return path;
}

TEST_CASE("Node's own channel, json lines: a C++ parent and a Node child, a Node parent and a C++ child") {
  const std::string node = find_node();
  if (node.empty()) {
    MESSAGE("node is not installed: the Node interop test did not run");
    return;
  }
  SUBCASE("C++ forks a Node script: NODE_CHANNEL_FD at the ipc entry") {
    const std::string script = write_script("childproc-node-child.js", R"(
process.on('message', (m) => {
  process.send({echo: m});
  if (m === 'bye') process.disconnect();
});
)");
    auto p = cp::spawn(node, {script}, {.env = cp::environment::extend({{"NODE_CHANNEL_FD", "3"}}),
                                        .stdio = {cp::inherit, cp::inherit, cp::inherit, cp::ipc}})
                 .value();
    cp::basic_channel<cp::json_lines> js(std::move(p.channel().transport()));
    REQUIRE(js.send(std::string(R"({"hello":[1,2,"three"]})")));
    CHECK(js.receive_sync().value() == R"({"echo":{"hello":[1,2,"three"]}})");
    REQUIRE(js.send(std::string(R"("bye")")));
    CHECK(js.receive_sync().value() == R"({"echo":"bye"})");
    CHECK(js.receive_sync().error() == cp::errc::end_of_stream);  // Node disconnected
    CHECK(p.wait()->success());
    std::remove(script.c_str());
  }
  SUBCASE("Node forks this C++ program: node_parent_channel()") {
    const std::string script = write_script("childproc-node-parent.js", R"(
const { fork } = require('child_process');
const c = fork('unused', [], { execPath: process.argv[2], env: { ...process.env, CHILDPROC_TEST_NODE_CHILD: '1' } });
c.on('message', (m) => { console.log(JSON.stringify(m)); c.disconnect(); });
c.on('exit', (code) => console.log('exit ' + code));
c.send({ n: 21 });
)");
    const std::string self = cp::detail::self_exe_native({}).value();
    auto out = cp::exec_file(node, {script, self}).value();
    CHECK(out.err == "");
    CHECK(out.out == "{\"doubled\":42,\"got\":{\"n\":21}}\nexit 0\n");
    CHECK(out.ok());
    std::remove(script.c_str());
  }
}
#endif

TEST_CASE("a channel over a plain pipe (not a socket): messages go one way, in order, on a loop too") {
  // A channel's writes use send(2) on POSIX; a pipe answers ENOTSOCK and the write falls back.
  // (Win32 channels need overlapped handles, which an anonymous pipe is not: the duplex pipe
  // there, written from its overlapped end.)
#if CHILDPROC_WIN32
  auto pair = cp::detail::create_duplex_native().value();
  cp::channel reader{cp::stream(std::move(pair.child))}, writer{cp::stream(std::move(pair.parent))};
#else
  auto pair = cp::detail::create_plain_pipe_native().value();
  cp::channel reader{cp::stream(std::move(pair.parent))}, writer{cp::stream(std::move(pair.child))};
#endif
  REQUIRE(writer.send(std::string("one")));
  cp::sync_wait([&]() -> cp::task<> {
    (void)writer.send(std::string("two"));
    CHECK((co_await writer.send_async(std::string("three"))));
  }());
  writer.disconnect();
  for (const char* want : {"one", "two", "three"}) {
    auto m = reader.receive_sync();
    REQUIRE(m);
    CHECK(m->str() == want);
  }
  CHECK(reader.receive_sync().error() == cp::errc::end_of_stream);
}

TEST_CASE("a process without a channel") {
  auto p = cp::spawn(child_path(), {"exit", "0"}).value();
  CHECK(!p.connected());
  CHECK(p.send(std::string("x")).error() == cp::errc::channel_closed);
  CHECK(p.wait()->success());
}

int main(int argc, char** argv) {
  cp::dispatch_entry(argc, argv);  // a fork_self child runs its entry point and exits here
  if (std::getenv("CHILDPROC_TEST_NODE_CHILD")) {  // forked by Node (the interop test): answer once
    auto* node = cp::node_parent_channel();
    if (!node) return 2;
    auto m = node->receive_sync();
    if (!m) return 3;
    if (!node->send("{\"doubled\":42,\"got\":" + m->str() + "}")) return 4;
    return node->receive_sync().error() == cp::errc::end_of_stream ? 0 : 5;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
