// SPDX-License-Identifier: BSL-1.0
// Payloads through a codec and back: what encodes decodes to the same payloads in order, at any
// read size; encode_frame() and begin/append/finish agree; what the codec cannot carry (a newline
// for json_lines, a control frame not of 8 to 1024 bytes or on a codec without handles) is refused
// and leaves the buffer as it was; a message over the limit is too_large where it starts, after
// every frame before it.
//
// Input: flags (bit 0: json_lines, bit 1: a limit, bit 2: pieces starting with '^' are control
// frames), the limit, a separator, a read size, then the pieces separated by the separator.
#include "receiver.hpp"

#include <cstdint>
#include <limits>
#include <type_traits>

namespace {

template <class Codec>
void check(const std::vector<std::string>& pieces, bool controls, std::size_t max, std::size_t read) {
  constexpr bool json = std::is_same_v<Codec, childproc::json_lines>;
  std::string wire;
  std::vector<std::string> sent;
  std::vector<bool> sent_control;
  for (const auto& piece : pieces) {
    const bool control = controls && piece.starts_with('^');
    const std::string_view p = std::string_view(piece).substr(control ? 1 : 0);
    // Both ways only append (what comes before is checked by decoding the whole wire below), so
    // the frame alone is compared: copying the wire at each piece made the target quadratic.
    const std::size_t before = wire.size();
    const auto at = Codec::begin(wire);
    wire += p;
    FUZZ_CHECK(Codec::payload_size(wire, at) == p.size());
    const bool ok = Codec::finish(wire, at, control);
    FUZZ_CHECK(ok == (control ? Codec::carries_handles && p.size() >= 8 && p.size() <= 1024 : !(json && p.find('\n') != p.npos)));
    if (!control) {
      std::string encoded;
      FUZZ_CHECK(childproc::encode_frame<Codec>(encoded, p) == ok && std::string_view(wire).substr(before) == encoded);
    }
    if (!ok) {
      FUZZ_CHECK(wire.size() == before);
      continue;
    }
    sent.emplace_back(p);
    sent_control.push_back(control);
  }

  std::size_t fit = 0;  // how many frames are taken before a message over the limit
  while (fit < sent.size() && (sent_control[fit] || sent[fit].size() <= max)) ++fit;
  for (const std::vector<std::size_t>& reads : {std::vector<std::size_t>{}, {read}}) {
    const auto r = fuzz::receive<Codec>(wire, reads, max);
    FUZZ_CHECK(r.payloads.size() == fit);
    FUZZ_CHECK(std::equal(r.payloads.begin(), r.payloads.end(), sent.begin()));
    FUZZ_CHECK(std::equal(r.control.begin(), r.control.end(), sent_control.begin()));
    if (fit < sent.size()) {
      FUZZ_CHECK(r.end == fuzz::kind::too_large);
      FUZZ_CHECK(json ? r.end_size > max : r.end_size == sent[fit].size());
    } else {
      FUZZ_CHECK(r.end == fuzz::kind::need_more && r.consumed == wire.size());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::reader in(data, size);
  const auto flags = in.byte();
  const auto limit = in.byte();
  const std::size_t max = flags & 2 ? limit : std::numeric_limits<std::size_t>::max();
  const char sep = static_cast<char>(in.byte());
  const std::size_t read = std::size_t{in.byte()} + 1;
  const auto pieces = fuzz::split(in.rest(), sep);
  if (flags & 1) check<childproc::json_lines>(pieces, flags & 4, max, read);
  else check<childproc::length_prefixed>(pieces, flags & 4, max, read);
  return 0;
}
