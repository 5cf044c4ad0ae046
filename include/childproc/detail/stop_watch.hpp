// SPDX-License-Identifier: BSL-1.0
// A std::stop_callback whose owner never waits when it stops watching.
#ifndef CHILDPROC_DETAIL_STOP_WATCH_HPP
#define CHILDPROC_DETAIL_STOP_WATCH_HPP

#include <memory>      // the state the callback shares with its watcher
#include <mutex>       // the callback may run on any thread
#include <stop_token>  // std::stop_callback
#include <utility>     // std::exchange

namespace childproc::inline v0::detail {

/// Calls `state->on_stop()` once when a std::stop_token is stopped, on the thread that stops it
/// (or in start(), if it already is). `State` keeps what on_stop() touches behind its own lock, so
/// that end() can cut it off; the watch keeps the state alive while on_stop() may still run.
///
/// Why not a std::stop_callback member: destroying one whose callback runs on another thread
/// waits for that callback, and in libstdc++ 12 without futexes (mingw-w64) that wait can miss
/// its wake-up and never end (GCC bug 106183). Here the callback owns a shared core and the core
/// owns the callback; a callback that has started destroys itself at its end (from inside its own
/// callback nothing waits), and end() destroys it only while the stop is not requested, when it is
/// still registered and removing it waits for nothing.
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
    arming() = c.get();
    auto cb = std::make_unique<std::stop_callback<thunk>>(token, thunk{c});  // runs it here if stopped
    arming() = nullptr;
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
    {
      std::lock_guard lock(c->m);
      // Started, or certain to start (a requested stop runs every registered callback): it
      // destroys itself. An ended one that start() stored late is ours.
      if (c->finished || (!c->entered && !c->token.stop_requested())) doomed = std::move(c->callback);
    }
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
    std::unique_ptr<std::stop_callback<thunk>> callback;
  };
  struct thunk {
    std::shared_ptr<core> c;
    void operator()() const noexcept {
      const std::shared_ptr<core> keep = c;  // destroying the callback destroys `this`
      {
        std::lock_guard lock(keep->m);
        keep->entered = true;
        keep->inline_run = arming() == keep.get();
      }
      keep->state->on_stop();
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
