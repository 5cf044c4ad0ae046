// SPDX-License-Identifier: BSL-1.0
// Contract: the reactor, one per thread: reads, writes, child exits and timers complete as operations.
// The synchronous functions run a private one; the coroutine event_loop is built on the same type.
#ifndef CHILDPROC_DETAIL_REACTOR_HPP
#define CHILDPROC_DETAIL_REACTOR_HPP

#include "../result.hpp"
#include "handle.hpp"
#include "pipe.hpp"
#include "wait.hpp"

#include <chrono>   // timers
#include <cstddef>  // std::size_t
#include <map>      // the timer queue
#include <memory>   // token()
#include <optional> // run_once's deadline
#include <utility>  // std::exchange
#include <vector>   // received descriptors

namespace childproc::inline v0::detail {

using reactor_clock = std::chrono::steady_clock;

/// One pending operation. `complete` runs on the reactor's thread, from run_once, never inline
/// from the call that started it (so a completion may start the next operation without recursion).
struct reactor_op {
  void (*complete)(reactor_op*) = nullptr;
  bool fired = false;      ///< a timer that is due, its completion not run yet
  bool skip = false;       ///< a timer cancelled after it fired: its completion does not run
  error err;               ///< the outcome: errc::cancelled after a cancel, an OS error, or none
  std::size_t bytes = 0;   ///< io: bytes moved; 0 on a read is end of stream
  reactor_op* next = nullptr;
  void* pending = nullptr; ///< the backend's record of the operation in flight (Win32)
};

/// `now + d`, saturated: a duration too large for the clock means "never", not an overflow.
template <class Rep, class Period>
reactor_clock::time_point deadline_after(reactor_clock::time_point now, std::chrono::duration<Rep, Period> d) noexcept {
  using dur = reactor_clock::duration;
  if (d <= d.zero()) return now;
  const auto left = reactor_clock::time_point::max() - now;
  if (std::chrono::duration_cast<std::chrono::duration<double>>(d).count() >=
      std::chrono::duration_cast<std::chrono::duration<double>>(left).count())
    return reactor_clock::time_point::max();
  return now + std::chrono::ceil<dur>(d);
}

/// A read_some or write_some on a handle.
struct io_op : reactor_op {
  native_handle handle{};
  char* data = nullptr;
  std::size_t size = 0;
  bool write = false;
  native_handle attach = invalid_handle();           ///< write: a descriptor sent with the bytes (POSIX)
  bool socket = false;                               ///< the handle is a socket (POSIX: MSG_NOSIGNAL, MSG_DONTWAIT)
  std::vector<unique_handle>* received = nullptr;    ///< read: where descriptors that arrive go (POSIX)
  bool wait_first = false;                           ///< read: the last one emptied the handle; wait, then try (POSIX)
  bool waiting = false;                              ///< set by start_io: it could not finish at once (it waits for the OS)
};

/// Completes when the child has ended (it is not reaped: its owner does that).
struct exit_op : reactor_op {
  native_child* child = nullptr;
};

/// Completes at `deadline`.
struct timer_op : reactor_op {
  reactor_clock::time_point deadline{};
  std::multimap<reactor_clock::time_point, timer_op*>::iterator where{};
  bool armed = false;
};

/// Completed operations, in order, waiting for their `complete` to run.
struct op_queue {
  reactor_op* head = nullptr;
  reactor_op* tail = nullptr;
  void push(reactor_op* op) noexcept {
    op->next = nullptr;
    (tail ? tail->next : head) = op;
    tail = op;
  }
  bool empty() const noexcept { return head == nullptr; }
  /// Takes `op` out if it is queued.
  bool remove(reactor_op* op) noexcept {
    reactor_op* prev = nullptr;
    for (reactor_op* o = head; o; prev = o, o = o->next) {
      if (o != op) continue;
      (prev ? prev->next : head) = o->next;
      if (tail == o) tail = prev;
      return true;
    }
    return false;
  }
};

struct reactor_state;  // each backend defines it

/// Opens the OS poller.  POSIX: epoll_create1(EPOLL_CLOEXEC), or nothing for poll(2).  Win32: the
/// reactor's own I/O completion port (handles are bound to the process-wide one, which forwards here).
inline auto reactor_open_native(reactor_state& s) -> result<void>;

/// Starts a read or write; an operation that can finish at once goes straight to `done`.
///   POSIX: one non-blocking read(2)/write(2) now, else the fd waits for readiness (edge-triggered epoll).
///   Win32: an overlapped ReadFile/WriteFile; the handle is bound to the shared port on first use
///   by any reactor, and the completion is forwarded to this reactor's port.
inline void start_io_native(reactor_state& s, io_op* op, op_queue& done);

/// Starts waiting for a child's end.
///   POSIX: the pidfd as a readable fd, confirmed with waitid(WNOWAIT); without a pidfd, a WNOHANG check on every tick (at most 5 ms apart).
///   Win32: RegisterWaitForSingleObject posting to the port.
inline void start_exit_wait_native(reactor_state& s, exit_op* op, op_queue& done);

/// Completes every operation pending on `h` with errc::cancelled; `closing` also forgets `h` (call it so
/// before closing `h`, since a new handle may take its value).
///   POSIX: removes the fd from epoll.   Win32: CancelIoEx on each of this reactor's operations on
///   `h` (completions then arrive as cancelled); `h` stays bound to the shared port unless closing.
inline void cancel_native(reactor_state& s, native_handle h, bool closing, op_queue& done);

/// Cancels one pending read or write (others on the same handle go on); it completes with errc::cancelled.
///   POSIX: at once, nothing was read or written.   Win32: CancelIoEx on its OVERLAPPED; one that
///   already finished completes with its bytes, so no data is lost.
inline void cancel_io_native(reactor_state& s, io_op* op, op_queue& done);

/// Takes back one pending read or write for good: its completion will not run. On return the OS
/// is done with its buffer and `op->bytes` / `op->err` say what it did.
///   POSIX: the fd stops waiting for it; nothing was read or written (bytes 0, errc::cancelled).
///   Win32: CancelIoEx on its OVERLAPPED, then it waits until GetOverlappedResult has the outcome (one that
///   had finished keeps its bytes); the packet that still arrives on the port is dropped.
///   A write given `meanwhile` is not cancelled on Win32 but waited for, reading into `meanwhile`
///   (a pipe write cancelled halfway reports 0 bytes under Wine: its count would be lost).
inline void withdraw_io_native(reactor_state& s, io_op* op, read_sink* meanwhile) noexcept;

/// Whether a cancelled write reports exactly what it had moved (each backend defines it as
/// `inline constexpr bool cancelled_write_counted_native`).
///   POSIX: yes (a write waiting for readiness has moved nothing).   Win32: no: a pipe write
///   cancelled after the reader took part of it reports 0 bytes under Wine, so an owner that
///   must know finishes the write instead (withdraw with `meanwhile`).

/// Completes every pending read, write and exit wait with errc::cancelled (a loop that ends);
/// on return the OS is done with every buffer. A read that had moved bytes keeps them in
/// `op->bytes` (its owner keeps them: nothing read is lost).
///   POSIX: every fd leaves the poller; nothing was read or written.   Win32: each overlapped
///   operation is withdrawn (CancelIoEx, then a wait for its outcome); each exit wait is cancelled.
inline void cancel_all_native(reactor_state& s, op_queue& done) noexcept;

/// Whether any read, write or exit wait is pending.
inline bool pending_native(const reactor_state& s) noexcept;

/// Cancels one pending exit wait; it completes with errc::cancelled (or normally if the child had just ended).
///   POSIX: the pidfd waiter or the polled entry is dropped.   Win32: UnregisterWaitEx, waiting
///   for a callback that is running; a wake-up it already posted completes the wait normally.
inline void cancel_exit_wait_native(reactor_state& s, exit_op* op, op_queue& done);

/// Waits up to `timeout_ms` (-1: no limit) for readiness or completions; finished operations go to `done`.
///   POSIX: epoll_wait or poll.   Win32: GetQueuedCompletionStatusEx.
inline auto reactor_poll_native(reactor_state& s, int timeout_ms, op_queue& done) -> result<void>;

/// Prepares wake-ups from other threads (event loops only; the sync functions never need them).
///   POSIX: a non-blocking self-pipe watched by the poller.   Win32: nothing (the port is enough).
inline auto reactor_enable_wake_native(reactor_state& s) -> result<void>;

/// Makes a waiting reactor_poll_native return; safe from any thread.
///   POSIX: one byte into the self-pipe.   Win32: PostQueuedCompletionStatus with the wake key.
inline void reactor_wake_native(reactor_state& s) noexcept;

/// Forgets a handle that is about to close, wherever it was used (a new handle may take its value).
///   POSIX: nothing (each reactor forgets its fds in cancel_native).   Win32: its binding to the shared port.
inline void forget_handle_native(native_handle h) noexcept;

/// Releases the OS poller; what is still pending is withdrawn first (the OS is done with its buffers).
///   POSIX: closes the epoll fd and the self-pipe.   Win32: withdraws what is in flight, frees the
///   records whose packets it holds, closes its port.
inline void reactor_close_native(reactor_state& s) noexcept;

}  // namespace childproc::inline v0::detail

#if CHILDPROC_WIN32
#  include "reactor.win32.hpp"
#else
#  include "reactor.posix.hpp"
#endif

namespace childproc::inline v0::detail {

/// The platform-free half: timers, the completion queue, run_once.
class reactor {
 public:
  reactor() = default;
  reactor(const reactor&) = delete;
  reactor& operator=(const reactor&) = delete;
  ~reactor() { reactor_close_native(state_); }

  /// Forgets a handle that is about to close, where no reactor that used it lives any more.
  static void forget_everywhere(native_handle h) noexcept { forget_handle_native(h); }

  /// A weak handle that expires with the reactor: streams use it to cancel before they close.
  std::weak_ptr<reactor*> token() { return alive_; }

  /// Opens the OS side; call once before anything else.
  result<void> open() { return reactor_open_native(state_); }

  /// Starts a read (op->write false) or a write.
  void start_io(io_op* op) {
    if (shut_) return refuse(op);
    start_io_native(state_, op, done_);
  }
  /// Starts waiting for a child's end.
  void start_exit_wait(exit_op* op) {
    if (shut_) return refuse(op);
    start_exit_wait_native(state_, op, done_);
  }
  /// Completes everything pending on `h` with ECANCELED; `h` stays usable.
  void cancel(native_handle h) { cancel_native(state_, h, false, done_); }
  /// Cancels and forgets `h`: call right before closing it.
  void forget(native_handle h) { cancel_native(state_, h, true, done_); }
  /// Cancels one pending operation (a no-op for one that is not pending).
  void cancel_op(io_op* op) { cancel_io_native(state_, op, done_); }
  /// Takes back one pending or completed read or write so that it never completes (its owner
  /// goes away); op->bytes and op->err say what it did. Not from inside a completion of this reactor.
  /// A write given `meanwhile` (Win32) is finished rather than cancelled, reading into it.
  void withdraw(io_op* op, read_sink* meanwhile = nullptr) noexcept {
    // Completed, its completion not run yet (this round's or the next): the outcome is set.
    if (take_out(op)) return;
    withdraw_io_native(state_, op, meanwhile);
  }
  /// Queues the completion of an operation already withdrawn (its outcome set), for the next round.
  void complete_later(reactor_op* op) noexcept { done_.push(op); }
  /// Ends one pending read or write now: the OS is done with its buffer on return, and its
  /// completion runs in the next round with errc::cancelled (what it had moved is dropped: its
  /// owner is closing). Safe from inside a completion.
  void abort(io_op* op) noexcept {
    withdraw(op);
    op->err = error(errc::cancelled);
    op->bytes = 0;
    done_.push(op);
  }
  void cancel_op(exit_op* op) { cancel_exit_wait_native(state_, op, done_); }
  void cancel_op(timer_op* op) {
    if (!op->armed) return;  // already fired: it completes as due
    cancel_timer(op);
    op->err = error(errc::cancelled);
    done_.push(op);
  }

  /// Allows wake() from other threads.
  result<void> enable_wake() { return reactor_enable_wake_native(state_); }
  /// Makes run_once return soon; safe from any thread once enable_wake() succeeded.
  void wake() noexcept { reactor_wake_native(state_); }

  /// Arms a timer (re-arming moves it).
  void start_timer(timer_op* op, reactor_clock::time_point deadline) {
    cancel_timer(op);
    if (shut_) return refuse(op);
    op->skip = op->fired = false;
    op->deadline = deadline;
    op->where = timers_.emplace(deadline, op);
    op->armed = true;
  }
  /// Disarms a timer; its completion does not run (even if it already fired in this round).
  void cancel_timer(timer_op* op) noexcept {
    if (op->armed) timers_.erase(op->where);
    else if (op->fired) op->skip = true;
    op->armed = false;
  }
  /// Takes back a timer, armed or fired, so that its completion never runs and the reactor holds
  /// no pointer to it (its owner goes away). Safe from inside a completion.
  void withdraw(timer_op* op) noexcept {
    if (op->armed) timers_.erase(op->where);
    else (void)take_out(op);
    op->armed = op->fired = op->skip = false;
  }

  /// The loop is ending: from now on every operation started completes at once with
  /// errc::cancelled (in the next round), so that finishing the pending ones terminates.
  void shut() noexcept { shut_ = true; }
  /// Completes everything pending (reads, writes, exit waits, timers) with errc::cancelled, in
  /// the next round; the OS is done with every buffer on return.
  void cancel_all() noexcept {
    cancel_all_native(state_, done_);
    for (auto& [when, t] : timers_) {
      t->armed = false;
      t->err = error(errc::cancelled);
      done_.push(t);
    }
    timers_.clear();
  }
  /// Whether anything is pending or completed and not yet run.
  bool busy() const noexcept { return !done_.empty() || !timers_.empty() || pending_native(state_); }

  /// Waits for at least one completion or until `until`, then runs the completions that were ready.
  /// Returns how many ran.
  result<std::size_t> run_once(std::optional<reactor_clock::time_point> until = std::nullopt) {
    if (done_.empty()) {
      auto deadline = until;
      if (!timers_.empty() && (!deadline || timers_.begin()->first < *deadline)) deadline = timers_.begin()->first;
      int timeout_ms = -1;
      if (deadline) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - reactor_clock::now()).count();
        timeout_ms = left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
      }
      if (auto r = reactor_poll_native(state_, timeout_ms, done_); !r) return std::move(r).error();
    }
    const auto now = reactor_clock::now();
    while (!timers_.empty() && timers_.begin()->first <= now) {
      timer_op* t = timers_.begin()->second;
      timers_.erase(timers_.begin());
      t->armed = false;
      t->fired = true;
      t->skip = false;
      t->err = {};
      done_.push(t);
    }
    // Completions started now wait for the next round. The batch is a member so that an
    // operation aborted by an earlier completion of this round is taken out of it.
    // A completion may run the loop again (a nested run()): the rest of this round waits in
    // `outer`, where withdraw still finds its operations.
    round outer{std::exchange(batch_, std::exchange(done_, {})), outer_};
    outer_ = &outer;
    struct restore {  // also if a completion throws: no pointer to this frame stays behind
      reactor* self;
      round* r;
      ~restore() {
        self->batch_ = r->rest;
        self->outer_ = r->up;
      }
    } restored{this, &outer};
    std::size_t n = 0;
    while (reactor_op* op = batch_.head) {
      batch_.head = op->next;
      if (!batch_.head) batch_.tail = nullptr;
      op->fired = false;
      if (std::exchange(op->skip, false)) continue;
      op->complete(op);
      ++n;
    }
    return n;
  }

 private:
  reactor_state state_;
  std::shared_ptr<reactor*> alive_ = std::make_shared<reactor*>(this);
  op_queue done_;
  op_queue batch_;  // this round's completions not run yet
  struct round {
    op_queue rest;  // an enclosing round's completions not run yet
    round* up;
  };
  round* outer_ = nullptr;  // the rounds that wait for a nested one to end, innermost first
  // Takes a completed operation out of whichever queue holds it; false if none does.
  bool take_out(reactor_op* op) noexcept {
    if (done_.remove(op) || batch_.remove(op)) return true;
    for (round* r = outer_; r; r = r->up)
      if (r->rest.remove(op)) return true;
    return false;
  }
  bool shut_ = false;
  void refuse(reactor_op* op) noexcept {
    op->err = error(errc::cancelled);
    done_.push(op);
  }
  void refuse(io_op* op) noexcept {
    op->bytes = 0;
    refuse(static_cast<reactor_op*>(op));
  }
  std::multimap<reactor_clock::time_point, timer_op*> timers_;
};

}  // namespace childproc::inline v0::detail

#endif
