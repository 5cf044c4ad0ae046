// SPDX-License-Identifier: BSL-1.0
// The child's environment from a random parent block and random overrides. Checks against a model
// of build_env_block's description (parent when inherited, `set` replaces in place or appends,
// `unset` removes) and the promises that matter to a child: no name twice among those set, each
// one present once with its last value, unset names gone, and a bad name (empty, '=' or NUL) or a
// value with a NUL is an errc::invalid_argument, never dropped.
//
// Input: flags (bit 0: ignore case, bit 1: inherit), a record separator, a name/value separator,
// then records whose first byte says what they are: parent entry, set, or unset.
#include "fuzz.hpp"

#include <childproc/detail/env_block.hpp>

#include <cstdint>
#include <utility>

namespace {

using childproc::environment;

// Written from the descriptions in env_block.hpp, not from its code.
std::string key_of(std::string_view e) {
  const auto eq = e.find('=', e.empty() ? 0 : 1);  // a leading '=' belongs to the name
  return std::string(e.substr(0, eq));
}
bool same_key(std::string_view a, std::string_view b, bool ic) {
  auto up = [&](char c) { return ic && c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c; };
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (up(a[i]) != up(b[i])) return false;
  return true;
}
bool bad_key(std::string_view k) { return k.empty() || k.find('=') != k.npos || k.find('\0') != k.npos; }

std::vector<std::string> model(std::vector<std::string> block, const environment& env, bool ic) {
  if (!env.inherit) block.clear();
  std::erase(block, std::string());  // an empty entry means nothing: dropped
  for (const auto& [k, v] : env.set) {
    bool found = false;
    for (std::size_t i = 0; i < block.size();) {
      if (!same_key(key_of(block[i]), k, ic)) {
        ++i;
      } else if (!found) {
        block[i++] = k + "=" + v, found = true;
      } else {
        block.erase(block.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    if (!found) block.push_back(k + "=" + v);
  }
  for (const auto& k : env.unset) std::erase_if(block, [&](const std::string& e) { return same_key(key_of(e), k, ic); });
  return block;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::reader in(data, size);
  const auto flags = in.byte();
  const bool ic = flags & 1;
  const char rec = static_cast<char>(in.byte()), kv = static_cast<char>(in.byte());
  std::vector<std::string> parent;
  environment env;
  env.inherit = flags & 2;
  bool bad = false;
  for (const auto& r : fuzz::split(in.rest(), rec)) {
    if (r.empty()) continue;
    const std::string body = r.substr(1);
    switch (static_cast<unsigned char>(r[0]) % 3) {
      case 0:  // the OS hands over C strings: a parent entry ends at a NUL
        parent.push_back(body.substr(0, body.find('\0')));
        break;
      case 1: {
        const auto at = body.find(kv);
        std::string k = body.substr(0, at), v = at == std::string::npos ? "" : body.substr(at + 1);
        bad |= bad_key(k) || v.find('\0') != std::string::npos;
        env.set.emplace_back(std::move(k), std::move(v));
        break;
      }
      default:
        bad |= bad_key(body);
        env.unset.push_back(body);
    }
  }

  const auto block = childproc::detail::build_env_block(parent, env, ic, "fuzz");
  if (bad) {
    FUZZ_CHECK(!block && block.error() == childproc::errc::invalid_argument);
    FUZZ_CHECK(block.error().message().starts_with("fuzz: "));
    return 0;
  }
  FUZZ_CHECK(block);
  FUZZ_CHECK(*block == model(parent, env, ic));
  // The promises again, stated directly: unset names are gone; each name set and not unset is
  // there once, with the value it was last given.
  for (const auto& k : env.unset)
    for (const auto& e : *block) FUZZ_CHECK(!same_key(key_of(e), k, ic));
  for (std::size_t i = 0; i < env.set.size(); ++i) {
    const auto& k = env.set[i].first;
    bool unset = false, later = false;
    for (const auto& u : env.unset) unset |= same_key(u, k, ic);
    for (std::size_t j = i + 1; j < env.set.size(); ++j) later |= same_key(env.set[j].first, k, ic);
    if (unset || later) continue;
    std::size_t count = 0;
    for (const auto& e : *block) {
      if (!same_key(key_of(e), k, ic)) continue;
      ++count;
      FUZZ_CHECK(e == k + "=" + env.set[i].second);
    }
    FUZZ_CHECK(count == 1);
    const auto* found = childproc::detail::env_find(*block, k, ic);
    FUZZ_CHECK(found && childproc::detail::env_value(*found) == env.set[i].second);
  }
  return 0;
}
