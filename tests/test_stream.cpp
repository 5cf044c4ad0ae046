// Awaitable streams and exits on a child: lines, EOF, errors, many children, large streams.
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <chrono>
#include <cstdio>
#include <vector>
#ifndef _WIN32
#  include <fcntl.h>
#  include <unistd.h>
#endif

using namespace std::chrono_literals;

static cp::options piped() { return {.stdio = {cp::pipe, cp::pipe, cp::pipe}}; }

TEST_CASE("read_line: \\n and \\r\\n, a last line without newline, then end_of_stream") {
  auto p = cp::spawn(child_path(), {"echo"}, piped()).value();
  REQUIRE(p.in().write("one\ntwo\r\n\nlast"));
  p.in().close();
  auto lines = [&]() -> cp::task<std::vector<std::string>> {
    std::vector<std::string> out;
    for (;;) {
      auto line = co_await p.out().read_line();
      if (!line) {
        CHECK(line.error() == cp::errc::end_of_stream);
        break;
      }
      out.push_back(*line);
    }
    co_return out;
  };
  CHECK(cp::sync_wait(lines()) == std::vector<std::string>{"one", "two", "", "last"});
  auto st = cp::sync_wait([&]() -> cp::task<cp::result<cp::exit_status>> { co_return co_await p.exit(); }());
  REQUIRE(st);
  CHECK(st->success());
}

TEST_CASE("the sketch: pump lines, then await the exit") {
  auto p = cp::spawn(child_path(), {"write-out", "100"}, {.stdio = {cp::ignore, cp::pipe, cp::inherit}}).value();
  std::size_t bytes = 0;
  auto pump = [&](cp::process& proc) -> cp::task<> {
    while (auto line = co_await proc.out().read_line()) bytes += line->size();
    auto st = co_await proc.exit();
    CHECK(st->success());
  };
  cp::sync_wait(pump(p));
  CHECK(bytes == 100);
}

TEST_CASE("partial lines across reads are joined") {
  auto p = cp::spawn(child_path(), {"echo"}, piped()).value();
  auto run = [&]() -> cp::task<std::string> {
    auto writer = [&]() -> cp::task<void> {
      for (const char* part : {"ab", "cd", "e\nf", "g\n"}) {
        REQUIRE(co_await p.in().async_write(part));
        (void)co_await cp::event_loop::current()->sleep(20ms);
      }
      p.in().close();
    };
    auto reader = [&]() -> cp::task<std::string> {
      auto a = co_await p.out().read_line();
      auto b = co_await p.out().read_line();
      co_return *a + "|" + *b;
    };
    auto [w, r] = co_await cp::when_all(writer(), reader());
    (void)w;
    co_return r;
  };
  CHECK(cp::sync_wait(run()) == "abcde|fg");
}

TEST_CASE("a line over max is an error, not a truncation, and loses nothing") {
  auto p = cp::spawn(child_path(), {"write-out", "100"}, {.stdio = {cp::ignore, cp::pipe, cp::inherit}}).value();
  auto run = [&]() -> cp::task<void> {
    auto line = co_await p.out().read_line(10);
    REQUIRE(!line);
    CHECK(line.error() == cp::errc::line_too_long);
    CHECK(line.error().message() == "read: no delimiter within 10 bytes");
    auto rest = co_await p.out().async_read_all();
    REQUIRE(rest);
    CHECK(rest->size() == 100);  // every byte still there
  };
  cp::sync_wait(run());
  CHECK(p.wait()->success());
}

TEST_CASE("read_until a delimiter") {
  auto p = cp::spawn(child_path(), {"args", "a", "bb", "ccc"}, {.stdio = {cp::ignore, cp::pipe, cp::inherit}}).value();
  auto run = [&]() -> cp::task<std::vector<std::string>> {
    std::vector<std::string> out;
    while (auto part = co_await p.out().read_until(std::string(1, '\0'))) out.push_back(*part);
    co_return out;
  };
  CHECK(cp::sync_wait(run()) == std::vector<std::string>{"a", "bb", "ccc"});
}

#ifndef _WIN32  // a Win32 file joins a completion port only when opened overlapped: not a stream's case
TEST_CASE("a stream over a regular file reads to its end on a loop (epoll refuses files)") {
  const std::string path = "childproc_stream_file_" + std::to_string(getpid());
  const std::string content(100000, 'f');  // 64 KiB, then a short read, then the end
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    REQUIRE(f);
    std::fwrite(content.data(), 1, content.size(), f);
    std::fclose(f);
  }
  cp::stream s{cp::detail::unique_handle(::open(path.c_str(), O_RDONLY | O_CLOEXEC))};
  REQUIRE(s.is_open());
  const auto got = cp::sync_wait([&]() -> cp::task<std::string> {
    std::string all;
    std::vector<char> buf(65536);
    for (;;) {
      auto r = co_await s.async_read_some(buf);
      if (!r) co_return r.error() == cp::errc::end_of_stream ? all : "error: " + r.error().message();
      all.append(buf.data(), *r);
    }
  }());
  std::remove(path.c_str());
  CHECK(got.size() == content.size());
  CHECK(got.substr(0, 40) == content.substr(0, 40));  // an error message would show here
  CHECK(got.find_first_not_of('f') == std::string::npos);
}
#endif

TEST_CASE("async_read_some at the end is end_of_stream; on a closed stream it is an error") {
  auto p = cp::spawn(child_path(), {"exit", "0"}, {.stdio = {cp::ignore, cp::pipe, cp::inherit}}).value();
  auto run = [&]() -> cp::task<void> {
    char buf[16];
    auto r = co_await p.out().async_read_some(buf);
    REQUIRE(!r);
    CHECK(r.error() == cp::errc::end_of_stream);
    p.out().close();
    auto closed = co_await p.out().async_read_some(buf);
    REQUIRE(!closed);
    CHECK(closed.error() == cp::errc::no_process);
  };
  cp::sync_wait(run());
}

TEST_CASE("awaiting outside an event loop is an error, not a hang") {
  auto p = cp::spawn(child_path(), {"sleep", "10"}, {.stdio = {cp::ignore, cp::pipe, cp::inherit}}).value();
  // Drive the awaiter by hand: no loop runs on this thread.
  char buf[4];
  auto op = p.out().async_read_some(buf);
  CHECK(op.await_ready());
  auto r = op.await_resume();
  REQUIRE(!r);
  CHECK(r.error() == cp::errc::no_event_loop);
  CHECK(p.wait()->success());
}

TEST_CASE("writing to a child that closed stdin is EPIPE, never SIGPIPE") {
  auto p = cp::spawn(child_path(), {"close-stdin-sleep", "100000"}, {.stdio = {cp::pipe, cp::ignore, cp::ignore}}).value();
  auto run = [&]() -> cp::task<cp::result<void>> {
    const std::string chunk(1 << 20, 'x');
    for (int i = 0; i < 100; ++i) {
      auto w = co_await p.in().async_write(chunk);
      if (!w) co_return w;
    }
    co_return cp::result<void>();
  };
  auto w = cp::sync_wait(run());
  REQUIRE(!w);
  CHECK(w.error() == std::errc::broken_pipe);
}

TEST_CASE("stdout and stderr in alternating large bursts, read at once") {
  auto p = cp::spawn(child_path(), {"write-both", "5000000"}, {.stdio = {cp::ignore, cp::pipe, cp::pipe}}).value();
  auto run = [&]() -> cp::task<void> {
    auto [out, err] = co_await cp::when_all(p.out().async_read_all(), p.err().async_read_all());
    REQUIRE(out);
    REQUIRE(err);
    CHECK(out->size() == 5000000);
    CHECK(*out == *err);
    auto st = co_await p.exit();
    CHECK(st->success());
  };
  cp::sync_wait(run());
}

TEST_CASE("200 children at once on one loop, all reaped") {
  constexpr int n = 200;
  std::vector<cp::process> procs;
  for (int i = 0; i < n; ++i)
    procs.push_back(cp::spawn(child_path(), {"exit", std::to_string(i % 5)}, {.stdio = {cp::ignore, cp::ignore, cp::ignore}}).value());
  auto wait_one = [](cp::process& p) -> cp::task<int> {
    auto st = co_await p.exit();
    co_return st ? *st->exit_code() : -1;
  };
  std::vector<cp::task<int>> waits;
  for (auto& p : procs) waits.push_back(wait_one(p));
  auto codes = cp::sync_wait(cp::when_all(std::move(waits)));
  for (int i = 0; i < n; ++i) CHECK(codes[static_cast<std::size_t>(i)] == i % 5);
}

TEST_CASE("a 1 GiB stream is read with constant memory") {
  constexpr long long total = 1LL << 30;  // 1 GiB through a 64 KiB buffer
  auto p = cp::spawn(child_path(), {"write-out", std::to_string(total)}, {.stdio = {cp::ignore, cp::pipe, cp::inherit}}).value();
  auto run = [&]() -> cp::task<long long> {
    std::vector<char> buf(65536);
    long long got = 0;
    for (;;) {
      auto r = co_await p.out().async_read_some(buf);
      if (!r) break;
      got += static_cast<long long>(*r);
    }
    co_return got;
  };
  const std::size_t before = resident_bytes();
  CHECK(cp::sync_wait(run()) == total);
  const std::size_t after = resident_bytes();
  CHECK(p.wait()->success());
  REQUIRE(before > 0);
  CHECK(after < before + (16u << 20));  // grew by less than 16 MiB while 1 GiB went through
}

// What the child's write-out / write-both modes write: byte i is 'a' + i % 26.
static std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

TEST_CASE("socket_pipe: exec captures stdout and stderr exactly, and `input` reaches stdin") {
  const cp::options sockets{.stdio = {cp::socket_pipe, cp::socket_pipe, cp::socket_pipe}};
  auto r = cp::exec_file(child_path(), {"write-both", "3000001"}, {.stdio = sockets.stdio, .max_buffer = cp::unlimited});
  REQUIRE(r);
  CHECK(r->ok());
  CHECK(r->out == pattern(3000001));
  CHECK(r->err == r->out);
  auto c = cp::exec_file(child_path(), {"count-stdin"}, {.stdio = sockets.stdio, .input = std::string(5000000, 'q')});
  REQUIRE(c);
  CHECK(c->out == "5000000\n");
}

TEST_CASE("socket_pipe: 64 MiB through read_some and through co_await async_read_some, every byte in order") {
  constexpr std::size_t total = 64u << 20;
  const std::string want = pattern(total);
  for (const bool async : {false, true}) {
    CAPTURE(async);
    auto p = cp::spawn(child_path(), {"write-out", std::to_string(total)}, {.stdio = {cp::ignore, cp::socket_pipe, cp::inherit}}).value();
    std::string got;
    std::vector<char> buf(65536);
    if (async) {
      auto run = [&]() -> cp::task<void> {
        while (auto r = co_await p.out().async_read_some(buf)) got.append(buf.data(), *r);
      };
      cp::sync_wait(run());
    } else {
      for (;;) {
        auto r = p.out().read_some(buf);
        if (!r) {
          CHECK(r.error() == cp::errc::end_of_stream);
          break;
        }
        got.append(buf.data(), *r);
      }
    }
    CHECK(got.size() == total);
    CHECK(got == want);
    CHECK(p.wait()->success());
  }
}

TEST_CASE("socket_pipe: stdin and stdout both ways at once, 8 MiB echoed back on one loop") {
  auto p = cp::spawn(child_path(), {"echo"}, {.stdio = {cp::socket_pipe, cp::socket_pipe, cp::inherit}}).value();
  const std::string sent = pattern(8u << 20);
  auto writer = [&]() -> cp::task<cp::result<void>> {
    auto w = co_await p.in().async_write(sent);
    p.in().close();
    co_return w;
  };
  auto run = [&]() -> cp::task<void> {
    auto [w, back] = co_await cp::when_all(writer(), p.out().async_read_all());
    CHECK(w);
    REQUIRE(back);
    CHECK(back->size() == sent.size());
    CHECK(*back == sent);
    auto st = co_await p.exit();
    CHECK(st->success());
  };
  cp::sync_wait(run());
}

TEST_CASE("socket_pipe: writing to a child that closed stdin is EPIPE, never SIGPIPE, blocking and on a loop") {
  for (const bool async : {false, true}) {
    CAPTURE(async);
    auto p = cp::spawn(child_path(), {"close-stdin-sleep", "100000"}, {.stdio = {cp::socket_pipe, cp::ignore, cp::ignore}}).value();
    const std::string chunk(1 << 20, 'x');
    cp::result<void> w;
    if (async) {
      auto run = [&]() -> cp::task<cp::result<void>> {
        for (int i = 0; i < 100; ++i)
          if (auto one = co_await p.in().async_write(chunk); !one) co_return one;
        co_return cp::result<void>();
      };
      w = cp::sync_wait(run());
    } else {
      for (int i = 0; i < 100 && w; ++i) w = p.in().write(chunk);
    }
    REQUIRE(!w);
    CHECK(w.error() == std::errc::broken_pipe);
  }
}
