// The event loop under the patterns that wedged it: two waiters on one thing, a stop before
// run, a stop request after the loop is gone, a stream closed or looked up while a read waits.
#include "helpers.hpp"
#include "stop_requester.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <atomic>
#include <chrono>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>
#if !defined(_WIN32)
#  include <fcntl.h>
#  include <sys/wait.h>
#  include <unistd.h>
#endif

using namespace std::chrono_literals;

TEST_CASE("a stream moved while its read_line waits: that read ends cancelled, the line arrives whole on the new stream") {
  auto p = cp::spawn(child_path(), {"echo"}, {.stdio = {cp::pipe, cp::pipe, cp::ignore}}).value();
  cp::stream moved;
  std::vector<std::string> got;
  cp::event_loop loop;
  loop.run([&]() -> cp::task<void> {
    auto reader = [&]() -> cp::task<std::string> {
      auto l = co_await p.out().read_line();
      co_return l ? *l : l.error().message();
    };
    auto mover = [&]() -> cp::task<std::string> {
      (void)co_await cp::event_loop::current()->sleep(20ms);
      moved = std::move(p.out());  // the read_line above is pending
      (void)p.in().write("hello\n");
      auto l = co_await moved.read_line();
      co_return l ? *l : l.error().message();
    };
    std::vector<cp::task<std::string>> t;
    t.push_back(reader());
    t.push_back(mover());
    got = co_await cp::when_all(std::move(t));
  }());
  REQUIRE(got.size() == 2);
  CHECK(got[0] == "read: cancelled");
  CHECK(got[1] == "hello");
  p.in().close();
  CHECK(moved.read_all().value() == "");  // nothing more: no room of the old read left as bytes
  CHECK(p.wait()->exit_code() == 0);
}

TEST_CASE("co_await p.exit() while a blocking wait() reaps the child: the status, not ECHILD") {
  auto p = cp::spawn(child_path(), {"exit", "7"}, {.stdio = {cp::ignore, cp::ignore, cp::ignore}}).value();
  std::string got;
  cp::event_loop loop;
  loop.post([&] { CHECK(p.wait()->exit_code() == 7); });  // blocks this thread and reaps, the waiter below pending
  got = loop.run([&]() -> cp::task<std::string> {
    auto st = co_await p.exit();
    co_return st ? st->to_string() : st.error().message();
  }());
  CHECK(got == "exited with code 7");
}

TEST_CASE("a second co_await p.exit() started after the child ended, the first still waiting: both get the status") {
  auto p = cp::spawn(child_path(), {"sleep", "50"}, {.stdio = {cp::ignore, cp::ignore, cp::ignore}}).value();
  auto waiter = [&]() -> cp::task<std::string> {
    auto st = co_await p.exit();
    co_return st ? st->to_string() : st.error().message();
  };
  cp::event_loop loop;
  auto got = loop.run([&]() -> cp::task<std::vector<std::string>> {
    std::vector<cp::task<std::string>> w;
    w.push_back(waiter());  // waits on the child's pidfd
    w.push_back([&]() -> cp::task<std::string> {
      // Ends when the child has: blocking, so the loop has not yet seen the first waiter's wake-up.
      while (!p.try_wait().value()) std::this_thread::sleep_for(5ms);
      co_return co_await waiter();
    }());
    co_return co_await cp::when_all(std::move(w));
  }());
  CHECK(got[0] == "exited with code 0");
  CHECK(got[1] == "exited with code 0");
}

TEST_CASE("two co_await p.exit() on one process both resume with its status; a third, cancelled, leaves them be") {
  auto p = cp::spawn(child_path(), {"sleep", "200"}, {.stdio = {cp::ignore, cp::ignore, cp::ignore}}).value();
  std::stop_source cancel_third;
  auto waiter = [&](std::stop_token stop) -> cp::task<std::string> {
    auto st = co_await p.exit(stop);
    co_return st ? st->to_string() : st.error().message();
  };
  auto canceller = [&]() -> cp::task<std::string> {
    (void)co_await cp::event_loop::current()->sleep(20ms);
    cancel_third.request_stop();
    co_return "";
  };
  std::vector<cp::task<std::string>> tasks;
  tasks.push_back(waiter({}));
  tasks.push_back(waiter({}));
  tasks.push_back(waiter(cancel_third.get_token()));
  tasks.push_back(canceller());
  auto got = cp::sync_wait(cp::when_all(std::move(tasks)));
  CHECK(got[0] == "exited with code 0");
  CHECK(got[1] == "exited with code 0");
  CHECK(got[2] == "wait: cancelled");
}

TEST_CASE("a second read on a stream while one waits is refused with errc::busy; the first gets the bytes") {
  auto p = cp::spawn(child_path(), {"echo"}, {.stdio = {cp::pipe, cp::pipe, cp::ignore}}).value();
  auto first = [&]() -> cp::task<std::string> {
    char buf[64];
    auto n = co_await p.out().async_read_some(buf);
    co_return n ? std::string(buf, *n) : n.error().message();
  };
  auto second = [&]() -> cp::task<std::string> {
    char buf[64];
    auto n = co_await p.out().async_read_some(buf);
    REQUIRE_FALSE(n);
    CHECK(n.error() == cp::errc::busy);
    CHECK(n.error().message() == "read: another read is pending on this stream");
    auto line = co_await p.out().read_line();  // read_line reads too: refused the same way
    REQUIRE_FALSE(line);
    CHECK(line.error() == cp::errc::busy);
    REQUIRE(co_await p.in().async_write("hi\n"));
    co_return "";
  };
  auto [a, b] = cp::sync_wait(cp::when_all(first(), second()));
  CHECK(a == "hi\n");
  // Once the first has ended, reading works again.
  p.in().close();
  auto rest = cp::sync_wait(p.out().async_read_all());
  REQUIRE(rest);
  CHECK(rest->empty());
  CHECK(p.wait()->success());
}

TEST_CASE("a second write while one waits on a full pipe is refused with errc::busy") {
  auto p = cp::spawn(child_path(), {"sleep", "300"}, {.stdio = {cp::pipe, cp::ignore, cp::ignore}}).value();
  const std::string big(8 << 20, 'x');  // far more than any pipe holds: the write waits
  auto first = [&]() -> cp::task<cp::result<void>> { co_return co_await p.in().async_write(big); };
  auto second = [&]() -> cp::task<cp::result<void>> {
    auto r = co_await p.in().async_write_some(std::string_view("y"));
    REQUIRE_FALSE(r);
    CHECK(r.error() == cp::errc::busy);
    CHECK(r.error().message() == "write: another write is pending on this stream");
    co_return cp::result<void>();
  };
  auto [a, b] = cp::sync_wait(cp::when_all(first(), second()));
  REQUIRE_FALSE(a);  // the child ended without reading: the pipe broke under the first write
  CHECK(a.error() == std::errc::broken_pipe);
  CHECK(b);
}

TEST_CASE("stop() before run() is not lost; each stop() ends one run()") {
  cp::event_loop loop;
  std::thread([&] { loop.stop(); }).join();  // a shutdown request that comes early
  REQUIRE(loop.run());                        // returns at once (it hung before)
  // The flag was consumed: the next run() runs until the next stop().
  std::atomic<int> ran{0};
  loop.post([&] { ++ran; });
  std::thread later([&] {
    while (ran.load() == 0) std::this_thread::yield();
    loop.stop();
  });
  REQUIRE(loop.run());
  later.join();
  CHECK(ran.load() == 1);
}

TEST_CASE("a stop request after the loop is gone does nothing (the loser of a when_any without a stop source)") {
  auto p = cp::spawn(child_path(), {"sleep", "500"}, {.stdio = {cp::ignore, cp::pipe, cp::ignore}}).value();
  std::stop_source src;
  char buf[16];
  auto reader = [&]() -> cp::task<int> {
    (void)co_await p.out().async_read_some(buf, src.get_token());
    co_return 0;
  };
  auto timeout = [&]() -> cp::task<int> {
    (void)co_await cp::event_loop::current()->sleep(20ms);
    co_return 1;
  };
  auto loop = std::make_unique<cp::event_loop>();
  auto r = loop->run(cp::when_any(reader(), timeout()));
  CHECK(r.index == 1);
  loop.reset();
  src.request_stop();  // posted into the freed loop before (ASan: heap-use-after-free)
  CHECK(p.kill());
  CHECK(p.wait());
}

TEST_CASE("stop requests racing the loop's end, from another thread, 200 times") {
  auto p = cp::spawn(child_path(), {"sleep", "5000"}, {.stdio = {cp::ignore, cp::pipe, cp::ignore}}).value();
  for (int i = 0; i < 200; ++i) {
    std::stop_source src;
    char buf[16];
    auto reader = [&]() -> cp::task<int> {
      (void)co_await p.out().async_read_some(buf, src.get_token());
      co_return 0;
    };
    auto yield = []() -> cp::task<int> { co_return 1; };
    auto loop = std::make_unique<cp::event_loop>();
    auto r = loop->run(cp::when_any(reader(), yield()));
    REQUIRE(r.index == 1);
    std::thread t([&] { src.request_stop(); });  // while the loop is destroyed, or just after
    loop.reset();
    t.join();
  }
  CHECK(p.kill());
  CHECK(p.wait());
}

// The completion and the stop request meet: the loop thread ends the operation (and drops its
// stop callback) while another thread runs that callback. Dropping a callback that runs elsewhere
// waits for it, and that wait can miss its wake-up in mingw-w64's libstdc++ 12: the loop must never
// be the one to wait.
TEST_CASE("an operation ending while another thread requests its stop, 3000 times: each ends once, ok or cancelled") {
  stop_requester requester;
  int ok = 0, cancelled = 0, other = 0;
  for (int i = 1; i <= 3000; ++i) {
    std::stop_source src;
    cp::event_loop loop;
    auto sleeper = [&]() -> cp::task<cp::result<void>> {
      requester.ask(src, i);  // the request races the timer from here
      co_return co_await cp::event_loop::current()->sleep(std::chrono::microseconds(i % 3 == 0 ? 0 : i % 40), src.get_token());
    };
    auto r = loop.run(sleeper());
    if (r) ++ok;
    else if (r.error() == cp::errc::cancelled) ++cancelled;
    else ++other;
    requester.wait(i);  // the request has returned: src may go
  }
  CHECK(ok + cancelled == 3000);
  CHECK(other == 0);
}

TEST_CASE("stdio(i) past the last entry moves no stream: a pending read_line still gets its line") {
  auto p = cp::spawn(child_path(), {"echo"}, {.stdio = {cp::pipe, cp::pipe, cp::pipe}}).value();
  cp::stream* out_before = &p.out();
  auto reader = [&]() -> cp::task<std::string> {
    auto line = co_await p.out().read_line();  // pending on the stream at &stdio_[1]
    co_return line ? *line : line.error().message();
  };
  auto other = [&]() -> cp::task<bool> {
    const bool has_fd3 = p.stdio(3).is_open();  // grew (and moved) the vector before
    REQUIRE(co_await p.in().async_write("hello\n"));
    p.in().close();
    co_return has_fd3;
  };
  auto [line, has_fd3] = cp::sync_wait(cp::when_all(reader(), other()));
  CHECK(line == "hello");
  CHECK_FALSE(has_fd3);
  CHECK(&p.out() == out_before);
  CHECK(&p.stdio(7) == &p.stdio(4));  // one empty stream stands for every missing entry
  CHECK(p.wait()->success());
}

TEST_CASE("closing a stream while a read_line waits on it resumes the reader with errc::cancelled") {
  auto p = cp::spawn(child_path(), {"echo"}, {.stdio = {cp::pipe, cp::pipe, cp::ignore}}).value();
  auto reader = [&]() -> cp::task<std::string> {
    auto line = co_await p.out().read_line();
    co_return line ? *line : line.error().message();
  };
  auto closer = [&]() -> cp::task<int> {
    (void)co_await cp::event_loop::current()->sleep(20ms);
    p.out().close();  // the read-ahead buffer goes; the OS must be done with it first (Win32)
    REQUIRE(co_await p.in().async_write("late\n"));  // the child still runs; nobody reads now
    co_return 0;
  };
  auto [line, n] = cp::sync_wait(cp::when_all(reader(), closer()));
  CHECK(line == "read: cancelled");
  p.in().close();
  CHECK(p.wait());
}

TEST_CASE("a stream closed by a completion of the same round as its own read: resumed once, 100 times") {
  for (int i = 0; i < 100; ++i) {
    auto p = cp::spawn(child_path(), {"echo-both"}, {.stdio = {cp::pipe, cp::pipe, cp::pipe}}).value();
    int resumed = 0;
    auto on_err = [&]() -> cp::task<std::string> {
      char buf[8];
      auto n = co_await p.err().async_read_some(buf);
      p.out().close();  // the read on out may have completed in this very round
      co_return n ? std::string(buf, *n) : n.error().message();
    };
    auto on_out = [&]() -> cp::task<std::string> {
      char buf[8];
      auto n = co_await p.out().async_read_some(buf);
      ++resumed;
      co_return n ? std::string(buf, *n) : n.error().message();
    };
    auto feed = [&]() -> cp::task<std::string> {
      REQUIRE(co_await p.in().async_write("x"));
      p.in().close();
      co_return "";
    };
    auto [e, o, f] = cp::sync_wait(cp::when_all(on_err(), on_out(), feed()));
    CHECK(e == "x");
    const std::string out = o;  // clang 14 cannot capture a structured binding (CHECK_MESSAGE does)
    const bool expected = out == "x" || out == "read: cancelled";
    CHECK_MESSAGE(expected, out);
    CHECK(resumed == 1);
    CHECK(p.wait());
  }
}

TEST_CASE("one stream read by 100 loops in turn (sync_wait each time)") {
  auto p = cp::spawn(child_path(), {"echo"}, {.stdio = {cp::pipe, cp::pipe, cp::ignore}}).value();
  for (int i = 0; i < 100; ++i) {
    const std::string line = std::to_string(i);
    auto round = [&]() -> cp::task<std::string> {
      REQUIRE(co_await p.in().async_write(line + "\n"));
      auto got = co_await p.out().read_line();
      co_return got ? *got : got.error().message();
    };
    REQUIRE(cp::sync_wait(round()) == line);
  }
  p.in().close();
  CHECK(p.wait()->success());
}

// ---- a loop's read after one that emptied the handle waits first: every way that wait could
// miss what is already there (an edge taken earlier, the end, a reused number, stray descriptors) ----

namespace {
// A pipe read here, written by `w` (a blocking end).
struct test_pipe {
  cp::stream r, w;
  test_pipe() {
    auto p = cp::detail::create_pipe_native(false).value();
    r = cp::stream(std::move(p.parent));
    w = cp::stream(std::move(p.child));
  }
};

// One async_read_some of up to 64 bytes, as text (or the error's message).
cp::task<std::string> read_text(cp::stream& s) {
  char buf[64];
  auto n = co_await s.async_read_some(buf);
  co_return n ? std::string(buf, *n) : "error: " + n.error().message();
}

// read_text on a pipe that `text` reaches 20 ms later (the read waits for it).
cp::task<std::string> read_written_later(test_pipe& p, std::string text) {
  std::thread writer([&] {
    std::this_thread::sleep_for(20ms);
    (void)p.w.write(text);
  });
  std::string got = co_await read_text(p.r);
  writer.join();
  co_return got;
}
}  // namespace

TEST_CASE("bytes and the end in one edge, after a read that emptied the pipe: the bytes, then end_of_stream") {
  test_pipe p;
  auto run = [&]() -> cp::task<std::vector<std::string>> {
    std::vector<std::string> got;
    got.push_back(co_await read_written_later(p, "ab"));  // waits, then "ab": fewer than asked, the pipe is empty
    REQUIRE(p.w.write("cd"));
    p.w.close();                             // the bytes and the end before the loop looks again
    got.push_back(co_await read_text(p.r));  // one edge says both
    got.push_back(co_await read_text(p.r));  // must look: no edge comes again
    co_return got;
  };
  CHECK(cp::sync_wait(run()) == std::vector<std::string>{"ab", "cd", "error: end of stream"});
}

TEST_CASE("an edge that finds no read waiting (the loop was busy with a timer) is not lost: the next read gets the bytes") {
  test_pipe p;
  auto run = [&]() -> cp::task<std::vector<std::string>> {
    std::vector<std::string> got;
    got.push_back(co_await read_written_later(p, "ab"));
    std::thread later([&] {
      std::this_thread::sleep_for(10ms);
      (void)p.w.write("cd");  // while the loop sleeps, no read pending: its edge finds nobody
    });
    (void)co_await cp::event_loop::current()->sleep(60ms);
    later.join();
    got.push_back(co_await read_text(p.r));  // the last read emptied the pipe: it waits first
    co_return got;
  };
  CHECK(cp::sync_wait(run()) == std::vector<std::string>{"ab", "cd"});
}

TEST_CASE("a descriptor number closed while another loop still has it registered, then reused: that loop reads the new pipe") {
  cp::event_loop a, b;
  test_pipe first;
  CHECK(a.run(read_written_later(first, "one")) == "one");  // registered on `a`
  REQUIRE(first.w.write("two"));
  CHECK(b.run(read_text(first.r)) == "two");  // the stream's last loop is `b` now
  const auto number = first.r.handle();
  first.r.close();                            // `b` forgets it; `a` is not told
  for (int round = 0; round < 2; ++round) {
    test_pipe next;  // the lowest free number: most likely the one just closed
    INFO("round " << round << ": the new pipe's number " << next.r.handle() << ", the closed one " << number);
    CHECK(a.run(read_written_later(next, "new")) == "new");
    if (round == 0) {  // released rather than closed: its owner may close it, and the number comes back
      const auto h = next.r.release();
      cp::detail::close_native(h);
    }
  }
}

#if !defined(_WIN32)
TEST_CASE("a peer that attaches descriptors to a plain socket stream: a read stopped early by them does not make the next one wait") {
  // Linux ends a socket read after bytes that carried descriptors: a short read that did not
  // empty the socket, so the next read's wait must see the byte already there.
  for (int i = 0; i < 50; ++i) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    REQUIRE(cp::detail::set_nonblocking(sv[0]));
    cp::stream r{cp::detail::unique_handle(sv[0])};
    cp::detail::unique_handle peer(sv[1]);
    auto run = [&]() -> cp::task<std::string> {
      std::thread sender([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(i % 3));
        (void)send_with_fd(peer.get(), "a", peer.get());  // one byte and a descriptor, then one more byte
        (void)send_with_fd(peer.get(), "b", -1);
      });
      std::string got = co_await read_text(r);
      sender.join();
      if (got == "a") got += co_await read_text(r);
      co_return got;
    };
    REQUIRE(cp::sync_wait(run()) == "ab");
  }
}

TEST_CASE("descriptors a peer sends to a socket stream nobody collects from are never installed: this process keeps its file locks") {
  // Closing any descriptor of a file drops this process's fcntl locks on it; a read that
  // installed a passed descriptor only to close it would release the lock behind our back.
  const std::string path = write_temp_file("childproc-lock-" + std::to_string(::getpid()) + ".txt", "locked");
  REQUIRE(!path.empty());
  const int file = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(file >= 0);
  struct flock lock{};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  REQUIRE(::fcntl(file, F_SETLK, &lock) == 0);
  const auto locked_by_us = [&] {  // asked from another process (a process never sees its own lock)
    const pid_t pid = ::fork();
    if (pid == 0) {
      const int fd = ::open(path.c_str(), O_RDWR);
      struct flock q{};
      q.l_type = F_WRLCK;
      q.l_whence = SEEK_SET;
      _exit(fd >= 0 && ::fcntl(fd, F_GETLK, &q) == 0 && q.l_type == F_WRLCK ? 0 : 1);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  };
  REQUIRE(locked_by_us());
  const auto before = open_fds();
  for (const bool on_loop : {false, true}) {
    CAPTURE(on_loop);
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    cp::stream r{cp::detail::unique_handle(sv[0])};
    r.mark_socket();  // read with recvmsg, as a channel's socket; collect_handles not called
    cp::detail::unique_handle peer(sv[1]);
    REQUIRE(send_with_fd(peer.get(), "x", file));
    std::string got;
    if (on_loop) {
      got = cp::sync_wait(read_text(r));
    } else {
      char c = 0;
      auto n = r.read_some({&c, 1});
      REQUIRE(n);
      got.assign(&c, *n);
    }
    CHECK(got == "x");
    CHECK(locked_by_us());
  }
  CHECK(open_fds() == before);
  ::close(file);
  std::remove(path.c_str());
}
#endif
