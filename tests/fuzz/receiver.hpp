// SPDX-License-Identifier: BSL-1.0
// A model of the channel's receiver (channel.hpp take_frame/take_big) over a codec, for the
// framing targets: the stream arrives in reads of given sizes, whole frames are taken from the
// head of the buffer, too_large or garbage ends the stream, and a frame of `big` bytes or more
// whose header is in is read straight into its own buffer, as the channel does.
#ifndef CHILDPROC_TESTS_FUZZ_RECEIVER_HPP
#define CHILDPROC_TESTS_FUZZ_RECEIVER_HPP

#include "fuzz.hpp"

#include <childproc/detail/framing.hpp>

#include <algorithm>  // std::min
#include <cstddef>    // std::size_t
#include <limits>     // by default, no big-frame path
#include <string>
#include <string_view>
#include <vector>

namespace fuzz {

using kind = childproc::frame_scan::kind;

// What a receiver got from a stream.
struct received {
  std::vector<std::string> payloads;
  std::vector<bool> control;   // per payload: a control frame (announces a handle)
  std::size_t consumed = 0;    // stream bytes taken by those frames
  kind end = kind::need_more;  // what stopped it: need_more when the stream ran out
  std::size_t end_size = 0;    // too_large's size
};

// One scan, checked against the frame_scan contract in framing.hpp.
template <class Codec>
childproc::frame_scan checked_scan(std::string_view have, std::size_t max) {
  const auto s = Codec::scan(have, max);
  switch (s.what) {
    case kind::frame:  // the frame lies within the bytes, and within the limit unless it is a control frame
      FUZZ_CHECK(s.header <= have.size() && s.size <= have.size() - s.header &&
                 s.trailer <= have.size() - s.header - s.size);
      FUZZ_CHECK(s.handle ? Codec::carries_handles : s.size <= max);
      break;
    case kind::need_more:  // `want` is more than we have; a known header makes it exact
      FUZZ_CHECK(s.want == 0 || s.want > have.size());
      FUZZ_CHECK(s.header == 0 || (s.want == s.header + s.size + s.trailer && (s.handle || s.size <= max)));
      break;
    case kind::too_large:
      FUZZ_CHECK(s.size > max);
      break;
    case kind::garbage:
      break;
  }
  return s;
}

// Feeds `stream` in reads of `reads[0]`, `reads[1]`, ... bytes (cycled; none: one read of all).
template <class Codec>
received receive(std::string_view stream, const std::vector<std::size_t>& reads, std::size_t max,
                 std::size_t big = std::numeric_limits<std::size_t>::max()) {
  received r;
  std::string buffer;        // received, not yet taken
  std::string big_payload;   // a big frame's payload so far (the channel sizes it at once; a
  std::size_t big_size = 0, big_header = 0;  // model that did would allocate what any header says)
  bool in_big = false;
  std::size_t at = 0, next_read = 0;
  for (;;) {
    for (;;) {  // take what is whole
      if (in_big) {
        if (big_payload.size() < big_size) break;
        r.consumed += big_header + big_payload.size();
        r.payloads.push_back(std::move(big_payload));
        r.control.push_back(false);
        big_payload.clear();
        in_big = false;
        continue;
      }
      const auto s = checked_scan<Codec>(buffer, max);
      if (s.what == kind::frame) {
        r.payloads.push_back(buffer.substr(s.header, s.size));
        r.control.push_back(s.handle);
        r.consumed += s.header + s.size + s.trailer;
        buffer.erase(0, s.header + s.size + s.trailer);
        continue;
      }
      if (s.what != kind::need_more) {
        r.end = s.what;
        r.end_size = s.size;
        return r;
      }
      if (s.header && s.size >= big && s.trailer == 0 && !s.handle) {
        big_header = s.header;
        big_payload.assign(buffer, s.header);
        big_size = s.size;
        buffer.clear();
        in_big = true;
        continue;
      }
      break;
    }
    if (at == stream.size()) return r;
    std::size_t n = reads.empty() ? stream.size() : reads[next_read++ % reads.size()];
    n = std::min(n, stream.size() - at);
    if (in_big) {  // a read into the big buffer stops at its end, like channel::spare()
      n = std::min(n, big_size - big_payload.size());
      big_payload.append(stream.substr(at, n));
    } else {
      buffer.append(stream.substr(at, n));
    }
    at += n;
  }
}

}  // namespace fuzz

#endif
