// Win32-only behaviour of spawn: quoting through the real CommandLineToArgvW and through the
// child's argv, .bat/.cmd injection vectors, PATHEXT, the environment block, job objects.
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <shellapi.h>  // CommandLineToArgvW

#include <filesystem>
#include <fstream>
#include <random>

static std::string to_utf8(const wchar_t* w) {
  std::u16string s(w, w + wcslen(w));
  return cp::detail::utf16_to_utf8(s);
}

static std::string temp_dir() {
  auto d = std::filesystem::temp_directory_path() / ("childproc_win32_" + std::to_string(GetCurrentProcessId()));
  std::filesystem::create_directories(d);
  return d.string();
}

static std::string out_of(const std::vector<std::string>& args, cp::options o = {}) {
  auto r = cp::exec_file(child_path(), args, o);
  REQUIRE(r);
  CHECK(r->ok());
  return r->out;
}

TEST_CASE("quoting round trip through the real CommandLineToArgvW") {
  std::mt19937 rng(2024);
  const std::string alphabet = "ab \t\"\\\\\\x&|^%!'\xC3\xA9";
  for (int n = 0; n < 3000; ++n) {
    std::vector<std::string> argv = {"prog"};
    for (int k = 0, count = static_cast<int>(rng() % 4) + 1; k < count; ++k) {
      std::string a;
      for (int i = 0, len = static_cast<int>(rng() % 9); i < len; ++i) {
        const char c = alphabet[rng() % (alphabet.size() - 2)];
        a += c;
        if (rng() % 16 == 0) a += "\xC3\xA9";  // é, two bytes: kept whole
      }
      argv.push_back(a);
    }
    auto line = cp::detail::make_command_line(argv, false);
    REQUIRE(line);
    auto wide = cp::detail::utf8_to_utf16(*line).value();
    std::wstring w(wide.begin(), wide.end());
    int count = 0;
    wchar_t** parsed = CommandLineToArgvW(w.c_str(), &count);
    REQUIRE(parsed);
    std::vector<std::string> back;
    for (int i = 0; i < count; ++i) back.push_back(to_utf8(parsed[i]));
    LocalFree(parsed);
    REQUIRE_MESSAGE(back == argv, *line);
    REQUIRE(cp::detail::parse_command_line(*line) == argv);
  }
}

TEST_CASE("quoting round trip through the child's argv") {
  std::mt19937 rng(7);
  const std::string alphabet = "ab \t\"\\\\\\x&|^%!'";
  for (int n = 0; n < 100; ++n) {
    std::vector<std::string> args = {"args"};
    std::vector<std::string> expect;
    for (int k = 0; k < 6; ++k) {
      std::string a;
      for (int i = 0, len = static_cast<int>(rng() % 10); i < len; ++i) a += alphabet[rng() % alphabet.size()];
      args.push_back(a);
      expect.push_back(a);
    }
    std::string joined;
    for (const auto& e : expect) (joined += e) += '\0';
    REQUIRE(out_of(args) == joined);
  }
}

TEST_CASE("windows_verbatim_arguments passes the line unquoted") {
  CHECK(out_of({"args", "\"a b\"", "c"}, {.windows_verbatim_arguments = true}) == nul_joined({"a b", "c"}));
  CHECK(out_of({"args", "\"a b\"", "c"}) == nul_joined({"\"a b\"", "c"}));
}

TEST_CASE("invalid UTF-8 in an argument is an error, not a mangled argument") {
  auto r = cp::spawn(child_path(), {"args", "ok\xC3"});
  REQUIRE(!r);
  CHECK(r.error() == cp::errc::invalid_argument);
  CHECK(r.error().message() == "spawn " + child_path() + ": argument 2 invalid UTF-8 at byte 2");
}

TEST_CASE("Unicode arguments, environment and cwd") {
  CHECK(out_of({"args", "h\xC3\xA9llo \xE2\x82\xAC", "\xF0\x9F\x98\x80"}) == nul_joined({"h\xC3\xA9llo \xE2\x82\xAC", "\xF0\x9F\x98\x80"}));
  CHECK(out_of({"env", "CP_\xC3\x89"}, {.env = cp::environment::extend({{"CP_\xC3\x89", "v\xE2\x82\xAC"}})}) == "v\xE2\x82\xAC");
  const auto dir = std::filesystem::path(temp_dir()) / std::filesystem::path(u8"d\u00e9j\u00e0");
  std::filesystem::create_directories(dir);
  const auto u8 = dir.u8string();
  const std::string utf8_dir(u8.begin(), u8.end());
  CHECK(out_of({"cwd"}, {.cwd = utf8_dir}) == utf8_dir);
  std::filesystem::remove_all(dir);
}

TEST_CASE("environment: names compare without case; a replaced block keeps what Windows needs") {
  set_env("CP_MIXED", "parent");
  CHECK(out_of({"env", "CP_MIXED"}, {.env = cp::environment::extend({{"cp_mixed", "child"}})}) == "child");
  auto r = cp::exec_file(child_path(), {"env", "CP_MIXED"}, {.env = cp::environment::extend({}, {"Cp_Mixed"})});
  REQUIRE(r);
  CHECK(r->status.exit_code() == 3);
  const auto all = out_of({"env-all"}, {.env = cp::environment::replace({{"ONLY", "1"}})});
  CHECK(all.find(std::string("ONLY=1") + '\0') != std::string::npos);
  CHECK((all.find("SYSTEMROOT=") != std::string::npos || all.find("SystemRoot=") != std::string::npos));
}

TEST_CASE("the environment block is sorted without case") {
  const auto all = out_of({"env-all"}, {.env = cp::environment::replace({{"b", "2"}, {"A", "1"}, {"C", "3"}})});
  const auto a = all.find("A=1"), b = all.find("b=2"), c = all.find("C=3");
  REQUIRE(a != std::string::npos);
  CHECK(a < b);
  CHECK(b < c);
}

TEST_CASE("PATH + PATHEXT: a name without extension finds the .exe") {
  const auto dir = std::filesystem::path(child_path()).parent_path().string();
  CHECK(out_of({"exit", "0"}, {}).empty());
  auto r = cp::exec_file("child", {"args", "x"}, {.env = cp::environment::extend({{"PATH", "C:\\nonexistent;" + dir}})});
  REQUIRE(r);
  CHECK(r->out == nul_joined({"x"}));
  auto missing = cp::spawn("child", {}, {.env = cp::environment::extend({{"PATH", "C:\\nonexistent"}})});
  REQUIRE(!missing);
  CHECK(missing.error().message() == "spawn child ENOENT");
}

struct batch_fixture {
  std::string dir = temp_dir();
  std::string bat = dir + "\\echoargs.bat";
  batch_fixture() { std::ofstream(bat) << "@echo off\r\necho [%*]\r\n"; }
  ~batch_fixture() { std::filesystem::remove_all(dir); }
};

TEST_CASE_FIXTURE(batch_fixture, "a .bat file runs through cmd.exe with each argument quoted") {
  auto r = cp::exec_file(bat, {"a b", "c"});
  REQUIRE(r);
  CHECK(r->out == "[\"a b\" \"c\"]\r\n");
}

TEST_CASE_FIXTURE(batch_fixture, "a .cmd file found through PATHEXT takes the same path") {
  std::ofstream(dir + "\\tool.cmd") << "@echo off\r\necho [%*]\r\n";
  auto r = cp::exec_file("tool", {"x&y"}, {.env = cp::environment::extend({{"PATH", dir}})});
  REQUIRE(r);
  CHECK(r->out == "[\"x&y\"]\r\n");
}

TEST_CASE_FIXTURE(batch_fixture, "injection vectors reach the batch file as literal text or are refused") {
  // Literal: inside quotes, cmd.exe gives & ^ ! ( ) | < > no meaning, and /v:OFF keeps !x! as is.
  for (const char* arg : {"&calc.exe", "^", "!x!", "a|b", "(x)", "<in>"}) {
    auto r = cp::exec_file(bat, {arg});
    REQUIRE(r);
    CHECK_MESSAGE(r->out == std::string("[\"") + arg + "\"]\r\n", arg);
  }
  // Refused: what cmd.exe would still interpret inside quotes.
  for (const char* arg : {"\"&calc.exe", "%CMDCMDLINE:~-1%&", "trailing\"", "%PATH%", "a\r\nb"}) {
    auto r = cp::spawn(bat, {arg});
    REQUIRE_MESSAGE(!r, arg);
    CHECK(r.error() == cp::errc::invalid_argument);
    CHECK(r.error().message().find("which cmd.exe would interpret: refused for a batch file") != std::string::npos);
  }
}

TEST_CASE_FIXTURE(batch_fixture, "a batch file forwarding %* to a program: it gets the same arguments (Rust's vectors)") {
  // The forwarded program is the test helper: its `args` mode prints each argument and a NUL.
  const std::string fwd = dir + "\\forward.bat";
  std::ofstream(fwd) << "@\"" << child_path() << "\" args %*\r\n";
  const std::vector<std::vector<std::string>> vectors = {
      {"a", "b"}, {"c is for cat", "d is for dog"}, {"\\", "\\"}, {">file.txt"}, {"whoami.exe"}, {"&a.exe"},
      {"&echo hello "}, {"&echo hello", "&whoami", ">file.txt"}, {"!TMP!"}, {"key=value"}, {"key = value"},
      {"", "a=b"}, {"key\\=value"}, {"x\\", " --evil "}, {"x\\\\", "y"}, {"\\\\server\\share\\", "z"}, {"a b\\\\\\"}};
  for (const auto& args : vectors) {
    auto r = cp::exec_file(fwd, args, {.cwd = dir});
    REQUIRE(r);
    std::string want;
    for (const auto& a : args) (want += a) += '\0';
    CHECK_MESSAGE(r->out == want, args.front());
    CHECK(!std::filesystem::exists(dir + "\\file.txt"));  // no redirection ran
  }
  // The vectors holding '"' or '%' are refused before anything runs.
  for (const char* arg : {"\"", "key=\"foo bar\"", "%PATH%", "%%cd:~,%", "abc\"&echo hello", "hello^\"world"}) {
    auto r = cp::spawn(fwd, {arg});
    REQUIRE_MESSAGE(!r, arg);
    CHECK(r.error() == cp::errc::invalid_argument);
  }
}

TEST_CASE_FIXTURE(batch_fixture, "a.bat. and a.bat with a trailing space are batch files too") {
  for (const std::string& name : {bat + ".", bat + " "}) {
    auto ok = cp::exec_file(name, {"x y"});
    REQUIRE_MESSAGE(ok, name);
    CHECK(ok->out == "[\"x y\"]\r\n");
    auto refused = cp::spawn(name, {"%PATH%"});
    REQUIRE(!refused);
    CHECK(refused.error() == cp::errc::invalid_argument);
  }
}

TEST_CASE("uid and gid are refused on Win32") {
  auto r = cp::spawn(child_path(), {"exit", "0"}, {.uid = 0u});
  REQUIRE(!r);
  CHECK(r.error() == std::errc::not_supported);
  CHECK(r.error().message() == "spawn " + child_path() + ": uid and gid are POSIX options ENOTSUP");
}

TEST_CASE("kill ends the whole tree: no grandchild survives") {
  // grandchild-stay: the child lives on after "ready" (with "grandchild" it exits then, and the
  // kill raced its exit: an ESRCH, or its own exit code 0 instead of SIGTERM, 9 runs in 10 busy).
  auto p = cp::spawn(child_path(), {"grandchild-stay", "100000"}, {.stdio = {cp::ignore, cp::pipe, cp::ignore}}).value();
  char buf[6];
  REQUIRE(p.out().read_some(buf).value() == 6);  // "ready\n": the grandchild runs and holds stdout
  REQUIRE(p.kill());
  CHECK(p.wait()->signal() == SIGTERM);
  // With the grandchild dead too, stdout reaches end of file at once.
  auto rest = p.out().read_all();
  REQUIRE(rest);
  CHECK(rest->empty());
}

TEST_CASE("an unsupported signal is ENOSYS; signal 0 checks liveness") {
  auto p = cp::spawn(child_path(), {"sleep", "100000"}, {.stdio = {cp::ignore, cp::ignore, cp::ignore}}).value();
  CHECK(p.kill(0));
  auto k = p.kill(10);
  REQUIRE(!k);
  CHECK(k.error() == std::errc::function_not_supported);
  CHECK(k.error().message() == "kill ENOSYS");
}

TEST_CASE("extra stdio entries reach the child's C runtime as fd 3") {
  auto p = cp::spawn(child_path(), {"write-fd", "3", "via fd 3"}, {.stdio = {cp::ignore, cp::ignore, cp::inherit, cp::pipe}});
  REQUIRE(p);
  CHECK(p->stdio(3).read_all().value() == "via fd 3");
  CHECK(p->wait()->success());
}

TEST_CASE("kill after a natural exit is ESRCH and keeps the real exit code") {
  auto p = cp::spawn(child_path(), {"exit", "1"}, {.stdio = {cp::ignore, cp::ignore, cp::ignore}}).value();
  while (WaitForSingleObject(p.handle(), 10) == WAIT_TIMEOUT) {}
  auto k = p.kill();
  REQUIRE(!k);
  CHECK(k.error() == std::errc::no_such_process);
  CHECK(p.wait()->exit_code() == 1);
}
