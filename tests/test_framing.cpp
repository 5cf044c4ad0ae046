// The channel's wire formats, platform-free: frames found whole at any split of the byte
// stream, lengths at the limit and past it, zero-length frames, Node's json lines.
#include <childproc/detail/framing.hpp>
#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace cp = childproc;

// Feeds `wire` in pieces of `step` bytes and collects the payloads the codec finds.
template <class Codec>
static std::vector<std::string> parse(const std::string& wire, std::size_t step, std::size_t max = 1 << 20) {
  std::vector<std::string> out;
  std::string buffer;
  for (std::size_t at = 0; at < wire.size(); at += step) {
    buffer += wire.substr(at, step);
    for (;;) {
      const auto s = Codec::scan(buffer, max);
      if (s.what != cp::frame_scan::kind::frame) break;
      out.push_back(buffer.substr(s.header, s.size));
      buffer.erase(0, s.header + s.size + s.trailer);
    }
  }
  CHECK(buffer.empty());
  return out;
}

TEST_CASE("length_prefixed: big-endian length, then the payload") {
  std::string wire;
  CHECK(cp::length_prefixed::encode(wire, "hi"));
  CHECK(wire == std::string("\0\0\0\2hi", 6));
  wire.clear();
  CHECK(cp::length_prefixed::encode(wire, std::string(0x01020304 & 0xFFFF, 'x')));
  CHECK(wire.substr(0, 4) == std::string("\0\0\x03\x04", 4));
}

TEST_CASE("length_prefixed: every split of a stream of frames gives the same frames") {
  const std::vector<std::string> messages = {"", "a", std::string("\0\n\xff", 3), std::string(300, 'z'), "", "end"};
  std::string wire;
  for (const auto& m : messages) CHECK(cp::length_prefixed::encode(wire, m));
  for (std::size_t step = 1; step <= wire.size(); ++step) CHECK(parse<cp::length_prefixed>(wire, step) == messages);
}

TEST_CASE("length_prefixed: a frame at the limit passes, one byte more is too_large, before its payload arrives") {
  std::string wire;
  CHECK(cp::length_prefixed::encode(wire, std::string(100, 'x')));
  CHECK(cp::length_prefixed::scan(wire, 100).what == cp::frame_scan::kind::frame);
  const auto over = cp::length_prefixed::scan(wire.substr(0, 4), 99);
  CHECK(over.what == cp::frame_scan::kind::too_large);
  CHECK(over.size == 100);
  const auto huge = cp::length_prefixed::scan(std::string("\xff\xff\xff\xff", 4), 1 << 30);
  CHECK(huge.what == cp::frame_scan::kind::too_large);
  CHECK(huge.size == 0xFFFFFFFFu);
  const auto partial = cp::length_prefixed::scan(wire.substr(0, 50), 1000);
  CHECK(partial.what == cp::frame_scan::kind::need_more);
  CHECK(partial.want == 104);
  CHECK(cp::length_prefixed::scan(std::string("\0\0", 2), 10).what == cp::frame_scan::kind::need_more);
}

TEST_CASE("json_lines: Node's 'json' serialization, one text per line") {
  std::string wire;
  CHECK(cp::json_lines::encode(wire, R"({"a":1})"));
  CHECK(cp::json_lines::encode(wire, R"("x")"));
  CHECK(wire == "{\"a\":1}\n\"x\"\n");
  for (std::size_t step = 1; step <= wire.size(); ++step)
    CHECK(parse<cp::json_lines>(wire, step) == std::vector<std::string>{R"({"a":1})", R"("x")"});
  std::string bad;
  CHECK(!cp::json_lines::encode(bad, "two\nlines"));  // refused, nothing appended
  CHECK(bad.empty());
  CHECK(cp::json_lines::scan(std::string(11, 'x'), 10).what == cp::frame_scan::kind::too_large);
  CHECK(cp::json_lines::scan(std::string(10, 'x') + "\n", 10).what == cp::frame_scan::kind::frame);
}
