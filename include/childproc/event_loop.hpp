// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_EVENT_LOOP_HPP
#define CHILDPROC_EVENT_LOOP_HPP

#include "detail/reactor.hpp"
#include "detail/stop_watch.hpp"
#include "result.hpp"
#include "task.hpp"

#include <atomic>      // stop() from any thread
#include <chrono>      // sleep
#include <coroutine>   // awaitables
#include <functional>  // post
#include <memory>      // the state a stop callback shares with its operation
#include <mutex>       // the post queue
#include <optional>    // run's result
#include <stop_token>  // cancellation
#include <utility>     // std::exchange
#include <vector>      // the post queue

namespace childproc::inline v0 {

class event_loop;

namespace detail {

/// A loop's address for other threads: null once the loop is destroyed. Hold `m` while using it
/// (the destructor takes `m` to clear it), so a post from another thread never meets a dead loop.
struct loop_anchor {
  std::mutex m;
  event_loop* loop = nullptr;
};

/// Runs `fn` on the anchored loop's thread (at once when called there); false if the loop is gone.
inline bool post_to(loop_anchor& a, std::function<void()> fn);

// What a stop request shares with the operation it may cancel (see stop_watch for the lifetimes).
struct stop_link_state : std::enable_shared_from_this<stop_link_state> {
  std::shared_ptr<loop_anchor> anchor;
  reactor_op* op = nullptr;
  void (*cancel)(reactor&, reactor_op*) = nullptr;
  std::mutex m;
  bool done = false;  // the operation completed: a late cancel does nothing
  void on_stop() noexcept;  // defined after event_loop
};

inline std::shared_ptr<loop_anchor> loop_anchor_of(event_loop* loop);

/// Cancels one pending reactor operation when a std::stop_token is triggered, from any thread.
/// Costs nothing for a token that can never stop; a trigger after the loop is gone does nothing.
class stop_link {
 public:
  /// Watches `token` for the operation `op` that has just started on `loop`.
  void arm(const std::stop_token& token, event_loop* loop, reactor_op* op, void (*cancel)(reactor&, reactor_op*)) {
    if (!token.stop_possible()) return;
    state_ = std::make_shared<stop_link_state>();
    state_->anchor = loop_anchor_of(loop);
    state_->op = op;
    state_->cancel = cancel;
    watch_.start(token, state_);  // runs on_stop() at once if stop was already requested
  }
  /// Called by the operation's completion, before the awaiting coroutine resumes.
  void completed() noexcept {
    if (!state_) return;
    {
      std::lock_guard lock(state_->m);
      state_->done = true;
    }
    watch_.end();
    state_.reset();
  }
  ~stop_link() { completed(); }

 private:
  std::shared_ptr<stop_link_state> state_;
  stop_watch<stop_link_state> watch_;
};

/// Work a loop carries for others (a channel's background write), on an intrusive list. `run`
/// is called at the end of the round in which schedule() asked for it. `settle` is called when
/// run(task)'s task has ended (`finish`: complete the work now, blocking) or when the loop is
/// destroyed first (hand the work back to its owner); either way it must release() the work.
struct loop_work {
  void (*run)(loop_work*) = nullptr;
  void (*settle)(loop_work*, bool finish) noexcept = nullptr;
  loop_work* prev_work = nullptr;
  loop_work* next_work = nullptr;
  loop_work* next_due = nullptr;
  bool due = false;
};

}  // namespace detail

/// One reactor per thread, single-threaded: epoll (Linux), poll (other POSIX), an I/O completion
/// port (Win32). Coroutines awaiting streams, exits and timers are resumed only inside run(), on
/// the thread that calls it. post() and stop() are safe from other threads.
class event_loop {
  struct timer_awaiter;

 public:
  event_loop() {
    anchor_->loop = this;
    open_ = reactor_.open();
    if (open_) open_ = reactor_.enable_wake();
  }
  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;
  /// Work still held (a channel's unwritten messages) goes back to its owner, nothing lost:
  /// the next loop or blocking call writes it. Every operation still pending (a when_any loser
  /// left running, a read that a stopped run() left) is cancelled and its coroutine resumed
  /// here with errc::cancelled, so none is left issued into a buffer; bytes a read had already
  /// taken stay with its stream. What those coroutines start meanwhile is cancelled at once.
  ~event_loop() {
    finish_pending();
    std::lock_guard lock(anchor_->m);  // waits for a post from another thread under way
    anchor_->loop = nullptr;
  }

  /// For the library: this loop's anchor, which other threads use to reach it while it lives.
  const std::shared_ptr<detail::loop_anchor>& anchor() const noexcept { return anchor_; }

  /// The loop running on this thread (inside run()), or nullptr.
  static event_loop* current() noexcept { return current_ref(); }

  /// Runs until stop(); an OS failure of the poller is returned. A stop() that came before
  /// run() (from another thread, say) is not lost: run() then returns at once. Each stop()
  /// ends one run().
  result<void> run() {
    if (!open_) return open_.error();
    scope s(this);
    while (!stopped_.exchange(false)) {
      if (auto r = step(); !r) return r;
    }
    return {};
  }

  /// Runs `t` to its end (and whatever else is ready meanwhile) and returns its value; an
  /// exception from the task is rethrown here, an OS failure of the poller is raised. Messages
  /// that channels queued on this loop are written before it returns (while the peer reads).
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
    // What channels still hold for this loop is written now, blocking (reading what their
    // peers send meanwhile, so a peer that writes too is not deadlocked).
    // A task that threw hands it back instead: its exception is not held up by a peer (Win32:
    // but for a write already in flight, which is finished: Windows cannot say what a cancel left).
    while (work_) work_->settle(work_, !latch.error);
    if (latch.error) std::rethrow_exception(latch.error);
    if constexpr (!std::is_void_v<T>) return std::move(*slot);
  }

  /// The same as run(t): runs the loop until `t` has ended.
  template <class T>
  T run_until(task<T> t) {
    return run(std::move(t));
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
    if (current() != this) reactor_.wake();  // on the loop's own thread, the round ends soon anyway
  }

  /// Awaitable: resumes after `d` (result<void>); errc::cancelled if `stop` is triggered first.
  template <class Rep, class Period>
  timer_awaiter sleep(std::chrono::duration<Rep, Period> d, std::stop_token stop = {}) noexcept;

  /// Awaitable: resumes at `when` (result<void>); errc::cancelled if `stop` is triggered first.
  timer_awaiter sleep_until(detail::reactor_clock::time_point when, std::stop_token stop = {}) noexcept;

  /// The reactor, for the library's awaitables.
  detail::reactor& reactor() noexcept { return reactor_; }

  /// Whether run() is on the stack (of the loop's thread).
  bool running() const noexcept { return running_ > 0; }

  /// For the library: work in the background (a channel's queued writes) that run(task) finishes
  /// before it returns and the destructor hands back. Loop thread only.
  void hold(detail::loop_work* w) noexcept {
    w->prev_work = nullptr;
    w->next_work = work_;
    if (work_) work_->prev_work = w;
    work_ = w;
  }
  /// Ends hold(w) (and a schedule(w) not yet run).
  void release(detail::loop_work* w) noexcept {
    (w->prev_work ? w->prev_work->next_work : work_) = w->next_work;
    if (w->next_work) w->next_work->prev_work = w->prev_work;
    w->prev_work = w->next_work = nullptr;
    if (!std::exchange(w->due, false)) return;
    detail::loop_work* prev = nullptr;
    for (detail::loop_work* d = due_head_; d; prev = d, d = d->next_due) {
      if (d != w) continue;
      (prev ? prev->next_due : due_head_) = w->next_due;
      if (due_tail_ == w) due_tail_ = prev;
      break;
    }
    w->next_due = nullptr;
  }
  /// Calls w->run at the end of this round (once, however often it is asked).
  void schedule(detail::loop_work* w) noexcept {
    if (std::exchange(w->due, true)) return;
    w->next_due = nullptr;
    (due_tail_ ? due_tail_->next_due : due_head_) = w;
    due_tail_ = w;
  }

 private:
  struct scope {
    event_loop* loop;
    event_loop* previous;
    explicit scope(event_loop* l) noexcept : loop(l), previous(current_ref()) {
      current_ref() = l;
      ++l->running_;
    }
    ~scope() {
      --loop->running_;
      current_ref() = previous;
    }
  };

  static event_loop*& current_ref() noexcept {
    thread_local event_loop* loop = nullptr;
    return loop;
  }

  bool posted() {
    std::lock_guard lock(post_mutex_);
    return !posted_.empty();
  }

  // The destructor's rounds: cancel what is pending, run the completions (and what they post or
  // schedule), until nothing is left. Bounded, for a coroutine that retries forever.
  void finish_pending() noexcept {
    scope s(this);
    if (open_) reactor_.shut();
    for (int round = 0; round < 100000; ++round) {
      while (work_) work_->settle(work_, false);
      if (!open_) break;
      reactor_.cancel_all();
      if (!reactor_.busy() && !posted() && !due_head_) break;
      (void)step(true);
    }
    while (work_) work_->settle(work_, false);
  }

  result<void> step(bool no_wait = false) {
    const bool pending = no_wait || posted() || due_head_;
    // With work posted, the reactor only collects what is ready: it must not sleep on it.
    auto r = reactor_.run_once(pending ? std::optional(detail::reactor_clock::now()) : std::nullopt);
    if (!r) return std::move(r).error();
    std::vector<std::function<void()>> batch;
    {
      std::lock_guard lock(post_mutex_);
      batch.swap(posted_);
    }
    for (auto& fn : batch) fn();
    while (detail::loop_work* w = due_head_) {  // the end of the round: scheduled work runs
      due_head_ = w->next_due;
      if (!due_head_) due_tail_ = nullptr;
      w->next_due = nullptr;
      w->due = false;
      w->run(w);
    }
    return {};
  }

  detail::reactor reactor_;
  std::shared_ptr<detail::loop_anchor> anchor_ = std::make_shared<detail::loop_anchor>();
  result<void> open_;
  std::atomic<bool> stopped_{false};
  int running_ = 0;                          // run() calls on the stack
  detail::loop_work* work_ = nullptr;        // hold()
  detail::loop_work* due_head_ = nullptr;    // schedule(), in order
  detail::loop_work* due_tail_ = nullptr;
  std::mutex post_mutex_;
  std::vector<std::function<void()>> posted_;
};

struct event_loop::timer_awaiter : detail::timer_op {
  event_loop* loop;
  detail::reactor_clock::time_point when;
  std::stop_token stop;
  detail::stop_link link;
  std::coroutine_handle<> h;
  timer_awaiter(event_loop* l, detail::reactor_clock::time_point w, std::stop_token s) noexcept
      : loop(l), when(w), stop(std::move(s)) {}
  bool await_ready() noexcept {
    if (!stop.stop_requested()) return false;
    err = error(errc::cancelled);
    return true;
  }
  void await_suspend(std::coroutine_handle<> awaiting) {
    h = awaiting;
    complete = [](detail::reactor_op* op) {
      auto* self = static_cast<timer_awaiter*>(op);
      self->link.completed();
      self->h.resume();
    };
    loop->reactor_.start_timer(this, when);
    link.arm(stop, loop, this, [](detail::reactor& r, detail::reactor_op* op) { r.cancel_op(static_cast<timer_op*>(op)); });
  }
  result<void> await_resume() noexcept {
    if (err) return error(errc::cancelled, "sleep: cancelled");
    return {};
  }
};

template <class Rep, class Period>
event_loop::timer_awaiter event_loop::sleep(std::chrono::duration<Rep, Period> d, std::stop_token stop) noexcept {
  return sleep_until(detail::deadline_after(detail::reactor_clock::now(), d), std::move(stop));
}

inline event_loop::timer_awaiter event_loop::sleep_until(detail::reactor_clock::time_point when,
                                                         std::stop_token stop) noexcept {
  return timer_awaiter(this, when, std::move(stop));
}

inline bool detail::post_to(loop_anchor& a, std::function<void()> fn) {
  std::lock_guard lock(a.m);
  if (!a.loop) return false;
  if (event_loop::current() == a.loop) fn();  // on the loop's thread: now
  else a.loop->post(std::move(fn));           // elsewhere: on the loop's thread, soon
  return true;
}

inline std::shared_ptr<detail::loop_anchor> detail::loop_anchor_of(event_loop* loop) { return loop->anchor(); }

inline void detail::stop_link_state::on_stop() noexcept {
  {
    std::lock_guard lock(m);
    if (done) return;
  }
  // The cancel runs on the loop's thread, where only the completion sets `done`; a loop that
  // is gone took its operations with it.
  (void)post_to(*anchor, [s = shared_from_this()] {
    {
      std::lock_guard lock(s->m);
      if (s->done) return;
    }
    s->cancel(s->anchor->loop->reactor(), s->op);
  });
}

/// Runs `t` on a new event_loop on this thread until it ends, and returns its value.
template <class T>
T sync_wait(task<T> t) {
  event_loop loop;
  return loop.run(std::move(t));
}

}  // namespace childproc::inline v0

#endif
