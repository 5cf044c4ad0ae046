// stop_watch: a stop callback whose owner never waits for it. The race that matters is an owner
// ending its watch while another thread runs the callback: a std::stop_callback destroyed then
// waits, and under mingw-w64's libstdc++ 12 that wait could hang for good.
#include <childproc/detail/stop_watch.hpp>

#include <doctest/doctest.h>

#include "stop_requester.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>

namespace cpd = childproc::detail;

namespace {
struct counter {
  std::mutex m;
  std::atomic<int> runs{0};
  std::thread::id ran_on;
  void on_stop() noexcept {
    std::lock_guard lock(m);
    runs.fetch_add(1);
    ran_on = std::this_thread::get_id();
  }
};
}  // namespace

TEST_CASE("a token already stopped runs on_stop once, at once, on this thread") {
  std::stop_source src;
  src.request_stop();
  auto c = std::make_shared<counter>();
  std::weak_ptr<counter> gone = c;
  {
    cpd::stop_watch<counter> w;
    w.start(src.get_token(), c);
    CHECK(c->runs.load() == 1);
    CHECK(c->ran_on == std::this_thread::get_id());
    w.end();
    CHECK(c->runs.load() == 1);
  }
  c.reset();
  CHECK(gone.expired());  // the callback and its state hold no cycle once it has run
}

TEST_CASE("ended before the stop: on_stop never runs, nothing is kept") {
  std::stop_source src;
  auto c = std::make_shared<counter>();
  std::weak_ptr<counter> gone = c;
  cpd::stop_watch<counter> w;
  w.start(src.get_token(), c);
  w.end();
  src.request_stop();
  CHECK(c->runs.load() == 0);
  c.reset();
  CHECK(gone.expired());
}

TEST_CASE("a token that cannot stop costs nothing; a second start ends the first watch") {
  auto c = std::make_shared<counter>();
  cpd::stop_watch<counter> w;
  w.start(std::stop_token{}, c);
  CHECK(c.use_count() == 1);
  std::stop_source a, b;
  w.start(a.get_token(), c);
  w.start(b.get_token(), c);
  a.request_stop();
  CHECK(c->runs.load() == 0);
  b.request_stop();
  CHECK(c->runs.load() == 1);
}

TEST_CASE("a stop from another thread runs on_stop there, once; a moved watch goes on watching") {
  std::stop_source src;
  auto c = std::make_shared<counter>();
  cpd::stop_watch<counter> w;
  w.start(src.get_token(), c);
  cpd::stop_watch<counter> moved = std::move(w);
  w.end();  // the moved-from watch has nothing to end
  std::thread::id requester;
  std::thread t([&] {
    requester = std::this_thread::get_id();
    src.request_stop();
  });
  t.join();
  CHECK(c->runs.load() == 1);
  CHECK(c->ran_on == requester);
  moved.end();
  CHECK(c->runs.load() == 1);
}

// The pattern that hung: the owner sees the stop requested and ends its watch while the
// requesting thread is still inside the callback (its length varies, so every overlap occurs).
TEST_CASE("the owner ends its watch while another thread runs the callback, 20,000 times") {
  stop_requester requester;
  int total_runs = 0, kept = 0, finished_first = 0, late_runs = 0;
  for (int i = 1; i <= 20000; ++i) {
    std::stop_source src;
    auto c = std::make_shared<counter>();
    std::weak_ptr<counter> gone = c;
    cpd::stop_watch<counter> w;
    w.start(src.get_token(), c);
    const bool after = i % 8 == 2;  // a stop asked for only once end() has returned
    if (!after) requester.ask(src, i);
    if (i % 4 == 1) {
      while (!src.stop_requested()) std::this_thread::yield();  // the request is under way
    } else if (i % 4 == 3) {
      requester.wait(i);  // the request has returned: on_stop has run
    }
    for (int k = 0; k < (i * 7907) % 300; ++k) std::atomic_signal_fence(std::memory_order_seq_cst);
    w.end();  // must not wait for the callback
    if (after) requester.ask(src, i);
    requester.wait(i);
    total_runs += c->runs.load();
    if (i % 4 == 3) finished_first += c->runs.load();
    if (after) late_runs += c->runs.load();
    c.reset();
    if (!gone.expired()) ++kept;
  }
  CHECK(late_runs == 0);            // a stop asked for after end() returned never runs on_stop
  CHECK(kept == 0);                 // every state freed once the request has returned
  CHECK(total_runs <= 20000);       // at most once each
  CHECK(finished_first == 5000);    // a stop whose request returned before end() ran, once
}

// end() must never wait for on_stop(): here on_stop() waits for the owner to come back from
// end(), so an end() that waited would show as an on_stop() that gave up (after 2 s).
namespace {
struct waits_for_owner {
  std::atomic<bool>* owner_back = nullptr;
  std::atomic<int> runs{0};
  std::atomic<bool> gave_up{false};
  void on_stop() noexcept {
    runs.fetch_add(1);
    const auto t0 = std::chrono::steady_clock::now();
    while (!owner_back->load())
      if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(2)) return gave_up.store(true);
      else std::this_thread::yield();
  }
};
}  // namespace

TEST_CASE("end() returns while on_stop() runs on another thread, 20,000 times: it never waits for it") {
  stop_requester requester;
  std::atomic<bool> owner_back{false};
  int blocked = 0, ran = 0;
  for (int i = 1; i <= 20000; ++i) {
    std::stop_source src;
    auto s = std::make_shared<waits_for_owner>();
    s->owner_back = &owner_back;
    cpd::stop_watch<waits_for_owner> w;
    w.start(src.get_token(), s);
    owner_back = false;
    requester.ask(src, i);
    for (int k = 0; k < i % 64; ++k) std::atomic_signal_fence(std::memory_order_seq_cst);
    w.end();
    owner_back = true;
    requester.wait(i);
    ran += s->runs.load();
    blocked += s->gave_up.load();
  }
  CHECK(blocked == 0);
  CHECK(ran <= 20000);
}
