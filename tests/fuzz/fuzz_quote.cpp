// SPDX-License-Identifier: BSL-1.0
// Win32 command lines. argv -> make_command_line -> parse_command_line must give argv back
// exactly (argv[0] without '"'). The line also goes through a second parser modelled on
// CommandLineToArgvW as Wine implements it, whose rule for "" inside quotes differs from the
// in-tree one (which follows the post-2008 C runtime): quoting must not depend on that rule.
// For .bat files: what cmd.exe would interpret inside quotes is an error naming the first
// offender, never a line; a line that is made quotes every argument so that cmd.exe sees each
// one whole.
//
// Input: flags (bit 0: batch file, bit 1: verbatim), a separator, then the pieces: argv, or for a
// batch file comspec, script, then the arguments.
#include "fuzz.hpp"

#include <childproc/detail/quote.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>

namespace {

using namespace childproc::detail;

// CommandLineToArgvW's arguments after argv[0] (Wine's shell32): quotes toggle; after an unescaped
// quote, a run of quotes yields one '"' per three counted with the opening one.
std::vector<std::string> wine_args(std::string_view s) {
  std::vector<std::string> argv;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    if (i == s.size()) break;
    std::string d;
    int qcount = 0, bcount = 0;
    while (i < s.size() && !((s[i] == ' ' || s[i] == '\t') && qcount == 0)) {
      if (s[i] == '\\') {
        d += s[i++], ++bcount;
      } else if (s[i] == '"') {
        if (bcount % 2 == 0) d.resize(d.size() - bcount / 2), ++qcount;
        else d.resize(d.size() - bcount / 2 - 1), d += '"';
        ++i, bcount = 0;
        for (; i < s.size() && s[i] == '"'; ++i)
          if (++qcount == 3) d += '"', qcount = 0;
        if (qcount == 2) qcount = 0;
      } else {
        d += s[i++], bcount = 0;
      }
    }
    argv.push_back(std::move(d));
  }
  return argv;
}

// CommandLineToArgvW's argv[0]: between quotes when it starts with one, else up to the first
// character from U+0001 to U+0020 (so observed on Windows; Wine's isspace() is a subset), not
// only a space or a tab as in the in-tree parser.
std::string win_argv0(std::string_view s) {
  if (!s.empty() && s[0] == '"') return std::string(s.substr(1, s.find('"', 1) - 1));
  std::size_t n = 0;
  while (n < s.size() && !(s[n] >= 1 && s[n] <= ' ')) ++n;
  return std::string(s.substr(0, n));
}

void check_argv(const std::vector<std::string>& argv, bool verbatim) {
  for (std::size_t i = 1; i < argv.size(); ++i) {
    std::string q;
    append_quoted(q, argv[i]);
    const bool plain = !argv[i].empty() && argv[i].find_first_of(" \t\n\v\"") == std::string::npos;
    FUZZ_CHECK(plain ? q == argv[i] : q.size() >= 2 && q.front() == '"' && q.back() == '"');
    FUZZ_CHECK(parse_command_line("p " + q) == (std::vector<std::string>{"p", argv[i]}));
    FUZZ_CHECK(wine_args(q) == std::vector<std::string>{argv[i]});
  }
  const auto line = make_command_line(argv, verbatim);
  if (argv[0].find('"') != std::string::npos) {
    FUZZ_CHECK(!line && line.error() == childproc::errc::invalid_argument);
    return;
  }
  FUZZ_CHECK(line);
  std::string name;
  FUZZ_CHECK(append_program_name(name, argv[0]));
  FUZZ_CHECK(line->compare(0, name.size(), name) == 0);
  if (!verbatim) {
    FUZZ_CHECK(parse_command_line(*line) == argv);
    std::vector<std::string> rest(argv.begin() + 1, argv.end());
    FUZZ_CHECK(wine_args(std::string_view(*line).substr(name.size())) == rest);
    FUZZ_CHECK(win_argv0(*line) == argv[0]);
  } else {
    std::string joined = name;
    for (std::size_t i = 1; i < argv.size(); ++i) joined += ' ' + argv[i];
    FUZZ_CHECK(*line == joined);
  }
}

// What cmd.exe would still interpret inside quotes, per make_batch_command_line's comment.
bool cmd_unsafe(std::string_view s) { return s.find_first_of(std::string_view("\"%\r\n\0", 5)) != std::string_view::npos; }

void check_batch(const std::string& comspec, const std::string& script, const std::vector<std::string>& argv) {
  const auto line = make_batch_command_line(comspec, script, argv);
  std::size_t bad = 0;  // the first argument cmd.exe would interpret
  for (std::size_t i = 1; i < argv.size() && !bad; ++i)
    if (cmd_unsafe(argv[i])) bad = i;
  const std::string tail = ", which cmd.exe would interpret: refused for a batch file";
  if (cmd_unsafe(script)) {
    FUZZ_CHECK(!line && line.error() == childproc::errc::invalid_argument);
    FUZZ_CHECK(line.error().message().starts_with("the batch file name holds ") && line.error().message().ends_with(tail));
    return;
  }
  if (comspec.find('"') != std::string::npos) {
    FUZZ_CHECK(!line && line.error() == childproc::errc::invalid_argument);
    return;
  }
  if (bad) {
    FUZZ_CHECK(!line && line.error() == childproc::errc::invalid_argument);
    FUZZ_CHECK(line.error().message().starts_with("argument " + std::to_string(bad) + " holds "));
    FUZZ_CHECK(line.error().message().ends_with(tail));
    return;
  }
  FUZZ_CHECK(line);
  // cmd /s /c drops the outer quotes; then every quote opens or closes one argument, so nothing
  // between them is outside quotes but the single spaces that separate them.
  std::string head;
  FUZZ_CHECK(append_program_name(head, comspec));
  head += " /d /e:ON /v:OFF /s /c \"";
  FUZZ_CHECK(line->starts_with(head) && line->size() > head.size() && line->back() == '"');
  const std::string_view inner = std::string_view(*line).substr(head.size(), line->size() - head.size() - 1);
  FUZZ_CHECK(inner.find('%') == std::string_view::npos);
  std::vector<std::string> seen;
  bool quoted = false;
  for (std::size_t i = 0; i < inner.size(); ++i) {
    if (inner[i] == '"') {
      if (!quoted) seen.emplace_back();
      quoted = !quoted;
    } else if (quoted) {
      seen.back() += inner[i];
    } else {
      FUZZ_CHECK(inner[i] == ' ' && i > 0 && inner[i - 1] == '"' && i + 1 < inner.size() && inner[i + 1] == '"');
    }
  }
  FUZZ_CHECK(!quoted && !seen.empty() && seen[0] == script);
  // The script sees each argument with its trailing backslashes doubled...
  FUZZ_CHECK(seen.size() == argv.size());
  for (std::size_t i = 1; i < argv.size(); ++i) {
    const std::size_t tail = argv[i].size() - (argv[i].find_last_not_of('\\') + 1);
    FUZZ_CHECK(seen[i] == argv[i] + std::string(tail, '\\'));
  }
  // ...so that a program it forwards %* to parses them back exactly.
  const std::size_t rest = 2 + script.size();  // past "script"
  auto forwarded = parse_command_line("p" + std::string(inner.substr(rest)));
  FUZZ_CHECK(!forwarded.empty());
  forwarded.erase(forwarded.begin());
  FUZZ_CHECK(std::equal(forwarded.begin(), forwarded.end(), argv.begin() + 1, argv.end()));
}

// is_batch_file against its description: .bat or .cmd in any case, after trailing dots and spaces.
void check_is_batch(std::string_view p) {
  const bool claimed = is_batch_file(p);
  while (!p.empty() && (p.back() == '.' || p.back() == ' ')) p.remove_suffix(1);
  std::string ext(p.substr(p.size() < 4 ? 0 : p.size() - 4));
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  FUZZ_CHECK(claimed == (ext == ".bat" || ext == ".cmd"));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::reader in(data, size);
  const auto flags = in.byte();
  const char sep = static_cast<char>(in.byte());
  auto pieces = fuzz::split(in.rest(), sep);
  if (flags & 1) {  // comspec, script, arguments; argv[0] (the script's slot) is not used
    const std::string comspec = pieces[0];
    const std::string script = pieces.size() > 1 ? pieces[1] : "";
    const std::vector<std::string> argv(pieces.begin() + (pieces.size() > 1 ? 1 : 0), pieces.end());
    check_batch(comspec, script, argv);
    check_is_batch(script);
  } else {
    check_argv(pieces, flags & 2);
  }
  return 0;
}
