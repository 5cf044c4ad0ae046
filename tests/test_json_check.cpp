// The check a message for a Node peer passes before it is sent: exactly one JSON text, UTF-8, on
// one line; and whether it is one of Node's own ("cmd": "NODE_..."). Node kills itself on anything
// its JSON.parse refuses, so every refusal here is a crash avoided.
#include <childproc/detail/json_check.hpp>

#include <doctest/doctest.h>

#include <string>

namespace cpd = childproc::detail;
using kind = cpd::json_verdict::kind;

namespace {
kind of(const std::string& t) { return cpd::check_json_message(t).what; }
std::size_t at(const std::string& t) { return cpd::check_json_message(t).at; }
// The verdict's flag, checked against the receive side's shortcut, which must agree on every text.
bool internal(const std::string& t) {
  const bool full = cpd::check_json_message(t).internal;
  CHECK(cpd::is_node_internal(t) == full);
  return full;
}
}  // namespace

TEST_CASE("what JSON.stringify makes passes") {
  for (const char* ok : {R"({"n":12})", R"([1,2,"three",null,true,false])", R"("x")", "0", "-0.5e+10", "1E3",
                         R"({"a":{"b":[{}, []]}})", R"("\u00e9\"\\\/\b\f\n\r\t")", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"",
                         " {\"spaced\" : [ 1 , 2 ] } ", R"("\ud800")", "{}", "[]"})
    CHECK_MESSAGE(of(ok) == kind::ok, ok);
}

TEST_CASE("everything JSON.parse would throw on is refused, with where") {
  CHECK(of("") == kind::empty);
  CHECK(of("   ") == kind::empty);
  CHECK(of("{") == kind::bad_syntax);
  CHECK(of("{\"a\":}") == kind::bad_syntax);
  CHECK(of("{\"a\" 1}") == kind::bad_syntax);
  CHECK(of("{a:1}") == kind::bad_syntax);
  CHECK(of("[1,]") == kind::bad_syntax);
  CHECK(of("{\"a\":1,}") == kind::bad_syntax);
  CHECK(of("01") == kind::trailing);
  CHECK(of("1.") == kind::bad_syntax);
  CHECK(of("-") == kind::bad_syntax);
  CHECK(of(".5") == kind::bad_syntax);
  CHECK(of("+1") == kind::bad_syntax);
  CHECK(of("1e") == kind::bad_syntax);
  CHECK(of("tru") == kind::bad_syntax);
  CHECK(of("'x'") == kind::bad_syntax);
  CHECK(of("\"\\x\"") == kind::bad_syntax);
  CHECK(of("\"\\u12g4\"") == kind::bad_syntax);
  CHECK(of("\"tab\there\"") == kind::bad_syntax);  // a raw control character in a string
  CHECK(of("\"open") == kind::bad_syntax);
  CHECK(of("NaN") == kind::bad_syntax);
  CHECK(of("1 2") == kind::trailing);
  CHECK(at("1 2") == 2);
  CHECK(of("{} {}") == kind::trailing);
  CHECK(of("{}x") == kind::trailing);
  CHECK(at("[1,2,x]") == 5);
  CHECK(of(std::string("\"a\0b\"", 5)) == kind::bad_syntax);
}

TEST_CASE("a raw line feed anywhere is refused: Node reads one message per line") {
  CHECK(of("{\n}") == kind::newline);
  CHECK(at("{\n}") == 1);
  CHECK(of("1\n") == kind::newline);
  CHECK(of("\"a\nb\"") == kind::newline);
  CHECK(of("\"a\\nb\"") == kind::ok);  // the escape is fine
  CHECK(of("{\r}") == kind::ok);       // a carriage return is whitespace, and no line end for Node
}

TEST_CASE("strings must be UTF-8: overlong forms, surrogates, stray bytes and cut sequences are refused") {
  for (const char* bad : {"\"\xc0\xaf\"", "\"\xe0\x80\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\x80\"",
                          "\"\xff\"", "\"\xc3\"", "\"\xe2\x82\"", "\"\xc3(\""})
    CHECK(of(bad) == kind::bad_utf8);
  CHECK(at("\"ab\xff\"") == 3);
  CHECK(of("\xef\xbb\xbf{}") == kind::bad_syntax);  // a byte order mark outside a string
}

TEST_CASE("deep nesting is checked without recursion, up to 4096 levels") {
  const std::string deep = std::string(4096, '[') + std::string(4096, ']');
  CHECK(of(deep) == kind::ok);
  const std::string deeper = std::string(4097, '[') + std::string(4097, ']');
  CHECK(of(deeper) == kind::too_deep);
  CHECK(at(deeper) == 4096);
  std::string objects;
  for (int i = 0; i < 4000; ++i) objects += "{\"a\":";
  objects += "1" + std::string(4000, '}');
  CHECK(of(objects) == kind::ok);
  CHECK(of(std::string(100000, '[')) == kind::too_deep);
}

TEST_CASE("Node's own messages: a top-level object whose last \"cmd\" is a string of 6+ characters starting NODE_") {
  CHECK(internal(R"({"cmd":"NODE_HANDLE_ACK"})"));
  CHECK(internal(R"({"a":1,"cmd":"NODE_X","b":[2]})"));
  CHECK(internal(R"({"c\u006dd":"\u004eODE_X"})"));  // escapes decode as JSON.parse does
  CHECK(!internal(R"({"cmd":"NODE_"})"));           // not longer than the prefix
  CHECK(!internal(R"({"cmd":"node_x"})"));
  CHECK(!internal(R"({"cmd":5})"));
  CHECK(!internal(R"({"cmd":{"x":"NODE_X"}})"));
  CHECK(!internal(R"({"x":{"cmd":"NODE_X"}})"));  // not at the top
  CHECK(!internal(R"([{"cmd":"NODE_X"}])"));
  CHECK(!internal(R"("NODE_X")"));
  CHECK(!internal(R"({"cmdx":"NODE_X"})"));
  CHECK(!internal(R"({"cmd":"NODE_X","cmd":"other"})"));  // JSON.parse keeps the last
  CHECK(internal(R"({"cmd":"other","cmd":"NODE_X"})"));
  CHECK(!internal(R"({"cmd":"NODE_X","cmd":null})"));
  CHECK(internal(" \t{\"cmd\":\"NODE_X\"}"));  // leading whitespace
  CHECK(!internal(R"({"cmd":"NODE_X")"));       // cut off: not JSON, so not Node's either
  CHECK(!internal(R"({"cmd":"NODE_X"}x)"));
}

// What a received NODE_HANDLE message is made of: the user's message is its "msg" member.
static std::string msg_of(const std::string& t) {
  const auto v = cpd::check_received(t);
  REQUIRE(v.what == cpd::json_verdict::kind::ok);
  REQUIRE(v.has_msg);
  return t.substr(v.msg_at, v.msg_size);
}

TEST_CASE("Node's handle messages: cmd NODE_HANDLE, and the exact text of the outermost \"msg\"") {
  CHECK(cpd::check_received(R"({"cmd":"NODE_HANDLE","type":"net.Native","msg":{"a":[1,{"msg":2}]}})").handle);
  CHECK(msg_of(R"({"cmd":"NODE_HANDLE","type":"net.Native","msg":{"a":[1,{"msg":2}]}})") == R"({"a":[1,{"msg":2}]})");
  CHECK(msg_of(R"({"msg": "x\"y" ,"cmd":"NODE_HANDLE"})") == R"("x\"y")");
  CHECK(msg_of(R"({"cmd":"NODE_HANDLE","msg":12.5e3})") == "12.5e3");
  CHECK(msg_of(R"({"cmd":"NODE_HANDLE","msg":[]})") == "[]");
  CHECK(msg_of(R"({"cmd":"NODE_HANDLE","msg":{}})") == "{}");
  CHECK(msg_of(R"({"cmd":"NODE_HANDLE","msg":null,"msg":[true]})") == "[true]");  // the last one, as JSON.parse
  CHECK(msg_of(R"({"cmd":"NODE_HANDLE","m\u0073g":"esc"})") == R"("esc")");     // keys decode
  CHECK(cpd::check_received(R"({"cmd":"NODE_HANDLE"})").handle);
  CHECK(!cpd::check_received(R"({"cmd":"NODE_HANDLE"})").has_msg);
  CHECK(!cpd::check_received(R"({"cmd":"NODE_HANDLE_ACK"})").handle);  // internal, but not a handle
  CHECK(cpd::check_received(R"({"cmd":"NODE_HANDLE_ACK"})").internal);
  CHECK(!cpd::check_received(R"({"cmd":"NODE_HANDLEX"})").handle);
  CHECK(!cpd::check_received(R"({"cmd":"NODE_HANDL"})").handle);
  CHECK(cpd::check_received(R"({"cmd":"\u004eODE_HANDLE","msg":1})").handle);
  CHECK(!cpd::check_received(R"({"x":{"cmd":"NODE_HANDLE","msg":1}})").handle);  // not at the top
  CHECK(!cpd::check_received(R"({"x":{"msg":1}})").has_msg);
  CHECK(!cpd::check_received(R"({"cmd":"NODE_HANDLE","msg":1)").handle);  // not JSON: nothing
  CHECK(!cpd::check_received(R"({"msg":1})").has_msg);  // an ordinary message is not parsed
}

static std::string key_of(const std::string& t) {
  const auto v = cpd::check_received(t);
  REQUIRE(v.what == cpd::json_verdict::kind::ok);
  REQUIRE(v.has_key);
  return t.substr(v.key_at, v.key_size);
}

TEST_CASE("a Node server's socket bookkeeping: NODE_SOCKET_GET_COUNT, NODE_SOCKET_NOTIFY_CLOSE, and the text of \"key\"") {
  const auto count = cpd::check_received(R"({"cmd":"NODE_SOCKET_GET_COUNT","key":"4:127.0.0.1:8000"})");
  CHECK(count.internal);
  CHECK(count.get_count);
  CHECK(!count.notify_close);
  CHECK(!count.handle);
  const auto close = cpd::check_received(R"({"key":"k","cmd":"NODE_SOCKET_NOTIFY_CLOSE"})");
  CHECK(close.internal);
  CHECK(close.notify_close);
  CHECK(!close.get_count);
  CHECK(!close.handle);
  CHECK(key_of(R"({"cmd":"NODE_SOCKET_GET_COUNT","key":"4:127.0.0.1:8000"})") == R"("4:127.0.0.1:8000")");
  CHECK(key_of(R"({"cmd":"NODE_SOCKET_GET_COUNT","key":"a\"b\\c"})") == R"("a\"b\\c")");
  CHECK(key_of(R"({"cmd":"NODE_SOCKET_GET_COUNT","key":1,"k\u0065y":"last"})") == R"("last")");  // the last one
  CHECK(key_of(R"({"cmd":"NODE_HANDLE","type":"net.Socket","msg":{"key":"inner"},"key":["x",{}]})") == R"(["x",{}])");
  CHECK(msg_of(R"({"cmd":"NODE_HANDLE","type":"net.Socket","msg":{"key":"inner"},"key":["x",{}]})") == R"({"key":"inner"})");
  CHECK(!cpd::check_received(R"({"cmd":"NODE_SOCKET_GET_COUNT","x":{"key":"k"}})").has_key);  // not at the top
  // Near misses: internal (skipped), but neither command.
  for (const char* t : {R"({"cmd":"NODE_SOCKET_GET_COUN"})", R"({"cmd":"NODE_SOCKET_GET_COUNTX"})", R"({"cmd":"NODE_SOCKET_COUNT"})",
                        R"({"cmd":"NODE_SOCKET_NOTIFY_CLOSE_"})", R"({"cmd":"NODE_SOCKET_ALL_CLOSED"})"}) {
    const auto v = cpd::check_received(t);
    CHECK(v.internal);
    CHECK(!v.get_count);
    CHECK(!v.notify_close);
  }
  CHECK(cpd::check_received(R"({"cmd":"NODE_SOCKET_\u004eOTIFY_CLOSE"})").notify_close);  // decoded, as JSON.parse
  CHECK(!cpd::check_received(R"({"cmd":"NODE_SOCKET_GET_COUNT","cmd":"NODE_X"})").get_count);  // the last cmd counts
  CHECK(!cpd::check_received(R"({"cmd":"NODE_SOCKET_GET_COUNT","cmd":{}})").internal);
  CHECK(!cpd::check_received(R"([{"cmd":"NODE_SOCKET_GET_COUNT"}])").internal);
}

TEST_CASE("Node's answers to a handle: NODE_HANDLE_ACK and NODE_HANDLE_NACK, told apart from each other and from near misses") {
  const auto ack = cpd::check_received(R"({"cmd":"NODE_HANDLE_ACK"})");
  CHECK((ack.internal && ack.ack && !ack.nack && !ack.handle));
  const auto nack = cpd::check_received(R"({"cmd":"NODE_HANDLE_NACK"})");
  CHECK((nack.internal && nack.nack && !nack.ack && !nack.handle));
  CHECK(cpd::check_received(R"({"x":[1],"cmd":"NODE_HANDLE_\u0041CK"})").ack);  // decoded, anywhere in the object
  for (const char* t : {R"({"cmd":"NODE_HANDLE_AC"})", R"({"cmd":"NODE_HANDLE_ACKS"})", R"({"cmd":"NODE_HANDLE_ACK","cmd":"NODE_X"})",
                        R"({"msg":{"cmd":"NODE_HANDLE_ACK"}})", R"(["NODE_HANDLE_ACK"])", R"({"cmd":"node_handle_ack"})"}) {
    CAPTURE(t);
    const auto v = cpd::check_received(t);
    CHECK(!v.ack);
    CHECK(!v.nack);
  }
}

TEST_CASE("json_falsy: the values JavaScript's `if` takes as false") {
  for (const char* v : {"\"\"", "null", "false", "0", "-0", "0.0", "0e5", "-0.000E-3"}) CHECK(cpd::json_falsy(v));
  for (const char* v : {"\"0\"", "\" \"", "true", "1", "-0.1", "0.01e2", "10", "[]", "{}", "\"false\""}) CHECK(!cpd::json_falsy(v));
}
