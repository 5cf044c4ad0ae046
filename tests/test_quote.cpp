// Win32 command lines: platform-free, so the quoting is checked on every OS.
#include <childproc/detail/quote.hpp>
#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it
#include <random>

namespace cp = childproc;
using namespace cp::detail;

static std::string quoted(std::string_view arg) {
  std::string s;
  append_quoted(s, arg);
  return s;
}

TEST_CASE("the quoting table") {
  CHECK(quoted("plain") == "plain");
  CHECK(quoted("") == "\"\"");
  CHECK(quoted("a b") == "\"a b\"");
  CHECK(quoted("tab\there") == "\"tab\there\"");
  CHECK(quoted("a\"b") == "\"a\\\"b\"");
  CHECK(quoted("a\\b") == "a\\b");                 // backslashes alone stay
  CHECK(quoted("a b\\") == "\"a b\\\\\"");         // trailing backslash doubled before the closing quote
  CHECK(quoted("a\\\"b") == "\"a\\\\\\\"b\"");     // a\"b -> "a\\\"b"
  CHECK(quoted("\\\\server\\share") == "\\\\server\\share");
}

TEST_CASE("the command line for argv, and the program name rules") {
  CHECK(make_command_line({"C:\\Program Files\\x.exe", "a", "b c"}, false).value() ==
        "\"C:\\Program Files\\x.exe\" a \"b c\"");
  CHECK(make_command_line({"x", "a b", "\"q\""}, true).value() == "x a b \"q\"");
  auto bad = make_command_line({"a\"b"}, false);
  REQUIRE(!bad);
  CHECK(bad.error() == cp::errc::invalid_argument);
  CHECK(bad.error().message() == "argv[0] contains a '\"', which Win32 cannot pass");
  // CommandLineToArgvW ends an unquoted program name at any character up to U+0020, so a name
  // holding a newline or another control character is quoted too (the fuzzer found it cut there).
  CHECK(make_command_line({"a\nb", "c"}, false).value() == "\"a\nb\" c");
  CHECK(make_command_line({std::string("x\x01y")}, false).value() == "\"x\x01y\"");
  CHECK(make_command_line({"plain.exe", "c"}, false).value() == "plain.exe c");
  CHECK(parse_command_line("\"a\nb\" c") == std::vector<std::string>{"a\nb", "c"});
}

TEST_CASE("the parser follows CommandLineToArgvW") {
  CHECK(parse_command_line("prog a b") == std::vector<std::string>{"prog", "a", "b"});
  CHECK(parse_command_line("\"C:\\a b\\p.exe\" x") == std::vector<std::string>{"C:\\a b\\p.exe", "x"});
  CHECK(parse_command_line("p \"a b\" c\\\\\"d e\" \\\\\\\"f") ==
        std::vector<std::string>{"p", "a b", "c\\d e", "\\\"f"});
  CHECK(parse_command_line("p \"\" \"a\"\"b\"") == std::vector<std::string>{"p", "", "a\"b"});
  CHECK(parse_command_line("p a\\b\\\\ c") == std::vector<std::string>{"p", "a\\b\\\\", "c"});
}

TEST_CASE("10,000 generated arguments survive quoting and parsing") {
  std::mt19937 rng(12345);
  const std::string alphabet = "ab \t\"\\\\\\x\n\v&|^%!'";
  for (int n = 0; n < 10000; ++n) {
    std::vector<std::string> argv = {"prog"};
    const int count = static_cast<int>(rng() % 4) + 1;
    for (int k = 0; k < count; ++k) {
      std::string a;
      const int len = static_cast<int>(rng() % 9);
      for (int i = 0; i < len; ++i) a += alphabet[rng() % alphabet.size()];
      argv.push_back(a);
    }
    auto line = make_command_line(argv, false);
    REQUIRE(line);
    REQUIRE_MESSAGE(parse_command_line(*line) == argv, *line);
  }
}

TEST_CASE("batch files are recognised in any case, with trailing dots and spaces") {
  for (const char* p : {"a.bat", "A.BAT", "x\\y.Cmd", "a.bat.", "a.bat ", "a.cmd. . "}) CHECK_MESSAGE(is_batch_file(p), p);
  for (const char* p : {"a.exe", "bat", "a.batx", "a.bat.exe", "cmd"}) CHECK_MESSAGE(!is_batch_file(p), p);
}

TEST_CASE("the cmd.exe line for a batch file quotes each argument") {
  auto line = make_batch_command_line("C:\\Windows\\system32\\cmd.exe", "C:\\t\\a.bat", {"a.bat", "x y", "&calc.exe", "^", "!x!", ""});
  REQUIRE(line);
  CHECK(*line == "C:\\Windows\\system32\\cmd.exe /d /e:ON /v:OFF /s /c \"\"C:\\t\\a.bat\" \"x y\" \"&calc.exe\" \"^\" \"!x!\" \"\"\"");
}

// Rust's windows-bat-args vectors (tests/ui/std/windows-bat-args.rs), the sets without '"', '%',
// CR or LF (those are refused here: see the next case), plus trailing-backslash ones.
static const std::vector<std::vector<std::string>> bat_vectors = {
    {"a", "b"}, {"c is for cat", "d is for dog"}, {"\\", "\\"}, {">file.txt"}, {"whoami.exe"}, {"&a.exe"},
    {"&echo hello "}, {"&echo hello", "&whoami", ">file.txt"}, {"!TMP!"}, {"key=value"}, {"key = value"},
    {"", "a=b"}, {"key\\=value"},
    // An argument ending in backslashes must not swallow its closing quote in the forwarded line.
    {"x\\", " --evil "}, {"x\\\\", "y"}, {"\\\\server\\share\\", "z"}, {"a b\\\\\\"}, {"\\"}, {"\\\\"}};

// What a batch file's %* holds for `line`: cmd /s /c strips the outer quotes, and the script's
// own quoted name comes first.
static std::string forwarded(const std::string& line, const std::string& script) {
  const std::string head = "/s /c \"\"" + script + "\"";
  const auto at = line.find(head);
  if (at == std::string::npos || line.back() != '"') return "<no script in " + line + ">";
  return line.substr(at + head.size(), line.size() - 1 - (at + head.size()));
}

TEST_CASE("a batch file that forwards %* hands a program the same arguments (trailing backslashes doubled)") {
  auto line = make_batch_command_line("cmd.exe", "a.bat", {"a.bat", "x\\", " --evil "});
  REQUIRE(line);
  CHECK(*line == "cmd.exe /d /e:ON /v:OFF /s /c \"\"a.bat\" \"x\\\\\" \" --evil \"\"");
  for (const auto& args : bat_vectors) {
    std::vector<std::string> argv{"a.bat"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto l = make_batch_command_line("cmd.exe", "a.bat", argv);
    REQUIRE(l);
    auto parsed = parse_command_line("prog" + forwarded(*l, "a.bat"));
    parsed.erase(parsed.begin());
    CHECK_MESSAGE(parsed == args, *l);
  }
}

TEST_CASE("what cmd.exe would interpret inside quotes is refused, with the reason") {
  struct row {
    std::string arg, why;
  };
  for (const auto& [arg, why] : {row{"\"&calc.exe", "'\"'"}, row{"%CMDCMDLINE:~-1%&", "'%'"}, row{"trailing\"", "'\"'"},
                                 row{"%PATH%", "'%'"}, row{"a\rb", "CR"}, row{"a\nb", "LF"}, row{std::string("a\0b", 3), "NUL"}}) {
    auto r = make_batch_command_line("cmd.exe", "a.bat", {"a.bat", "ok", arg});
    REQUIRE(!r);
    CHECK(r.error() == cp::errc::invalid_argument);
    CHECK(r.error().message() == "argument 2 holds " + why + ", which cmd.exe would interpret: refused for a batch file");
  }
  // The rest of Rust's vectors: each holds '"', '%', CR or LF, and is refused here (Rust escapes
  // '"' and '%' for cmd.exe instead; this library takes the narrower rule Node took).
  for (const char* arg : {"\"", " \"", "\"key=value\"", "key=[\"value\"]", "key=\"foo bar\"", "key=[\"my_value]",
                          "key=[\"my_value\",\"other-value\"]", "key=\"&whoami\"", "key=\"value\"=5", "key=[\">file.txt\"]",
                          "\n", "\r", "%hello", "%PATH%", "%%cd:~,%", "%PATH%PATH%", "\">file.txt", "abc\"&echo hello",
                          "123\">file.txt", "\"&echo hello&whoami.exe", "hello^\"world"}) {
    auto r = make_batch_command_line("cmd.exe", "a.bat", {"a.bat", arg});
    REQUIRE_MESSAGE(!r, arg);
    CHECK(r.error() == cp::errc::invalid_argument);
  }
  CHECK(make_batch_command_line("cmd.exe", "100%.bat", {"x"}).error().message() ==
        "the batch file name holds '%', which cmd.exe would interpret: refused for a batch file");
}
