// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_CHANNEL_HPP
#define CHILDPROC_CHANNEL_HPP

#include "detail/framing.hpp"
#include "detail/json_check.hpp"
#include "detail/ipc.hpp"
#include "detail/pipe.hpp"
#include "event_loop.hpp"
#include "result.hpp"
#include "stream.hpp"
#include "task.hpp"

#include <algorithm>    // Node's connection accounting
#include <array>        // decoding trivially copyable messages
#include <chrono>       // how often a wait looks at what a closing Node server waits for
#include <bit>          // std::bit_cast
#include <concepts>     // std::convertible_to
#include <coroutine>    // send_async's awaiter
#include <cstddef>      // std::byte
#include <cstdint>      // byte counters
#include <cstring>      // memcpy
#include <deque>        // handles on their way
#include <memory>       // the channel's state
#include <optional>     // a frame, or not yet
#include <span>         // byte spans
#include <stop_token>   // receive(stop)
#include <string>       // buffers
#include <string_view>  // payloads
#include <type_traits>  // message_traits
#include <utility>      // std::move, std::pair
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
// Byte vectors and spans: what a large send writes from the caller's memory.
template <class T>
concept contiguous_bytes = requires(const T& m) {
  { m.data() } -> std::convertible_to<const void*>;
  { m.size() } -> std::convertible_to<std::size_t>;
} && sizeof(*std::declval<const T&>().data()) == 1;

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

/// The owner of a descriptor (POSIX) or HANDLE (Win32): closes it when destroyed.
using unique_handle = detail::unique_handle;

/// One received message: its bytes, decoded on demand, and the handle sent with it, if any.
class message {
 public:
  message() = default;
  explicit message(std::string bytes, unique_handle h = {}) noexcept : bytes_(std::move(bytes)), handle_(std::move(h)) {}

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

  /// Whether a handle came with the message (send(msg, handle) on the other side).
  bool has_handle() const noexcept { return handle_.valid(); }
  /// The handle that came with the message, still owned by it (closed with the message).
  native_handle handle() const noexcept { return handle_.get(); }
  /// Takes the handle that came with the message: it is the caller's to keep or close.
  unique_handle take_handle() noexcept { return std::move(handle_); }

 private:
  std::string bytes_;
  unique_handle handle_;
};

/// A framed, duplex message channel over a byte stream (a socketpair or a named pipe): what
/// fork() gives the parent (process::channel()) and the child (parent_channel()).
///
/// What send() does when the peer is slow, gone or not reading:
/// - Without an event loop on this thread, send() writes before it returns. While the socket
///   is full it reads what the peer sends into this channel's receive buffer (up to the
///   high-water mark), so two processes that both send before they receive never deadlock;
///   receive_sync() / receive() then serve those messages first, in order.
/// - On an event loop, send() queues and a background write sends the queue at the end of the
///   round (many small messages coalesce into one write). The queue is bounded: past the
///   high-water mark (options::high_water_mark, default twice max_message_size) send() fails
///   with errc::queue_full, nothing queued and the channel still usable, while send_async()
///   waits for room and then completes when its bytes are written (backpressure). While such
///   a write waits for room, the loop reads what the peer sends into the receive buffer (up to
///   the mark), as Node's channel always reads.
/// - A peer that is gone: the next send() reports EPIPE (never SIGPIPE), and so does every
///   send after it; what was queued is dropped.
/// - When run(task) ends, what is still queued is written (blocking, reading meanwhile as
///   above); a loop destroyed first hands its queued bytes back to the channel, and the next
///   send, flush() or loop writes them.
///
/// send(msg, handle) passes a descriptor or HANDLE along (Node's send(message, sendHandle)): the
/// peer's message owns a duplicate (message::take_handle()). A handle whose message is dropped
/// (the channel closes before it is written, or the receiver never takes it) is closed; a
/// descriptor the peer attaches to anything but its announcing frame is closed on arrival.
class channel {
  struct core;

 public:
  channel() = default;
  /// Takes a connected duplex stream; messages longer than `max_message_size` are refused.
  /// `format`: childproc's frames, or Node's `json` lines to talk to a Node process.
  explicit channel(stream transport, std::size_t max_message_size = default_max_message_size,
                   childproc::serialization format = childproc::serialization::childproc)
      : c_(std::make_unique<core>()) {
    c_->io = std::move(transport);
    c_->max = max_message_size;
    c_->format = format;
    c_->uv = format == childproc::serialization::json && detail::node_frames_native();
    c_->io.mark_socket();
    // Always set, so a stream taken from another channel does not keep pointing at its list.
    c_->io.collect_handles(detail::receives_handles(format) ? &c_->arrived : nullptr);
  }
  channel(channel&&) noexcept = default;
  channel& operator=(channel&& o) noexcept {
    if (this != &o) {
      release();
      c_ = std::move(o.c_);
    }
    return *this;
  }
  ~channel() { release(); }

  /// How this channel frames messages: childproc's own frames, or Node's json lines.
  childproc::serialization serialization() const noexcept { return c_ ? c_->format : childproc::serialization::childproc; }

  /// Whether messages can still flow: open, not disconnected, no end of stream or error seen.
  bool connected() const noexcept { return c_ && c_->io.is_open() && !c_->eof && !c_->failed; }

  /// The largest message accepted, either way.
  std::size_t max_message_size() const noexcept { return c_ ? c_->max : 0; }
  /// Changes the largest message accepted (parent_channel() starts with default_max_message_size).
  void set_max_message_size(std::size_t n) noexcept {
    if (c_) c_->max = n;
  }

  /// Bytes queued for sending (on a loop), or received while a blocking send waits, before the
  /// channel pushes back: queue_full / send_async waits; the blocking send stops reading.
  std::size_t high_water_mark() const noexcept { return c_ ? high_water(c_.get()) : 0; }
  /// Sets the high-water mark; 0 restores the default (twice max_message_size).
  void set_high_water_mark(std::size_t n) noexcept {
    if (c_) c_->hwm = n;
  }

  /// Bytes received and not yet taken by receive (whole messages and the start of the next).
  std::size_t buffered() const noexcept { return c_ ? buffered_of(c_.get()) : 0; }

  /// Queues `msg` (a string, bytes, or any type with message_traits). On an event loop it is
  /// written in the background (errc::queue_full past the high-water mark); elsewhere it is
  /// written before send returns, reading what the peer sends meanwhile. An earlier write
  /// failure (EPIPE: the peer is gone) is reported here; a message over the limit is refused.
  template <class T>
  result<void> send(const T& msg) {
    settle_node_closing();
    if (event_loop* loop = event_loop::current()) {
      if (auto e = queue(msg, true); !e) return e;
      start_writing(c_.get(), *loop);
      return {};
    }
    reclaim();
    if (c_ && c_->direct) return direct_busy();
    if (auto bytes = direct_bytes(msg); bytes && framed_by_header() && can_write_direct(*bytes)) return send_direct_sync(*bytes);
    if (auto e = queue(msg, false); !e) return e;
    return flush_sent();
  }

  /// Sends `msg` with a duplicate of `h` (a descriptor or HANDLE: a pipe, a file, a socket...);
  /// `h` stays the caller's. The peer finds it in the message (message::take_handle()).
  template <class T>
  result<void> send(const T& msg, native_handle h) {
    settle_node_closing();
    event_loop* loop = event_loop::current();
    if (!loop) reclaim();
    if (auto e = queue_with_handle(msg, h, loop != nullptr); !e) return e;
    if (!loop) return flush_sent();
    start_writing(c_.get(), *loop);
    return {};
  }

  /// Awaitable: queues `msg` (waiting for room under the high-water mark) and completes when
  /// it has been written -> result<void>.
  template <class T>
  task<result<void>> send_async(const T& msg) {
    if (!event_loop::current()) co_return error(errc::no_event_loop, "send_async: no event loop runs on this thread");
    settle_node_closing();
    if (auto bytes = direct_bytes(msg); bytes && framed_by_header() && can_write_direct(*bytes)) co_return co_await send_direct(*bytes);
    auto e = queue(msg, true);
    if (!e && e.error() == errc::queue_full) {
      const std::weak_ptr<int> alive = c_->alive;  // a wake-up already posted outlives a channel destroyed meanwhile
      if (auto room = co_await until_written(); !room) co_return room;  // all of the queue, then this
      if (alive.expired()) co_return closed_error("send");
      e = queue(msg, false);
    }
    if (!e) co_return e;
    co_return co_await until_written();
  }

  /// Awaitable: send(msg, h), completing when it has been written -> result<void>.
  template <class T>
  task<result<void>> send_async(const T& msg, native_handle h) {
    if (!event_loop::current()) co_return error(errc::no_event_loop, "send_async: no event loop runs on this thread");
    settle_node_closing();
    auto e = queue_with_handle(msg, h, true);
    if (!e && e.error() == errc::queue_full) {
      const std::weak_ptr<int> alive = c_->alive;
      if (auto room = co_await until_written(); !room) co_return room;
      if (alive.expired()) co_return closed_error("send");
      e = queue_with_handle(msg, h, false);
    }
    if (!e) co_return e;
    co_return co_await until_written();
  }

  /// Writes everything queued, blocking (for code without an event loop), reading what the
  /// peer sends meanwhile into the receive buffer.
  /// Sends held for a Node peer's answers (see send) wait for them here.
  result<void> flush() {
    if (!c_) return closed_error("send");
    if (auto e = flush_out(c_.get()); !e || c_->job || c_->held.empty()) return e;
    auto r = deliver(c_.get());
    if (!r && r.error() == errc::queue_full)
      return error(errc::queue_full, r.error().message() + "; the sends held stay queued (flush() again once received)");
    return r;
  }

  /// Tells the channel which process is at the other end (the library does, at spawn): handles
  /// are pulled from it on Win32.
  void set_peer(result<unique_handle> peer) {
    if (c_) note_peer(c_.get(), std::move(peer));
  }

  /// Awaitable: the next message -> result<T> (T = message by default); errc::end_of_stream
  /// when the peer disconnected cleanly. A triggered `stop` ends the wait with errc::cancelled
  /// and loses nothing.
  template <class T = message>
  task<result<T>> receive(std::stop_token stop = {}) {
    // The core, not `this`: the channel (or the process that carries it) may be moved while
    // this waits on a loop; the core stays where it is until the channel is destroyed.
    if (!c_) co_return closed_error("receive");
    core* const c = c_.get();
    for (;;) {
      auto m = take_frame(c);  // the pump may read on meanwhile: parsing leaves its room alone
      if (!m) co_return std::move(m).error();
      if (*m) co_return decode<T>(std::move(**m));
      if (!c->io.is_open()) co_return closed_error("receive");
      if (c->pump.pending) {  // what it has read comes before a read of our own
        stop_pump(c);
        continue;
      }
      // About to wait (most likely for a reply): what was sent this round leaves first, and so
      // does what a loop that stopped still held.
      if (event_loop* loop = event_loop::current(); loop && (!c->out.empty() || c->job)) start_writing(c, *loop);
      if (c->job && !c->job->issued && !c->out.empty()) write_now(c);
      if (event_loop* loop = event_loop::current()) c->io.take_back_read(&loop->reactor());  // one a stopped loop left
      if (c->io.reading())  // another receive() waits on this loop: a second would race it for the same bytes
        co_return error(errc::busy, "receive: another receive is pending on this channel");
      auto read = c->io.async_read_some(spare(c), stop);
      close_poll poll;  // a closing Node server waits for connections the user holds: look again soon
      if (event_loop* loop = event_loop::current(); loop && node_close_pending(c)) poll.start(c->io, read, loop->reactor());
      auto r = co_await read;
      // Taken back (by a blocking call, another loop) or its stream closed (a disconnect, or the
      // channel destroyed while this waited on a loop that stopped): the core may be gone;
      // whoever took the read has what it read and reads on.
      if (read.taken_back()) co_return error(errc::cancelled, "read: cancelled");
      const auto e = absorb(c, r);
      rearm_pump(c);  // a write still waiting needs the pump again
      if (!e) {
        // Ended by the poll, and by nothing else since (a take-back, a close, the caller's stop): read again.
        if (poll.woke && e.error() == errc::cancelled && !stop.stop_requested() && c->io.is_open()) continue;
        co_return std::move(e).error();
      }
    }
  }

  /// The next message, blocking (for code without an event loop). What is still queued is
  /// written first (a request whose reply this waits for). Inside a task it blocks the loop
  /// (what was sent this round is written here first): co_await receive() there.
  template <class T = message>
  result<T> receive_sync() {
    if (!c_) return closed_error("receive");
    c_->io.take_back_read();  // a receive() left pending on a loop: this call reads now
    stop_pump(c_.get());
    auto r = receive_blocking<T>();
    if (c_) rearm_pump(c_.get());  // a write that waits on a loop reads on there
    return r;
  }

  /// Closes this side: the peer's receive() ends with errc::end_of_stream. Queued messages not
  /// yet written are dropped (flush() or send_async() first to be sure they left).
  void disconnect() noexcept {
    if (!c_) return;
    if (c_->job) {  // it frees itself: its write is cancelled, or its loop ends it
      c_->job->owner = nullptr;
      if (c_->job->stalled) c_->job->loop->schedule(c_->job);
    }
    c_->job = nullptr;
    close_io(c_.get());
    c_->out.clear();
    drop_outgoing(c_.get());
    wake_writers(c_.get(), closed_error("send"));
  }

  /// The transport, for the library (fd / handle).
  stream& transport() noexcept { return c_->io; }

 private:
  struct write_job;
  struct written_awaiter;

  // The read a loop keeps issued while one of this channel's writes waits there, so a peer
  // that blocks writing to us while we block writing to it (an echo that does not read as it
  // writes) is read: Node's channel always reads. Into the receive buffer, up to the mark.
  struct pump_op final : detail::io_op {
    core* owner = nullptr;
    event_loop* loop = nullptr;
    bool pending = false;
  };

  struct core {
    stream io;
    std::size_t max = default_max_message_size;
    childproc::serialization format = childproc::serialization::childproc;
    bool uv = false;             // json in libuv's IPC frames (Node's pipe on Win32): each send one frame
    uv_frames::reader uv_in;     // and what arrives taken out of them
    std::size_t hwm = 0;         // 0: twice max
    // Receiving.
    std::string in;              // received bytes: valid in [head, fill)
    std::size_t head = 0, fill = 0;
    std::size_t scanned = 0;     // bytes from head known to hold no frame end (json_lines)
    std::size_t want = 0;        // bytes still missing from a frame
    std::string big;             // a large frame's payload, read straight into place
    std::size_t big_size = 0;    // its length (0: none is being read); `big` grows to it as it fills
    std::size_t big_fill = 0;
    std::uint64_t big_end = 0;   // where that frame ends in the stream
    std::deque<message> ready;   // whole large frames read while a blocking send waited
    std::size_t ready_bytes = 0;
    bool eof = false;
    bool failed = false;
    error failure;
    // Sending.
    std::string out;             // queued frames not yet handed to a write
    std::uint64_t queued = 0;    // bytes ever queued / written, for send_async and the high-water mark
    std::uint64_t written = 0;
    std::uint64_t user_end = 0;  // where the last byte of the user's sends lies in the stream (answers to Node are not)
    bool user_dropped = false;   // sends held for Node's answers were dropped when the channel failed
    write_job* job = nullptr;    // the background write, while one is in flight
    std::vector<written_awaiter*> writers;
    bool direct = false;         // a large payload is being written from the caller's memory
    event_loop* direct_loop = nullptr;
    pump_op pump;                // reads while a write waits on a loop
    // Handle passing.
    struct pending_handle {
      std::uint64_t at;  // where its control frame starts in the stream
      detail::outgoing_handle h;
    };
    std::deque<pending_handle> outgoing;      // handles queued, not yet written, in stream order
    std::uint64_t in_flight_end = 0;          // the end of the background write in flight
    std::vector<unique_handle> arrived;       // where a read puts the descriptors it received (POSIX)
    struct arrival {
      unique_handle h;
      std::uint64_t start, end;  // the stream bytes of the read that brought it
    };
    std::deque<arrival> fds;                  // descriptors received, not yet matched to a control frame
    std::uint64_t received_total = 0;         // stream bytes ever received
    std::uint64_t consumed = 0;               // the stream offset of the next frame not yet parsed
    unique_handle incoming;                   // announced by a control frame, for the next message
    unique_handle peer;                       // the peer process (Win32)
    bool peer_known = false;
    error peer_error;
    // Node's accounting (json): connections a Node server sent us stay its own until they close
    // here. Only the descriptor's number and what it referred to are kept: the user owns it.
    struct node_socket {
      std::string key;  // the server's "key", as JSON text
      native_handle h;
      detail::handle_identity id;
    };
    std::vector<node_socket> node_sockets;
    std::size_t node_prune_at = 64;           // forget closed ones when the list grows past this
    std::vector<std::string> node_closing;    // keys whose server waits (NODE_SOCKET_NOTIFY_CLOSE) for them all
    std::size_t node_nacks = 0;               // NODE_HANDLE_NACKs received, not yet reported by a send
    // Sends held until Node answers the handles sent before them (node_handles_ahead), in order;
    // their bytes have no place in the stream yet (not in `queued`).
    struct held_send {
      std::string bytes;
      detail::outgoing_handle h;  // with a NODE_HANDLE line: its descriptor goes with the newline
      bool handle = false;
      std::uint64_t serial = 0;   // which send (a blocking one takes its own back)
    };
    std::uint64_t held_serial = 0;
    std::size_t ready_fds = 0;    // messages in `ready` with a handle
    std::deque<held_send> held;
    std::size_t held_bytes = 0;
    std::size_t node_open = 0;    // NODE_HANDLE lines queued or written, not yet answered
    bool delivering = false;      // a blocking flush waits for answers: it writes what they let go
    std::shared_ptr<int> alive = std::make_shared<int>();  // expires with the channel (send_direct checks)
  };

  // A background write, on the heap: it outlives a channel that is destroyed while it is in
  // flight (its buffer must stay valid for the OS), and frees itself when it completes or when
  // its loop settles it. Held by its loop from creation, started at the end of that round.
  struct write_job : detail::io_op, detail::loop_work {
    core* owner = nullptr;
    std::string buffer;  // the frames being written
    std::size_t done = 0;
    event_loop* loop = nullptr;
    bool issued = false;  // handed to the reactor (before: scheduled for the end of the round)
    bool stalled = false;  // all written but sends held for Node's answers: the pump reads for them
    explicit write_job(event_loop& l) : loop(&l) {
      run = &begin;
      settle = &settled;
      l.hold(this);
      l.schedule(this);
    }
    write_job(const write_job&) = delete;
    write_job& operator=(const write_job&) = delete;
    ~write_job() { loop->release(this); }
  };

  struct written_awaiter {
    core* c;
    std::uint64_t target;
    event_loop* loop = event_loop::current();
    std::shared_ptr<detail::loop_anchor> anchor = loop->anchor();  // reaches the loop while it lives
    std::coroutine_handle<> h;
    bool woken = false;  // by wake_writers, with `outcome`: the channel may be gone by then
    error outcome;
    written_awaiter(core* cc, std::uint64_t t) noexcept : c(cc), target(t) {}
    bool await_ready() const noexcept { return c->failed || c->written >= target || !c->io.is_open(); }
    void await_suspend(std::coroutine_handle<> awaiting) {
      h = awaiting;
      c->writers.push_back(this);
    }
    result<void> await_resume() {
      if (woken) return outcome ? result<void>(outcome) : result<void>();
      if (c->written >= target) return {};
      if (c->failed) return c->failure;
      return error(errc::channel_closed, "send: the channel is closed");
    }
  };

  // A large send_async writing from its caller's memory has not finished (its loop stopped
  // before it did): nothing may be written between its pieces.
  static error direct_busy() {
    return error(errc::queue_full, "send: a large send_async on a loop that stopped has not finished writing");
  }

  static void note_peer(core* c, result<unique_handle> peer) {
    c->peer_known = true;
    if (peer) c->peer = std::move(*peer);
    else c->peer_error = std::move(peer).error();
  }

  static error closed_error(const char* what) { return error(errc::channel_closed, std::string(what) + ": the channel is closed"); }

  static std::size_t high_water(const core* c) noexcept {
    if (c->hwm) return c->hwm;
    return c->max > std::size_t(-1) / 2 ? std::size_t(-1) : 2 * c->max;
  }

  // Completes when every byte queued so far is written (or the channel fails or closes).
  task<result<void>> until_written() {
    start_writing(c_.get(), *event_loop::current());
    written_awaiter until(c_.get(), c_->queued + c_->held_bytes);  // held sends go after the queue  // a named awaiter: g++ 12 mishandles braced temporaries in co_await
    co_return co_await until;
  }

  // Large payloads are written from the caller's memory, not copied into the queue, when nothing
  // is queued or being written ahead of them (the caller's bytes live until send returns or
  // send_async completes).
  static constexpr std::size_t direct_size = 256 * 1024;

  // Only childproc's frames can be written around the caller's bytes (a header, no trailer, no check).
  bool framed_by_header() const noexcept { return c_ && c_->format == childproc::serialization::childproc; }

  template <class T>
  static std::optional<std::string_view> direct_bytes(const T& msg) noexcept {
    if constexpr (std::is_convertible_v<const T&, std::string_view>) return std::string_view(msg);
    else if constexpr (detail::contiguous_bytes<T>) return std::string_view(reinterpret_cast<const char*>(msg.data()), msg.size());
    else return std::nullopt;
  }

  bool can_write_direct(std::string_view payload) const noexcept {
    return c_ && payload.size() >= direct_size && payload.size() <= c_->max && payload.size() < length_prefixed::handle_flag &&
           c_->io.is_open() && !c_->failed && !c_->job && !c_->direct && c_->out.empty() && c_->outgoing.empty();
  }

  static std::array<char, 4> frame_header(std::size_t n) noexcept {
    return {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8), static_cast<char>(n)};
  }

  // Where a blocking write puts what the peer sends meanwhile: the receive buffer, up to the
  // high-water mark (and a few descriptors short of the limit).
  struct inbox final : detail::read_sink {
    core* c;
    explicit inbox(core* cc) noexcept : c(cc) { received = detail::receives_handles(cc->format) ? &cc->arrived : nullptr; }
    std::span<char> room() override { return inbox_room(c); }
    void arrived(result<std::size_t> r) override {
      if (r && *r == 0) r = errc::end_of_stream;
      (void)absorb(c, r);
    }
  };

  static std::size_t buffered_of(const core* c) noexcept { return (c->fill - c->head) + c->big_fill + c->ready_bytes; }

  // Room for what arrives while a write waits: none past the high-water mark.
  static std::span<char> inbox_room(core* c) {
    if (c->failed || c->eof || !c->io.is_open()) return {};
    if (c->big_size && c->big_fill == c->big_size) park_big(c);
    if (held_cost(c) >= high_water(c) || c->fds.size() + 1 >= max_held_fds || !fd_room(c)) return {};
    return spare(c);
  }

  // Whether one of the channel's writes waits on `loop`.
  static bool writing_on(const core* c, const event_loop* loop) noexcept {
    return (c->direct && c->direct_loop == loop) ||
           (c->job && ((c->job->issued && c->job->waiting) || c->job->stalled) && c->job->loop == loop);
  }

  // Issues the pump on `loop` unless a read is pending (the pump or a receive()) or there is no room.
  // receive_sync's loop, the pump stopped.
  template <class T>
  result<T> receive_blocking() {
    for (;;) {
      auto m = take_frame();
      if (!m) return std::move(m).error();
      if (*m) return decode<T>(std::move(**m));
      if (!c_->io.is_open()) return closed_error("receive");
      // Inside a task: this blocks the loop that would write what was sent this round (at the
      // round's end), so it goes now, written here, reading meanwhile; the job then finds the
      // queue empty and ends. (Not past sends held for Node's answers: they go first.)
      if (write_blocked_here(c_.get()))
        if (auto e = write_out(c_.get()); !e && !answers_lost_only(c_.get())) return std::move(e).error();
      if (c_->job || !c_->out.empty()) {  // (sends held for Node's answers go on as this parses them)
        const std::size_t held = buffered();
        if (auto e = flush_out(c_.get()); !e) return std::move(e).error();
        stop_pump(c_.get());  // a write that goes on on a running loop got the pump back: this reads now, keeping what it read
        if (buffered() != held) continue;  // the flush (or that pump) read: look at that first
      }
      if (node_close_pending()) {  // a closing Node server waits for connections the user holds: look again soon
        auto ready = detail::wait_readable_native(c_->io.handle(), node_close_poll_ms);
        if (!ready) return std::move(ready).error();
        if (!*ready) continue;
      }
      auto r = c_->io.read_some(spare(c_.get()));
      if (auto e = absorb(c_.get(), r); !e) return std::move(e).error();
    }
  }

  // Whether what is queued waits for the end of the round of the loop this thread is running
  // (not yet handed to its reactor), which a blocking call here would hold off for good.
  static bool write_blocked_here(const core* c) noexcept {
    return c->job && !c->job->issued && !c->job->stalled && c->held.empty() && !c->out.empty() &&
           c->job->loop == event_loop::current();
  }

  static void start_pump(core* c, event_loop& loop) {
    pump_op& p = c->pump;
    if (p.pending) return;
    c->io.take_back_read(&loop.reactor());  // a receive() a stopped loop left must not hold it off
    if (c->io.reading()) return;            // a receive() on this loop reads instead
    if (!absorb_ahead(c)) return;
    const std::span<char> room = inbox_room(c);
    if (room.empty()) return;
    p.complete = &pumped;
    p.err = {};
    p.bytes = 0;
    p.handle = c->io.handle();
    p.data = room.data();
    p.size = room.size();
    p.write = false;
    p.socket = true;  // a socket left blocking: the read must ask not to wait
    p.received = detail::receives_handles(c->format) ? &c->arrived : nullptr;
    p.owner = c;
    p.loop = &loop;
    p.pending = true;
    loop.reactor().start_io(&p);
  }

  // After a read of the channel's own (which stopped the pump): a write still waiting on some
  // loop gets it back there.
  static void rearm_pump(core* c) {
    if (c->direct && c->direct_loop) start_pump(c, *c->direct_loop);
    else if (c->job && ((c->job->issued && c->job->waiting) || c->job->stalled)) start_pump(c, *c->job->loop);
  }

  static void pumped(detail::reactor_op* op) {
    auto* p = static_cast<pump_op*>(op);
    core* c = p->owner;
    p->pending = false;
    const bool again = !p->err;
    settle_pump(c);
    if (c->job && c->job->stalled) {  // it read for Node's answers: the job looks at what came
      scan_answers(c);
      c->job->loop->schedule(c->job);
    }
    if (again && writing_on(c, p->loop)) start_pump(c, *p->loop);
  }

  // Takes in what the pump read (a cancelled one may have read on Win32).
  static void settle_pump(core* c) {
    pump_op& p = c->pump;
    if (p.err == errc::cancelled) {
      if (p.bytes) (void)absorb(c, p.bytes);
      else (void)absorb(c, std::size_t{0});  // descriptors that came with nothing (none on POSIX)
      return;
    }
    result<std::size_t> r = p.err ? result<std::size_t>(p.err) : result<std::size_t>(p.bytes);
    if (r && *r == 0) r = errc::end_of_stream;
    (void)absorb(c, r);
  }

  // Ends the pump now, keeping what it read: before another read of the channel, before its
  // stream closes, and when no write waits any more. Its loop must not be inside another round.
  static void stop_pump(core* c) noexcept {
    pump_op& p = c->pump;
    if (!p.pending) return;
    p.loop->reactor().withdraw(&p);
    p.pending = false;
    settle_pump(c);
  }

  // Closes the transport (a bad frame, a disconnect): the pump is ended first.
  static void close_io(core* c) noexcept {
    stop_pump(c);
    c->io.close();
  }

  // Writes the whole queue, blocking, reading meanwhile.
  // Writes the whole queue, blocking, reading meanwhile; `wake`: the send_async calls it
  // completes resume (else the caller wakes them, last).
  static result<void> write_out(core* c, bool wake = true) {
    stop_pump(c);  // this write reads into the same buffer
    if (auto e = absorb_ahead(c); !e) {
      drop_outgoing(c);
      if (wake) wake_writers(c, e.error());
      return e;
    }
    const std::string pending = std::exchange(c->out, {});
    std::string_view left = pending;
    inbox sink(c);
    while (!left.empty()) {
      const auto [size, attach] = next_write(c, left.size());
      auto r = detail::write_some_reading_native(c->io.handle(), {left.data(), size}, attach, true, sink);
      if (!r) {
        auto e = fail(c, std::move(r).error());
        drop_outgoing(c);
        if (wake) wake_writers(c, e);
        return e;
      }
      wrote(c, *r);
      left.remove_prefix(*r);
    }
    if (wake) wake_writers(c, {});
    return {};
  }

  result<void> send_direct_sync(std::string_view payload) {
    core* c = c_.get();
    const auto header = frame_header(payload.size());
    c->queued += header.size() + payload.size();
    c->user_end = c->queued;
    stop_pump(c);  // this write reads into the same buffer
    if (auto e = absorb_ahead(c); !e) return e;
    inbox sink(c);
    for (std::string_view part : {std::string_view(header.data(), header.size()), payload})
      while (!part.empty()) {
        auto r = detail::write_some_reading_native(c->io.handle(), {part.data(), part.size()}, detail::invalid_handle(), true, sink);
        if (!r) return fail(c, std::move(r).error());
        c->written += *r;
        part.remove_prefix(*r);
      }
    return {};
  }

  task<result<void>> send_direct(std::string_view payload) {
    core* c = c_.get();
    std::weak_ptr<int> alive = c->alive;  // the channel may be destroyed while the write waits
    const auto header = frame_header(payload.size());
    c->direct = true;
    c->direct_loop = event_loop::current();
    c->queued += header.size() + payload.size();
    c->user_end = c->queued;
    result<void> r;
    for (std::string_view part : {std::string_view(header.data(), header.size()), payload}) {
      while (r && !part.empty()) {
        // What fits goes now; a piece that must wait for room reads meanwhile (the pump), so
        // a peer that writes to us as we write to it is not left blocked.
        auto now = detail::write_now_native(c->io.handle(), {part.data(), part.size()}, detail::invalid_handle(), true);
        if (!now) {
          r = std::move(now).error();
          break;
        }
        part.remove_prefix(*now);
        if (part.empty()) break;
        start_pump(c, *event_loop::current());
        auto some = co_await c->io.async_write_some(part);
        if (alive.expired()) co_return closed_error("send");
        if (!some) r = std::move(some).error();
        else part.remove_prefix(*some);
      }
    }
    c->direct = false;
    stop_pump(c);
    if (!r) {
      if (c->failed) co_return c->failure;
      if (!c->io.is_open()) co_return closed_error("send");
      if (r.error() == errc::cancelled) {  // its loop ended partway: the frame may be cut, nothing may follow it
        auto e = fail(c, error(errc::cancelled, "send: a large send_async was cut off when its loop ended"));
        drop_outgoing(c);
        wake_writers(c, e);
        co_return e;
      }
      auto e = fail(c, std::move(r).error());
      drop_outgoing(c);
      wake_writers(c, e);
      co_return e;
    }
    c->written += header.size() + payload.size();
    if (event_loop* loop = event_loop::current()) start_writing(c, *loop);  // what was queued meanwhile
    wake_writers(c, {});
    co_return result<void>();
  }

  // Encodes `msg` onto the queue. With `bounded`, a queue that is not empty and would pass the
  // high-water mark refuses it (errc::queue_full, nothing queued).
  // `ahead`: this send's bytes already queued before the message (a control frame, the start of
  // a NODE_HANDLE line); `own_frame` false: the caller has begun the libuv frame around them.
  template <class T>
  result<void> queue(const T& msg, bool bounded, std::size_t ahead = 0, bool own_frame = true) {
    if (c_ && c_->failed) return c_->failure;  // a failure says why the channel closed
    if (!c_ || !c_->io.is_open()) return closed_error("send");
    if (c_->format == childproc::serialization::advanced) return advanced_error("send");
    if (c_->node_nacks) return lost_handles(std::exchange(c_->node_nacks, 0));
    std::string& out = c_->out;
    const std::size_t start = out.size();  // where this send's bytes begin (a libuv header first, on Win32 to Node)
    const bool uv = c_->uv && own_frame;
    const std::size_t uv_at = uv ? uv_frames::begin(out) : start;
    const std::size_t at = detail::frame_begin(c_->format, out);  // encoded in place: one copy of the payload
    if constexpr (std::is_convertible_v<const T&, std::string_view>) out.append(std::string_view(msg));
    else message_traits<T>::encode(msg, out);
    const std::size_t size = detail::frame_payload_size(c_->format, out, at);
    if (size > c_->max) {
      out.resize(start);
      return error(errc::message_too_large, "send: a message of " + std::to_string(size) +
                                                " bytes, more than max_message_size " + std::to_string(c_->max));
    }
    if (c_->format == childproc::serialization::json) {  // a Node peer dies on anything JSON.parse refuses
      if (auto bad = node_refusal(std::string_view(out).substr(at)); !bad) {
        out.resize(start);
        return std::move(bad).error();
      }
    }
    if (!detail::frame_finish(c_->format, out, at) || (uv && !uv_frames::finish(out, uv_at))) {
      out.resize(start);
      return error(errc::invalid_argument, "send: the channel's codec cannot carry this message");
    }
    const std::uint64_t waiting = c_->queued - c_->written - ahead + c_->held_bytes;
    if (bounded && waiting > 0 && waiting + ahead + (out.size() - start) > high_water(c_.get())) {
      const std::size_t frame = ahead + out.size() - start;
      out.resize(start);
      return error(errc::queue_full, "send: " + std::to_string(waiting) + " bytes wait to be written and " +
                                         std::to_string(frame) + " more would pass the high-water mark of " +
                                         std::to_string(high_water(c_.get())) + " (the peer reads too slowly)");
    }
    c_->queued += out.size() - start;
    if (ahead == 0 && own_frame && must_hold(c_.get(), false)) hold_tail(c_.get(), start);  // behind the sends held
    else if (ahead == 0) c_->user_end = c_->queued;  // (a send that began before `start` marks its own end)
    return {};
  }

  // A control frame announcing (a copy of) `h`, then the message.
  template <class T>
  result<void> queue_with_handle(const T& msg, native_handle h, bool bounded) {
    if (c_ && c_->format == childproc::serialization::json) return queue_node_handle(msg, h, bounded);
    if (!detail::carries_handles(c_ ? c_->format : childproc::serialization::childproc)) {
      return error(std::make_error_code(std::errc::not_supported), std::string("send: handles cannot be passed over a '") +
                                            detail::serialization_name(c_->format) + "' channel (not implemented)");
    } else {
      if (c_ && c_->failed) return c_->failure;
      if (!c_ || !c_->io.is_open()) return closed_error("send");
      if (!c_->peer_known) set_peer(detail::channel_peer_native(c_->io.handle(), nullptr));
      if (c_->peer_error) return c_->peer_error;
      auto copy = detail::prepare_handle_native(h, c_->peer.get());
      if (!copy) return std::move(copy).error();
      std::string& out = c_->out;
      const std::size_t at = detail::frame_begin(c_->format, out);
      out.append(copy->payload);
      if (!detail::frame_finish(c_->format, out, at, true)) {
        detail::drop_handle_native(*copy);
        return error(errc::invalid_argument, "send: the handle's description does not fit a control frame");
      }
      const std::uint64_t offset = c_->queued;
      const std::uint64_t control = out.size() - at;
      c_->queued += control;
      if (auto e = queue(msg, bounded, control); !e) {  // the message was refused: so is its handle
        out.resize(at);
        c_->queued -= control;
        detail::drop_handle_native(*copy);
        return e;
      }
      c_->outgoing.push_back({offset, std::move(*copy)});
      c_->user_end = c_->queued;
      return {};
    }
  }

  // Node's way: {"cmd":"NODE_HANDLE","type":...,"msg":<msg>} with (a copy of) `h` attached to
  // its newline, written alone. Node keeps one received descriptor (the last read's) for the next
  // NODE_HANDLE line that ends, and the kernel ends a read after the bytes a descriptor came
  // with: the read that brings this one ends this line, before the next one can arrive. (Node's
  // own sender gets there by waiting for each ACK; with the descriptor on the line's first byte,
  // a line longer than one read lets the next line's descriptor overtake its own.)
  template <class T>
  result<void> queue_node_handle(const T& msg, native_handle h, bool bounded) {
    if (c_->failed) return c_->failure;
    if (!c_->io.is_open()) return closed_error("send");
    auto type = detail::node_handle_type_native(h);
    if (!type) return std::move(type).error();
    if (c_->uv) return queue_node_socket(msg, h, bounded, *type);
    auto copy = detail::prepare_handle_native(h, c_->peer.get());
    if (!copy) return std::move(copy).error();
    const std::string head = "{\"cmd\":\"NODE_HANDLE\",\"type\":\"" + *type + "\",\"msg\":";
    std::string& out = c_->out;
    const std::size_t at = out.size();
    out += head;
    c_->queued += head.size();
    if (auto e = queue(msg, bounded, head.size()); !e) {  // msg is checked as any message to Node
      out.resize(at);
      c_->queued -= head.size();
      detail::drop_handle_native(*copy);
      return e;
    }
    out.back() = '}';  // the line's newline, moved after the closing brace
    out.push_back('\n');
    c_->queued += 1;
    if (must_hold(c_.get(), true)) {  // it waits for Node's answers to those before it
      hold_tail(c_.get(), at, &*copy);
      return {};
    }
    c_->outgoing.push_back({c_->queued - 1, std::move(*copy)});
    ++c_->node_open;
    c_->user_end = c_->queued;
    return {};
  }

  // Node's way on Win32 (libuv's frames): one frame holds the socket's description, made by
  // WSADuplicateSocketW for the Node process, and then the NODE_HANDLE line; libuv gives the
  // socket to Node with the read that brings the line. The description is made last, once the
  // message is accepted: a refused send leaves nothing in the peer.
  template <class T>
  result<void> queue_node_socket(const T& msg, native_handle h, bool bounded, const std::string& type) {
    if (!c_->peer_known) set_peer(detail::channel_peer_native(c_->io.handle(), nullptr));
    if (c_->peer_error) return c_->peer_error;
    const std::string head = "{\"cmd\":\"NODE_HANDLE\",\"type\":\"" + type + "\",\"msg\":";
    std::string& out = c_->out;
    const std::size_t at = uv_frames::begin_with_socket(out);
    out += head;
    const std::size_t ahead = out.size() - at;
    c_->queued += ahead;
    if (auto e = queue(msg, bounded, ahead, false); !e) {
      out.resize(at);
      c_->queued -= ahead;
      return e;
    }
    out.back() = '}';  // the line's newline, moved after the closing brace (counted already)
    out.push_back('\n');
    const auto refuse = [&](error e) {
      c_->queued -= out.size() - at - 1;  // all this send counted
      out.resize(at);
      return e;
    };
    if (!uv_frames::finish_with_socket(out, at, type == "net.Socket"))
      return refuse(error(errc::message_too_large, "send: a NODE_HANDLE frame past libuv's 4 GiB limit"));
    auto copy = detail::prepare_handle_native(h, c_->peer.get());
    if (!copy) return refuse(std::move(copy).error());
    if (copy->payload.size() != 8 + uv_frames::info_size) {  // no longer a socket (closed and reused meanwhile)
      detail::drop_handle_native(*copy);
      return refuse(error(errc::invalid_argument, "send: the handle is not a socket any more"));
    }
    // The description goes after the header; the 8 bytes ahead of it in `payload` are
    // childproc's own marker of a socket.
    out.replace(at + uv_frames::header_size, uv_frames::info_size, copy->payload, 8, uv_frames::info_size);
    c_->queued += 1;
    c_->user_end = c_->queued;
    return {};
  }

  // How much of the `avail` bytes queued from offset `written` the next write may take, and the
  // handle that goes with it: a write that carries a handle starts at its control frame (a Node
  // line's newline, which goes alone), and no write runs into the next one.
  static std::pair<std::size_t, native_handle> next_write(const core* c, std::size_t avail) noexcept {
    const auto& q = c->outgoing;
    if (q.empty()) return {avail, detail::invalid_handle()};
    const std::uint64_t at = c->written;
    if (q.front().at > at) return {std::min<std::uint64_t>(avail, q.front().at - at), detail::invalid_handle()};
    const std::size_t size = c->format == childproc::serialization::json ? std::min<std::size_t>(avail, 1)
                             : q.size() > 1                               ? std::min<std::uint64_t>(avail, q[1].at - at)
                                                                          : avail;
    return {size, q.front().h.own.valid() ? q.front().h.own.get() : detail::invalid_handle()};
  }

  // Accounts for `n` bytes written from offset `written`: a handle sent with them is on its way.
  static void wrote(core* c, std::size_t n) {
    if (n > 0 && !c->outgoing.empty() && c->outgoing.front().at == c->written) {
      detail::sent_handle_native(c->outgoing.front().h);
      c->outgoing.pop_front();
    }
    c->written += n;
  }

  // The channel closed or failed: handles not yet handed to a write are closed; those in a
  // write in flight may still arrive and are the peer's.
  static void drop_outgoing(core* c) noexcept {
    for (auto& p : c->outgoing)
      if (p.at >= c->in_flight_end) detail::drop_handle_native(p.h);
      else detail::sent_handle_native(p.h);
    c->outgoing.clear();
    for (auto& s : c->held)
      if (s.handle) detail::drop_handle_native(s.h);
    if (!c->held.empty()) c->user_dropped = true;
    c->held.clear();
    c->held_bytes = 0;
  }

  // A background write whose loop is not running (stopped, or never run again) gives its bytes
  // back, so that this blocking call or another loop writes them.
  void reclaim() noexcept {
    if (c_) reclaim(c_.get());
  }

  static void reclaim(core* c) noexcept {
    c->io.take_back_read();  // a receive() left pending on a loop: this call reads now (first: its bytes come first)
    if (c->job && !c->job->loop->running()) take_back(c->job);
  }

  // Whether the channel failed with some of the user's bytes not written (a failure that cost
  // only answers to Node, the peer gone by then, is not the user's: the next send reports it).
  static bool user_lost(const core* c) noexcept { return c->written < c->user_end || c->user_dropped; }

  // Whether the failure was a write to a peer that had gone (EPIPE, ECONNRESET) that cost only
  // the channel's own answers to Node (a peer that sends a handle and disconnects at once).
  static bool answers_lost_only(const core* c) noexcept {
    return c->failed && !user_lost(c) &&
           (c->failure == std::errc::broken_pipe || c->failure == std::errc::connection_reset);
  }

  // Writes what is queued, blocking, unless a background write on a running loop owns the
  // queue (it goes on there).
  static result<void> flush_out(core* c) {
    reclaim(c);
    if (c->failed) return answers_lost_only(c) ? result<void>() : result<void>(c->failure);
    if (c->job) {  // it goes on, on its loop: which reads for it again if reclaim took a receive's read
      rearm_pump(c);
      return {};
    }
    if (c->direct) return direct_busy();
    if (c->out.empty()) return {};
    if (!c->io.is_open()) return closed_error("send");
    if (auto e = write_out(c); !e && !answers_lost_only(c)) return e;
    return {};
  }

  // Ends `job` without its completion; the bytes it had not written go back to the front of
  // the queue. Its loop must not be inside a round (the completion could be in its batch).
  // `wait`: the caller writes next anyway, so an issued write is finished (reading meanwhile)
  // rather than cancelled. Without it (a loop destroyed, a task that threw) it is cancelled
  // where a cancel says what it wrote (POSIX), and finished where it cannot (Win32: a frame
  // written in part and then again would break the stream).
  static void take_back(write_job* job, bool wait = true) noexcept {
    core* c = job->owner;
    if (c) stop_pump(c);  // before the withdraw below reads into the same buffer
    if (job->issued) {
      if (c && (wait || !detail::cancelled_write_counted_native)) {
        // This reads the socket while it waits (Win32): a receive's read that a stopped loop
        // left comes in first, and so does one on the job's own loop, which is ending (its
        // overlapped read would still write into the buffer this read moves). One pending on
        // another loop that runs here stays (a write taken over from a stopped loop).
        event_loop* here = event_loop::current();
        c->io.take_back_read(here && here != job->loop ? &here->reactor() : nullptr);
        (void)absorb_ahead(c);
        inbox sink(c);
        job->loop->reactor().withdraw(job, &sink);
      } else {
        job->loop->reactor().withdraw(job);
      }
    }
    if (!c) {
      delete job;
      return;
    }
    if (job->issued) {  // on Win32 a write being cancelled may still have finished
      c->in_flight_end = c->written;
      job->done += job->bytes;
      wrote(c, job->bytes);
      if (job->err && job->err != errc::cancelled && !c->failed) (void)fail(c, job->err);
    }
    if (job->done < job->buffer.size()) c->out.insert(0, job->buffer, job->done, std::string::npos);
    c->job = nullptr;
    delete job;
  }

  // The loop is done with `w`: run(task) ended (`finish`: write it all now) or the loop is
  // being destroyed (its send_async waiters will never resume there: they are forgotten).
  static void settled(detail::loop_work* w, bool finish) noexcept {
    auto* job = static_cast<write_job*>(w);
    core* c = job->owner;
    event_loop* loop = job->loop;
    // run(task) ended: what is left is written blocking, reading meanwhile, which takes back a
    // receive() left pending on this loop (it may hold bytes read before the loop ended), as
    // any blocking call does.
    if (c && finish && c->io.is_open()) c->io.take_back_read();
    take_back(job, finish);
    if (!c) return;
    if (!finish) {
      std::erase_if(c->writers, [loop](written_awaiter* a) { return a->loop == loop; });
      return;
    }
    if (!c->failed && c->io.is_open() && !c->held.empty()) (void)deliver(c);  // waits for Node's answers
    else if (!c->failed && c->io.is_open() && !c->out.empty()) (void)write_out(c);
    else if (c->failed) wake_writers(c, c->failure);
  }

  // The end of the round in which the job was made: everything queued by then, in one write.
  static void begin(detail::loop_work* w) {
    auto* job = static_cast<write_job*>(w);
    core* c = job->owner;
    if (job->issued) return;  // asked again while it writes (its completion goes on)
    if (!c) {  // disconnected before it started, or while it waited for answers
      delete job;
      return;
    }
    if (!c->io.is_open() || c->failed) {  // closed by a bad frame meanwhile: nothing more is written
      end_job(job, c->failed ? c->failure : closed_error("send"));
      return;
    }
    job->handle = c->io.handle();
    go_on(job);
  }

  // The job has written all it took: it takes what was queued since, or waits for Node's
  // answers while sends are held for them (reading: the pump), or ends. Resumes the
  // send_async calls that are due, so nothing of the channel may be touched after it.
  static void go_on(write_job* job) {
    core* c = job->owner;
    job->stalled = false;  // (what the scan lets go is taken below, not scheduled)
    if (!c->held.empty()) scan_answers(c);  // what the pump read may hold the answers
    if (c->failed || !c->io.is_open()) {
      end_job(job, c->failed ? c->failure : closed_error("send"));
      return;
    }
    job->buffer.clear();
    job->buffer.swap(c->out);  // (the queue keeps the old buffer's room)
    job->done = 0;
    if (!job->buffer.empty()) {
      job->stalled = false;
      job->issued = true;
      issue(job);
      wake_writers(c, {});
      return;
    }
    if (!c->held.empty()) {
      if (c->eof) {
        c->job = nullptr;
        delete job;
        stop_pump(c);
        (void)end_held(c);
        return;
      }
      job->issued = false;  // nothing in the reactor: take_back has nothing to withdraw
      job->stalled = true;
      start_pump(c, *job->loop);
      wake_writers(c, {});
      return;
    }
    c->job = nullptr;  // a write_now sent it all meanwhile, or the last write is done
    delete job;
    stop_pump(c);
    wake_writers(c, {});
  }

  // Ends the job with the channel's failure (or its close): nothing queued or held goes.
  static void end_job(write_job* job, const error& e) {
    core* c = job->owner;
    c->job = nullptr;
    delete job;
    stop_pump(c);
    drop_outgoing(c);
    wake_writers(c, e);
  }

  // Sends made in one round of the loop leave together: the first schedules a write for the end
  // of the round; by then the others have joined the queue. A queue that reaches 64 KiB before
  // that is written at once (where the OS can say what fits without waiting), so a sender that
  // never yields does not pile up memory.
  static void start_writing(core* c, event_loop& loop) {
    if (c->job && !c->job->loop->running()) take_back(c->job);  // stranded on a loop that stopped
    if ((c->out.empty() && c->held.empty()) || c->direct) return;  // a direct write restarts the queue when it ends
    if (c->job) {
      if (c->job->stalled) c->job->loop->schedule(c->job);  // sends Node's answers let go
      else if (!c->job->issued && c->out.size() >= 65536) write_now(c);
      return;
    }
    auto* job = new write_job(loop);
    job->owner = c;
    job->write = true;
    job->complete = &on_written;
    c->job = job;
    c->io.attach(loop.reactor());  // closing the stream cancels the write
  }

  // One write of the queue without waiting (nothing of it is in flight).
  static void write_now(core* c) {
    const auto [size, attach] = next_write(c, c->out.size());
    auto r = detail::write_now_native(c->io.handle(), {c->out.data(), size}, attach, true);
    if (!r) {
      (void)fail(c, std::move(r).error());
      drop_outgoing(c);
      return;
    }
    c->out.erase(0, *r);
    wrote(c, *r);
  }

  static void issue(write_job* job) {
    core* c = job->owner;
    job->bytes = 0;
    job->err = {};
    const auto [size, attach] = next_write(c, job->buffer.size() - job->done);
    job->data = job->buffer.data() + job->done;
    job->size = size;
    job->attach = attach;
    job->socket = true;
    c->in_flight_end = c->written + size;
    job->loop->reactor().start_io(job);
    if (job->waiting) start_pump(c, *job->loop);  // the socket is full: read while it waits
  }

  static void on_written(detail::reactor_op* op) {
    auto* job = static_cast<write_job*>(op);
    core* c = job->owner;
    if (!c) {  // the channel was disconnected or destroyed meanwhile
      delete job;
      return;
    }
    c->in_flight_end = c->written;
    if (job->err) {
      // A write cancelled because the channel failed (a bad frame received) keeps that failure.
      const error e = c->failed ? c->failure : fail(c, job->err);
      c->job = nullptr;
      delete job;
      stop_pump(c);
      drop_outgoing(c);
      wake_writers(c, e);
      return;
    }
    job->done += job->bytes;
    wrote(c, job->bytes);
    if (job->done == job->buffer.size()) {
      go_on(job);  // whatever was queued meanwhile, in one write
      return;
    }
    issue(job);  // the pump, if running, reads on while the next write waits too
    wake_writers(c, {});
  }

  // Resumes the send_async calls whose bytes are written (or all of them, with `e`): at once
  // on their own loop's thread inside its run, else posted to their loop. Nothing of the
  // channel is touched after a resumption: the resumed code may destroy it.
  static void wake_writers(core* c, const error& e) {
    std::vector<written_awaiter*> ready;
    std::erase_if(c->writers, [&](written_awaiter* w) {
      if (!e && c->written < w->target) return false;
      w->outcome = e;
      w->woken = true;
      ready.push_back(w);
      return true;
    });
    event_loop* here = event_loop::current();
    for (auto* w : ready)
      if (w->loop == here) w->h.resume();
      else (void)detail::post_to(*w->anchor, [h = w->h] { h.resume(); });
      // (false: its loop is gone, and with it every way to resume that coroutine)

  }

  static error fail(core* c, error e) {
    c->failed = true;
    c->failure = e;
    poke(c);
    return e;
  }

  // A job waiting for Node's answers looks again at the end of the round (they may never come
  // now: the channel failed, or the peer ended). Never resumes anything itself.
  static void poke(core* c) noexcept {
    if (c->job && c->job->stalled) c->job->loop->schedule(c->job);
  }

  // Whether a read is pending into the receive buffer (the pump's, or a receive()'s).
  static bool reading_in(const core* c) noexcept { return c->pump.pending || c->io.reading(); }

  // Frames parsed: the stream moves on by `n` bytes.
  static void consume(core* c, std::size_t n) noexcept {
    c->head += n;
    c->consumed += n;
    c->scanned = 0;
    if (c->head == c->fill && !reading_in(c)) c->head = c->fill = 0;  // a pending read's room stays put
  }

  // The most descriptors held before the frames that announce them are parsed: a peer that
  // sends more is not following the protocol (each handle travels with its own frame).
  static constexpr std::size_t max_held_fds = 64;

  // Descriptors whose read ended at or before stream offset `upto` belong to no control frame
  // still to come: strays, closed.
  // (A socket in one of libuv's frames without data, [x, x), belongs to what follows it: kept
  // at x == upto.)
  static void drop_strays(core* c, std::uint64_t upto) noexcept {
    while (!c->fds.empty() && (c->fds.front().end < upto || (c->fds.front().end == upto && c->fds.front().start < upto)))
      c->fds.pop_front();
  }

  // The first descriptor held whose read did not end at or before `at` (those are strays, and
  // close), if `ours` says it belongs to the frame or line that starts there.
  template <class Ours>
  static unique_handle take_fd(core* c, std::uint64_t at, Ours ours) noexcept {
    drop_strays(c, at);
    unique_handle fd;
    if (!c->fds.empty() && ours(c->fds.front())) {
      fd = std::move(c->fds.front().h);
      c->fds.pop_front();
    }
    return fd;
  }

  // A whole large frame read while a blocking send waited: it waits in `ready`, in order.
  static void park_big(core* c) {
    push_ready(c, message(std::exchange(c->big, {}), std::move(c->incoming)));
    c->big_size = c->big_fill = 0;
    drop_strays(c, c->big_end);
  }

  // The next whole frame already received, nothing yet, or the error that broke the stream.
  result<std::optional<message>> take_frame() {
    if (!c_) return closed_error("receive");
    return take_frame(c_.get());
  }

  static result<std::optional<message>> take_frame(core* c) {
    settle_node_closing(c);
    // Each message taken lets a write that waits for Node's answers look again: they may be in
    // what is left, and there may be room to read again below the mark.
    if (!c->ready.empty()) {
      message m = std::move(c->ready.front());
      c->ready.pop_front();
      c->ready_bytes -= m.size();
      c->ready_fds -= m.has_handle();
      poke(c);
      return std::optional<message>(std::move(m));
    }
    auto m = take_frame_in(c);
    if (m && *m) poke(c);
    return m;
  }

  // The next whole frame in the receive buffer (those in `ready` come before it).
  static result<std::optional<message>> take_frame_in(core* c) {
    // A broken stream (a bad frame: closed) says so at once, unless the bytes before the break
    // were kept (libuv's frames: eof marks it); after a write failure (EPIPE) the frames already
    // received are still served, then the failure (end_of_stream if it cost only answers to Node).
    if (c->failed && !c->io.is_open() && !c->eof) return c->failure;
    if (c->big_size) return take_big(c);
    if (c->format == childproc::serialization::advanced) return advanced_error("receive");
    for (;;) {  // skips Node's own messages
      const std::string_view have(c->in.data() + c->head, c->fill - c->head);
      const frame_scan s = detail::frame_scan_in(c->format, have, c->max, c->scanned);
      switch (s.what) {
        case frame_scan::kind::frame: {
          if (s.handle) {
            const std::uint64_t at = c->consumed;
            const std::string_view payload = have.substr(s.header, s.size);  // the buffer stays put until the next read
            consume(c, s.header + s.size + s.trailer);
            if (auto e = announced(c, payload, at); !e) return std::move(e).error();
            return take_frame_in(c);  // the message it belongs to
          }
          if (c->format == childproc::serialization::json) {
            const std::string_view line = have.substr(s.header, s.size);
            const detail::json_verdict v = detail::check_received(line);
            if (v.handle) return node_handle(c, line, v, s.header + s.size + s.trailer);
            if (v.internal) {
              // Node's own bookkeeping: not the user's. A server's question is answered (the key
              // copied first: answering may read into the buffer the line is in).
              const bool ask = (v.get_count || v.notify_close) && v.has_key;
              std::string key = ask ? std::string(line.substr(v.key_at, v.key_size)) : std::string();
              if (v.nack) ++c->node_nacks;
              consume(c, s.header + s.size + s.trailer);
              if (ask) node_socket_request(c, key, v.get_count);
              if (v.ack || v.nack) answered(c);
              continue;
            }
          }
          message m(std::string(have.substr(s.header, s.size)), std::move(c->incoming));
          consume(c, s.header + s.size + s.trailer);
          drop_strays(c, c->consumed);
          return std::optional<message>(std::move(m));
        }
        case frame_scan::kind::too_large:
          close_io(c);
          return fail(c, error(errc::message_too_large, "receive: a message of " + std::to_string(s.size) +
                                                            " bytes, more than max_message_size " + std::to_string(c->max)));
        case frame_scan::kind::garbage:
          close_io(c);
          return fail(c, error(errc::bad_frame, "receive: not a frame"));
        case frame_scan::kind::need_more:
          // (else what is still in the socket is read; a failure that cost only answers to Node is
          // the peer gone: its end is end_of_stream, as when nothing was being written)
          if (c->failed && !answers_lost_only(c) && (c->eof || !c->io.is_open())) return c->failure;
          if (c->eof) {
            if (have.empty()) return error(errc::end_of_stream);
            return fail(c, error(errc::bad_frame, "receive: the stream ended inside a frame (" + std::to_string(have.size()) +
                                                      " bytes of " + (s.want ? std::to_string(s.want) : std::string("?")) + ")"));
          }
          if (s.header && s.size >= big_frame && s.trailer == 0) {  // read the rest straight into its own buffer
            if (c->pump.pending) {  // it reads into the receive buffer, where the frame's rest must not go
              stop_pump(c);
              return take_frame_in(c);
            }
            if (c->io.reading()) return std::optional<message>();  // a receive() reads there: it sets this up
            const std::size_t part = have.size() - s.header;
            c->big.reserve(s.size);  // first: if it throws, nothing has changed and a retry reads on
            c->big_size = s.size;
            c->big.assign(have.data() + s.header, part);  // within the capacity: no throw
            c->big_fill = part;
            c->big_end = c->consumed + s.header + s.size;
            c->consumed = c->big_end;
            c->head = c->fill = 0;
            c->scanned = 0;
            return take_big(c);
          }
          c->want = s.want > have.size() ? s.want - have.size() : 0;
          c->scanned = have.size();
          return std::optional<message>();
      }
      return std::optional<message>();
    }
  }

  // Node's NODE_HANDLE line (`size` bytes with its newline): its "msg" is the user's message, and
  // the descriptor whose read ended inside the line is its handle. Node
  // holds back everything it sends after it until the answer: ACK, or NACK if no descriptor came
  // (Node then sends it again). No descriptor comes on Win32, where Node passes handles otherwise.
  static result<std::optional<message>> node_handle(core* c, std::string_view line, const detail::json_verdict& v, std::size_t size) {
    const std::uint64_t at = c->consumed;
    std::string text = v.has_msg ? std::string(line.substr(v.msg_at, v.msg_size)) : std::string("null");
    std::string key = v.has_key ? std::string(line.substr(v.key_at, v.key_size)) : std::string();  // before the buffer moves
    consume(c, size);
    // Its descriptor is the one whose read ended inside the line (a read ends after the bytes a
    // descriptor came with: Node attaches it to the line's first byte, childproc to its newline);
    // one whose read ended past the line belongs to a later one.
    unique_handle fd = take_fd(c, at, [end = at + size](const core::arrival& a) { return a.end <= end && a.start < end; });
    const bool got = bool(fd);
    answer_node(c, got ? std::string_view("{\"cmd\":\"NODE_HANDLE_ACK\"}\n") : std::string_view("{\"cmd\":\"NODE_HANDLE_NACK\"}\n"));
    if (!got) return take_frame_in(c);
    if (v.has_key && !detail::json_falsy(key)) {  // a connection of a Node server's (Node: `if (message.key)`)
      // A descriptor number the kernel gave again was closed: what was recorded under it is gone,
      // even if the same socket came back (a server's keepOpen send).
      std::erase_if(c->node_sockets, [&](const core::node_socket& s) { return s.h == fd.get(); });
      if (c->node_sockets.size() >= c->node_prune_at) {
        forget_closed_sockets(c);
        c->node_prune_at = std::max<std::size_t>(64, 2 * c->node_sockets.size());
      }
      c->node_sockets.push_back({std::move(key), fd.get(), detail::handle_identity_native(fd.get())});
    }
    return std::optional<message>(message(std::move(text), std::move(fd)));
  }

  static void forget_closed_sockets(core* c) {
    std::erase_if(c->node_sockets, [](const core::node_socket& s) { return !detail::handle_still_native(s.h, s.id); });
  }

  // How many connections of the Node server `key` are recorded here (prune closed ones first).
  static std::size_t node_sockets_of(const core* c, std::string_view key) {
    return static_cast<std::size_t>(std::count_if(c->node_sockets.begin(), c->node_sockets.end(),
                                                  [&](const core::node_socket& s) { return s.key == key; }));
  }

  // A Node server asks, as Node's own workers answer it: how many of its connections are open
  // here (server.getConnections()), or to be told when none is (server.close()). Keys compare
  // as the JSON text Node wrote (JSON.stringify spells one string one way).
  static void node_socket_request(core* c, const std::string& key, bool get_count) {
    forget_closed_sockets(c);
    if (get_count) {
      answer_node(c, "{\"cmd\":\"NODE_SOCKET_COUNT\",\"key\":" + key + ",\"count\":" + std::to_string(node_sockets_of(c, key)) + "}\n");
    } else if (node_sockets_of(c, key) == 0) {
      answer_node(c, "{\"cmd\":\"NODE_SOCKET_ALL_CLOSED\",\"key\":" + key + "}\n");
    } else if (std::find(c->node_closing.begin(), c->node_closing.end(), key) == c->node_closing.end()) {
      c->node_closing.push_back(key);  // told when the last one closes
    }
  }

  // Tells each Node server waiting in close() whose connections here have all closed since.
  void settle_node_closing() {
    if (c_) settle_node_closing(c_.get());
  }

  static void settle_node_closing(core* c) {
    if (c->node_closing.empty()) return;
    forget_closed_sockets(c);
    std::erase_if(c->node_closing, [&](const std::string& key) {
      if (node_sockets_of(c, key) != 0) return false;
      answer_node(c, "{\"cmd\":\"NODE_SOCKET_ALL_CLOSED\",\"key\":" + key + "}\n");
      return true;
    });
  }

  // How often receive_sync and receive, waiting, look again at connections a closing Node server waits for.
  static constexpr int node_close_poll_ms = 20;

  // Ends receive()'s read after node_close_poll_ms, as receive_sync's wait times out: the
  // channel then settles what closed (take_frame) and reads again. Withdrawn when the read ends.
  struct close_poll : detail::timer_op {
    stream* io = nullptr;
    const detail::io_op* read = nullptr;  // the receive's own read: no other is ever cancelled
    std::weak_ptr<detail::reactor*> where;
    bool woke = false;  // it ended that read
    close_poll() = default;
    close_poll(const close_poll&) = delete;
    close_poll& operator=(const close_poll&) = delete;
    void start(stream& s, const detail::io_op& op, detail::reactor& r) {
      io = &s;
      read = &op;
      where = r.token();
      complete = [](detail::reactor_op* op) {
        auto* p = static_cast<close_poll*>(op);
        if (p->err) return;  // its loop ends: the read is cancelled anyway
        if (auto r = p->where.lock()) p->woke = p->io->cancel_read(**r, p->read);
      };
      r.start_timer(this, detail::deadline_after(detail::reactor_clock::now(), std::chrono::milliseconds(node_close_poll_ms)));
    }
    ~close_poll() {
      if (auto r = where.lock()) (*r)->withdraw(this);
    }
  };

  // Whether a blocking wait for the peer should wake now and then to settle them (nothing buffered).
  bool node_close_pending() const noexcept { return c_ && node_close_pending(c_.get()); }
  static bool node_close_pending(const core* c) noexcept { return !c->node_closing.empty() && !c->io.buffered(); }

  // Queues one of the answers Node's protocol asks for and starts writing it, as send does; a
  // failure shows on the next send, as Node swallows its own. Answers go ahead of the sends
  // held for Node's answers (Node's own skip its queue too): two ends that both wait for
  // answers give them to each other.
  static void answer_node(core* c, std::string_view line) {
    if (c->failed || !c->io.is_open()) return;
    const std::size_t at = c->uv ? uv_frames::begin(c->out) : c->out.size();
    c->out.append(line);
    if (c->uv) (void)uv_frames::finish(c->out, at);  // a few bytes: always fits
    const std::size_t n = c->out.size() - at;
    if (!c->held.empty())  // a send_async waiting for held bytes: they are now n bytes further on
      for (written_awaiter* w : c->writers)
        if (w->target > c->queued) w->target += n;
    c->queued += n;
    kick(c);
  }

  // Starts writing what was just queued (an answer, or sends the answers let go): on the loop
  // of this thread; else now, blocking (unless a blocking send that waits for answers is on
  // the stack: it writes them next).
  static void kick(core* c) {
    if (c->delivering) return;
    if (event_loop* loop = event_loop::current()) start_writing(c, *loop);
    else (void)flush_out(c);
  }

  // Node's sender keeps one handle in flight and waits for its answer; this one keeps up to
  // node_handles_ahead NODE_HANDLE lines unanswered, then holds the sends after them (in
  // order) until answers come. Linux counts every descriptor in flight (sent, not yet read)
  // against an unprivileged sender's RLIMIT_NOFILE: without the wait, sends to a busy peer
  // fail with ETOOMANYREFS.
  static constexpr std::size_t node_handles_ahead = 16;

  // Whether a send must wait behind the ones held (`handle`: it carries a NODE_HANDLE line).
  static bool must_hold(const core* c, bool handle) noexcept {
    return c->format == childproc::serialization::json && !c->uv &&
           (!c->held.empty() || (handle && c->node_open >= node_handles_ahead));
  }

  // Moves the bytes queued from `from` in `out` (one send) to the back of the held sends.
  static void hold_tail(core* c, std::size_t from, detail::outgoing_handle* h = nullptr) {
    core::held_send s;
    s.bytes.assign(c->out, from, std::string::npos);
    c->out.resize(from);
    c->queued -= s.bytes.size();
    c->held_bytes += s.bytes.size();
    s.serial = ++c->held_serial;
    if (h) {
      s.h = std::move(*h);
      s.handle = true;
    }
    c->held.push_back(std::move(s));
  }

  // An answer came (ACK or NACK): the sends held behind the cap go on, up to the next handle
  // that would pass it.
  static void answered(core* c) {
    if (c->node_open) --c->node_open;
    bool any = false;
    while (!c->held.empty() && (!c->held.front().handle || c->node_open < node_handles_ahead)) {
      core::held_send& s = c->held.front();
      c->out += s.bytes;
      c->queued += s.bytes.size();
      c->user_end = c->queued;
      c->held_bytes -= s.bytes.size();
      if (s.handle) {  // its descriptor goes with its newline, the last byte
        c->outgoing.push_back({c->queued - 1, std::move(s.h)});
        ++c->node_open;
      }
      c->held.pop_front();
      any = true;
    }
    if (any) kick(c);
  }

  // Takes in what was received while sends wait for Node's answers: the answers are taken (and
  // let sends go), what else came waits in `ready` for receive, in order. Stops at a partial
  // line, at an error (kept for receive), and once nothing is held.
  static void scan_answers(core* c) {
    while (!c->held.empty() && !c->failed && !c->big_size && ready_cost(c) < high_water(c) && fd_room(c)) {
      auto m = take_frame_in(c);
      if (!m || !*m) return;
      push_ready(c, std::move(**m));
    }
  }

  // A message parsed before its receive: it waits in `ready`, in order.
  static void push_ready(core* c, message m) {
    c->ready_bytes += m.size();
    c->ready_fds += m.has_handle();
    c->ready.push_back(std::move(m));
  }

  // What `ready` costs against the high-water mark: its bytes and each message's own keep (a
  // peer sending empty lines must not pass the mark by their number). The scan parses while
  // `ready` alone is under the mark (parsing an answer frees its bytes); reads stop when it and
  // the bytes not yet parsed reach it.
  static std::size_t ready_cost(const core* c) noexcept { return c->ready_bytes + c->ready.size() * (sizeof(message) + 16); }
  static std::size_t held_cost(const core* c) noexcept { return (c->fill - c->head) + c->big_fill + ready_cost(c); }

  // Whether more received handles may be held here before receive takes them: the limit is
  // read each time (it may be lowered meanwhile), and only while some are held.
  static bool fd_room(const core* c) noexcept {
    const std::size_t held = c->fds.size() + c->ready_fds;
    return held == 0 || held < detail::held_descriptors_native();
  }

  // A blocking flush while sends wait for answers: writes what may go, reads (up to the
  // high-water mark) and takes the answers, until nothing is held. The send_async calls it
  // completes resume last (one may destroy the channel: nothing of it is touched after).
  static result<void> deliver(core* c) {
    c->delivering = true;
    result<void> r = deliver_held(c);
    c->delivering = false;
    wake_writers(c, c->failed ? c->failure : error());
    return r;
  }

  static result<void> deliver_held(core* c) {
    for (;;) {
      if (!c->out.empty())
        if (auto e = write_out(c, false); !e) return c->held.empty() && answers_lost_only(c) ? result<void>() : result<void>(e);
      if (c->held.empty()) return {};
      scan_answers(c);
      if (!c->out.empty()) continue;
      if (c->failed) return c->failure;
      if (c->eof || !c->io.is_open()) return end_held(c, false);
      const std::span<char> room = inbox_room(c);
      if (room.empty())  // what is held here must be received before more can be read
        return error(errc::queue_full, "send: waiting for the Node peer's answers to the handles sent, " +
                                           (c->fds.size() + 1 >= max_held_fds || !fd_room(c)
                                                ? std::to_string(c->fds.size() + c->ready_fds) +
                                                      " descriptors it sent wait to be received (the most held while answers are awaited)"
                                                : std::to_string(buffered_of(c)) + " bytes it sent wait to be received (the high-water mark)") +
                                           ": receive them first");
      if (auto e = absorb(c, c->io.read_some(room)); !e) return e;
    }
  }

  // The peer ended with sends held for its answers: they never go (handles closed), and the
  // channel fails as a write to a peer that is gone does.
  static error end_held(core* c, bool wake = true) {
    const error e = c->failed ? c->failure
                              : fail(c, error(std::make_error_code(std::errc::broken_pipe),
                                              "send: the Node peer ended before it answered the handles sent (" +
                                                  std::to_string(c->held.size()) + (c->held.size() == 1 ? " send" : " sends") +
                                                  " after them dropped)"));
    drop_outgoing(c);
    if (wake) wake_writers(c, e);
    return e;
  }

  // A blocking send's own message, held behind sends that wait for answers the high-water
  // mark keeps from coming, is taken back: nothing of it stays queued (queue_full means that).
  result<void> flush_sent() {
    core* c = c_.get();
    const std::uint64_t mine = c->held.empty() ? 0 : c->held.back().serial;
    if (!mine) return flush();
    if (auto e = flush_out(c); !e || c->job) return e;
    auto r = deliver(c);
    if (r || r.error() != errc::queue_full || c->held.empty() || c->held.back().serial != mine) return r;
    core::held_send& s = c->held.back();
    c->held_bytes -= s.bytes.size();
    if (s.handle) detail::drop_handle_native(s.h);
    c->held.pop_back();
    return error(errc::queue_full, r.error().message() + "; this message was not sent (nothing of it queued)");
  }

  // Node answers NACK when a NODE_HANDLE line came without its descriptor (its read lost it:
  // MSG_CTRUNC, out of descriptors) and drops that message. Node's sender would send it again;
  // this one has closed its copy once written, so the loss is told by the next send instead.
  static error lost_handles(std::size_t n) {
    return error(std::make_error_code(std::errc::protocol_error),
                 "send: the Node peer did not get the descriptor of " + std::to_string(n) + " earlier handle send" +
                     (n == 1 ? "" : "s") + " (it answered NODE_HANDLE_NACK and dropped the message); this message was not sent");
  }

  static error advanced_error(const char* what) {
    return error(std::make_error_code(std::errc::not_supported), std::string(what) + ": Node's 'advanced' serialization (V8's format) is not "
                                                         "supported; start the Node side with serialization: 'json'");
  }

  // Why Node could not take `text` as a message (JSON.parse would throw, or it is Node's own).
  static result<void> node_refusal(std::string_view text) {
    const detail::json_verdict v = detail::check_json_message(text);
    if (v.what != detail::json_verdict::kind::ok)
      return error(errc::invalid_argument, std::string("send: a message to a Node process must be one JSON text; this one is ") +
                                               detail::json_verdict_words(v.what) + " (at byte " + std::to_string(v.at) + ")");
    if (v.internal)
      return error(errc::invalid_argument, "send: a \"cmd\" starting with NODE_ marks Node's own messages; this one is refused");
    return {};
  }

  // A control frame at stream offset `at`: the handle it announces waits for the next message.
  // Its descriptor is the one that arrived with the read holding the frame's first byte.
  static result<void> announced(core* c, std::string_view payload, std::uint64_t at) {
    unique_handle fd = take_fd(c, at, [at](const core::arrival& a) { return a.start <= at; });  // the read holding its first byte
    if (!c->peer_known) note_peer(c, detail::channel_peer_native(c->io.handle(), nullptr));
    auto h = detail::take_received_handle_native(payload, std::move(fd), c->peer.get());
    if (!h) {
      close_io(c);
      return fail(c, std::move(h).error());
    }
    if (c->incoming) {
      close_io(c);
      return fail(c, error(errc::bad_frame, "receive: two handles announced for one message"));
    }
    c->incoming = std::move(*h);
    return {};
  }

  // Frames from this size on are read into their own buffer, not through the receive buffer.
  static constexpr std::size_t big_frame = 256 * 1024;

  static result<std::optional<message>> take_big(core* c) {
    if (c->big_fill == c->big_size) {
      message m(std::exchange(c->big, {}), std::move(c->incoming));
      c->big_size = c->big_fill = 0;
      drop_strays(c, c->big_end);
      return std::optional<message>(std::move(m));
    }
    if (c->failed && (c->eof || !c->io.is_open())) return c->failure;
    if (c->eof)
      return fail(c, error(errc::bad_frame, "receive: the stream ended inside a frame (" + std::to_string(c->big_fill) +
                                                " bytes of " + std::to_string(c->big_size) + ")"));
    return std::optional<message>();
  }

  // The rest of a large frame's buffer, grown a step ahead of what has been read: the bytes a
  // read is about to overwrite are made (zeroed, without C++23's resize_and_overwrite) just
  // before it, while they are in the cache, not the whole frame at once.
  static constexpr std::size_t big_step = 256 * 1024;
  static std::span<char> big_room(core* c) {
    if (c->big.size() - c->big_fill < big_step && c->big.size() < c->big_size) {
      const std::size_t to = c->big_size - c->big_fill <= big_step ? c->big_size : c->big_fill + big_step;
#if defined(__cpp_lib_string_resize_and_overwrite)
      c->big.resize_and_overwrite(to, [](char*, std::size_t n) { return n; });  // the reads fill it
#else
      c->big.resize(to);
#endif
    }
    return {c->big.data() + c->big_fill, c->big.size() - c->big_fill};
  }

  // Room to read into: at least 64 KiB, or up to a step of a large frame's rest.
  static std::span<char> spare(core* c) {
    if (c->big_size) return big_room(c);
    if (c->head > 0 && (c->head == c->fill || c->fill + 65536 > c->in.size())) {  // move the unread bytes to the front
      std::memmove(c->in.data(), c->in.data() + c->head, c->fill - c->head);
      c->fill -= c->head;
      c->head = 0;
    }
    const std::size_t need = std::max<std::size_t>(65536, c->want);
    if (c->in.size() - c->fill < need) c->in.resize(c->fill + need);
    std::size_t room = c->in.size() - c->fill;
    // libuv's frames bring sockets inside the bytes, each made here as its description is read,
    // before its line is parsed: a read of k frames' worth of bytes completes at most k, so
    // one read never brings more than the sockets the channel may hold (a sender that does
    // not wait for answers sends many back to back).
    if (c->uv) {
      const std::size_t k = c->fds.size() + 1 < max_held_fds ? max_held_fds - c->fds.size() : 1;
      room = std::min(room, k * (uv_frames::header_size + uv_frames::xfer_size));
    }
    return {c->in.data() + c->fill, room};
  }

  // Takes in what the stream holds ahead of the socket (a read taken back from a stopped loop,
  // or one cancelled after it read): before any raw read of the socket, which would put newer
  // bytes, and descriptors, ahead of them.
  static result<void> absorb_ahead(core* c) {
    while (c->io.buffered())
      if (auto e = absorb(c, c->io.read_some(spare(c))); !e) return e;
    return {};
  }

  // Takes the outcome of a read into spare(), and the descriptors that came with it.
  static result<void> absorb(core* c, const result<std::size_t>& r) {
    std::size_t n = r ? *r : 0;
    if (c->uv && n) {  // json in libuv's frames: only their data goes on (into the receive buffer: no large frames)
      n = c->uv_in.strip(c->in.data() + c->fill, n);
      adopt_sockets(c);
      if (c->uv_in.bad()) {  // closed; the messages before it are still served, then this failure
        c->fill += n;
        c->eof = true;
        close_io(c);
        // Not returned: the caller parses on, and take_frame gives this after the whole lines.
        (void)fail(c, error(errc::bad_frame, std::string("receive: not one of libuv's IPC frames (") + c->uv_in.why() + ")"));
        return {};
      }
    }
    const std::uint64_t start = c->received_total;
    c->received_total += n;
    for (auto& h : c->arrived)  // a read into a large frame's payload holds no control frame: strays
      if (!c->big_size) c->fds.push_back({std::move(h), start, c->received_total});
    c->arrived.clear();
    if (c->fds.size() > max_held_fds) {
      c->fds.clear();
      close_io(c);
      return fail(c, error(errc::bad_frame, "receive: more than " + std::to_string(max_held_fds) +
                                                " descriptors arrived ahead of the frames that announce them"));
    }
    if (r) {
      (c->big_size ? c->big_fill : c->fill) += n;
      return {};
    }
    // A reset only says the peer closed with bytes of ours unread (it exited, or was killed):
    // for the reader that is the end, as Node takes it, with what was received still served.
    if (r.error() == errc::end_of_stream || r.error() == std::errc::connection_reset) {
      c->eof = true;
      poke(c);
      return {};
    }
    if (r.error() == errc::cancelled) {
      // A read its loop cancelled may have taken bytes (Win32): the stream kept them; they
      // come in now, before any read of this channel's own.
      if (auto e = absorb_ahead(c); !e) return e;
      return r.error();
    }
    c->eof = true;  // nothing more can be read
    if (c->failed) return c->failure;  // the first failure says why
    return fail(c, r.error());
  }

  // Sockets a Node peer described in libuv's frames (Win32) are made here now, each held for
  // the NODE_HANDLE line its frame carries, as a descriptor is for the line its read ended in:
  // one never claimed closes as a stray. (WSADuplicateSocketW has already made each one in this
  // process; only WSASocketW can reach it, so it is made even if no line will take it.) One
  // that cannot be made is left out, and its line is answered NACK.
  // A description that makes something other than a TCP socket (libuv passes no other) is
  // left out too.
  static void adopt_sockets(core* c) {
    for (auto& x : c->uv_in.take_sockets()) {
      auto h = detail::take_received_handle_native(std::string(8, '\0') + x.info, unique_handle(), detail::invalid_handle());
      if (h && detail::node_handle_type_native(h->get())) c->fds.push_back({std::move(*h), x.start, x.end});
    }
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
    drop_buffered_handles();
    c_.reset();  // descriptors received and never taken close with it
  }

  // Handles announced in frames received but never parsed are closed with the channel (on
  // Win32 they are in this process's handle table already; POSIX descriptors close with `fds`).
  void drop_buffered_handles() noexcept {
    if (detail::carries_handles(c_->format)) {
      core& c = *c_;
      std::string_view have(c.in.data() + c.head, c.fill - c.head);
      while (!c.big_size) {
        const frame_scan s = detail::frame_scan_in(c.format, have, c.max);
        if (s.what != frame_scan::kind::frame) return;
        if (s.handle) (void)detail::take_received_handle_native(have.substr(s.header, s.size), unique_handle(), c.peer.get());
        have.remove_prefix(s.header + s.size + s.trailer);
      }
    }
  }

  std::unique_ptr<core> c_;
};

/// A channel whose framing is fixed by a codec type: basic_channel<json_lines> talks to Node.
/// The same type as channel underneath (what process::channel() and parent_channel() give).
template <class Codec = length_prefixed>
class basic_channel : public channel {
 public:
  basic_channel() = default;
  explicit basic_channel(stream transport, std::size_t max_message_size = default_max_message_size)
      : channel(std::move(transport), max_message_size, Codec::kind) {}
};

}  // namespace childproc::inline v0

#endif
