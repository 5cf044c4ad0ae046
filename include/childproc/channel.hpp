// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_CHANNEL_HPP
#define CHILDPROC_CHANNEL_HPP

#include "detail/framing.hpp"
#include "detail/pipe.hpp"
#include "event_loop.hpp"
#include "result.hpp"
#include "stream.hpp"
#include "task.hpp"

#include <array>        // decoding trivially copyable messages
#include <bit>          // std::bit_cast
#include <coroutine>    // send_async's awaiter
#include <cstddef>      // std::byte
#include <cstdint>      // byte counters
#include <cstring>      // memcpy
#include <memory>       // the channel's state
#include <optional>     // a frame, or not yet
#include <span>         // byte spans
#include <stop_token>   // receive(stop)
#include <string>       // buffers
#include <string_view>  // payloads
#include <type_traits>  // message_traits
#include <utility>      // std::move
#include <vector>       // byte vectors, waiters

namespace childproc::inline v0 {

/// The largest message a channel accepts by default, either way (options::max_message_size).
inline constexpr std::size_t default_max_message_size = std::size_t{64} << 20;

/// How a message type becomes bytes and back. The primary template covers trivially copyable
/// types (their object bytes: both sides must agree on the layout); specialize it for your own.
template <class T>
struct message_traits {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_pointer_v<T>,
                "childproc: specialize message_traits<T> with encode(const T&, std::string&) and decode(std::string_view)");
  static void encode(const T& m, std::string& out) { out.append(reinterpret_cast<const char*>(&m), sizeof(T)); }
  static result<T> decode(std::string_view in) {
    if (in.size() != sizeof(T))
      return error(errc::invalid_argument, "message: " + std::to_string(in.size()) + " bytes, expected " + std::to_string(sizeof(T)));
    std::array<char, sizeof(T)> raw;
    std::memcpy(raw.data(), in.data(), sizeof(T));
    return std::bit_cast<T>(raw);
  }
};

namespace detail {
template <class Bytes>
struct byte_sequence_traits {
  static void encode(const Bytes& m, std::string& out) {
    out.append(reinterpret_cast<const char*>(m.data()), m.size());
  }
  static result<Bytes> decode(std::string_view in) {
    using value = typename Bytes::value_type;
    const auto* p = reinterpret_cast<const value*>(in.data());
    return Bytes(p, p + in.size());
  }
};
}  // namespace detail

template <>
struct message_traits<std::string> : detail::byte_sequence_traits<std::string> {};
template <>
struct message_traits<std::vector<char>> : detail::byte_sequence_traits<std::vector<char>> {};
template <>
struct message_traits<std::vector<unsigned char>> : detail::byte_sequence_traits<std::vector<unsigned char>> {};
template <>
struct message_traits<std::vector<std::byte>> : detail::byte_sequence_traits<std::vector<std::byte>> {};
/// A view into the received message: valid while that message lives.
template <>
struct message_traits<std::string_view> {
  static void encode(std::string_view m, std::string& out) { out.append(m); }
  static result<std::string_view> decode(std::string_view in) { return in; }
};
template <class B, std::size_t N>
  requires(sizeof(B) == 1)
struct message_traits<std::span<B, N>> {
  static void encode(std::span<B, N> m, std::string& out) { out.append(reinterpret_cast<const char*>(m.data()), m.size()); }
};

/// One received message: its bytes, decoded on demand.
class message {
 public:
  message() = default;
  explicit message(std::string bytes) noexcept : bytes_(std::move(bytes)) {}

  /// The payload.
  std::string_view bytes() const noexcept { return bytes_; }
  /// The payload as a string (moved out of an rvalue message).
  const std::string& str() const& noexcept { return bytes_; }
  std::string str() && noexcept { return std::move(bytes_); }
  /// The payload's length in bytes.
  std::size_t size() const noexcept { return bytes_.size(); }
  bool empty() const noexcept { return bytes_.empty(); }
  /// The payload decoded as T (message_traits<T>).
  template <class T>
  result<T> as() const {
    return message_traits<T>::decode(bytes_);
  }
  operator std::string_view() const noexcept { return bytes_; }
  friend bool operator==(const message& m, std::string_view s) noexcept { return m.bytes_ == s; }

 private:
  std::string bytes_;
};

/// A framed, duplex message channel over a byte stream (a socketpair or a named pipe): what
/// fork() gives the parent (process::channel()) and the child (parent_channel()).
///
/// send() never blocks a running event loop: frames are queued and written in the background
/// (many small messages coalesce into one write); without a loop on this thread it writes
/// before it returns. send_async() also waits until its bytes are written (backpressure).
/// receive() parses every whole frame already buffered before it reads again.
template <class Codec = length_prefixed>
class basic_channel {
  struct core;

 public:
  basic_channel() = default;
  /// Takes a connected duplex stream; messages longer than `max_message_size` are refused.
  explicit basic_channel(stream transport, std::size_t max_message_size = default_max_message_size)
      : c_(std::make_unique<core>()) {
    c_->io = std::move(transport);
    c_->max = max_message_size;
  }
  basic_channel(basic_channel&&) noexcept = default;
  basic_channel& operator=(basic_channel&& o) noexcept {
    if (this != &o) {
      release();
      c_ = std::move(o.c_);
    }
    return *this;
  }
  ~basic_channel() { release(); }

  /// Whether messages can still flow: open, not disconnected, no end of stream or error seen.
  bool connected() const noexcept { return c_ && c_->io.is_open() && !c_->eof && !c_->failed; }

  /// The largest message accepted, either way.
  std::size_t max_message_size() const noexcept { return c_ ? c_->max : 0; }
  /// Changes the largest message accepted (parent_channel() starts with default_max_message_size).
  void set_max_message_size(std::size_t n) noexcept {
    if (c_) c_->max = n;
  }

  /// Queues `msg` (a string, bytes, or any type with message_traits). On an event loop it is
  /// written in the background; elsewhere it is written before send returns. An earlier write
  /// failure (EPIPE: the peer is gone) is reported here; a message over the limit is refused.
  template <class T>
  result<void> send(const T& msg) {
    if (auto e = queue(msg); !e) return e;
    if (event_loop* loop = event_loop::current()) {
      start_writing(*loop);
      return {};
    }
    return flush();
  }

  /// Awaitable: queues `msg` and completes when it has been written -> result<void>.
  template <class T>
  task<result<void>> send_async(const T& msg) {
    if (auto e = queue(msg); !e) co_return e;
    event_loop* loop = event_loop::current();
    if (!loop) co_return error(errc::no_event_loop, "send");
    start_writing(*loop);
    written_awaiter until(c_.get(), c_->queued);  // a named awaiter: g++ 12 mishandles braced temporaries in co_await
    co_return co_await until;
  }

  /// Writes everything queued, blocking (for code without an event loop).
  result<void> flush() {
    if (!c_) return closed_error("send");
    if (c_->failed) return c_->failure;
    if (c_->job) return {};  // a background write on a loop owns the queue; it goes on there
    std::string pending = std::exchange(c_->out, {});
    if (auto r = c_->io.write(pending); !r) return fail(std::move(r).error());
    c_->written = c_->queued;
    return {};
  }

  /// Awaitable: the next message -> result<T> (T = message by default); errc::end_of_stream
  /// when the peer disconnected cleanly. A triggered `stop` ends the wait with errc::cancelled
  /// and loses nothing.
  template <class T = message>
  task<result<T>> receive(std::stop_token stop = {}) {
    for (;;) {
      auto m = take_frame();
      if (!m) co_return std::move(m).error();
      if (*m) co_return decode<T>(std::move(**m));
      if (!c_->io.is_open()) co_return closed_error("receive");
      auto r = co_await c_->io.async_read_some(spare(), stop);
      if (auto e = received(r); !e) co_return std::move(e).error();
    }
  }

  /// The next message, blocking (for code without an event loop).
  template <class T = message>
  result<T> receive_sync() {
    for (;;) {
      auto m = take_frame();
      if (!m) return std::move(m).error();
      if (*m) return decode<T>(std::move(**m));
      if (!c_->io.is_open()) return closed_error("receive");
      auto r = c_->io.read_some(spare());
      if (auto e = received(r); !e) return std::move(e).error();
    }
  }

  /// Closes this side: the peer's receive() ends with errc::end_of_stream. Queued messages not
  /// yet written are dropped (flush() or send_async() first to be sure they left).
  void disconnect() noexcept {
    if (!c_) return;
    if (c_->job) c_->job->owner = nullptr;  // it frees itself when its (cancelled) write completes or starts
    c_->job = nullptr;
    c_->io.close();
    c_->out.clear();
    wake_writers(closed_error("send"));
  }

  /// The transport, for the library (fd / handle).
  stream& transport() noexcept { return c_->io; }

 private:
  struct write_job;
  struct written_awaiter;

  struct core {
    stream io;
    std::size_t max = default_max_message_size;
    std::string in;              // received bytes: valid in [head, fill)
    std::size_t head = 0, fill = 0;
    std::string out;             // queued frames not yet handed to a write
    std::uint64_t queued = 0;    // bytes ever queued / written, for send_async
    std::uint64_t written = 0;
    write_job* job = nullptr;    // the background write, while one is in flight
    std::vector<written_awaiter*> writers;
    std::size_t want = 0;        // bytes still missing from a frame
    std::string big;             // a large frame's payload, read straight into place
    std::size_t big_fill = 0;
    bool eof = false;
    bool failed = false;
    error failure;
  };

  // A background write, on the heap: it outlives a channel that is destroyed while it is in
  // flight (its buffer must stay valid for the OS), and frees itself when it completes.
  struct write_job : detail::io_op {
    core* owner = nullptr;
    std::string buffer;  // the frames being written
    std::size_t done = 0;
    event_loop* loop = nullptr;
    bool issued = false;  // handed to the reactor (before: scheduled for the end of the round)
  };

  struct written_awaiter {
    core* c;
    std::uint64_t target;
    std::coroutine_handle<> h;
    error outcome;
    written_awaiter(core* cc, std::uint64_t t) noexcept : c(cc), target(t) {}
    bool await_ready() const noexcept { return c->failed || c->written >= target || !c->io.is_open(); }
    void await_suspend(std::coroutine_handle<> awaiting) {
      h = awaiting;
      c->writers.push_back(this);
    }
    result<void> await_resume() {
      if (outcome) return outcome;
      if (c->written >= target) return {};
      if (c->failed) return c->failure;
      return error(errc::channel_closed, "send: the channel is closed");
    }
  };

  static error closed_error(const char* what) { return error(errc::channel_closed, std::string(what) + ": the channel is closed"); }

  template <class T>
  result<void> queue(const T& msg) {
    if (!c_ || !c_->io.is_open()) return closed_error("send");
    if (c_->failed) return c_->failure;
    std::string& out = c_->out;
    const std::size_t at = Codec::begin(out);  // encoded in place: one copy of the payload
    if constexpr (std::is_convertible_v<const T&, std::string_view>) out.append(std::string_view(msg));
    else message_traits<T>::encode(msg, out);
    const std::size_t size = Codec::payload_size(out, at);
    if (size > c_->max) {
      out.resize(at);
      return error(errc::message_too_large, "send: a message of " + std::to_string(size) +
                                                " bytes, more than max_message_size " + std::to_string(c_->max));
    }
    if (!Codec::finish(out, at)) return error(errc::invalid_argument, "send: the channel's codec cannot carry this message");
    c_->queued += out.size() - at;
    return {};
  }

  // Sends made in one round of the loop leave together: the first schedules a write for the end
  // of the round; by then the others have joined the queue. A queue that reaches 64 KiB before
  // that is written at once (where the OS can say what fits without waiting), so a sender that
  // never yields does not pile up memory.
  void start_writing(event_loop& loop) {
    if (c_->out.empty()) return;
    if (c_->job) {
      if (!c_->job->issued && c_->out.size() >= 65536) write_now();
      return;
    }
    auto* job = new write_job;
    job->owner = c_.get();
    job->loop = &loop;
    job->handle = c_->io.handle();
    job->write = true;
    job->complete = &on_written;
    c_->job = job;
    c_->io.attach(loop.reactor());  // closing the stream cancels the write
    loop.post([job] {
      if (!job->owner) {  // disconnected before it started
        delete job;
        return;
      }
      job->issued = true;
      job->buffer = std::exchange(job->owner->out, {});
      if (job->buffer.empty()) {
        job->owner->job = nullptr;
        delete job;
        return;
      }
      issue(job);
    });
  }

  // One write of the queue without waiting (nothing of it is in flight).
  void write_now() {
    auto r = detail::write_now_native(c_->io.handle(), {c_->out.data(), c_->out.size()});
    if (!r) {
      (void)fail(std::move(r).error());
      return;
    }
    c_->out.erase(0, *r);
    c_->written += *r;
  }

  static void issue(write_job* job) {
    job->data = job->buffer.data() + job->done;
    job->size = job->buffer.size() - job->done;
    job->loop->reactor().start_io(job);
  }

  static void on_written(detail::reactor_op* op) {
    auto* job = static_cast<write_job*>(op);
    core* c = job->owner;
    if (!c) {  // the channel was disconnected or destroyed meanwhile
      delete job;
      return;
    }
    if (job->err) {
      c->job = nullptr;
      c->failed = true;
      c->failure = job->err;
      delete job;
      wake_writers(c, c->failure);
      return;
    }
    job->done += job->bytes;
    c->written += job->bytes;
    if (job->done == job->buffer.size()) {
      job->buffer.clear();
      job->done = 0;
      job->buffer.swap(c->out);  // whatever was queued meanwhile, in one write
    }
    if (job->buffer.empty()) {
      c->job = nullptr;
      delete job;
    } else {
      issue(job);
    }
    wake_writers(c, {});
  }

  // Resumes the send_async calls whose bytes are written (or all of them, with `e`). Nothing of
  // the channel is touched after a resumption: the resumed code may destroy it.
  static void wake_writers(core* c, const error& e) {
    std::vector<written_awaiter*> ready;
    std::erase_if(c->writers, [&](written_awaiter* w) {
      if (!e && c->written < w->target) return false;
      w->outcome = e;
      ready.push_back(w);
      return true;
    });
    for (auto* w : ready) w->h.resume();
  }
  void wake_writers(const error& e) { wake_writers(c_.get(), e); }

  error fail(error e) {
    c_->failed = true;
    c_->failure = e;
    return e;
  }

  // The next whole frame already received, nothing yet, or the error that broke the stream.
  result<std::optional<message>> take_frame() {
    if (!c_) return closed_error("receive");
    if (c_->failed) return c_->failure;
    if (!c_->big.empty() || c_->big_fill) return take_big();
    const std::string_view have(c_->in.data() + c_->head, c_->fill - c_->head);
    const frame_scan s = Codec::scan(have, c_->max);
    switch (s.what) {
      case frame_scan::kind::frame: {
        message m(std::string(have.substr(s.header, s.size)));
        c_->head += s.header + s.size + s.trailer;
        if (c_->head == c_->fill) c_->head = c_->fill = 0;
        return std::optional<message>(std::move(m));
      }
      case frame_scan::kind::too_large:
        c_->io.close();
        return fail(error(errc::message_too_large, "receive: a message of " + std::to_string(s.size) +
                                                       " bytes, more than max_message_size " + std::to_string(c_->max)));
      case frame_scan::kind::garbage:
        c_->io.close();
        return fail(error(errc::bad_frame, "receive: not a frame"));
      case frame_scan::kind::need_more:
        if (c_->eof) {
          if (have.empty()) return error(errc::end_of_stream);
          return fail(error(errc::bad_frame, "receive: the stream ended inside a frame (" + std::to_string(have.size()) +
                                                 " bytes of " + (s.want ? std::to_string(s.want) : std::string("?")) + ")"));
        }
        if (s.header && s.size >= big_frame && s.trailer == 0) {  // read the rest straight into its own buffer
          auto& c = *c_;
          const std::size_t part = have.size() - s.header;
          c.big.resize(s.size);
          std::memcpy(c.big.data(), have.data() + s.header, part);
          c.big_fill = part;
          c.head = c.fill = 0;
          return take_big();
        }
        c_->want = s.want > have.size() ? s.want - have.size() : 0;
        return std::optional<message>();
    }
    return std::optional<message>();
  }

  // Frames from this size on are read into their own buffer, not through the receive buffer.
  static constexpr std::size_t big_frame = 256 * 1024;

  result<std::optional<message>> take_big() {
    auto& c = *c_;
    if (c.big_fill == c.big.size()) {
      message m(std::exchange(c.big, {}));
      c.big_fill = 0;
      return std::optional<message>(std::move(m));
    }
    if (c.eof)
      return fail(error(errc::bad_frame, "receive: the stream ended inside a frame (" + std::to_string(c.big_fill) +
                                             " bytes of " + std::to_string(c.big.size()) + ")"));
    return std::optional<message>();
  }

  // Room to read into: at least 64 KiB, or the rest of a frame in one piece.
  std::span<char> spare() {
    auto& c = *c_;
    if (!c.big.empty()) return {c.big.data() + c.big_fill, c.big.size() - c.big_fill};
    if (c.head > 0 && (c.head == c.fill || c.fill + 65536 > c.in.size())) {  // move the unread bytes to the front
      std::memmove(c.in.data(), c.in.data() + c.head, c.fill - c.head);
      c.fill -= c.head;
      c.head = 0;
    }
    const std::size_t need = std::max<std::size_t>(65536, c.want);
    if (c.in.size() - c.fill < need) c.in.resize(c.fill + need);
    return {c.in.data() + c.fill, c.in.size() - c.fill};
  }

  // Takes the outcome of a read into spare().
  result<void> received(const result<std::size_t>& r) {
    if (r) {
      (c_->big.empty() ? c_->fill : c_->big_fill) += *r;
      return {};
    }
    if (r.error() == errc::end_of_stream) {
      c_->eof = true;
      return {};
    }
    if (r.error() == errc::cancelled) return r.error();
    return fail(r.error());
  }

  template <class T>
  static result<T> decode(message&& m) {
    static_assert(!std::is_same_v<T, std::string_view>, "receive<std::string_view> would dangle: receive a message and view it");
    if constexpr (std::is_same_v<T, message>) return std::move(m);
    else if constexpr (std::is_same_v<T, std::string>) return std::move(m).str();
    else return m.as<T>();
  }

  void release() noexcept {
    if (!c_) return;
    disconnect();
    c_.reset();
  }

  std::unique_ptr<core> c_;
};

/// The channel with the default wire format (4-byte big-endian length, then the payload).
using channel = basic_channel<length_prefixed>;

}  // namespace childproc::inline v0

#endif
