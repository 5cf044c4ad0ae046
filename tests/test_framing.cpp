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
  CHECK(cp::encode_frame<cp::length_prefixed>(wire, "hi"));
  CHECK(wire == std::string("\0\0\0\2hi", 6));
  wire.clear();
  CHECK(cp::encode_frame<cp::length_prefixed>(wire, std::string(0x01020304 & 0xFFFF, 'x')));
  CHECK(wire.substr(0, 4) == std::string("\0\0\x03\x04", 4));
}

TEST_CASE("length_prefixed: every split of a stream of frames gives the same frames") {
  const std::vector<std::string> messages = {"", "a", std::string("\0\n\xff", 3), std::string(300, 'z'), "", "end"};
  std::string wire;
  for (const auto& m : messages) CHECK(cp::encode_frame<cp::length_prefixed>(wire, m));
  for (std::size_t step = 1; step <= wire.size(); ++step) CHECK(parse<cp::length_prefixed>(wire, step) == messages);
}

TEST_CASE("length_prefixed: a frame at the limit passes, one byte more is too_large, before its payload arrives") {
  std::string wire;
  CHECK(cp::encode_frame<cp::length_prefixed>(wire, std::string(100, 'x')));
  CHECK(cp::length_prefixed::scan(wire, 100).what == cp::frame_scan::kind::frame);
  const auto over = cp::length_prefixed::scan(wire.substr(0, 4), 99);
  CHECK(over.what == cp::frame_scan::kind::too_large);
  CHECK(over.size == 100);
  const auto huge = cp::length_prefixed::scan(std::string("\x7f\xff\xff\xff", 4), 1 << 30);
  CHECK(huge.what == cp::frame_scan::kind::too_large);
  CHECK(huge.size == 0x7FFFFFFFu);
  // 4 GiB - 1: the top bit marks a control frame, which is 8 bytes long or not a frame at all.
  const auto four = cp::length_prefixed::scan(std::string("\xff\xff\xff\xff", 4), std::size_t{1} << 40);
  CHECK(four.what == cp::frame_scan::kind::garbage);
  CHECK(four.handle);
  const auto partial = cp::length_prefixed::scan(wire.substr(0, 50), 1000);
  CHECK(partial.what == cp::frame_scan::kind::need_more);
  CHECK(partial.want == 104);
  CHECK(cp::length_prefixed::scan(std::string("\0\0", 2), 10).what == cp::frame_scan::kind::need_more);
}

TEST_CASE("json_lines: Node's 'json' serialization, one text per line") {
  std::string wire;
  CHECK(cp::encode_frame<cp::json_lines>(wire, R"({"a":1})"));
  CHECK(cp::encode_frame<cp::json_lines>(wire, R"("x")"));
  CHECK(wire == "{\"a\":1}\n\"x\"\n");
  for (std::size_t step = 1; step <= wire.size(); ++step)
    CHECK(parse<cp::json_lines>(wire, step) == std::vector<std::string>{R"({"a":1})", R"("x")"});
  std::string bad;
  CHECK(!cp::encode_frame<cp::json_lines>(bad, "two\nlines"));  // refused, nothing appended
  CHECK(bad.empty());
  CHECK(cp::json_lines::scan(std::string(11, 'x'), 10).what == cp::frame_scan::kind::too_large);
  CHECK(cp::json_lines::scan(std::string(10, 'x') + "\n", 10).what == cp::frame_scan::kind::frame);
}

TEST_CASE("length_prefixed: control frames carry 8 to 1024 bytes and are marked by the length's top bit") {
  std::string wire;
  const std::size_t at = cp::length_prefixed::begin(wire);
  wire.append("\1\0\0\0\0\0\0\0", 8);
  CHECK(cp::length_prefixed::finish(wire, at, true));
  CHECK(wire.substr(0, 4) == std::string("\x80\0\0\x08", 4));
  CHECK(cp::encode_frame<cp::length_prefixed>(wire, "msg"));
  const auto control = cp::length_prefixed::scan(wire, 1);  // the limit is for messages, not control frames
  CHECK(control.what == cp::frame_scan::kind::frame);
  CHECK(control.handle);
  CHECK(control.size == 8);
  const auto next = cp::length_prefixed::scan(std::string_view(wire).substr(12), 10);
  CHECK(next.what == cp::frame_scan::kind::frame);
  CHECK(!next.handle);
  CHECK(next.size == 3);
  // A control frame of another size cannot be made and is not a frame when received.
  for (std::size_t size : {0, 7, 1025}) {
    std::string bad;
    const std::size_t b = cp::length_prefixed::begin(bad);
    bad.append(size, 'x');
    CHECK(!cp::length_prefixed::finish(bad, b, true));
    CHECK(bad.empty());
  }
  CHECK(cp::length_prefixed::scan(std::string("\x80\0\0\x04" "1234", 8), 100).what == cp::frame_scan::kind::garbage);
  CHECK(cp::length_prefixed::scan(std::string("\x80\0\x04\x01", 4), 1 << 20).what == cp::frame_scan::kind::garbage);
  std::string largest;
  const std::size_t l = cp::length_prefixed::begin(largest);
  largest.append(1024, 'x');
  CHECK(cp::length_prefixed::finish(largest, l, true));
  CHECK(cp::length_prefixed::scan(largest, 10).what == cp::frame_scan::kind::frame);
  // Node's json lines carry no handles.
  CHECK(!cp::json_lines::carries_handles);
  std::string j;
  CHECK(!cp::json_lines::finish(j, cp::json_lines::begin(j), true));
}

// Feeds `wire` to a libuv frame reader in pieces of `step` bytes; the data it keeps, in order.
static std::string strip_all(const std::string& wire, std::size_t step, cp::uv_frames::reader& r) {
  std::string data;
  for (std::size_t at = 0; at < wire.size(); at += step) {
    std::string piece = wire.substr(at, step);
    const std::size_t kept = r.strip(piece.data(), piece.size());
    data.append(piece, 0, kept);
  }
  return data;
}

static std::string uv_frame(std::string_view data) {
  std::string out;
  const std::size_t at = cp::uv_frames::begin(out);
  out.append(data);
  REQUIRE(cp::uv_frames::finish(out, at));
  return out;
}

TEST_CASE("uv_frames: libuv's 16-byte header, little-endian, as Node's pipe carries it on Win32") {
  CHECK(uv_frame("ab\n") == std::string("\x01\0\0\0\0\0\0\0\x03\0\0\0\0\0\0\0ab\n", 19));
  CHECK(uv_frame("") == std::string(16, '\0'));  // no data: no data flag, length 0
  std::string big(70000, 'x');
  const std::string h = uv_frame(big).substr(0, 16);
  CHECK(h == std::string("\x01\0\0\0\0\0\0\0\x70\x11\x01\0\0\0\0\0", 16));
}

TEST_CASE("uv_frames: every split of a stream of frames gives back the data alone, in order") {
  const std::vector<std::string> lines = {"{\"a\":1}\n", "", "\"x\"\n", std::string(1000, 'y') + "\n", "2\n"};
  std::string wire, want;
  for (const auto& l : lines) {
    wire += uv_frame(l);
    want += l;
  }
  // A frame with a socket's description before its data (Node's NODE_HANDLE on Win32), and one
  // with a server's and no data: each description is gathered whole, with where its frame's
  // data lies in the stream of data.
  std::string info(cp::uv_frames::info_size, '\0'), info2(cp::uv_frames::info_size, '\x5b');
  for (std::size_t i = 0; i < info.size(); ++i) info[i] = static_cast<char>(i * 7 + 1);
  std::string with_socket("\x07\0\0\0\0\0\0\0\x05\0\0\0\0\0\0\0", 16);
  with_socket += info + std::string("\x11\x22\x33\x44", 4) + "[1]}\n";  // a delayed error, not part of the info
  std::string server_only("\x02\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
  server_only += info2 + std::string(4, '\0');
  const std::uint64_t before = want.size();  // 1,015 bytes of data ahead of the first socket's frame
  wire += with_socket + server_only + uv_frame("end\n");
  want += "[1]}\nend\n";
  for (std::size_t step = 1; step <= wire.size(); step += step < 40 ? 1 : 97) {
    CAPTURE(step);
    cp::uv_frames::reader r;
    std::vector<cp::uv_frames::socket_xfer> got;
    std::string data;
    for (std::size_t at = 0; at < wire.size(); at += step) {
      std::string piece = wire.substr(at, step);
      data.append(piece, 0, r.strip(piece.data(), piece.size()));
      for (auto& x : r.take_sockets()) got.push_back(std::move(x));
    }
    CHECK(data == want);
    CHECK(!r.bad());
    CHECK(r.sockets() == 2);
    CHECK(r.between_frames());
    REQUIRE(got.size() == 2);
    CHECK(got[0].info == info);
    CHECK(got[0].connection);
    CHECK(got[0].start == before);
    CHECK(got[0].end == before + 5);
    CHECK(got[1].info == info2);
    CHECK(!got[1].connection);
    CHECK(got[1].start == before + 5);
    CHECK(got[1].end == before + 5);
    CHECK(r.take_sockets().empty());  // each given once
  }
  cp::uv_frames::reader half;  // a description not yet whole is not given, and the stream is mid-frame
  std::string part = wire.substr(0, wire.size() - 30);  // ends inside server_only's description
  (void)strip_all(part, part.size(), half);
  CHECK(half.take_sockets().size() == 1);
  CHECK(!half.between_frames());
  cp::uv_frames::reader cut;
  (void)strip_all(wire.substr(0, 10), 4, cut);
  CHECK(!cut.between_frames());  // inside a header
}

TEST_CASE("uv_frames: a frame that carries a socket, as libuv writes one: header, description, delayed error, data") {
  std::string out = "x";  // begun at the end of what is queued
  const std::size_t at = cp::uv_frames::begin_with_socket(out);
  CHECK(at == 1);
  CHECK(out.size() == 1 + 16 + 632);
  out += "{\"cmd\":\"NODE_HANDLE\"}\n";
  REQUIRE(cp::uv_frames::finish_with_socket(out, at, true));
  CHECK(out.substr(1, 16) == std::string("\x07\0\0\0\0\0\0\0\x16\0\0\0\0\0\0\0", 16));  // data, socket, connection; 22 bytes
  CHECK(out.substr(17, 632) == std::string(632, '\0'));  // the caller writes the description over the first 628
  std::string server;
  const std::size_t s = cp::uv_frames::begin_with_socket(server);
  REQUIRE(cp::uv_frames::finish_with_socket(server, s, false));
  CHECK(server.substr(0, 16) == std::string("\x02\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16));  // a server and no data
  cp::uv_frames::reader r;  // and the reader takes both back
  std::string wire = out.substr(1) + server;
  CHECK(wire.substr(0, r.strip(wire.data(), wire.size())) == "{\"cmd\":\"NODE_HANDLE\"}\n");
  const auto got = r.take_sockets();
  REQUIRE(got.size() == 2);
  CHECK((got[0].connection && got[0].start == 0 && got[0].end == 22));
  CHECK((!got[1].connection && got[1].start == 22 && got[1].end == 22));
}

TEST_CASE("uv_frames: a header libuv would refuse stops the reader, saying why; the data before it is kept") {
  struct bad_case {
    std::string header;
    const char* why;
  };
  const bad_case cases[] = {
      {std::string("\x09\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0", 16), "unknown flags"},
      {std::string("\x01\0\0\0\0\0\0\0\x01\0\0\0\x01\0\0\0", 16), "its last word is not zero"},
      {std::string("\x05\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0", 16), "a connection flag without a socket"},
      {std::string("\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0", 16), "a length without the data flag"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.why);
    cp::uv_frames::reader r;
    std::string wire = uv_frame("ok\n") + c.header + "z";
    const std::size_t kept = r.strip(wire.data(), wire.size());
    CHECK(wire.substr(0, kept) == "ok\n");
    CHECK(r.bad());
    CHECK(std::string(r.why()) == c.why);
  }
}
