// The reactor under random work. From a seed, episodes on fresh loops (now and then two loops on
// two threads at once) start reads and writes on the pipes of echo children, exit waits (two or
// more on one child), timers and cancellations (some requested before the operation starts), and
// end either when everything has finished or, at the first operation to finish, with the rest
// still pending (the loop is destroyed).
// The model checks that every byte written comes back once, in order (a cancelled read loses
// nothing), that a second read or write on one stream is refused with errc::busy while the first
// goes on, that each exit wait reports the code the child was given, that a timer never fires
// early, that nothing hangs (a watchdog names the seed), and that descriptors come back.
//   CHILDPROC_REACTOR_SEEDS=N (default 6) CHILDPROC_REACTOR_FIRST=S (default 1)
//   CHILDPROC_REACTOR_TRACE=1 prints each read and write
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

int env_number(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

// Byte k of what is written to echo child i in seed s: anything shifted or repeated shows.
char byte_at(unsigned s, std::size_t i, std::uint64_t k) {
  return static_cast<char>((k * 131 + (k >> 8) * 7 + i * 29 + s * 17) & 0xff);
}

#if defined(_WIN32)
// A Win32 pipe write cancelled after the reader took part of it reports 0 bytes under Wine (the
// README says so): here writes stay small enough (the pipes hold 64 KiB) not to wait halfway.
constexpr std::size_t max_chunk = 8 * 1024, max_unread = 48 * 1024;
#else
constexpr std::size_t max_chunk = 256 * 1024, max_unread = std::size_t(-1);
#endif

struct echo_kid {
  cp::process p;
  std::uint64_t sent = 0, got = 0;
  std::uint64_t in_flight = 0;  // a pending write's size: Win32 lets the reader take its bytes before it completes
  bool reading = false, writing = false;
  int busy_reads = 0, busy_writes = 0;
};

struct exit_kid {
  cp::process p;
  int code = 0;
};

struct outcome {
  std::vector<std::string> errors;
  void fail(std::string what) { errors.push_back(std::move(what)); }
};

class model {
 public:
  explicit model(unsigned seed) : seed_(seed), rng_(seed) {}

  void run() {
    for (std::size_t i = 0; i < 3; ++i)
      echo_.push_back({cp::spawn(child_path(), {"echo"}, {.stdio = {cp::pipe, cp::pipe, cp::ignore}}).value()});
    for (std::size_t j = 0; j < 3; ++j) {
      const int code = static_cast<int>(rng_() % 5);
      const bool slow = rng_() % 2;
      auto args = slow ? mode({"sleep", std::to_string(20 + rng_() % 200)}) : mode({"exit", std::to_string(code)});
      exits_.push_back({cp::spawn(child_path(), args, {.stdio = {cp::ignore, cp::ignore, cp::ignore}}).value(), slow ? 0 : code});
    }
    const int episodes = 6 + static_cast<int>(rng_() % 6);
    for (int e = 0; e < episodes; ++e) {
      if (rng_() % 4 == 0) {  // two loops on two threads, each with its own children
        const unsigned a = static_cast<unsigned>(rng_()), b = static_cast<unsigned>(rng_());
        std::thread other([&] { episode(b, {1, 2}, {1, 2}, out_b_); });
        episode(a, {0}, {0}, out_);
        other.join();
      } else {
        episode(static_cast<unsigned>(rng_()), {0, 1, 2}, {0, 1, 2}, out_);
      }
    }
    finish();
    for (auto& e : out_b_.errors) out_.fail(e);
  }

  const outcome& result() const { return out_; }
  std::uint64_t bytes() const {
    std::uint64_t n = 0;
    for (const auto& k : echo_) n += k.sent;
    return n;
  }
  int refused() const {
    int n = 0;
    for (const auto& k : echo_) n += k.busy_reads + k.busy_writes;
    return n;
  }

 private:
  unsigned seed_;
  std::mt19937 rng_;
  std::vector<echo_kid> echo_;
  std::vector<exit_kid> exits_;
  outcome out_, out_b_;

  std::string where(const char* what, std::size_t i) const { return "seed " + std::to_string(seed_) + ": " + what + " " + std::to_string(i); }

  // One loop's episode over the given children, from its own generator (threads draw apart).
  void episode(unsigned ep_seed, std::vector<std::size_t> echoes, std::vector<std::size_t> kids, outcome& out) {
    std::mt19937 rng(ep_seed);
    const bool abandon = rng() % 2;  // destroy the loop with work pending, or let everything end
    const auto length = std::chrono::milliseconds(5 + rng() % 40);
    std::vector<std::shared_ptr<std::stop_source>> stops;
    std::vector<cp::task<void>> ops;
    cp::event_loop loop;
    const int count = 4 + static_cast<int>(rng() % 12);
    for (int n = 0; n < count; ++n) {
      auto stop = std::make_shared<std::stop_source>();
      if (rng() % 10 == 0) stop->request_stop();  // stop before start
      stops.push_back(stop);
      switch (rng() % 5) {
        case 0: ops.push_back(read(echoes[rng() % echoes.size()], stop, out)); break;
        case 1: ops.push_back(write(echoes[rng() % echoes.size()], 1 + rng() % max_chunk, stop, out)); break;
        case 2: ops.push_back(wait_exit(kids[rng() % kids.size()], stop, out)); break;
        case 3: ops.push_back(nap(std::chrono::milliseconds(rng() % 30), stop, out)); break;
        case 4: ops.push_back(cancel_later(std::chrono::milliseconds(rng() % 30), stops[rng() % stops.size()])); break;
      }
    }
    if (abandon) {
      ops.insert(ops.begin(), nap(length, std::make_shared<std::stop_source>(), out));  // ends the episode first
      (void)loop.run(cp::when_any(std::move(ops)));
    } else {
      ops.push_back(end_all(length, stops));
      (void)loop.run(cp::when_all(std::move(ops)));
    }
  }  // the loop goes: what is pending is cancelled and finished here

  cp::task<void> read(std::size_t i, std::shared_ptr<std::stop_source> stop, outcome& out) {
    echo_kid& k = echo_[i];
    std::vector<char> buf(1 + std::size_t(k.got % 70000));
    const bool other = k.reading;
    k.reading = true;
    auto r = co_await k.p.out().async_read_some(buf, stop->get_token());
    if (!other) k.reading = false;
    if (std::getenv("CHILDPROC_REACTOR_TRACE"))
      std::fprintf(stderr, "echo %zu: read -> %s\n", i, r ? std::to_string(*r).c_str() : r.error().message().c_str());
    if (r) {
      if (other) out.fail(where("a second read ran beside the first on echo", i));
      if (k.got + *r > k.sent + k.in_flight) out.fail(where("more bytes came back than were written to echo", i));
      for (std::size_t n = 0; n < *r; ++n)
        if (buf[n] != byte_at(seed_, i, k.got + n)) {
          out.fail(where("a wrong byte came back from echo", i) + " at " + std::to_string(k.got + n));
          break;
        }
      k.got += *r;
    } else if (r.error() == cp::errc::busy) {
      if (!other) out.fail(where("busy without another read on echo", i));
      ++k.busy_reads;
    } else if (r.error() != cp::errc::cancelled) {
      out.fail(where("read error on echo", i) + ": " + r.error().message());
    }
  }

  cp::task<void> write(std::size_t i, std::size_t size, std::shared_ptr<std::stop_source> stop, outcome& out) {
    echo_kid& k = echo_[i];
    if (k.sent - k.got + size > max_unread) co_return;  // Win32: a write that could wait
    std::string chunk(size, '\0');
    for (std::size_t n = 0; n < size; ++n) chunk[n] = byte_at(seed_, i, k.sent + n);
    const bool other = k.writing;
    k.writing = true;
    if (!other) k.in_flight = size;
    const bool pre = stop->stop_requested();
    auto r = co_await k.p.in().async_write_some(chunk, stop->get_token());
    if (!other) {
      k.writing = false;
      k.in_flight = 0;
    }
    if (std::getenv("CHILDPROC_REACTOR_TRACE"))
      std::fprintf(stderr, "echo %zu: write %zu (stopped before: %d) -> %s\n", i, size, pre,
                   r ? std::to_string(*r).c_str() : r.error().message().c_str());
    if (r) {
      if (other) out.fail(where("a second write ran beside the first on echo", i));
      k.sent += *r;  // the bytes it did not take are simply never sent: the stream of bytes goes on
    } else if (r.error() == cp::errc::busy) {
      if (!other) out.fail(where("busy without another write on echo", i));
      ++k.busy_writes;
    } else if (r.error() != cp::errc::cancelled) {
      out.fail(where("write error on echo", i) + ": " + r.error().message());
    }
  }

  cp::task<void> wait_exit(std::size_t j, std::shared_ptr<std::stop_source> stop, outcome& out) {
    auto st = co_await exits_[j].p.exit(stop->get_token());
    if (st) {
      if (st->exit_code() != exits_[j].code)
        out.fail(where("exit wait on kid", j) + ": " + st->to_string() + ", not code " + std::to_string(exits_[j].code));
    } else if (st.error() != cp::errc::cancelled) {
      out.fail(where("exit wait error on kid", j) + ": " + st.error().message());
    }
  }

  cp::task<void> nap(std::chrono::milliseconds d, std::shared_ptr<std::stop_source> stop, outcome& out) {
    const auto start = clock_type::now();
    auto r = co_await cp::event_loop::current()->sleep(d, stop->get_token());
    if (r && clock_type::now() - start < d) out.fail("seed " + std::to_string(seed_) + ": a timer fired early");
    if (!r && r.error() != cp::errc::cancelled) out.fail("seed " + std::to_string(seed_) + ": timer: " + r.error().message());
  }

  static cp::task<void> cancel_later(std::chrono::milliseconds d, std::shared_ptr<std::stop_source> stop) {
    (void)co_await cp::event_loop::current()->sleep(d);
    stop->request_stop();
  }

  static cp::task<void> end_all(std::chrono::milliseconds d, std::vector<std::shared_ptr<std::stop_source>> stops) {
    (void)co_await cp::event_loop::current()->sleep(d);
    for (auto& s : stops) s->request_stop();
  }

  // Every echo child gives back all it was sent, then ends; every kid's status is as given.
  void finish() {
    for (std::size_t i = 0; i < echo_.size(); ++i) {
      echo_kid& k = echo_[i];
      k.p.in().close();
      auto rest = k.p.out().read_all();
      if (!rest) {
        out_.fail(where("read_all on echo", i) + ": " + rest.error().message());
        continue;
      }
      if (k.got + rest->size() != k.sent)
        out_.fail(where("echo", i) + " gave back " + std::to_string(k.got + rest->size()) + " of " + std::to_string(k.sent) + " bytes");
      for (std::size_t n = 0; n < rest->size(); ++n)
        if ((*rest)[n] != byte_at(seed_, i, k.got + n)) {
          out_.fail(where("a wrong byte at the end from echo", i) + " at " + std::to_string(k.got + n));
          break;
        }
      auto st = k.p.wait();
      if (!st || st->exit_code() != 0) out_.fail(where("echo did not exit 0:", i));
    }
    for (std::size_t j = 0; j < exits_.size(); ++j) {
      auto st = exits_[j].p.wait();
      if (!st || st->exit_code() != exits_[j].code) out_.fail(where("kid's final status is wrong:", j));
    }
  }
};

}  // namespace

TEST_CASE("reactor model: random reads, writes, exit waits, timers and cancels across loops and threads") {
  const int seeds = env_number("CHILDPROC_REACTOR_SEEDS", 6);
  const int first = env_number("CHILDPROC_REACTOR_FIRST", 1);
#if !defined(_WIN32)
  const auto fds_before = open_fds().size();
#endif
  std::atomic<int> current{first};
  std::atomic<bool> done{false};
  std::thread watchdog([&] {  // a hang names its seed instead of waiting for the test runner
    auto last = current.load();
    auto since = clock_type::now();
    while (!done) {
      std::this_thread::sleep_for(100ms);
      if (current != last) {
        last = current;
        since = clock_type::now();
      } else if (clock_type::now() - since > 120s) {
        std::fprintf(stderr, "reactor model: seed %d hangs\n", last);
        std::fflush(stderr);
        std::_Exit(3);
      }
    }
  });
  int passed = 0, busy = 0;
  std::uint64_t bytes = 0;
  for (int s = first; s < first + seeds; ++s) {
    current = s;
    model m(static_cast<unsigned>(s));
    m.run();
    for (const auto& e : m.result().errors) CHECK_MESSAGE(e.empty(), e);
    if (m.result().errors.empty()) ++passed;
    busy += m.refused();
    bytes += m.bytes();
  }
  done = true;
  watchdog.join();
  MESSAGE(passed << " of " << seeds << " seeds from " << first << ": " << bytes << " bytes echoed, " << busy
                 << " second reads or writes refused busy");
  CHECK(passed == seeds);
#if !defined(_WIN32)
  CHECK(open_fds().size() == fds_before);
#endif
}
