// SPDX-License-Identifier: BSL-1.0
// Platform-free: Win32 command lines. Quoting by the MSVCRT / CommandLineToArgvW rules, the
// parser those rules describe (for tests and fuzzing), and the cmd.exe line for .bat/.cmd files.
#ifndef CHILDPROC_DETAIL_QUOTE_HPP
#define CHILDPROC_DETAIL_QUOTE_HPP

#include "../result.hpp"

#include <cstddef>      // std::size_t
#include <string>       // command lines
#include <string_view>  // arguments
#include <vector>       // argv

namespace childproc::inline v0::detail {

/// Appends `arg` so that CommandLineToArgvW (and the MSVC runtime) gives back exactly `arg`:
/// quoted when empty or holding a space, tab, newline or quote; backslashes doubled only
/// where they precede a quote.
inline void append_quoted(std::string& line, std::string_view arg) {
  if (!arg.empty() && arg.find_first_of(" \t\n\v\"") == std::string_view::npos) {
    line += arg;
    return;
  }
  line += '"';
  std::size_t backslashes = 0;
  for (char c : arg) {
    if (c == '\\') {
      ++backslashes;
      continue;
    }
    line.append(c == '"' ? 2 * backslashes + 1 : backslashes, '\\');
    backslashes = 0;
    line += c;
  }
  line.append(2 * backslashes, '\\');  // they precede the closing quote
  line += '"';
}

/// Whether CommandLineToArgvW ends an unquoted program name at `c`: any of U+0001 to U+0020,
/// not only a space or a tab (the C runtime stops at those two only).
constexpr bool ends_program_name(char c) noexcept { return c >= 1 && c <= ' '; }

/// The program name takes other rules (no backslash escapes): quoted when it has a character
/// that would end it (a space, a tab, a newline, any control character), and it cannot hold a quote.
inline result<void> append_program_name(std::string& line, std::string_view argv0) {
  if (argv0.find('"') != std::string_view::npos)
    return error(errc::invalid_argument, "argv[0] contains a '\"', which Win32 cannot pass");
  bool quote = argv0.empty();
  for (const char c : argv0) quote = quote || ends_program_name(c);
  if (quote) line += '"';
  line += argv0;
  if (quote) line += '"';
  return {};
}

/// The command line CreateProcessW gets for `argv`; verbatim joins the arguments unquoted.
inline result<std::string> make_command_line(const std::vector<std::string>& argv, bool verbatim) {
  std::string line;
  if (argv.empty()) return line;
  if (auto r = append_program_name(line, argv[0]); !r) return std::move(r).error();
  for (std::size_t i = 1; i < argv.size(); ++i) {
    line += ' ';
    if (verbatim) line += argv[i];
    else append_quoted(line, argv[i]);
  }
  return line;
}

/// Splits a command line as CommandLineToArgvW does.
inline std::vector<std::string> parse_command_line(std::string_view line) {
  std::vector<std::string> argv;
  std::size_t i = 0;
  std::string arg0;  // the program name: up to a space or control character, or between quotes, no escapes
  if (i < line.size() && line[i] == '"') {
    for (++i; i < line.size() && line[i] != '"'; ++i) arg0 += line[i];
    if (i < line.size()) ++i;
  } else {
    for (; i < line.size() && !ends_program_name(line[i]); ++i) arg0 += line[i];
  }
  argv.push_back(arg0);
  for (;;) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i >= line.size()) break;
    std::string arg;
    bool quoted = false;
    for (; i < line.size(); ++i) {
      const char c = line[i];
      if (c == '\\') {
        std::size_t n = 0;
        while (i < line.size() && line[i] == '\\') ++n, ++i;
        if (i < line.size() && line[i] == '"') {
          arg.append(n / 2, '\\');
          if (n % 2) {
            arg += '"';
            continue;
          }
          --i;  // the quote is handled by the next iteration
          continue;
        }
        arg.append(n, '\\');
        --i;
      } else if (c == '"') {
        if (quoted && i + 1 < line.size() && line[i + 1] == '"') {
          arg += '"';  // "" inside quotes is a literal quote
          ++i;
        } else {
          quoted = !quoted;
        }
      } else if (!quoted && (c == ' ' || c == '\t')) {
        break;
      } else {
        arg += c;
      }
    }
    argv.push_back(std::move(arg));
  }
  return argv;
}

inline bool ends_with_ci(std::string_view s, std::string_view suffix) noexcept {
  if (s.size() < suffix.size()) return false;
  for (std::size_t i = 0; i < suffix.size(); ++i) {
    char a = s[s.size() - suffix.size() + i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (a != suffix[i]) return false;
  }
  return true;
}

/// Whether Windows would run `program` through cmd.exe: it ends in .bat or .cmd, in any case,
/// also with the trailing dots and spaces that Windows strips from file names.
inline bool is_batch_file(std::string_view program) noexcept {
  while (!program.empty() && (program.back() == '.' || program.back() == ' ')) program.remove_suffix(1);
  return ends_with_ci(program, ".bat") || ends_with_ci(program, ".cmd");
}

/// The command line that runs a batch file safely: `cmd.exe /d /e:ON /v:OFF /s /c ""script" "arg" ..."`.
/// Each argument is quoted, so & | < > ^ ( ) ! and spaces stay literal; what cmd.exe would still
/// interpret inside quotes — '"' (ends the quoting), '%' (variable expansion), CR, LF and NUL — is
/// refused with errc::invalid_argument (the "BatBadBut" injections, CVE-2024-27980). Trailing
/// backslashes are doubled, so a script forwarding %* to a program hands it the same arguments.
inline result<std::string> make_batch_command_line(std::string_view comspec, std::string_view script,
                                                   const std::vector<std::string>& argv) {
  auto check = [](std::string_view what, std::string_view s) -> result<void> {
    const auto bad = s.find_first_of(std::string_view("\"%\r\n\0", 5));
    if (bad == std::string_view::npos) return {};
    const char c = s[bad];
    const char* name = c == '"' ? "'\"'" : c == '%' ? "'%'" : c == '\r' ? "CR" : c == '\n' ? "LF" : "NUL";
    return error(errc::invalid_argument, std::string(what) + " holds " + name +
                                             ", which cmd.exe would interpret: refused for a batch file");
  };
  if (auto r = check("the batch file name", script); !r) return std::move(r).error();
  std::string line;
  if (auto r = append_program_name(line, comspec); !r) return std::move(r).error();
  line += " /d /e:ON /v:OFF /s /c \"\"";
  line += script;
  line += '"';
  for (std::size_t i = 1; i < argv.size(); ++i) {
    if (auto r = check("argument " + std::to_string(i), argv[i]); !r) return std::move(r).error();
    line += " \"";
    line += argv[i];
    // Backslashes before the closing quote are doubled: a script that forwards %* hands the
    // line to a program whose parser would read `\"` as a literal quote (argument injection).
    const std::size_t tail = argv[i].size() - (argv[i].find_last_not_of('\\') + 1);
    line.append(tail, '\\');
    line += '"';
  }
  line += '"';
  return line;
}

}  // namespace childproc::inline v0::detail

#endif
