// SPDX-License-Identifier: BSL-1.0
// Platform-free: the child's environment as "KEY=VALUE" entries, from the parent's and the options.
#ifndef CHILDPROC_DETAIL_ENV_BLOCK_HPP
#define CHILDPROC_DETAIL_ENV_BLOCK_HPP

#include "../options.hpp"
#include "../result.hpp"

#include <cstddef>      // std::size_t
#include <string>       // entries
#include <string_view>  // keys
#include <vector>       // the block

namespace childproc::inline v0::detail {

inline char ascii_upper(char c) noexcept { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

/// Whether two variable names are the same: exactly on POSIX, ignoring ASCII case on Win32.
inline bool env_key_equal(std::string_view a, std::string_view b, bool ignore_case) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ignore_case ? ascii_upper(a[i]) != ascii_upper(b[i]) : a[i] != b[i]) return false;
  return true;
}

/// The name part of "KEY=VALUE". A leading '=' belongs to the name (Win32's "=C:=C:\dir").
inline std::string_view env_key(std::string_view entry) noexcept {
  const auto eq = entry.find('=', entry.empty() ? 0 : 1);
  return entry.substr(0, eq == std::string_view::npos ? entry.size() : eq);
}

/// The value of `key` in a block, or nullptr.
inline const std::string* env_find(const std::vector<std::string>& block, std::string_view key,
                                   bool ignore_case) noexcept {
  for (const auto& e : block)
    if (env_key_equal(env_key(e), key, ignore_case)) return &e;
  return nullptr;
}

/// The value part of an entry found with env_find.
inline std::string_view env_value(const std::string& entry) noexcept {
  const auto k = env_key(entry).size();
  return k < entry.size() ? std::string_view(entry).substr(k + 1) : std::string_view();
}

/// Checks a name or value: names are non-empty with no '=' and no NUL; values have no NUL.
inline result<void> env_check(std::string_view key, std::string_view value, std::string_view context) {
  const char* why = nullptr;
  if (key.empty()) why = "an environment variable name is empty";
  else if (key.find('=') != std::string_view::npos) why = "an environment variable name contains '='";
  else if (key.find('\0') != std::string_view::npos || value.find('\0') != std::string_view::npos)
    why = "an environment variable contains a NUL byte";
  if (!why) return {};
  std::string shown(key.substr(0, key.find('\0')));
  return error(errc::invalid_argument, std::string(context) + ": " + why + " ('" + shown + "')");
}

/// The child's environment: `parent` (the parent's "KEY=VALUE" entries) when env.inherit is set,
/// then `set` replaces same-named entries in place and appends new ones, then `unset` removes.
inline auto build_env_block(std::vector<std::string> parent, const environment& env, bool ignore_case,
                            std::string_view context) -> result<std::vector<std::string>> {
  std::vector<std::string> block;
  if (env.inherit) block = std::move(parent);
  // An empty entry means nothing (and would end a Win32 block early); dropping it here also
  // frees "" to mark the duplicates removed below.
  std::erase(block, std::string());
  for (const auto& [key, value] : env.set) {
    if (auto r = env_check(key, value, context); !r) return std::move(r).error();
    std::string entry = key + "=" + value;
    bool replaced = false;
    for (auto& e : block)
      if (env_key_equal(env_key(e), key, ignore_case)) {
        if (!replaced) e = entry;
        else e.clear();  // a duplicate spelling (Path vs PATH on Win32): keep one
        replaced = true;
      }
    if (!replaced) block.push_back(std::move(entry));
    std::erase(block, std::string());
  }
  for (const auto& key : env.unset) {
    if (auto r = env_check(key, "", context); !r) return std::move(r).error();
    std::erase_if(block, [&](const std::string& e) { return env_key_equal(env_key(e), key, ignore_case); });
  }
  return block;
}

}  // namespace childproc::inline v0::detail

#endif
