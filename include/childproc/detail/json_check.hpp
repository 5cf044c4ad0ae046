// SPDX-License-Identifier: BSL-1.0
// Platform-free: checks that a message for a Node peer is what Node's 'json' channel can take:
// exactly one JSON text (RFC 8259, UTF-8), on one line. Node parses each line with JSON.parse and
// an exception there kills the Node process, so nothing else may be sent. One pass, no allocation.
#ifndef CHILDPROC_DETAIL_JSON_CHECK_HPP
#define CHILDPROC_DETAIL_JSON_CHECK_HPP

#include <cstddef>      // std::size_t
#include <cstdint>      // the nesting stack
#include <span>         // the words a string is compared with
#include <string_view>  // the text

namespace childproc::inline v0::detail {

/// What check_json_message found.
struct json_verdict {
  enum class kind {
    ok,
    empty,        ///< nothing, or only whitespace
    bad_syntax,   ///< not JSON at `at`
    bad_utf8,     ///< a string holds bytes that are not UTF-8, at `at`
    trailing,     ///< a whole JSON text, then more at `at` (two values, or junk)
    newline,      ///< a raw line feed at `at`: Node's framing splits lines there
    too_deep,     ///< nested deeper than max_depth, at `at`
  };
  kind what = kind::ok;
  std::size_t at = 0;
  bool internal = false;  ///< an object whose "cmd" is a string of 6+ characters starting "NODE_": Node's own message
  bool handle = false;    ///< internal, and that "cmd" is "NODE_HANDLE": a handle comes with the member "msg"
  bool get_count = false;     ///< internal, "cmd" is "NODE_SOCKET_GET_COUNT": a Node server asks how many of its sockets live
  bool notify_close = false;  ///< internal, "cmd" is "NODE_SOCKET_NOTIFY_CLOSE": that server closes, waiting for them
  bool nack = false;          ///< internal, "cmd" is "NODE_HANDLE_NACK": a handle sent did not reach the peer
  bool ack = false;           ///< internal, "cmd" is "NODE_HANDLE_ACK": a handle sent reached the peer
  bool has_msg = false;   ///< the object has a member "msg" (the last one counts, as for JSON.parse)
  std::size_t msg_at = 0, msg_size = 0;  ///< where that member's value is in the text
  bool has_key = false;   ///< the object has a member "key" (a Node server's name for its sockets; the last counts)
  std::size_t key_at = 0, key_size = 0;  ///< where that member's value is in the text
};

inline constexpr std::size_t json_max_depth = 4096;

class json_checker {
 public:
  explicit json_checker(std::string_view t) noexcept : t_(t) {}

  json_verdict run() noexcept {
    skip_ws();
    if (failed_) return v_;
    if (i_ == t_.size()) return fail(json_verdict::kind::empty);
    value();
    if (failed_) return v_;
    skip_ws();
    if (failed_) return v_;
    if (i_ != t_.size()) return fail(json_verdict::kind::trailing);
    v_.internal = cmd_ != cmd_kind::none;
    v_.handle = cmd_ == cmd_kind::handle;
    v_.get_count = cmd_ == cmd_kind::get_count;
    v_.notify_close = cmd_ == cmd_kind::notify_close;
    v_.nack = cmd_ == cmd_kind::nack;
    v_.ack = cmd_ == cmd_kind::ack;
    v_.has_msg = msg_.has;
    v_.msg_at = msg_.at;
    v_.msg_size = msg_.size;
    v_.has_key = key_.has;
    v_.key_at = key_.at;
    v_.key_size = key_.size;
    return v_;
  }

 private:
  // Iterative, so deep nesting costs no stack: one bit per open container (1: object).
  void value() noexcept {
    std::size_t depth = 0;
    while (!failed_) {
      skip_ws();
      if (failed_) return;
      const bool top_key_cmd = pending_ == top_key::cmd;
      span* const captured = pending_ == top_key::msg ? &msg_ : pending_ == top_key::key ? &key_ : nullptr;
      pending_ = top_key::other;
      if (i_ == t_.size()) return (void)fail(json_verdict::kind::bad_syntax);
      const char c = t_[i_];
      if (captured) {
        captured->has = true;
        captured->at = i_;
      }
      if (c == '{' || c == '[') {
        if (top_key_cmd) cmd_ = cmd_kind::none;  // cmd is not a string: an ordinary message
        if (captured) open_ = captured;  // it ends when its container closes
        if (depth == json_max_depth) return (void)fail(json_verdict::kind::too_deep);
        set_bit(depth, c == '{');
        ++depth;
        ++i_;
        skip_ws();
        if (failed_) return;
        if (i_ < t_.size() && t_[i_] == (c == '{' ? '}' : ']')) {  // empty container
          ++i_;
          --depth;
          if (depth == 1 && open_) end_open();
        } else if (c == '{') {
          if (!key(depth)) return;
          continue;
        } else {
          continue;
        }
      } else if (c == '"') {
        if (top_key_cmd) {
          word_match w{cmd_words};
          if (!string(&w)) return;
          cmd_ = !(w.starts(0) && w.n > 5) ? cmd_kind::none
                 : w.is(1)                 ? cmd_kind::handle
                 : w.is(2)                 ? cmd_kind::get_count
                 : w.is(3)                 ? cmd_kind::notify_close
                 : w.is(4)                 ? cmd_kind::nack
                 : w.is(5)                 ? cmd_kind::ack
                                           : cmd_kind::other;
        } else if (!string()) {
          return;
        }
        if (captured) captured->size = i_ - captured->at;
      } else {
        if (top_key_cmd) cmd_ = cmd_kind::none;  // cmd is not a string: an ordinary message
        if (!scalar()) return;
        if (captured) captured->size = i_ - captured->at;
      }
      // After a value: close containers or go on to the next member / element.
      while (true) {
        if (depth == 0) return;
        skip_ws();
        if (failed_) return;
        if (i_ == t_.size()) return (void)fail(json_verdict::kind::bad_syntax);
        const bool object = get_bit(depth - 1);
        if (t_[i_] == ',') {
          ++i_;
          if (object && !key(depth)) return;
          break;
        }
        if (t_[i_] != (object ? '}' : ']')) return (void)fail(json_verdict::kind::bad_syntax);
        ++i_;
        --depth;
        if (depth == 1 && open_) end_open();
      }
    }
  }

  // A member's key and its colon; notes a key "cmd", "msg" or "key" of the outermost object.
  bool key(std::size_t depth) noexcept {
    skip_ws();
    if (failed_) return false;
    if (i_ == t_.size() || t_[i_] != '"') return fail(json_verdict::kind::bad_syntax), false;
    word_match w{key_words};
    if (!string(&w)) return false;
    skip_ws();
    if (failed_) return false;
    if (i_ == t_.size() || t_[i_] != ':') return fail(json_verdict::kind::bad_syntax), false;
    ++i_;
    pending_ = depth != 1 ? top_key::other : w.is(0) ? top_key::cmd : w.is(1) ? top_key::msg : w.is(2) ? top_key::key : top_key::other;
    return true;
  }

  static constexpr std::string_view key_words[] = {"cmd", "msg", "key"};
  static constexpr std::string_view cmd_words[] = {"NODE_", "NODE_HANDLE", "NODE_SOCKET_GET_COUNT", "NODE_SOCKET_NOTIFY_CLOSE", "NODE_HANDLE_NACK", "NODE_HANDLE_ACK"};

  // How a decoded string compares with a few words, character by character, and its length.
  struct word_match {
    std::span<const std::string_view> words;
    std::uint32_t alive = ~0u;  // bit k: every character so far matches words[k]
    std::size_t n = 0;          // characters decoded
    void next(std::uint32_t cp) noexcept {
      for (std::size_t k = 0; k < words.size(); ++k)
        if (n < words[k].size() && cp != static_cast<unsigned char>(words[k][n])) alive &= ~(std::uint32_t{1} << k);
      ++n;
    }
    bool starts(std::size_t k) const noexcept { return (alive >> k & 1u) && n >= words[k].size(); }
    bool is(std::size_t k) const noexcept { return (alive >> k & 1u) && n == words[k].size(); }
  };

  // A string at t_[i_] == '"', checked; decoded as JSON.parse would, it is compared into `w`.
  bool string(word_match* w = nullptr) noexcept {
    ++i_;
    while (true) {
      if (i_ == t_.size()) return fail(json_verdict::kind::bad_syntax), false;
      const auto ch = static_cast<unsigned char>(t_[i_]);
      std::uint32_t cp = 0;
      if (ch == '"') {
        ++i_;
        break;
      }
      if (ch == '\n') return fail(json_verdict::kind::newline), false;
      if (ch < 0x20) return fail(json_verdict::kind::bad_syntax), false;
      if (ch == '\\') {
        if (!escape(cp)) return false;
      } else if (ch < 0x80) {
        cp = ch;
        ++i_;
      } else if (!utf8(cp)) {
        return false;
      }
      if (w) w->next(cp);
    }
    return true;
  }

  bool escape(std::uint32_t& cp) noexcept {
    if (i_ + 1 >= t_.size()) return fail(json_verdict::kind::bad_syntax), false;
    const char e = t_[i_ + 1];
    i_ += 2;
    switch (e) {
      case '"': cp = '"'; return true;
      case '\\': cp = '\\'; return true;
      case '/': cp = '/'; return true;
      case 'b': cp = '\b'; return true;
      case 'f': cp = '\f'; return true;
      case 'n': cp = '\n'; return true;
      case 'r': cp = '\r'; return true;
      case 't': cp = '\t'; return true;
      case 'u': return hex4(cp);  // a lone surrogate is valid JSON: JSON.parse takes it
      default: i_ -= 1; return fail(json_verdict::kind::bad_syntax), false;
    }
  }

  bool hex4(std::uint32_t& cp) noexcept {
    if (t_.size() - i_ < 4) return fail(json_verdict::kind::bad_syntax), false;
    cp = 0;
    for (int k = 0; k < 4; ++k, ++i_) {
      const char h = t_[i_];
      int d = -1;
      if (h >= '0' && h <= '9') d = h - '0';
      else if (h >= 'a' && h <= 'f') d = h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') d = h - 'A' + 10;
      if (d < 0) return fail(json_verdict::kind::bad_syntax), false;
      cp = cp * 16 + static_cast<std::uint32_t>(d);
    }
    return true;
  }

  // One UTF-8 sequence: shortest form, no surrogates, at most U+10FFFF.
  bool utf8(std::uint32_t& cp) noexcept {
    const auto b0 = static_cast<unsigned char>(t_[i_]);
    std::size_t len = 0;
    std::uint32_t min = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) len = 2, cp = b0 & 0x1Fu, min = 0x80;
    else if (b0 >= 0xE0 && b0 <= 0xEF) len = 3, cp = b0 & 0x0Fu, min = 0x800;
    else if (b0 >= 0xF0 && b0 <= 0xF4) len = 4, cp = b0 & 0x07u, min = 0x10000;
    else return fail(json_verdict::kind::bad_utf8), false;
    if (t_.size() - i_ < len) return fail(json_verdict::kind::bad_utf8), false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(t_[i_ + k]);
      if ((b & 0xC0) != 0x80) return fail(json_verdict::kind::bad_utf8), false;
      cp = (cp << 6) | (b & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return fail(json_verdict::kind::bad_utf8), false;
    i_ += len;
    return true;
  }

  // true, false, null or a number.
  bool scalar() noexcept {
    for (std::string_view word : {std::string_view("true"), std::string_view("false"), std::string_view("null")})
      if (t_.substr(i_, word.size()) == word) {
        i_ += word.size();
        return true;
      }
    const std::size_t start = i_;
    if (i_ < t_.size() && t_[i_] == '-') ++i_;
    if (i_ < t_.size() && t_[i_] == '0') ++i_;
    else if (!digits()) return fail_at(start), false;
    if (i_ < t_.size() && t_[i_] == '.') {
      ++i_;
      if (!digits()) return fail(json_verdict::kind::bad_syntax), false;
    }
    if (i_ < t_.size() && (t_[i_] == 'e' || t_[i_] == 'E')) {
      ++i_;
      if (i_ < t_.size() && (t_[i_] == '+' || t_[i_] == '-')) ++i_;
      if (!digits()) return fail(json_verdict::kind::bad_syntax), false;
    }
    return true;
  }

  bool digits() noexcept {
    const std::size_t start = i_;
    while (i_ < t_.size() && t_[i_] >= '0' && t_[i_] <= '9') ++i_;
    return i_ > start;
  }

  void skip_ws() noexcept {
    while (i_ < t_.size()) {
      const char c = t_[i_];
      if (c == '\n') return (void)fail(json_verdict::kind::newline);
      if (c != ' ' && c != '\t' && c != '\r') return;
      ++i_;
    }
  }

  json_verdict fail(json_verdict::kind k) noexcept {
    if (!failed_) {
      failed_ = true;
      v_.what = k;
      v_.at = i_;
    }
    return v_;
  }
  void fail_at(std::size_t at) noexcept {
    i_ = at;
    fail(json_verdict::kind::bad_syntax);
  }

  void set_bit(std::size_t d, bool v) noexcept {
    const std::uint64_t bit = std::uint64_t{1} << (d % 64);
    stack_[d / 64] = v ? (stack_[d / 64] | bit) : (stack_[d / 64] & ~bit);
  }
  bool get_bit(std::size_t d) const noexcept { return (stack_[d / 64] >> (d % 64)) & 1u; }

  std::string_view t_;
  std::size_t i_ = 0;
  bool failed_ = false;
  enum class top_key { other, cmd, msg, key };
  top_key pending_ = top_key::other;  // the value about to be read is the outermost object's "cmd", "msg" or "key"
  enum class cmd_kind { none, other, handle, get_count, notify_close, nack, ack };
  cmd_kind cmd_ = cmd_kind::none;  // what the outermost "cmd" says (the last one counts)
  struct span {
    bool has = false;
    std::size_t at = 0, size = 0;
  };
  span msg_, key_;          // the outermost "msg" and "key" values
  span* open_ = nullptr;    // one of them, a container not yet closed
  void end_open() noexcept {
    open_->size = i_ - open_->at;
    open_ = nullptr;
  }
  json_verdict v_;
  std::uint64_t stack_[json_max_depth / 64] = {};
};

/// Checks one message for a Node peer: exactly one JSON text, UTF-8, without a raw line feed.
inline json_verdict check_json_message(std::string_view text) noexcept { return json_checker(text).run(); }

/// A message received from Node, checked only as far as needed: `internal`, `handle` and the
/// "msg" member are exact, but only an object can be Node's own, and a text without a backslash
/// can spell NODE_ only literally, so any other text is not parsed (its verdict says ok).
inline json_verdict check_received(std::string_view text) noexcept {
  const std::size_t first = text.find_first_not_of(" \t\r");
  if (first == std::string_view::npos || text[first] != '{') return {};
  if (text.find("NODE_") == std::string_view::npos && text.find('\\') == std::string_view::npos) return {};
  return check_json_message(text);
}

/// Whether a received message is one of Node's own (cmd NODE_...), cheaply.
inline bool is_node_internal(std::string_view text) noexcept { return check_received(text).internal; }

/// Whether a JSON value (checked already) is one JavaScript treats as false: "", null, false, or
/// a number equal to zero.
inline bool json_falsy(std::string_view v) noexcept {
  if (v == "\"\"" || v == "null" || v == "false") return true;
  if (v.empty() || !(v[0] == '-' || (v[0] >= '0' && v[0] <= '9'))) return false;
  for (const char c : v) {
    if (c == 'e' || c == 'E') return true;  // the mantissa was all zeros
    if (c >= '1' && c <= '9') return false;
  }
  return true;
}

/// The words for a verdict that is not ok, for send's error.
inline const char* json_verdict_words(json_verdict::kind k) noexcept {
  switch (k) {
    case json_verdict::kind::ok: return "a JSON text";
    case json_verdict::kind::empty: return "empty (no JSON value)";
    case json_verdict::kind::bad_syntax: return "not valid JSON";
    case json_verdict::kind::bad_utf8: return "not valid UTF-8";
    case json_verdict::kind::trailing: return "more than one JSON value";
    case json_verdict::kind::newline: return "a raw line feed (Node reads one message per line)";
    case json_verdict::kind::too_deep: return "nested deeper than 4096 levels";
  }
  return "not valid JSON";
}

}  // namespace childproc::inline v0::detail

#endif
