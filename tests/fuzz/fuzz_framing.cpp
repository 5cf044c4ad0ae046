// SPDX-License-Identifier: BSL-1.0
// The channel's frame decoders on any byte stream, split into any reads. Checks that frames lie
// within the bytes (receiver.hpp), that the outcome does not depend on the split or on the
// big-frame path, that it matches a decoder written from the wire format's description, and
// that re-encoding the payloads gives back exactly the bytes that were consumed.
//
// Input: flags (bit 0: json_lines, bits 1-2: how `max` is made), 2 bytes for `max`, the big-frame
// threshold, a count of read sizes and those sizes, then the stream.
#include "receiver.hpp"

#include <cstdint>
#include <limits>
#include <type_traits>

namespace {

using childproc::json_lines;
using childproc::length_prefixed;
using fuzz::kind;

// The formats as described: a 4-byte big-endian length then the payload, the length's top bit
// marking a control frame of 8 to 1024 bytes (not held to the limit, which is for messages); or a line
// per payload.
fuzz::received reference(std::string_view s, std::size_t max, bool json) {
  fuzz::received r;
  for (std::size_t at = 0;;) {
    const std::size_t left = s.size() - at;
    std::size_t header = 0, size = 0, trailer = 0;
    bool control = false;
    if (json) {
      const auto nl = s.find('\n', at);
      if (nl != std::string_view::npos && nl - at <= max) {
        size = nl - at, trailer = 1;
      } else {
        if (left > max) r.end = kind::too_large, r.end_size = left;
        return r;
      }
    } else {
      if (left < 4) return r;
      for (int i = 0; i < 4; ++i) size = size << 8 | static_cast<unsigned char>(s[at + i]);
      control = size >= 0x80000000u;
      size &= 0x7FFFFFFFu;
      if (control && (size < 8 || size > 1024)) {
        r.end = kind::garbage, r.end_size = size;
        return r;
      }
      if (!control && size > max) {
        r.end = kind::too_large, r.end_size = size;
        return r;
      }
      if (left - 4 < size) return r;
      header = 4;
    }
    r.payloads.emplace_back(s.substr(at + header, size));
    r.control.push_back(control);
    at += header + size + trailer;
    r.consumed = at;
  }
}

// The too_large size of json_lines is what was buffered when it was seen, so it depends on the
// split; the length prefix announces it (and a bad control frame's), so it must not.
bool same(const fuzz::received& a, const fuzz::received& b, bool json) {
  return a.payloads == b.payloads && a.control == b.control && a.consumed == b.consumed && a.end == b.end &&
         (json || a.end_size == b.end_size);
}

template <class Codec>
void check(std::string_view stream, const std::vector<std::size_t>& reads, std::size_t max, std::size_t big) {
  constexpr bool json = std::is_same_v<Codec, json_lines>;
  const auto whole = fuzz::receive<Codec>(stream, {}, max);
  FUZZ_CHECK(same(whole, reference(stream, max, json), json));
  FUZZ_CHECK(same(fuzz::receive<Codec>(stream, reads, max, big), whole, json));

  std::string wire;  // the payloads re-encoded the way channel::queue does it
  for (std::size_t i = 0; i < whole.payloads.size(); ++i) {
    const auto at = Codec::begin(wire);
    wire += whole.payloads[i];
    FUZZ_CHECK(Codec::payload_size(wire, at) == whole.payloads[i].size());
    FUZZ_CHECK(Codec::finish(wire, at, whole.control[i]));
  }
  FUZZ_CHECK(wire == stream.substr(0, whole.consumed));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::reader in(data, size);
  const auto flags = in.byte();
  const std::size_t b16 = in.byte() | std::size_t{in.byte()} << 8;
  std::size_t max = b16;
  if ((flags >> 1 & 3) == 2) max = std::numeric_limits<std::size_t>::max();
  if ((flags >> 1 & 3) == 3) max = 0xFFFFFFFFu - b16;
  const auto big_byte = in.byte();
  const std::size_t big = big_byte ? big_byte : std::numeric_limits<std::size_t>::max();
  std::vector<std::size_t> reads(in.byte() % 17);
  for (auto& r : reads) r = std::size_t{in.byte()} + 1;
  const auto stream = in.rest();
  if (flags & 1) check<json_lines>(stream, reads, max, big);
  else check<length_prefixed>(stream, reads, max, big);
  return 0;
}
