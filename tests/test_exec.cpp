// exec, exec_file, spawn_sync: capture, input, timeout, max_buffer, the bounded drain, check().
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <chrono>
#include <csignal>

using namespace std::chrono_literals;

static std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

TEST_CASE("exec_file: no shell, arguments verbatim") {
  auto r = cp::exec_file(child_path(), {"args", "$HOME", "a;b"});
  REQUIRE(r);
  CHECK(r->out == nul_joined({"$HOME", "a;b"}));
  CHECK(r->command == child_path() + " args $HOME a;b");
}

TEST_CASE("exec_file: a program that does not exist is an error, not an output") {
  auto r = cp::exec_file("nosuchprog", {"a"});
  REQUIRE(!r);
  CHECK(r.error() == std::errc::no_such_file_or_directory);
  CHECK(r.error().message() == "spawn nosuchprog ENOENT");
}

TEST_CASE("exec: a shell that does not exist") {
  auto r = cp::exec("true", {.shell = "/no/such/shell"});
  REQUIRE(!r);
  CHECK(r.error().message() == "spawn /no/such/shell ENOENT");
}

TEST_CASE("spawn_sync writes input and closes stdin") {
  auto r = cp::spawn_sync(child_path(), {"echo"}, {.input = "some input"});
  REQUIRE(r);
  CHECK(r->out == "some input");
  CHECK(r->ok());
  auto empty = cp::spawn_sync(child_path(), {"count-stdin"});
  REQUIRE(empty);
  CHECK(empty->out == "0\n");  // stdin closed at once: no hang
}

TEST_CASE("input overrides a stdin that is not a pipe, as in Node") {
  auto r = cp::spawn_sync(child_path(), {"echo"}, {.stdio = {cp::ignore, cp::pipe, cp::pipe}, .input = "in"});
  REQUIRE(r);
  CHECK(r->out == "in");
}

TEST_CASE("64 MiB through stdin, stdout and stderr at once: no deadlock, every byte") {
  const auto big = pattern(64u << 20);
  auto r = cp::spawn_sync(child_path(), {"echo-both"}, {.input = big, .max_buffer = cp::unlimited});
  REQUIRE(r);
  CHECK(r->ok());
  CHECK(r->out.size() == big.size());
  CHECK(r->err.size() == big.size());
  CHECK(r->out == big);
  CHECK(r->err == big);
}

TEST_CASE("large outputs on both streams") {
  auto r = cp::spawn_sync(child_path(), {"write-both", "3000000"}, {.max_buffer = cp::unlimited});
  REQUIRE(r);
  CHECK(r->out == pattern(3000000));
  CHECK(r->err == pattern(3000000));
}

TEST_CASE("timeout kills the child with kill_signal; the status says so") {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = cp::exec_file(child_path(), {"print-then-sleep", "started", "100000"}, {.timeout = 3000ms});
  REQUIRE(r);
  CHECK(r->timed_out);
  CHECK(r->status.signal() == SIGTERM);
  CHECK(r->out == "started");
  CHECK(!r->ok());
  CHECK(r->check().error().message() == "Command failed: " + child_path() +
                                            " print-then-sleep started 100000 (timed out, killed by signal SIGTERM)");
  CHECK(std::chrono::steady_clock::now() - t0 < 30s);
}

TEST_CASE("timeout with another kill_signal") {
  auto r = cp::exec_file(child_path(), {"sleep", "100000"}, {.timeout = 100ms, .kill_signal = SIGINT});
  REQUIRE(r);
  CHECK(r->timed_out);
  CHECK(r->status.signal() == SIGINT);
}

TEST_CASE("max_buffer: output cut at exactly max_buffer, child killed, the stream named") {
  auto r = cp::exec_file(child_path(), {"write-out", "100000000"}, {.max_buffer = 1000});
  REQUIRE(r);
  CHECK(r->max_buffer_exceeded == 1);
  CHECK(r->out == pattern(1000));
#ifdef _WIN32
  CHECK(r->status.signal() == SIGTERM);  // killed before its pipe broke
#else
  // SIGTERM is sent first; a child inside write() when the pipe closes may also get SIGPIPE.
  CHECK((r->status.signal() == SIGTERM || r->status.signal() == SIGPIPE));
#endif
  CHECK(!r->ok());
  CHECK(r->check().error().message().find("stdout maxBuffer length exceeded") != std::string::npos);
  auto e = cp::exec_file(child_path(), {"write-err", "5000"}, {.max_buffer = 4096});
  REQUIRE(e);
  CHECK(e->max_buffer_exceeded == 2);
  CHECK(e->err == pattern(4096));
}

TEST_CASE("max_buffer defaults to 1 MiB per stream, as in Node") {
  CHECK(cp::options{}.max_buffer == 1024 * 1024);
  auto r = cp::exec_file(child_path(), {"write-out", std::to_string((1 << 20) + 1)});
  REQUIRE(r);
  CHECK(r->max_buffer_exceeded == 1);
  CHECK(r->out.size() == 1u << 20);
  auto ok = cp::exec_file(child_path(), {"write-out", std::to_string(1 << 20)});
  REQUIRE(ok);
  CHECK(ok->ok());
  CHECK(ok->out.size() == 1u << 20);
}

TEST_CASE("a grandchild holding stdout does not hang exec_file: the drain is bounded") {
  const auto t0 = std::chrono::steady_clock::now();
  auto g = cp::exec_file(child_path(), {"grandchild", "60000"}, {.drain_timeout = 300ms});
  REQUIRE(g);
  CHECK(g->out == "ready\n");
  CHECK(g->ok());
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 300ms);
  CHECK(took < 30s);
}

TEST_CASE("a crash is reported as data") {
  auto r = cp::exec_file(child_path(), {"crash"});
  REQUIRE(r);
  CHECK(r->status.crashed());
  CHECK(!r->ok());
#ifdef _WIN32
  CHECK(r->status.exit_code() == static_cast<int>(0xC0000005u));
  CHECK(r->status.to_string() == "crashed with code 0xC0000005");
#else
  CHECK(r->status.signal() == SIGSEGV);
  CHECK(r->status.to_string().rfind("killed by signal SIGSEGV", 0) == 0);
#endif
  CHECK(r->check().error().message().find(r->status.to_string()) != std::string::npos);
}


TEST_CASE("input a child never reads, held open by a grandchild: exec still returns") {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = cp::exec_file(child_path(), {"grandchild", "60000"}, {.input = std::string(8 << 20, 'x'), .drain_timeout = 200ms});
  REQUIRE(r);
  CHECK(r->out == "ready\n");
  CHECK(r->ok());
  CHECK(std::chrono::steady_clock::now() - t0 < 30s);
}

TEST_CASE("huge timeouts mean no timeout, not an overflow") {
  auto r = cp::exec_file(child_path(), {"exit", "0"},
                         {.timeout = std::chrono::milliseconds::max(), .kill_grace = std::chrono::milliseconds::max(),
                          .drain_timeout = std::chrono::milliseconds::max()});
  REQUIRE(r);
  CHECK(!r->timed_out);
  CHECK(r->ok());
  auto p = cp::spawn(child_path(), {"exit", "4"}, {.stdio = {cp::ignore, cp::ignore, cp::ignore}}).value();
  auto st = p.wait_for(std::chrono::hours::max());
  REQUIRE(st);
  REQUIRE(st->has_value());
  CHECK((*st)->exit_code() == 4);
}
