// SPDX-License-Identifier: BSL-1.0
// What the benchmark programs share: a figure (one measured quantity, one value per round), the
// rounds run interleaved so that drift of the machine hits every figure alike, the median, the
// quick mode for CI, and the machine-readable lines that tests/bench/run.py collects:
//
//   FIGURE <key>=<value> <unit>    one line per round (run.py takes the median of all it gets)
//   NOTE <text>                    why a figure is missing (a peer not installed, too little memory)
#ifndef CHILDPROC_BENCH_FIGURE_HPP
#define CHILDPROC_BENCH_FIGURE_HPP

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

// Paths meson passes in (tests/bench/meson.build); these defaults serve a hand-made build.
#ifndef CHILDPROC_BENCH_TINY
#  define CHILDPROC_BENCH_TINY "bench_tiny"
#endif
#ifndef CHILDPROC_BENCH_TINY_STATIC
#  define CHILDPROC_BENCH_TINY_STATIC 0
#endif
#ifndef CHILDPROC_BENCH_SOURCE_DIR
#  define CHILDPROC_BENCH_SOURCE_DIR "."
#endif

namespace bench {

/// CHILDPROC_BENCH_QUICK set (and not "0"): a short run for CI.
inline bool quick() {
  const char* v = std::getenv("CHILDPROC_BENCH_QUICK");
  return v && *v && std::strcmp(v, "0") != 0;
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

struct figure {
  std::string name;             // for people: "(a) posix_spawn + waitpid"
  std::string key;              // for run.py: "spawn.small.posix_spawn"; empty: not reported
  const char* unit;             // of what run returns: "us", "GB/s", "M/s"
  std::function<double()> run;  // one round; returns the figure's value for it
  std::vector<double> values = {};

  double median() const { return bench::median(values); }
  double min() const { return values.empty() ? 0 : *std::min_element(values.begin(), values.end()); }
  double max() const { return values.empty() ? 0 : *std::max_element(values.begin(), values.end()); }
};

/// Runs `rounds` rounds; in each, every figure once, in order.
inline void run_rounds(std::vector<figure>& figs, int rounds) {
  for (int r = 0; r < rounds; ++r)
    for (auto& f : figs) f.values.push_back(f.run());
}

/// The FIGURE lines of every value of every figure with a key.
inline void report(const std::vector<figure>& figs) {
  for (const auto& f : figs)
    if (!f.key.empty())
      for (double v : f.values) std::printf("FIGURE %s=%.6g %s\n", f.key.c_str(), v, f.unit);
  std::fflush(stdout);
}

inline void report(const std::string& key, double value, const char* unit) {
  std::printf("FIGURE %s=%.6g %s\n", key.c_str(), value, unit);
  std::fflush(stdout);
}

inline void note(const std::string& text) {
  std::printf("NOTE %s\n", text.c_str());
  std::fflush(stdout);
}

/// A positive count from the command line, or exit 2 with the usage line.
inline long parse_count(const char* s, const char* what, const char* usage, long max = 1000000000L) {
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < 1 || v > max) {
    std::fprintf(stderr, "usage: %s\nbad %s: %s\n", usage, what, s);
    std::exit(2);
  }
  return v;
}

/// A "Key:  N kB" field of a /proc file (VmRSS in /proc/self/status, MemAvailable in
/// /proc/meminfo) in MiB; -1 where there is none.
inline double proc_field_mib(const char* path, const std::string& key) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + ":", 0) == 0) return std::atof(line.c_str() + key.size() + 1) / 1024;
  return -1;
}

}  // namespace bench

#endif
