// SPDX-License-Identifier: BSL-1.0
// Platform-free: the channel's wire formats. A codec turns one message payload into bytes on
// the stream and finds whole frames in what was received.
#ifndef CHILDPROC_DETAIL_FRAMING_HPP
#define CHILDPROC_DETAIL_FRAMING_HPP

#include <cstddef>      // std::size_t
#include <cstdint>      // std::uint32_t
#include <cstring>      // memmove: libuv's frames taken apart in place
#include <string>       // the send buffer
#include <string_view>  // payloads
#include <utility>      // std::exchange
#include <vector>       // sockets described in libuv's frames

namespace childproc::inline v0 {

/// How a channel frames messages (Node's `serialization` option, plus childproc's own):
/// - `childproc`: a 4-byte big-endian length, then the payload (any bytes, handles too);
/// - `json`: Node's default, one JSON text per line: a C++ program and a Node program talk so;
/// - `advanced`: Node's V8 serialization, not spoken: every send and receive fails with ENOTSUP.
enum class serialization { childproc, json, advanced };

/// What a codec found at the start of the received bytes.
struct frame_scan {
  enum class kind {
    need_more,  ///< no whole frame yet; `want` is how many bytes the frame needs in all, if known (else 0)
    frame,      ///< a whole frame: its payload is `size` bytes at offset `header`; it spans `header + size + trailer`
    too_large,  ///< the frame announces `size` bytes, more than the limit
    garbage,    ///< not a frame
  };
  kind what = kind::need_more;
  std::size_t header = 0;
  std::size_t size = 0;
  std::size_t trailer = 0;
  std::size_t want = 0;
  bool handle = false;  ///< a control frame: its payload announces a handle for the next message
};

/// The default wire format: a 4-byte unsigned big-endian length, then the payload (the length
/// header of Node's 'advanced' serialization). Any bytes may be sent, zero-length too, up to
/// 2 GiB - 1: the length's top bit marks a control frame, whose payload (8 to 1024 bytes)
/// announces a handle (a descriptor, HANDLE or socket) that belongs to the next message.
struct length_prefixed {
  static constexpr serialization kind = serialization::childproc;
  static constexpr std::size_t header_size = 4;
  static constexpr bool carries_handles = true;
  static constexpr std::uint32_t handle_flag = 0x80000000u;
  static constexpr std::size_t min_control = 8;     ///< a control frame's payload: at least a 64-bit value,
  static constexpr std::size_t max_control = 1024;  ///< and at most this (a socket's description on Win32)

  /// Starts a frame at the end of `out`; the payload is then appended to `out`. Returns where the frame starts.
  static std::size_t begin(std::string& out) {
    const std::size_t at = out.size();
    out.append(header_size, '\0');
    return at;
  }

  /// Ends the frame begun at `at`: false (and the frame removed) if its payload cannot be framed.
  /// `control` marks a control frame.
  static bool finish(std::string& out, std::size_t at, bool control = false) {
    const std::size_t size = out.size() - at - header_size;
    if (size >= handle_flag || (control && (size < min_control || size > max_control))) {
      out.resize(at);
      return false;
    }
    const auto n = static_cast<std::uint32_t>(size) | (control ? handle_flag : 0u);
    out[at] = static_cast<char>(n >> 24);
    out[at + 1] = static_cast<char>(n >> 16);
    out[at + 2] = static_cast<char>(n >> 8);
    out[at + 3] = static_cast<char>(n);
    return true;
  }

  /// The payload's length in a frame begun at `at`.
  static std::size_t payload_size(const std::string& out, std::size_t at) noexcept { return out.size() - at - header_size; }

  /// Looks for one whole frame at the start of `in`; frames longer than `max` are too_large, and
  /// a control frame of another size than min_control..max_control is garbage. (`scanned`: see
  /// json_lines; the header says everything here.)
  static frame_scan scan(std::string_view in, std::size_t max, std::size_t /*scanned*/ = 0) noexcept {
    frame_scan s;
    if (in.size() < header_size) return s;
    const auto byte = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])); };
    const std::uint32_t word = (byte(0) << 24) | (byte(1) << 16) | (byte(2) << 8) | byte(3);
    const std::size_t n = word & ~handle_flag;
    s.size = n;
    s.handle = (word & handle_flag) != 0;
    if (s.handle && (n < min_control || n > max_control)) {
      s.what = frame_scan::kind::garbage;
      return s;
    }
    if (n > max && !s.handle) {
      s.what = frame_scan::kind::too_large;
      return s;
    }
    s.header = header_size;
    s.want = header_size + n;
    if (in.size() - header_size >= n) s.what = frame_scan::kind::frame;
    return s;
  }
};

/// Node's 'json' serialization: one message per line (the payload is a JSON text without a raw
/// newline, which JSON never needs). With it a C++ parent and a Node child (or the reverse) talk
/// over NODE_CHANNEL_FD; payloads with a newline cannot be sent.
struct json_lines {
  static constexpr serialization kind = serialization::json;
  static constexpr bool carries_handles = false;  // no control frames: a handle comes in a NODE_HANDLE line

  static std::size_t begin(std::string& out) { return out.size(); }

  static bool finish(std::string& out, std::size_t at, bool control = false) {
    if (control || out.find('\n', at) != std::string::npos) {
      out.resize(at);
      return false;
    }
    out.push_back('\n');
    return true;
  }

  static std::size_t payload_size(const std::string& out, std::size_t at) noexcept { return out.size() - at; }

  /// `scanned`: how many bytes of `in` an earlier call already found without a newline, so a long
  /// line arriving in pieces is scanned once in all, not once per piece.
  static frame_scan scan(std::string_view in, std::size_t max, std::size_t scanned = 0) noexcept {
    frame_scan s;
    const auto at = in.substr(0, max < in.size() ? max + 1 : in.size()).find('\n', scanned);
    if (at == std::string_view::npos) {
      if (in.size() > max) {
        s.what = frame_scan::kind::too_large;
        s.size = in.size();
      }
      return s;
    }
    s.what = frame_scan::kind::frame;
    s.size = at;
    s.trailer = 1;
    return s;
  }
};

/// libuv's IPC frames, which Node's channel pipe carries on Win32 (libuv's win/pipe.c): each
/// write is a 16-byte header (four little-endian 32-bit words: flags, ignored, the data's length,
/// zero), then a socket's 632-byte description if the flags say one follows, then the data.
/// Flags: 1 data follows, 2 a socket follows, 4 that socket is a connection (not a server).
/// Node writes one message per frame; its reader sees the data of all frames as one stream.
struct uv_frames {
  static constexpr std::size_t header_size = 16;
  static constexpr std::size_t xfer_size = 632;   // a WSAPROTOCOL_INFOW, then a 32-bit delayed error
  static constexpr std::size_t info_size = 628;   // the WSAPROTOCOL_INFOW alone
  static constexpr std::uint32_t has_data = 1, has_socket = 2, is_connection = 4;

  /// A socket's description that came in a frame, and where that frame's data lies in the
  /// stream of data (offsets counted from the reader's first byte of data): Node sends a
  /// handle in the same write as the NODE_HANDLE line it belongs to.
  struct socket_xfer {
    std::string info;         // the WSAPROTOCOL_INFOW WSADuplicateSocketW wrote, for WSASocketW
    bool connection = false;  // a connected socket (else a listening one)
    std::uint64_t start = 0, end = 0;
  };

  /// Starts a frame at the end of `out` (its data is appended next); returns where it starts.
  static std::size_t begin(std::string& out) {
    const std::size_t at = out.size();
    out.append(header_size, '\0');
    return at;
  }

  /// Ends the frame begun at `at`: its header says how much data followed (false, the frame
  /// removed, past 4 GiB - 1, which libuv refuses too).
  static bool finish(std::string& out, std::size_t at) {
    const std::size_t n = out.size() - at - header_size;
    if (n > 0xffffffffu) {
      out.resize(at);
      return false;
    }
    put32(out, at, n ? has_data : 0);
    put32(out, at + 8, static_cast<std::uint32_t>(n));
    return true;
  }

  /// Starts a frame that carries a socket: the header, the socket's `info` (info_size bytes:
  /// zeros until the caller fills them in), a zero delayed error; its data is appended next.
  static std::size_t begin_with_socket(std::string& out) {
    const std::size_t at = out.size();
    out.append(header_size + xfer_size, '\0');
    return at;
  }

  /// Ends the frame begun at `at` by begin_with_socket, `connection` or a server (false, the
  /// frame removed, past 4 GiB - 1).
  static bool finish_with_socket(std::string& out, std::size_t at, bool connection) {
    const std::size_t n = out.size() - at - header_size - xfer_size;
    if (n > 0xffffffffu) {
      out.resize(at);
      return false;
    }
    put32(out, at, (n ? has_data : 0) | has_socket | (connection ? is_connection : 0));
    put32(out, at + 8, static_cast<std::uint32_t>(n));
    return true;
  }

  /// Takes the frames apart as they arrive: the data stays, moved to the front, the rest goes.
  class reader {
   public:
    /// Strips headers and socket descriptions from the `n` bytes at `p` (the next of the
    /// stream), leaving the data in place at `p`; returns how many bytes of data remain. At a
    /// header that is not libuv's it stops there (`bad()`, `why()`), the data before it kept.
    /// Each socket's description is kept for take_sockets().
    std::size_t strip(char* p, std::size_t n) {
      std::size_t out = 0;
      for (std::size_t i = 0; i < n && !bad_;) {
        if (data_) {  // data of the current frame: kept
          const std::size_t k = n - i < data_ ? n - i : static_cast<std::size_t>(data_);
          if (out != i) std::memmove(p + out, p + i, k);
          out += k;
          i += k;
          data_ -= k;
          emitted_ += k;
        } else if (xfer_have_ < xfer_want_) {  // a socket's description, perhaps in pieces
          const std::size_t k = n - i < xfer_want_ - xfer_have_ ? n - i : xfer_want_ - xfer_have_;
          xfer_.append(p + i, k);
          i += k;
          xfer_have_ += k;
          if (xfer_have_ == xfer_want_) {
            xfer_.resize(info_size);  // the delayed error is libuv's own (a connect still failing)
            sockets_out_.push_back({std::exchange(xfer_, {}), connection_, emitted_, emitted_ + pending_});
            xfer_have_ = xfer_want_ = 0;
            data_ = pending_;
          }
        } else {  // a header, perhaps in pieces
          const std::size_t k = n - i < header_size - have_ ? n - i : header_size - have_;
          std::memcpy(head_ + have_, p + i, k);
          have_ += k;
          i += k;
          if (have_ == header_size) take_header();
        }
      }
      return out;
    }
    bool bad() const noexcept { return bad_; }
    /// Why the last header was refused, for the error message.
    const char* why() const noexcept { return why_; }
    /// How many sockets were announced.
    std::uint64_t sockets() const noexcept { return sockets_; }
    /// The sockets whose descriptions are whole since the last call, in stream order.
    std::vector<socket_xfer> take_sockets() { return std::exchange(sockets_out_, {}); }
    /// Whether the stream stopped between frames (an end there is clean).
    bool between_frames() const noexcept { return !data_ && xfer_have_ == xfer_want_ && !have_; }

   private:
    void take_header() noexcept {
      have_ = 0;
      const std::uint32_t flags = get32(0), length = get32(8);
      if (flags & ~(has_data | has_socket | is_connection)) return fail("unknown flags");
      if (get32(12) != 0) return fail("its last word is not zero");
      if ((flags & (has_socket | is_connection)) == is_connection) return fail("a connection flag without a socket");
      if (!(flags & has_data) && length != 0) return fail("a length without the data flag");
      if (flags & has_socket) {
        ++sockets_;
        xfer_want_ = xfer_size;
        connection_ = (flags & is_connection) != 0;
        pending_ = (flags & has_data) ? length : 0;
      } else {
        data_ = (flags & has_data) ? length : 0;
      }
    }
    void fail(const char* why) noexcept {
      bad_ = true;
      why_ = why;
    }
    std::uint32_t get32(std::size_t at) const noexcept {
      return std::uint32_t{static_cast<unsigned char>(head_[at])} | std::uint32_t{static_cast<unsigned char>(head_[at + 1])} << 8 |
             std::uint32_t{static_cast<unsigned char>(head_[at + 2])} << 16 |
             std::uint32_t{static_cast<unsigned char>(head_[at + 3])} << 24;
    }
    char head_[header_size] = {};
    std::size_t have_ = 0;      // header bytes gathered
    std::uint64_t data_ = 0;    // data bytes left in the current frame
    std::string xfer_;              // a socket's description, gathered
    std::size_t xfer_have_ = 0, xfer_want_ = 0;
    bool connection_ = false;
    std::uint64_t pending_ = 0;     // the data that follows that description
    std::uint64_t emitted_ = 0;     // data bytes given back so far
    std::uint64_t sockets_ = 0;
    std::vector<socket_xfer> sockets_out_;
    bool bad_ = false;
    const char* why_ = "";
  };

 private:
  static void put32(std::string& out, std::size_t at, std::uint64_t v) {
    for (int i = 0; i < 4; ++i) out[at + static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i));
  }
};

namespace detail {
// The codec of a serialization chosen at run time (`advanced` frames nothing: send refuses first).
inline bool carries_handles(serialization s) noexcept { return s == serialization::childproc; }
// Descriptors that come with the bytes are kept for both: childproc's control frames and Node's
// NODE_HANDLE lines pair with them (POSIX; Node on Win32 passes handles another way).
inline bool receives_handles(serialization s) noexcept { return s != serialization::advanced; }
inline std::size_t frame_begin(serialization s, std::string& out) {
  return s == serialization::childproc ? length_prefixed::begin(out) : json_lines::begin(out);
}
inline bool frame_finish(serialization s, std::string& out, std::size_t at, bool control = false) {
  return s == serialization::childproc ? length_prefixed::finish(out, at, control) : json_lines::finish(out, at, control);
}
inline std::size_t frame_payload_size(serialization s, const std::string& out, std::size_t at) noexcept {
  return s == serialization::childproc ? length_prefixed::payload_size(out, at) : json_lines::payload_size(out, at);
}
inline frame_scan frame_scan_in(serialization s, std::string_view in, std::size_t max, std::size_t scanned = 0) noexcept {
  return s == serialization::childproc ? length_prefixed::scan(in, max, scanned) : json_lines::scan(in, max, scanned);
}
inline const char* serialization_name(serialization s) noexcept {
  return s == serialization::childproc ? "childproc" : s == serialization::json ? "json" : "advanced";
}
}  // namespace detail

/// Appends one frame of `Codec` holding `payload` to `out`; false (nothing appended) if the codec
/// cannot carry it.
template <class Codec>
bool encode_frame(std::string& out, std::string_view payload) {
  const std::size_t at = Codec::begin(out);
  out.append(payload);
  return Codec::finish(out, at);
}

}  // namespace childproc::inline v0

#endif
