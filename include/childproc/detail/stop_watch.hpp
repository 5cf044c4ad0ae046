// SPDX-License-Identifier: BSL-1.0
// A std::stop_callback whose owner never waits when it stops watching.
#ifndef CHILDPROC_DETAIL_STOP_WATCH_HPP
#define CHILDPROC_DETAIL_STOP_WATCH_HPP

#include <atomic>      // owner_done, read by the kicker
#include <memory>      // the state the callback shares with its watcher
#include <mutex>       // the callback may run on any thread
#include <stop_token>  // std::stop_callback (it brings <semaphore>'s configuration)
#include <utility>     // std::exchange

// libstdc++ without futexes (mingw-w64) waits on a semaphore in a way that can miss its wake-up
// (GCC bug 106183): a waiter that checked the value just before the release sleeps on a shared
// condition variable until the next notification of that slot. Kicking every slot ends it.
#if defined(__GLIBCXX__) && !defined(_GLIBCXX_HAVE_PLATFORM_WAIT) && defined(__cpp_lib_semaphore)
#  define CHILDPROC_KICK_SEMAPHORE_WAITERS 1
#  include <chrono>     // the kicker's pace
#  include <semaphore>  // the kicks
#  include <thread>     // the kicker
#else
#  define CHILDPROC_KICK_SEMAPHORE_WAITERS 0
#endif

namespace childproc::inline v0::detail {

#if CHILDPROC_KICK_SEMAPHORE_WAITERS
// The kick below covers the waiter table only for this layout (libstdc++ 12: 8-byte semaphores,
// 16 slots chosen by address bits 2-5); another one would need another kick.
static_assert(sizeof(std::binary_semaphore) == 8 && alignof(std::binary_semaphore) == 8,
              "childproc: the semaphore kick assumes libstdc++ 12's 8-byte semaphores (see stop_watch.hpp)");

// Wakes every thread asleep on an 8-byte-aligned libstdc++ semaphore (the one ~stop_callback
// waits on among them): releasing a semaphore whose count is 0 notifies its slot of the waiter
// table, and 32 adjacent ones reach every slot such a semaphore can hash to. A woken waiter
// checks its own value again: harmless. Each kicker has its own, so a release never finds a
// count of 1 (another kicker's, between its release and its take-back).
struct kick {
  std::binary_semaphore s{0};
};
static_assert(sizeof(kick) == 8);
inline void kick_semaphore_waiters(kick (&kicks)[32]) noexcept {
  for (auto& k : kicks) {
    k.s.release();
    (void)k.s.try_acquire();
  }
}

// Until `done`, kicks every millisecond (up to a scheduler tick on Windows): for an owner that
// must wait for a stop callback.
inline void start_kicker(std::shared_ptr<std::atomic<bool>> done) {
  auto kicker = [done = std::move(done)] {
    kick kicks[32];  // 8 bytes apart, as the semaphores of the table are
    while (!done->load()) {
      kick_semaphore_waiters(kicks);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  };
#if defined(__cpp_exceptions)
  try {
    std::thread(std::move(kicker)).detach();
  } catch (...) {  // no thread to be had: the owner waits as std::stop_callback would
  }
#else
  std::thread(std::move(kicker)).detach();
#endif
}
#endif

/// Calls `state->on_stop()` once when a std::stop_token is stopped, on the thread that stops it
/// (or in start(), if it already is); not after end() has returned, unless it had already begun.
/// `State` keeps what on_stop() touches behind its own lock, so that the owner can cut it off
/// before end(); the watch keeps the state alive while on_stop() may still run.
///
/// Why not a std::stop_callback member: destroying one whose callback runs on another thread
/// waits for that callback, and in libstdc++ 12 without futexes (mingw-w64) that wait can miss
/// its wake-up and never end (GCC bug 106183). Here the callback owns a shared core and the core
/// owns the callback; a callback that has started destroys itself at its end (from inside its own
/// callback nothing waits), and end() destroys it only while the stop is not requested, when it is
/// still registered and removing it waits for nothing. What is left: a request that takes the
/// callback off its list in the few instructions between end()'s check and its removal makes
/// ~stop_callback wait for the cut-off thunk's return, which is short but long enough to sleep
/// in (the thunk may start a thread first); on mingw a kicker thread ends that sleep if its
/// wake-up was lost. Only std::stop_callback's own code could close the window itself.
template <class State>
class stop_watch {
 public:
  stop_watch() noexcept = default;
  stop_watch(stop_watch&& o) noexcept : core_(std::move(o.core_)) {}
  stop_watch& operator=(stop_watch&& o) noexcept {
    if (this != &o) {
      end();
      core_ = std::move(o.core_);
    }
    return *this;
  }
  ~stop_watch() { end(); }

  /// Watches `token` for `state` (ending any earlier watch); nothing for a token that cannot stop.
  void start(const std::stop_token& token, std::shared_ptr<State> state) {
    end();
    if (!token.stop_possible()) return;
    auto c = std::make_shared<core>();
    c->state = std::move(state);
    c->token = token;
    struct arming_scope {  // reset even if the registration throws
      explicit arming_scope(core* c) noexcept { arming() = c; }
      ~arming_scope() { arming() = nullptr; }
    };
    std::unique_ptr<std::stop_callback<thunk>> cb;
    {
      const arming_scope scope(c.get());
      cb = std::make_unique<std::stop_callback<thunk>>(token, thunk{c});  // runs it here if stopped
    }
    std::lock_guard lock(c->m);
    // One that ran here was never registered: it goes now, waiting for nothing. One started
    // meanwhile by a request on another thread takes itself at its end, or if it has ended,
    // end() takes it, long after that request let go of it.
    if (c->inline_run) return;
    c->callback = std::move(cb);
    core_ = std::move(c);
  }

  /// Stops watching. Never waits; an on_stop() under way elsewhere finishes on its own.
  void end() noexcept {
    auto c = std::exchange(core_, nullptr);
    if (!c) return;
    std::unique_ptr<std::stop_callback<thunk>> doomed;
    bool popped = false;  // a request has taken it off its list: destroying it waits for that request
    {
      std::lock_guard lock(c->m);
      // Started, or certain to start (a requested stop runs every registered callback): it
      // destroys itself. An ended one that start() stored late is ours.
      if (c->finished || (!c->entered && !c->token.stop_requested())) doomed = std::move(c->callback);
      popped = doomed && c->finished;
      // A request can still take the callback off its list between here and the removal below
      // (a few instructions); then ~stop_callback waits for the thunk, which, cut off, skips
      // on_stop() and returns: a short wait, never one for on_stop() (the kicker covers it).
      c->cut = true;
    }
#if CHILDPROC_KICK_SEMAPHORE_WAITERS
    if (popped) start_kicker(c->owner_done);  // that request may not have released the callback yet
#else
    (void)popped;
#endif
    doomed.reset();
    c->owner_done->store(true);
  }

 private:
  struct thunk;
  struct core {
    std::shared_ptr<State> state;
    std::stop_token token;
    std::mutex m;                // guards the flags and `callback`
    bool entered = false;        // the callback has started: it destroys itself
    bool finished = false;       // ... and has ended
    bool inline_run = false;     // it ran inside its own constructor: never registered
    bool cut = false;            // end() has run: a late callback skips on_stop()
    // end() has destroyed what it took: the kicker stops (shared with it, so nothing else is kept).
    std::shared_ptr<std::atomic<bool>> owner_done = std::make_shared<std::atomic<bool>>(false);
    std::unique_ptr<std::stop_callback<thunk>> callback;
  };
  struct thunk {
    std::shared_ptr<core> c;
    void operator()() const noexcept {
      const std::shared_ptr<core> keep = c;  // destroying the callback destroys `this`
      bool cut = false, owner_waits = false;
      {
        std::lock_guard lock(keep->m);
        keep->entered = true;
        keep->inline_run = arming() == keep.get();
        cut = keep->cut;
        // end() took the callback after this request had taken it off the list: end() is in
        // ~stop_callback, waiting for this request to release it.
        owner_waits = cut && !keep->callback && !keep->owner_done->load();
      }
#if CHILDPROC_KICK_SEMAPHORE_WAITERS
      if (owner_waits) start_kicker(keep->owner_done);
#else
      (void)owner_waits;
#endif
      if (!cut) keep->state->on_stop();
      std::unique_ptr<std::stop_callback<thunk>> doomed;
      std::lock_guard lock(keep->m);
      doomed = std::move(keep->callback);  // a stop callback runs once: it has no further use
      keep->finished = true;
      // `doomed` goes after the lock: from inside its own callback, ~stop_callback does not wait.
    }
  };
  // The core whose callback this thread is registering, to tell a callback run at once from one
  // run meanwhile by a stop request on another thread.
  static core*& arming() noexcept {
    static thread_local core* c = nullptr;
    return c;
  }

  std::shared_ptr<core> core_;
};

}  // namespace childproc::inline v0::detail

#endif
