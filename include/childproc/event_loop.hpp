// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_EVENT_LOOP_HPP
#define CHILDPROC_EVENT_LOOP_HPP

#include "detail/reactor.hpp"
#include "result.hpp"
#include "task.hpp"

#include <atomic>      // stop() from any thread
#include <chrono>      // sleep
#include <coroutine>   // awaitables
#include <functional>  // post
#include <mutex>       // the post queue
#include <optional>    // run's result
#include <vector>      // the post queue

namespace childproc::inline v0 {

/// One reactor per thread, single-threaded: epoll (Linux), poll (other POSIX), an I/O completion
/// port (Win32). Coroutines awaiting streams, exits and timers are resumed only inside run(), on
/// the thread that calls it. post() and stop() are safe from other threads.
class event_loop {
  struct timer_awaiter;

 public:
  event_loop() {
    open_ = reactor_.open();
    if (open_) open_ = reactor_.enable_wake();
  }
  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;
  ~event_loop() = default;

  /// The loop running on this thread (inside run()), or nullptr.
  static event_loop* current() noexcept { return current_ref(); }

  /// Runs until stop(); an OS failure of the poller is returned.
  result<void> run() {
    if (!open_) return open_.error();
    scope s(this);
    stopped_.store(false);
    while (!stopped_.load()) {
      if (auto r = step(); !r) return r;
    }
    return {};
  }

  /// Runs `t` to its end (and whatever else is ready meanwhile) and returns its value; an
  /// exception from the task is rethrown here, an OS failure of the poller is raised.
  template <class T>
  T run(task<T> t) {
    if (!open_) open_.error().raise();
    scope s(this);
    detail::when_all_slot<T> slot;
    detail::when_all_latch latch{1, {}, {}};
    detail::run_into(std::move(t), slot, latch);
    while (latch.remaining) {
      if (auto r = step(); !r) r.error().raise();
    }
    if (latch.error) std::rethrow_exception(latch.error);
    if constexpr (!std::is_void_v<T>) return std::move(*slot);
  }

  /// Makes run() return after the current round. Safe from any thread.
  void stop() noexcept {
    stopped_.store(true);
    reactor_.wake();
  }

  /// Runs `fn` on the loop's thread, inside run(). Safe from any thread.
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(post_mutex_);
      posted_.push_back(std::move(fn));
    }
    reactor_.wake();
  }

  /// Awaitable: resumes after `d` (result<void>).
  template <class Rep, class Period>
  timer_awaiter sleep(std::chrono::duration<Rep, Period> d) noexcept;

  /// Awaitable: resumes at `when` (result<void>).
  timer_awaiter sleep_until(detail::reactor_clock::time_point when) noexcept;

  /// The reactor, for the library's awaitables.
  detail::reactor& reactor() noexcept { return reactor_; }

 private:
  struct scope {
    event_loop* previous;
    explicit scope(event_loop* l) noexcept : previous(current_ref()) { current_ref() = l; }
    ~scope() { current_ref() = previous; }
  };

  static event_loop*& current_ref() noexcept {
    thread_local event_loop* loop = nullptr;
    return loop;
  }

  result<void> step() {
    auto r = reactor_.run_once();
    if (!r) return std::move(r).error();
    std::vector<std::function<void()>> batch;
    {
      std::lock_guard lock(post_mutex_);
      batch.swap(posted_);
    }
    for (auto& fn : batch) fn();
    return {};
  }

  detail::reactor reactor_;
  result<void> open_;
  std::atomic<bool> stopped_{false};
  std::mutex post_mutex_;
  std::vector<std::function<void()>> posted_;
};

struct event_loop::timer_awaiter : detail::timer_op {
  event_loop* loop;
  detail::reactor_clock::time_point when;
  std::coroutine_handle<> h;
  timer_awaiter(event_loop* l, detail::reactor_clock::time_point w) noexcept : loop(l), when(w) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> awaiting) {
    h = awaiting;
    complete = [](detail::reactor_op* op) { static_cast<timer_awaiter*>(op)->h.resume(); };
    loop->reactor_.start_timer(this, when);
  }
  result<void> await_resume() noexcept { return {}; }
};

template <class Rep, class Period>
event_loop::timer_awaiter event_loop::sleep(std::chrono::duration<Rep, Period> d) noexcept {
  return sleep_until(detail::deadline_after(detail::reactor_clock::now(), d));
}

inline event_loop::timer_awaiter event_loop::sleep_until(detail::reactor_clock::time_point when) noexcept {
  return timer_awaiter(this, when);
}

/// Runs `t` on a new event_loop on this thread until it ends, and returns its value.
template <class T>
T sync_wait(task<T> t) {
  event_loop loop;
  return loop.run(std::move(t));
}

}  // namespace childproc::inline v0

#endif
