// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_PROCESS_HPP
#define CHILDPROC_PROCESS_HPP

#include "channel.hpp"
#include "detail/stop_watch.hpp"
#include "detail/wait.hpp"
#include "event_loop.hpp"
#include "exit_status.hpp"
#include "result.hpp"
#include "stream.hpp"

#include <chrono>    // wait_for
#include <coroutine>  // exit()
#include <cerrno>    // ESRCH
#include <csignal>   // SIGTERM
#include <cstddef>   // std::size_t
#include <memory>    // the kill-on-stop state
#include <mutex>     // a stop callback may run on any thread
#include <optional>  // try_wait
#include <stop_token>  // exit(stop)
#include <utility>   // std::move
#include <vector>    // stdio streams

namespace childproc::inline v0 {

namespace detail {
// Kills a child when a std::stop_token fires, on whichever thread requests the stop. The mutex
// keeps the callback away from a child that is being moved to another process object or released.
struct stop_kill {
  std::mutex mutex;
  native_child* child = nullptr;  // null once the child is reaped, detached or released
  int signal = SIGTERM;
  void on_stop() noexcept {
    std::lock_guard lock(mutex);
    if (child) (void)kill_native(*child, signal);
  }
};
}  // namespace detail

/// A running or finished child. Move-only; exactly one process object owns (and reaps) each child.
///
/// Destroying a process whose child still runs kills it (SIGKILL / TerminateProcess) and reaps it,
/// waiting at most `destroy_wait` (5 s); a child still not reaped then goes to the reaper thread.
/// A child spawned with `detached = true`, or after `detach()`, is left running and reaped by the
/// library's reaper thread when it ends, so it never stays a zombie.
class process {
 public:
  /// How long the destructor waits for a killed child before handing it to the reaper.
  static constexpr std::chrono::milliseconds destroy_wait{5000};

  process() noexcept = default;
  /// Used by spawn(); `stdio` holds the parent's end of each stdio entry.
  process(detail::native_child child, std::vector<stream> stdio, bool detached, childproc::channel ch = {}) noexcept
      : child_(std::move(child)), stdio_(std::move(stdio)), channel_(std::move(ch)), detached_(detached) {}
  process(process&& o) noexcept { take(o); }
  process& operator=(process&& o) noexcept {
    if (this != &o) {
      release_child();
      take(o);
    }
    return *this;
  }
  ~process() { release_child(); }

  /// The child's process id (0 for an empty process object).
  pid_type pid() const noexcept { return child_.pid; }
  /// Whether this object owns a child (running, or ended and reaped by it).
  bool valid() const noexcept { return child_.pid != 0; }
  /// The exit status, once wait, try_wait or wait_for has seen the child end.
  std::optional<exit_status> status() const noexcept { return status_; }
  /// A pidfd (Linux) or the process HANDLE (Win32), for an event loop; invalid where there is none.
  native_handle handle() const noexcept { return child_.handle.get(); }

  /// The OS-level child, for the library's reactor and event loop.
  detail::native_child& native() noexcept { return child_; }

  /// Blocks until the child ends and returns how it ended (again on later calls).
  result<exit_status> wait() {
    if (auto e = check("wait"); e) return e;
    if (status_) return *status_;
    if (signals_by_pid()) {
      auto ended = detail::wait_ended_for_native(child_, std::chrono::milliseconds(1000000000000000LL));
      if (!ended) return std::move(ended).error();
      return reap_held();
    }
    auto r = detail::wait_native(child_);
    if (r) reaped(*r);
    return r;
  }

  /// The status if the child has ended, nullopt if it still runs; never blocks.
  result<std::optional<exit_status>> try_wait() {
    if (auto e = check("wait"); e) return e;
    if (status_) return status_;
    if (signals_by_pid()) {
      auto ended = detail::has_exited_native(child_);
      if (!ended) return std::move(ended).error();
      if (!*ended) return std::optional<exit_status>();
      auto r = reap_held();
      if (!r) return std::move(r).error();
      return std::optional<exit_status>(*r);
    }
    auto r = detail::try_wait_native(child_);
    if (r && *r) reaped(**r);
    return r;
  }

  /// Waits at most `timeout`; nullopt if the child still runs then.
  template <class Rep, class Period>
  result<std::optional<exit_status>> wait_for(std::chrono::duration<Rep, Period> timeout) {
    if (auto e = check("wait"); e) return e;
    if (status_) return status_;
    // Saturated: a duration too large for milliseconds waits "forever" instead of overflowing.
    const auto ms = std::chrono::duration<double, std::milli>(timeout).count() >= 1e15
                        ? std::chrono::milliseconds(1000000000000000LL)
                        : std::chrono::ceil<std::chrono::milliseconds>(timeout);
    if (signals_by_pid()) {
      auto ended = detail::wait_ended_for_native(child_, ms);
      if (!ended) return std::move(ended).error();
      if (!*ended) return std::optional<exit_status>();
      auto r = reap_held();
      if (!r) return std::move(r).error();
      return std::optional<exit_status>(*r);
    }
    auto r = detail::wait_for_native(child_, ms);
    if (r && *r) reaped(**r);
    return r;
  }

  /// Awaitable for a coroutine on an event_loop: resumes when the child ends, reaps it, and
  /// yields result<exit_status> (Node's 'exit'; the streams may still hold data: 'close' is
  /// when they reach their end too). A triggered `stop` ends the wait with errc::cancelled; the
  /// child runs on and can be awaited again.
  auto exit(std::stop_token stop = {}) noexcept { return exit_awaiter(this, std::move(stop)); }

  /// Sends `signal` (SIGTERM by default; 0 checks the child is there). After the child was
  /// reaped this is `kill ESRCH`, and no signal is sent: its pid may belong to another process now.
  result<void> kill(int signal = SIGTERM) {
    if (auto e = check("kill"); e) return e;
    if (status_) return error(std::error_code(ESRCH, std::generic_category()), "kill");
    return detail::kill_native(child_, signal);
  }

  /// Sends `signal` to the child once `token` is stopped, from whichever thread stops it (spawn
  /// does this with options.stop_token and kill_signal: Node's `signal` option). At once if
  /// stop was already requested.
  void kill_on_stop(const std::stop_token& token, int signal = SIGTERM) {
    unwatch();
    if (!valid() || status_ || !token.stop_possible()) return;
    stop_ = std::make_shared<detail::stop_kill>();
    stop_->child = &child_;
    stop_->signal = signal;
    stop_watch_.start(token, stop_);
  }

  /// Lets the child run on its own: this object forgets it, the library still reaps it when it ends.
  void detach() noexcept {
    unwatch();
    if (!valid()) return;
    if (!status_) detail::detach_native(std::move(child_));
    child_ = {};
  }

  /// The parent's end of stdio entry `index` (an empty stream where it is not a pipe, or past
  /// the last entry). The streams never move: one with an operation pending stays where it is.
  stream& stdio(std::size_t index) {
    if (index < stdio_.size()) return stdio_[index];
    absent_ = stream();  // not stdio_.resize(): that would move every live stream
    return absent_;
  }
  /// The child's stdin, when it is a pipe.
  stream& in() { return stdio(0); }
  /// The child's stdout, when it is a pipe.
  stream& out() { return stdio(1); }
  /// The child's stderr, when it is a pipe.
  stream& err() { return stdio(2); }

  /// The message channel of a child started by fork() (or with an `ipc` stdio entry); an
  /// unconnected channel otherwise. Node's child.send / 'message' / disconnect.
  childproc::channel& channel() noexcept { return channel_; }
  /// channel().send(msg): queued, written in the background on a loop, else before it returns.
  template <class T>
  result<void> send(const T& msg) {
    return channel_.send(msg);
  }
  /// channel().send_async(msg): completes when written.
  template <class T>
  task<result<void>> send_async(const T& msg) {
    return channel_.send_async(msg);
  }
  /// channel().send(msg, h): `msg` with a duplicate of the descriptor or HANDLE `h` (Node's sendHandle).
  template <class T>
  result<void> send(const T& msg, native_handle h) {
    return channel_.send(msg, h);
  }
  /// channel().send_async(msg, h): completes when written.
  template <class T>
  task<result<void>> send_async(const T& msg, native_handle h) {
    return channel_.send_async(msg, h);
  }
  /// channel().receive(): awaitable, the next message; errc::end_of_stream once the child disconnected or exited.
  template <class T = message>
  task<result<T>> receive(std::stop_token stop = {}) {
    return channel_.receive<T>(std::move(stop));
  }
  /// channel().receive_sync(): the next message, blocking.
  template <class T = message>
  result<T> receive_sync() {
    return channel_.receive_sync<T>();
  }
  /// Closes the channel: the child's receive ends with errc::end_of_stream (Node's disconnect()).
  void disconnect() noexcept { channel_.disconnect(); }
  /// Whether the channel is open (Node's child.connected).
  bool connected() const noexcept { return channel_.connected(); }

 private:
  struct exit_awaiter : detail::exit_op {
    process* self;
    std::stop_token stop;
    detail::stop_link link;
    std::coroutine_handle<> h;
    error early;
    exit_awaiter(process* p, std::stop_token s) noexcept : self(p), stop(std::move(s)) {}
    bool await_ready() noexcept {
      if (auto e = self->check("wait")) early = std::move(e);
      else if (self->status_) return true;
      else if (!event_loop::current()) early = error(errc::no_event_loop, "wait");
      else if (stop.stop_requested()) early = error(errc::cancelled, "wait: cancelled");
      else return false;
      return true;
    }
    void await_suspend(std::coroutine_handle<> awaiting) {
      h = awaiting;
      child = &self->child_;
      complete = [](detail::reactor_op* op) {
        auto* a = static_cast<exit_awaiter*>(op);
        a->link.completed();
        a->h.resume();
      };
      auto* loop = event_loop::current();
      loop->reactor().start_exit_wait(this);
      link.arm(stop, loop, this, [](detail::reactor& r, detail::reactor_op* op) { r.cancel_op(static_cast<exit_op*>(op)); });
    }
    result<exit_status> await_resume() {
      if (early) return early;
      if (err == errc::cancelled) return error(errc::cancelled, "wait: cancelled");
      // Another waiter (a second co_await, a blocking wait()) may have reaped it first: then
      // the OS says ECHILD, but the status is known.
      if (err && self->status_) return *self->status_;
      if (err) return err;
      return self->wait();  // it has ended: this reaps without blocking
    }
  };

  // A stop watcher that signals by pid (POSIX without a pidfd) must never meet the pid once it
  // is reaped: another process may take it at once.
  bool signals_by_pid() const noexcept { return stop_ && !child_.handle; }  // (Win32 always has its HANDLE)

  // Reaps a child known to have ended (a zombie, its pid still ours) with the stop watcher held
  // off, and ends the watch before letting it go.
  result<exit_status> reap_held() {
    std::unique_lock lock(stop_->mutex);
    auto r = detail::wait_native(child_);  // it has ended: at once
    stop_->child = nullptr;
    lock.unlock();
    if (r) reaped(*r);
    return r;
  }

  void reaped(const exit_status& st) noexcept {
    status_ = st;
    unwatch();  // pidfd and Win32 handle: a late signal cannot reach another process
  }

  // Moves everything from `o` (this object owns nothing). The stop callback is held off meanwhile.
  void take(process& o) noexcept {
    std::unique_lock<std::mutex> lock;
    if (o.stop_) lock = std::unique_lock(o.stop_->mutex);
    child_ = std::move(o.child_);
    o.child_.pid = 0;
    stdio_ = std::move(o.stdio_);
    channel_ = std::move(o.channel_);
    status_ = o.status_;
    detached_ = o.detached_;
    stop_ = std::move(o.stop_);
    stop_watch_ = std::move(o.stop_watch_);
    if (stop_) stop_->child = &child_;
  }

  // Stops watching the stop token. A callback under way on another thread has the child taken
  // from it under the mutex, and ends on its own.
  void unwatch() noexcept {
    if (!stop_) return;
    {
      std::lock_guard lock(stop_->mutex);
      stop_->child = nullptr;
    }
    stop_watch_.end();
    stop_.reset();
  }

  error check(const char* what) const {
    if (valid()) return {};
    return error(errc::no_process, std::string(what) + ": this process object owns no child");
  }

  void release_child() noexcept {
    unwatch();
    if (!valid() || status_) {
      child_ = {};
      return;
    }
    if (!detached_) {
#ifdef SIGKILL
      (void)detail::kill_native(child_, SIGKILL);
#else
      (void)detail::kill_native(child_, SIGTERM);  // Win32: TerminateProcess
#endif
      auto r = detail::wait_for_native(child_, destroy_wait);
      if (!r || *r) {  // reaped (or the OS says it cannot be: ECHILD)
        child_ = {};
        return;
      }
    }
    detail::detach_native(std::move(child_));
    child_ = {};
  }

  detail::native_child child_;
  std::vector<stream> stdio_;
  stream absent_;  // what stdio(i) returns past the last entry
  childproc::channel channel_;
  std::optional<exit_status> status_;
  bool detached_ = false;
  std::shared_ptr<detail::stop_kill> stop_;  // kill_on_stop
  detail::stop_watch<detail::stop_kill> stop_watch_;
};

}  // namespace childproc::inline v0

#endif
