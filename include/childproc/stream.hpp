// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_STREAM_HPP
#define CHILDPROC_STREAM_HPP

#include "detail/pipe.hpp"
#include "event_loop.hpp"
#include "options.hpp"
#include "result.hpp"
#include "task.hpp"

#include <algorithm>    // std::min
#include <coroutine>    // awaitables
#include <cstddef>      // std::size_t
#include <cstdint>      // std::uint8_t
#include <cstring>      // memcpy from the read-ahead buffer
#include <memory>       // the weak reference to the reactor
#include <span>         // buffers
#include <stop_token>   // cancellation
#include <string>       // read_all
#include <string_view>  // write
#include <vector>       // descriptors received on a channel

namespace childproc::inline v0 {

/// The parent's end of one of the child's stdio pipes. Move-only; closes on destruction.
/// Blocking calls (read_some, read_all, write) work anywhere; the async_* and line calls are
/// awaitables for a coroutine running on an event_loop (sync_wait, event_loop::run).
class stream {
 public:
  stream() noexcept = default;
  /// Takes ownership of a descriptor or HANDLE.
  explicit stream(detail::unique_handle h) noexcept : h_(std::move(h)) {}
  stream(stream&& o) noexcept
      : h_(std::move(o.h_)),
        ahead_(std::move(o.ahead_)),
        head_(std::exchange(o.head_, 0)),
        reactor_(std::move(o.reactor_)),
        received_(std::exchange(o.received_, nullptr)),
        socket_(std::exchange(o.socket_, false)),
        blocking_(std::exchange(o.blocking_, false)),
        restore_(std::exchange(o.restore_, false)),
        drained_(std::exchange(o.drained_, false)),
        full_reads_(std::exchange(o.full_reads_, 0)),
        sized_(std::exchange(o.sized_, false)),
        capacity_(std::exchange(o.capacity_, 0)),
        grown_(std::exchange(o.grown_, 0)) {
    adopt_pending(o);
  }
  stream& operator=(stream&& o) noexcept {
    if (this != &o) {
      close();
      h_ = std::move(o.h_);
      ahead_ = std::move(o.ahead_);
      head_ = std::exchange(o.head_, 0);
      reactor_ = std::move(o.reactor_);
      received_ = std::exchange(o.received_, nullptr);
      socket_ = std::exchange(o.socket_, false);
      blocking_ = std::exchange(o.blocking_, false);
      restore_ = std::exchange(o.restore_, false);
      drained_ = std::exchange(o.drained_, false);
      full_reads_ = std::exchange(o.full_reads_, 0);
      sized_ = std::exchange(o.sized_, false);
      capacity_ = std::exchange(o.capacity_, 0);
      grown_ = std::exchange(o.grown_, 0);
      adopt_pending(o);
    }
    return *this;
  }
  ~stream() { close(); }

  /// Whether the stream is open.
  bool is_open() const noexcept { return h_.valid(); }
  /// Ends a read left pending on a loop (one that stopped, say) so that another loop or a blocking
  /// call may read: what it had read is kept for the next read; its coroutine resumes, when
  /// that loop runs again, with errc::cancelled. For the library (a channel's blocking calls).
  /// A read pending on `except` (the caller's own loop) is left alone (a second one there is busy).
  void take_back_read(const detail::reactor* except = nullptr) noexcept {
    io_awaiter* a = reader_;
    if (!a) return;
    auto w = a->where.lock();
    if (!w || *w == except) return;  // its loop is gone, and finished it; or it is the caller's
    reader_ = nullptr;
    (*w)->withdraw(a);  // the OS is done with its buffer; a->bytes: what it took
    const std::size_t took = a->err ? 0 : a->bytes;
    if (a->from_ahead) {
      ahead_.append(a->data, took);
    } else {  // fill_ahead's read into ahead_ itself: drop the room it had made, keep what came
      ahead_.resize(static_cast<std::size_t>(a->data - ahead_.data()) + took);
    }
    a->self = nullptr;  // settled here: its coroutine touches the stream no more
    a->err = error(errc::cancelled);
    a->bytes = 0;
    (*w)->complete_later(a);
  }

  /// Ends the read `mine` (an async_read_some's awaiter) with errc::cancelled, as its stop token
  /// would (nothing read is lost), if it is still this stream's pending read on `on`; whether it
  /// was. For the library (a channel's receive that looks at something else now and then).
  bool cancel_read(detail::reactor& on, const detail::io_op* mine) noexcept {
    if (!reader_ || static_cast<const detail::io_op*>(reader_) != mine) return false;  // taken back, or another's
    auto w = reader_->where.lock();
    if (!w || *w != &on) return false;
    on.cancel_op(static_cast<detail::io_op*>(reader_));
    return true;
  }

  /// Whether a read is pending on a loop (for the library: a channel reads only when none is).
  bool reading() const noexcept { return reader_ != nullptr; }
  /// Bytes read ahead (by read_line, read_until or a read its loop cancelled) not yet consumed:
  /// the next read returns them first.
  std::size_t buffered() const noexcept { return ahead().size(); }
  /// The descriptor or HANDLE (still owned by the stream).
  native_handle handle() const noexcept { return h_.get(); }
  /// Gives up ownership of the descriptor or HANDLE.
  native_handle release() noexcept {
    forget();
    give_back_growth();
    blocking_ = false;
    if (std::exchange(restore_, false)) detail::undo_blocking_socket_native(h_.get());  // as it came
    return h_.release();
  }
  /// Closes the parent's end: for stdin, the child then sees end of file. A pending awaitable
  /// on it completes with errc::cancelled.
  void close() noexcept {
    forget();
    give_back_growth();
    blocking_ = restore_ = false;
    h_.reset();
  }

  /// Notes the reactor that runs operations on this stream, so close() cancels them there (for
  /// the library's own operations, such as a channel's background writes).
  void attach(detail::reactor& r) { reactor_ = r.token(); }

  /// Keeps the descriptors that arrive with the bytes in `into` (a channel passing handles; POSIX
  /// sockets only, elsewhere nothing arrives). Without it they are closed on arrival.
  void collect_handles(std::vector<detail::unique_handle>* into) noexcept { received_ = into; }

  /// Notes that the handle is a socket (a channel's): POSIX writes then need no signal mask, and
  /// a blocking read is one system call (the socket is left blocking; every other read and write
  /// asks not to wait).
  void mark_socket() noexcept {
    socket_ = true;
    if (blocking_ || reader_ || writer_) return;  // an operation pending on a loop reads as it started
    const int how = detail::make_blocking_socket_native(h_.get());
    blocking_ = how != 0;
    restore_ = how == 2;
  }

  /// Reads what is there (at least one byte), blocking; errc::end_of_stream at the end.
  result<std::size_t> read_some(std::span<char> buffer) {
    if (!is_open()) return error(errc::no_process, "read: the stream is closed");
    if (!ahead().empty()) return take_ahead(buffer);
    auto r = detail::read_some_native(h_.get(), buffer, received_, drained_, blocking_);
    if (r && *r == 0 && !buffer.empty()) return errc::end_of_stream;
    drained_ = r && *r < buffer.size();
    if (r) note_read(*r);
    return r;
  }

  /// For the library's own readers (spawn_sync's): notes a read of `n` bytes. A child's output
  /// pipe that two reads in a row find full grows to detail::grown_pipe_size (Linux), within the
  /// process's budget; refused, it stays as it is.
  void note_read(std::size_t n) noexcept {
    if (sized_ || n < 4096) {  // decided, or a short read: the pipe was not full
      full_reads_ = 0;
      return;
    }
    if (!capacity_ && !(capacity_ = socket_ ? 0 : detail::pipe_capacity_native(h_.get()))) {
      sized_ = true;  // not a pipe that can grow (a file, a socket, Win32)
      return;
    }
    if (n < capacity_) {
      full_reads_ = 0;
      return;
    }
    if (++full_reads_ < 2) return;
    // Asked again: the child (or anyone holding an end) may have resized it since. Never shrunk.
    if (const std::size_t now = detail::pipe_capacity_native(h_.get()); now != capacity_) {
      capacity_ = now;
      full_reads_ = 0;  // the reads were measured against another size: count again
      if (!now || now >= detail::grown_pipe_size) sized_ = true;
      return;
    }
    sized_ = true;
    if (capacity_ >= detail::grown_pipe_size) return;
    const std::size_t extra = detail::grown_pipe_size - capacity_;
    std::size_t held = detail::grown_pipe_bytes.load(std::memory_order_relaxed);
    do
      if (held + extra > detail::grown_pipes_budget) return;  // other streams hold it all: stay small
    while (!detail::grown_pipe_bytes.compare_exchange_weak(held, held + extra, std::memory_order_relaxed));
    const std::size_t got = detail::grow_pipe_native(h_.get(), detail::grown_pipe_size);
    grown_ = got > capacity_ ? std::min(got - capacity_, extra) : 0;
    detail::grown_pipe_bytes.fetch_sub(extra - grown_, std::memory_order_relaxed);
    if (grown_) capacity_ = got;
  }

  /// Reads to the end of the stream; more than `max` bytes is errc::max_buffer_exceeded.
  result<std::string> read_all(std::size_t max = unlimited) {
    std::string data = take_all_ahead();
    for (;;) {
      if (data.size() > max) return error(errc::max_buffer_exceeded, "read: more than " + std::to_string(max) + " bytes");
      const std::size_t old = data.size();
      data.resize(old + 65536);
      auto r = read_some({data.data() + old, 65536});
      data.resize(old + (r ? *r : 0));
      if (!r) {
        if (r.error() == errc::end_of_stream) return data;
        return std::move(r).error();
      }
    }
  }

  /// Writes all of `data`, blocking; a reader that is gone is an EPIPE error, never SIGPIPE.
  result<void> write(std::string_view data) {
    if (!is_open()) return error(errc::no_process, "write: the stream is closed");
    while (!data.empty()) {
      auto r = detail::write_some_native(h_.get(), {data.data(), data.size()}, detail::invalid_handle(), socket_);
      if (!r) return std::move(r).error();
      data.remove_prefix(*r);
    }
    return {};
  }

  // Every awaitable takes an optional std::stop_token: triggered (from any thread) while the
  // operation waits, it ends with errc::cancelled, nothing is lost and the stream stays usable.

  /// Awaitable: reads what is there (at least one byte) -> result<size_t>; errc::end_of_stream at the end.
  auto async_read_some(std::span<char> buffer, std::stop_token stop = {}) noexcept {
    return io_awaiter(this, buffer.data(), buffer.size(), false, true, std::move(stop));
  }

  /// Awaitable: writes some of `data` (at least one byte) -> result<size_t>; EPIPE if the reader is gone.
  auto async_write_some(std::span<const char> data, std::stop_token stop = {}) noexcept {
    return io_awaiter(this, const_cast<char*>(data.data()), data.size(), true, false, std::move(stop));
  }

  /// Awaitable: writes all of `data` -> result<void>, with backpressure (it waits while the pipe
  /// is full). `data` must stay alive until it completes. A cancel may leave a prefix written.
  task<result<void>> async_write(std::string_view data, std::stop_token stop = {}) {
    while (!data.empty()) {
      auto r = co_await async_write_some({data.data(), data.size()}, stop);
      if (!r) co_return std::move(r).error();
      data.remove_prefix(*r);
    }
    co_return result<void>();
  }

  /// Awaitable: the text before the next `delim` (which is consumed) -> result<std::string>. At the
  /// end, the rest without delimiter, then errc::end_of_stream. More than `max` bytes without
  /// the delimiter is errc::line_too_long, and the bytes stay unread.
  task<result<std::string>> read_until(std::string delim, std::size_t max = 1 << 20, std::stop_token stop = {}) {
    std::size_t scanned = 0;
    for (;;) {
      const std::string_view have = ahead();
      const auto at = have.find(delim, scanned);
      if (at != std::string_view::npos && at <= max) {
        std::string line(have.substr(0, at));
        consume(at + delim.size());
        co_return line;
      }
      if (have.size() > max)
        co_return error(errc::line_too_long, "read: no delimiter within " + std::to_string(max) + " bytes");
      scanned = have.size() >= delim.size() ? have.size() - delim.size() + 1 : 0;
      auto r = co_await fill_ahead(stop);
      if (!r) {
        if (r.error() == errc::end_of_stream && !ahead().empty()) co_return take_all_ahead();
        co_return std::move(r).error();
      }
    }
  }

  /// Awaitable: the next line without its "\n" or "\r\n" -> result<std::string>; a last line
  /// without newline is returned, then errc::end_of_stream; a line over `max` is errc::line_too_long.
  task<result<std::string>> read_line(std::size_t max = 1 << 20, std::stop_token stop = {}) {
    auto line = co_await read_until("\n", max, std::move(stop));
    if (line && !line->empty() && line->back() == '\r') line->pop_back();
    co_return line;
  }

  /// Awaitable: everything to the end of the stream -> result<std::string>; more than `max`
  /// bytes is errc::max_buffer_exceeded.
  task<result<std::string>> async_read_all(std::size_t max = unlimited, std::stop_token stop = {}) {
    for (;;) {
      if (ahead().size() > max)
        co_return error(errc::max_buffer_exceeded, "read: more than " + std::to_string(max) + " bytes");
      auto r = co_await fill_ahead(stop);
      if (!r) {
        if (r.error() == errc::end_of_stream) co_return take_all_ahead();
        co_return std::move(r).error();
      }
    }
  }

 private:
  // One read or write on the current loop's reactor, resumed by its completion.
  struct io_awaiter : detail::io_op {
    /// Whether the stream settled it itself (take_back_read): its caller must not read on.
    bool taken_back() const noexcept { return !self; }
    stream* self;
    bool from_ahead;  // serve read-ahead bytes first (not when filling the read-ahead buffer)
    bool served_ahead = false;  // await_ready took read-ahead bytes: no read of the handle
    std::stop_token stop;
    detail::stop_link link;
    std::coroutine_handle<> h;
    error early;
    std::weak_ptr<detail::reactor*> where;  // the reactor it waits on (a stream may be used by several loops)
    io_awaiter(stream* s, char* d, std::size_t n, bool w, bool ahead, std::stop_token st) noexcept
        : self(s), from_ahead(ahead), stop(std::move(st)) {
      data = d;
      size = n;
      write = w;
    }
    bool await_ready() noexcept {
      if (!self->is_open()) early = error(errc::no_process, write ? "write: the stream is closed" : "read: the stream is closed");
      else if (!event_loop::current()) early = error(errc::no_event_loop, write ? "write" : "read");
      else if (stop.stop_requested()) early = error(errc::cancelled, write ? "write: cancelled" : "read: cancelled");
      else if (write ? self->writer_ : self->reader_)  // a second one would race the first for the same bytes
        early = error(errc::busy, write ? "write: another write is pending on this stream"
                                        : "read: another read is pending on this stream");
      else if (from_ahead && !self->ahead().empty()) {
        bytes = self->take_ahead({data, size}).value();
        served_ahead = true;  // not a read of the pipe
      } else {
        return false;
      }
      return true;
    }
    void await_suspend(std::coroutine_handle<> awaiting) {
      h = awaiting;
      handle = self->h_.get();
      if (!write) received = self->received_;
      wait_first = !write && self->drained_;
      socket = self->socket_;
      complete = [](detail::reactor_op* op) {
        auto* a = static_cast<io_awaiter*>(op);
        if (a->self) (a->write ? a->self->writer_ : a->self->reader_) = nullptr;
        a->link.completed();
        a->h.resume();
      };
      auto* loop = event_loop::current();
      (write ? self->writer_ : self->reader_) = this;
      where = loop->reactor().token();
      self->reactor_ = where;
      loop->reactor().start_io(this);
      link.arm(stop, loop, this, [](detail::reactor& r, detail::reactor_op* op) { r.cancel_op(static_cast<io_op*>(op)); });
    }
    result<std::size_t> await_resume() {
      if (early) return early;
      if (err == errc::cancelled) {
        // Cancelled after it had read (Win32, when its loop ended): the stream keeps the bytes
        // for the next read. fill_ahead keeps its own (they are already in the buffer).
        if (!write && from_ahead && bytes && self) self->ahead_.append(data, bytes);
        // A write that had moved bytes says how many (Win32: it finished just as it was
        // cancelled), so its caller does not write them again.
        if (write && bytes) return bytes;
        return error(errc::cancelled, write ? "write: cancelled" : "read: cancelled");
      }
      if (err) return err;
      if (!write && bytes == 0 && size != 0) return errc::end_of_stream;
      if (!write && self) {
        self->drained_ = bytes < size;
        if (!served_ahead) self->note_read(bytes);
      }
      return bytes;
    }
  };

  // Reads one chunk onto the read-ahead buffer.
  task<result<void>> fill_ahead(std::stop_token stop) {
    if (head_) {  // drop what was consumed: once per refill, not once per line
      ahead_.erase(0, head_);
      head_ = 0;
    }
    const std::size_t old = ahead_.size();
    ahead_.resize(old + 65536);
    io_awaiter a(this, ahead_.data() + old, 65536, false, false, std::move(stop));
    auto r = co_await a;
    if (a.self != this) co_return r ? error(errc::cancelled, "read: cancelled") : std::move(r).error();  // closed meanwhile
    ahead_.resize(old + (r ? *r : a.err == errc::cancelled ? a.bytes : 0));  // a cancelled read keeps what it took
    if (!r) co_return std::move(r).error();
    co_return result<void>();
  }

  result<std::size_t> take_ahead(std::span<char> buffer) {
    const std::size_t n = std::min(buffer.size(), ahead().size());
    std::memcpy(buffer.data(), ahead().data(), n);
    consume(n);
    return n;
  }

  // The reactor must forget the handle before it closes (and before it moves to another loop).
  // A pending operation ends now, cancelled, and the OS is done with its buffer on return (the
  // read-ahead buffer goes with the stream); its coroutine resumes in the loop's next round.
  // The growth this stream held goes back to the budget (the pipe itself lives on while the
  // child holds its end; it is freed when the child exits).
  void give_back_growth() noexcept {
    if (grown_) detail::grown_pipe_bytes.fetch_sub(std::exchange(grown_, 0), std::memory_order_relaxed);
  }

  void forget() noexcept {
    for (io_awaiter* a : {std::exchange(reader_, nullptr), std::exchange(writer_, nullptr)}) {
      if (!a) continue;
      a->self = nullptr;
      if (auto w = a->where.lock()) {  // on its own loop's reactor, which may not be the last one used
        (*w)->abort(a);
        if (h_.valid()) (*w)->forget(h_.get());
      }
    }
    auto r = reactor_.lock();
    if (r && h_.valid()) (*r)->forget(h_.get());
    else if (h_.valid()) detail::reactor::forget_everywhere(h_.get());
    reactor_.reset();
  }

  // After a move: the operations pending on `o` now belong to this stream. A read_line's read
  // into the read-ahead buffer (which moved here) cannot follow: its coroutine holds the old
  // stream. It is taken back (its bytes kept here, no room left over) and ends cancelled.
  void adopt_pending(stream& o) noexcept {
    reader_ = std::exchange(o.reader_, nullptr);
    writer_ = std::exchange(o.writer_, nullptr);
    for (io_awaiter* a : {reader_, writer_})
      if (a) a->self = this;
    if (reader_ && !reader_->from_ahead) take_back_read();
  }

  detail::unique_handle h_;
  // Bytes read ahead by read_line / read_until not yet consumed.
  std::string_view ahead() const noexcept { return std::string_view(ahead_).substr(head_); }
  void consume(std::size_t n) noexcept {
    head_ += n;
    if (head_ == ahead_.size()) {
      ahead_.clear();
      head_ = 0;
    }
  }
  std::string take_all_ahead() {
    std::string rest = head_ ? ahead_.substr(head_) : std::move(ahead_);
    ahead_.clear();
    head_ = 0;
    return rest;
  }

  std::string ahead_;                    // read ahead by read_line / read_until; valid from head_
  std::size_t head_ = 0;
  std::weak_ptr<detail::reactor*> reactor_;  // where async operations ran, while it lives
  std::vector<detail::unique_handle>* received_ = nullptr;  // collect_handles()
  bool socket_ = false;                                     // mark_socket()
  bool blocking_ = false;  // mark_socket(): a blocking socket, read with one call that waits (POSIX)
  bool restore_ = false;   // mark_socket() cleared its O_NONBLOCK: release() sets it again
  bool drained_ = false;  // the last read returned less than asked: the next one waits first (a hint)
  // Growing a child's output pipe (note_read): reads in a row that found it full, whether that is
  // decided, its capacity (0: not asked yet), and the bytes of the process's budget held here.
  std::uint8_t full_reads_ = 0;
  bool sized_ = false;
  std::size_t capacity_ = 0;
  std::size_t grown_ = 0;
  io_awaiter* reader_ = nullptr;  // the read pending on a loop (one at a time)
  io_awaiter* writer_ = nullptr;  // the write pending on a loop (one at a time)
};

}  // namespace childproc::inline v0

#endif
