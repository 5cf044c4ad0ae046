// A randomized, seeded model test of the channel over a real socketpair / named pipe. From one
// seed both peers derive the same plan: the messages each way (0 bytes to 3 MiB, some with a
// pipe handle attached) and one global order of sends and receives, cut into episodes that each
// side runs its own way: blocking calls (a receive abandoned first on a loop that stopped, with
// the episode's later sends made before the blocking receive), a task on a fresh loop (send,
// receive, receive with a stop already triggered), or a loop that is stopped and destroyed with
// its sends still queued.
// Each side checks that every message arrives once, in order, with its handle; a watchdog ends
// a run that hangs, naming the seed; open descriptors come back. The same in Node's json
// serialization (POSIX): JSON strings, a handle with one message in three, so sends are held
// for the peer's answers past 16 unanswered, both ways at once.
//   CHILDPROC_MODEL_SEEDS=N (default 8), CHILDPROC_MODEL_FIRST=S (default 1),
//   CHILDPROC_MODEL_MODES=slx (default slx; sl on Win32), CHILDPROC_MODEL_TRACE=1 (each episode).
#define DOCTEST_CONFIG_IMPLEMENT
#include "raw_handles.hpp"  // first: on Win32 it needs winsock2.h before windows.h
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

namespace {

struct planned_message {
  std::size_t size;
  bool with_handle;
};

enum class mode { sync, loop, stopped_loop };

struct step {
  int side;        // 0: the parent, 1: the child
  bool send;       // else receive
  int index;       // which message of that direction
  mode how;        // the episode it belongs to
  int variant;     // a choice within the mode (handle / flush / cancelled receive first)
};

struct plan {
  std::vector<planned_message> messages[2];  // [0]: parent -> child, [1]: child -> parent
  std::vector<step> steps;
};

std::size_t random_size(std::mt19937_64& rng) {
  const auto pick = rng() % 100;
  if (pick < 70) return rng() % 65;
  if (pick < 95) return rng() % 65537;
  return 256 * 1024 + rng() % (3 << 20);
}

// The same plan on both sides, from the seed alone.
plan make_plan(std::uint64_t seed, bool json = false) {
  std::mt19937_64 rng(seed);
  plan p;
  const int count = 150 + static_cast<int>(rng() % 150);
  for (auto& dir : p.messages)
    for (int i = 0; i < count; ++i) dir.push_back({random_size(rng), rng() % (json ? 3 : 8) == 0});
  int sent[2] = {0, 0}, received[2] = {0, 0};  // received[s]: by side s, of the other's
  mode current[2] = {mode::sync, mode::sync};
  int left_in_episode[2] = {0, 0};
  while (received[0] < count || received[1] < count) {
    const int side = static_cast<int>(rng() % 2);
    if (left_in_episode[side] == 0) {
      const auto m = rng() % 10;
      current[side] = m < 4 ? mode::sync : m < 8 ? mode::loop : mode::stopped_loop;
      // CHILDPROC_MODEL_MODES: s (blocking calls), l (a task on a loop), x (a loop stopped with
      // its sends queued); all three by default.
      const char* env = std::getenv("CHILDPROC_MODEL_MODES");
      if (const char* only = env ? env : "slx") {
        const char letter = current[side] == mode::sync ? 's' : current[side] == mode::loop ? 'l' : 'x';
        if (!std::strchr(only, letter)) current[side] = only[0] == 'l' ? mode::loop : only[0] == 'x' ? mode::stopped_loop : mode::sync;
      }
      left_in_episode[side] = 1 + static_cast<int>(rng() % 12);
    }
    const bool can_send = sent[side] < count;
    const bool can_receive = received[side] < sent[1 - side];
    // A stopped loop only sends (nothing runs its receives); a receive happens only after the
    // peer's send in this order, so no side ever waits for a message the other has not reached.
    if (current[side] == mode::stopped_loop && !can_send) current[side] = mode::sync;
    bool send;
    if (current[side] == mode::stopped_loop) send = true;
    else if (can_send && can_receive) send = rng() % 2 == 0;
    else send = can_send;
    if (!send && !can_receive) {
      left_in_episode[side] = 0;
      continue;
    }
    p.steps.push_back({side, send, send ? sent[side]++ : received[side]++, current[side], static_cast<int>(rng() % 4)});
    --left_in_episode[side];
  }
  return p;
}

// Message `index` of direction `dir`: bytes from (dir, index), so the receiver can check them;
// with `json`, a JSON string of letters (at least its two quotes).
std::string payload(const planned_message& m, int dir, int index, bool json) {
  std::string s(json ? std::max<std::size_t>(m.size, 2) : m.size, '\0');
  std::uint32_t x = static_cast<std::uint32_t>(dir * 1000003 + index * 7919 + 17);
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = json ? static_cast<char>('a' + (x >> 24) % 26) : static_cast<char>(x >> 24);
  }
  if (json) s.front() = s.back() = '"';
  return s;
}

std::string handle_text(int dir, int index) { return "handle " + std::to_string(dir) + "/" + std::to_string(index); }

// Runs one side of the plan; returns "" or what went wrong.
class side_runner {
 public:
  side_runner(cp::channel& ch, const plan& p, int side) : ch_(ch), plan_(p), side_(side) {}

 private:
  bool json() const { return ch_.serialization() == cp::serialization::json; }

 public:

  std::string run() {
    std::size_t i = 0;
    while (i < plan_.steps.size()) {
      if (plan_.steps[i].side != side_) {
        ++i;
        continue;
      }
      // One episode: this side's consecutive steps of one mode (the other side's steps between
      // them do not end it).
      const mode how = plan_.steps[i].how;
      std::vector<const step*> episode;
      std::size_t j = i;
      for (; j < plan_.steps.size(); ++j) {
        if (plan_.steps[j].side != side_) continue;
        if (plan_.steps[j].how != how || episode.size() >= 12) break;
        episode.push_back(&plan_.steps[j]);
      }
      if (std::getenv("CHILDPROC_MODEL_TRACE")) {  // which episodes ran, to find where a seed hangs
        std::string line = "side " + std::to_string(side_) + (how == mode::sync ? " sync" : how == mode::loop ? " loop" : " stopped");
        for (const step* s : episode) line += (s->send ? " s" : " r") + std::to_string(s->index) + (s->send && plan_.messages[out_dir()][s->index].with_handle ? "h" : "") + "/" + std::to_string(s->variant);
        std::fprintf(stderr, "%s\n", line.c_str());
      }
      std::string e = how == mode::sync ? run_sync(episode) : how == mode::loop ? run_loop(episode) : run_stopped(episode);
      if (!e.empty()) return e;
      i = j;
    }
    auto flushed = ch_.flush();
    if (!flushed) return "final flush: " + flushed.error().message();
    return {};
  }

 private:
  int out_dir() const { return side_; }
  int in_dir() const { return 1 - side_; }

  cp::result<void> send_plain_or_handle(const step& s, bool on_loop) {
    const auto& m = plan_.messages[out_dir()][s.index];
    const std::string bytes = payload(m, out_dir(), s.index, json());
    if (!m.with_handle) return ch_.send(bytes);
    auto p = cp::make_pipe();
    if (!p) return p.error();
    if (auto w = p->write.write(handle_text(out_dir(), s.index)); !w) return w.error();
    p->write.close();
    (void)on_loop;
    return ch_.send(bytes, p->read.handle());  // a copy travels; ours closes here
  }

  std::string check(const cp::result<cp::message>& got, int index) {
    if (std::getenv("CHILDPROC_MODEL_TRACE")) std::fprintf(stderr, "side %d got %d\n", side_, index);
    if (!got) return "receive " + std::to_string(index) + ": " + got.error().message();
    const auto& m = plan_.messages[in_dir()][index];
    if (got->bytes() != payload(m, in_dir(), index, json()))
      return "message " + std::to_string(index) + ": wrong bytes (" + std::to_string(got->size()) + " of " +
             std::to_string(m.size) + ")";
    if (got->has_handle() != m.with_handle) return "message " + std::to_string(index) + ": handle " + (m.with_handle ? "missing" : "unexpected");
    if (m.with_handle && raw::read_all(got->handle()) != handle_text(in_dir(), index))
      return "message " + std::to_string(index) + ": the handle is not the one sent with it";
    return {};
  }

  std::string run_sync(const std::vector<const step*>& steps) {
    for (std::size_t k = 0; k < steps.size(); ++k) {
      const step* s = steps[k];
      if (s->send) {
        if (auto e = sync_send(*s); !e.empty()) return e;
      } else if (std::getenv("CHILDPROC_MODEL_TRACE") && std::fprintf(stderr, "side %d wants %d, %zu buffered\n", side_, s->index, ch_.buffered()) < 0) {
      } else if (s->variant == 3) {
        // A receive() on a loop whose run ends before it resumes (its read may have taken bytes,
        // and descriptors); the sends that follow in this episode go first, blocking (their
        // writes read the socket), then a blocking receive takes the message.
        auto loop = std::make_unique<cp::event_loop>();
        auto got = std::make_shared<std::optional<cp::result<cp::message>>>();
        (void)loop->run(cp::when_any(
            [](cp::channel& c, std::shared_ptr<std::optional<cp::result<cp::message>>> out) -> cp::task<int> {
              out->emplace(co_await c.receive());
              co_return 1;
            }(ch_, got),
            []() -> cp::task<int> { co_return 2; }()));
        if (got->has_value()) {  // it was whole in the buffer already
          if (auto e = check(**got, s->index); !e.empty()) return e;
          continue;
        }
        for (; k + 1 < steps.size() && steps[k + 1]->send; ++k)
          if (auto e = sync_send(*steps[k + 1]); !e.empty()) return e;
        if (auto e = check(ch_.receive_sync(), s->index); !e.empty()) return e;
        loop.reset();  // the abandoned receive was taken back: it ends now, cancelled
        if (!got->has_value() || **got || (**got).error() != cp::errc::cancelled)
          return "a receive abandoned on a stopped loop for message " + std::to_string(s->index) + " did not end cancelled";
      } else if (auto e = check(ch_.receive_sync(), s->index); !e.empty()) {
        return e;
      }
    }
    return {};
  }

  std::string sync_send(const step& s) {
    if (auto r = send_plain_or_handle(s, false); !r) return "sync send " + std::to_string(s.index) + ": " + r.error().message();
    if (s.variant == 0)
      if (auto f = ch_.flush(); !f) return "flush: " + f.error().message();
    if (std::getenv("CHILDPROC_MODEL_TRACE")) std::fprintf(stderr, "side %d sent %d, %zu buffered\n", side_, s.index, ch_.buffered());
    return {};
  }

  std::string run_loop(const std::vector<const step*>& steps) {
    return cp::sync_wait([&]() -> cp::task<std::string> {
      for (const step* s : steps) {
        if (s->send) {
          auto r = send_plain_or_handle(*s, true);
          if (!r) co_return "loop send " + std::to_string(s->index) + ": " + r.error().message();
          if (s->variant == 0) (void)co_await cp::event_loop::current()->sleep(std::chrono::milliseconds(0));
        } else {
          if (s->variant == 1) {  // a receive whose stop is already triggered: a message already
            std::stop_source stop;  // here, or cancelled with nothing lost
            stop.request_stop();
            auto c = co_await ch_.receive(stop.get_token());
            if (c) {
              if (auto e = check(c, s->index); !e.empty()) co_return e;
              continue;
            }
            if (c.error() != cp::errc::cancelled) co_return "a receive with its stop triggered: " + c.error().message();
          }
          auto e = check(co_await ch_.receive(), s->index);
          if (!e.empty()) co_return e;
        }
      }
      co_return std::string();
    }());
  }

  std::string run_stopped(const std::vector<const step*>& steps) {
    std::string e;
    auto loop = std::make_unique<cp::event_loop>();
    loop->post([&] {
      for (const step* s : steps)
        if (auto r = send_plain_or_handle(*s, true); !r && e.empty())
          e = "stopped-loop send " + std::to_string(s->index) + ": " + r.error().message();
      loop->stop();
    });
    if (auto r = loop->run(); !r) return "loop: " + r.error().message();
    if (std::getenv("CHILDPROC_MODEL_TRACE")) std::fprintf(stderr, "side %d stopped loop ran, %zu buffered\n", side_, ch_.buffered());
    // Variant 0: the loop goes at once with its writes pending; else it lives on, stopped, and
    // the next call (or the next stopped episode, which destroys it) takes its bytes back.
    if (steps.front()->variant != 0) parked_ = std::move(loop);
    return e;
  }

  cp::channel& ch_;
  const plan& plan_;
  int side_;
  std::unique_ptr<cp::event_loop> parked_;  // a stopped loop kept alive
};

int seeds() {
  const char* v = std::getenv("CHILDPROC_MODEL_SEEDS");
  return v ? std::atoi(v) : 8;
}
std::uint64_t first_seed() {
  const char* v = std::getenv("CHILDPROC_MODEL_FIRST");
  return v ? std::strtoull(v, nullptr, 10) : 1;
}

}  // namespace

// The child's side of the plan; exits 0 if everything it received was right.
CHILDPROC_ENTRY(model_peer)(cp::channel& parent) {
  raw::start_sockets();
  const std::uint64_t seed = std::stoull(cp::entry_args().at(0));
  const plan p = make_plan(seed, parent.serialization() == cp::serialization::json);
  side_runner me(parent, p, 1);
  const std::string e = me.run();
  if (!e.empty()) {
    std::fprintf(stderr, "model child, seed %llu: %s\n", static_cast<unsigned long long>(seed), e.c_str());
    return 3;
  }
  return parent.receive_sync().error() == cp::errc::end_of_stream ? 0 : 4;
}

namespace {
void run_model(cp::serialization format) {
  const bool json = format == cp::serialization::json;
  const int n = seeds();
  const std::uint64_t first = first_seed();
#if !defined(_WIN32)
  const auto fds_before = open_fds().size();
#endif
  std::atomic<std::uint64_t> running{0};
  std::atomic<bool> done{false};
  std::thread watchdog([&] {  // a hang is a failure with its seed, not a CI timeout
    for (int waited = 0; !done; ++waited) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (waited == 600 * n) {  // a minute a seed
        std::fprintf(stderr, "model: seed %llu hangs\n", static_cast<unsigned long long>(running.load()));
        std::fflush(stderr);
        std::_Exit(70);
      }
    }
  });
  const auto rss_before = resident_bytes();
  int passed = 0;
  std::size_t messages = 0;
  for (std::uint64_t seed = first; seed < first + static_cast<std::uint64_t>(n); ++seed) {
    running = seed;
    const plan p = make_plan(seed, json);
    messages += p.messages[0].size() + p.messages[1].size();
    auto w = cp::fork_self("model_peer", {std::to_string(seed)}, {.serialization = format}).value();
    side_runner me(w.channel(), p, 0);
    const std::string e = me.run();
    CHECK_MESSAGE(e.empty(), "seed " << seed << ": " << e);
    w.disconnect();
    const auto st = w.wait();
    CHECK_MESSAGE(st->exit_code() == 0, "seed " << seed << ": the child exited " << st->exit_code().value_or(-1));
    passed += e.empty() && st->exit_code() == 0;
  }
  done = true;
  watchdog.join();
  MESSAGE(passed << " of " << n << " seeds from " << first << ", " << messages << " messages; RSS "
                 << (static_cast<long long>(resident_bytes()) - static_cast<long long>(rss_before)) / 1024 << " KiB more");
  CHECK(passed == n);
#if !defined(_WIN32)
  CHECK(open_fds().size() == fds_before);
#endif
}
}  // namespace

TEST_CASE("model: random sends and receives on and off loops, both sides, every message once and in order") {
  run_model(cp::serialization::childproc);
}

#if !defined(_WIN32)  // json handles on Win32 are TCP sockets in libuv's frames, never held for answers
TEST_CASE("model, json (Node's protocol): random sends, handles past 16 unanswered both ways, every message once and in order") {
  run_model(cp::serialization::json);
}
#endif

int main(int argc, char** argv) {
  cp::dispatch_entry(argc, argv);
  doctest::Context context(argc, argv);
  return context.run();
}
