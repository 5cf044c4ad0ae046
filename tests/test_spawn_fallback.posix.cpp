// The paths of older kernels. Before 5.9 there is no close_range: close_other_fds must still
// close every descriptor on the clone path (Linux) and the fork + execve path, those past 65535
// too (it once stopped at 65535) where the hard RLIMIT_NOFILE lets the test open one there.
// Before 5.3 there is no pidfd: children are waited for and signalled by pid.
#define CHILDPROC_NO_CLOSE_RANGE 1
#define CHILDPROC_NO_PIDFD 1
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <algorithm>
#include <atomic>
#include <chrono>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace {
// What the child's `fds` mode lists, started on a path that closes descriptors itself
// (kill_on_parent_exit: the clone path on Linux, the fork + execve path in the posix_spawn build).
std::string fds_of_child(bool close_others) {
  auto r = cp::exec_file(child_path(), {"fds"},
                         {.stdio = {cp::ignore, cp::pipe, cp::inherit}, .close_other_fds = close_others, .kill_on_parent_exit = true});
  REQUIRE(r);
  CHECK(r->ok());
  return r->out;
}
}  // namespace

TEST_CASE("without close_range, close_other_fds closes every descriptor, up to the highest the limit allows (the clone or fork path)") {
  rlimit was{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &was) == 0);
  rlimit room = was;
  room.rlim_max = std::max<rlim_t>(was.rlim_max, 70001);  // past 65535 where it may be raised (root)
  if (::setrlimit(RLIMIT_NOFILE, &room) != 0) room.rlim_max = was.rlim_max;
  room.rlim_cur = room.rlim_max;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &room) == 0);
  const int high = static_cast<int>(std::min<rlim_t>(room.rlim_max - 1, 70000));
  MESSAGE("the highest descriptor used: " << high << std::string(high > 65535 ? "" : " (the hard limit keeps it below 65536 here)"));
  const int low = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC: both would reach the child
  REQUIRE(low > 2);
  REQUIRE(::dup2(low, high) == high);
  CHECK(fds_of_child(true) == "0 1 2\n");
  const std::string kept = fds_of_child(false);  // the control: without the option both arrive
  CHECK(kept.find(" " + std::to_string(low) + " ") != std::string::npos);
  CHECK(kept.find(" " + std::to_string(high) + "\n") != std::string::npos);
  ::close(high);
  ::close(low);
  ::setrlimit(RLIMIT_NOFILE, &was);
}

TEST_CASE("without a pidfd: wait, try_wait, wait_for and co_await exit, with a stop that kills, racing the child's own end") {
  using namespace std::chrono_literals;
  // A stop callback on another thread signals by pid; the owner reaps only with that callback
  // held off, so the signal can never reach a pid reaped (and perhaps reused) meanwhile. The race
  // itself cannot be shown here; every outcome must be one of the two honest ones.
  int killed = 0, exited = 0;
  for (int i = 0; i < 200; ++i) {
    std::stop_source src;
    auto p = cp::spawn(child_path(), {"sleep", std::to_string(i % 3)}, {.stdio = {cp::ignore, cp::ignore, cp::ignore}}).value();
    CHECK(p.handle() == cp::detail::invalid_handle());  // the pid path
    p.kill_on_stop(src.get_token());
    std::thread stopper([&src, i] {
      std::this_thread::sleep_for(std::chrono::microseconds(i * 10 % 3000));
      src.request_stop();
    });
    cp::result<cp::exit_status> st = cp::exit_status::exited(99);
    switch (i % 4) {
      case 0: st = p.wait(); break;
      case 1:
        while (!p.try_wait().value()) std::this_thread::sleep_for(1ms);
        st = p.wait();
        break;
      case 2:
        while (!p.wait_for(2ms).value()) {}
        st = p.wait();
        break;
      case 3:
        st = cp::sync_wait([&]() -> cp::task<cp::result<cp::exit_status>> { co_return co_await p.exit(); }());
        break;
    }
    stopper.join();
    REQUIRE(st);
    if (st->signal() == SIGTERM) ++killed;
    else if (st->exit_code() == 0) ++exited;
    else FAIL_CHECK("unexpected status " << st->to_string());
    CHECK(!p.kill());  // reaped: ESRCH, and no signal sent
  }
  MESSAGE(killed << " killed by the stop, " << exited << " ended first");
  CHECK(killed + exited == 200);
}
