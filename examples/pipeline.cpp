// A two-stage pipeline, `printf ... | sort | uniq -c`, built twice: once with the children
// joined directly by an OS pipe (spawn_pipeline: the bytes never pass through this process),
// once with an in-loop pump that could look at (or rewrite) the bytes on their way.
#include <childproc.hpp>

#include <cstdio>
#include <string>

namespace cp = childproc;

static const char* const words = "pear\napple\npear\nfig\napple\npear\n";

static int direct() {
  auto stages = cp::spawn_pipeline({{"sort"}, {"uniq", {"-c"}}});
  if (!stages) {
    std::printf("%s\n", stages.error().message().c_str());
    return 1;
  }
  auto& first = stages->front();
  auto& last = stages->back();
  if (auto w = first.in().write(words); !w) std::printf("%s\n", w.error().message().c_str());
  first.in().close();  // sort sees end of file and starts writing
  std::printf("direct:\n%s", last.out().read_all().value_or("").c_str());
  for (auto& p : *stages)
    if (!p.wait().value().success()) return 1;
  return 0;
}

static int pumped() {
  auto sort = cp::spawn("sort", {}, {.stdio = {cp::pipe, cp::pipe, cp::inherit}});
  auto uniq = cp::spawn("uniq", {"-c"}, {.stdio = {cp::pipe, cp::pipe, cp::inherit}});
  if (!sort || !uniq) {
    std::printf("%s\n", (!sort ? sort.error() : uniq.error()).message().c_str());
    return 1;
  }
  auto feed = [&]() -> cp::task<cp::result<std::size_t>> {
    auto w = co_await sort->in().async_write(words);
    sort->in().close();
    if (!w) co_return std::move(w).error();
    co_return std::string(words).size();
  };
  // Three things at once on one loop: feed sort, pump sort -> uniq, collect uniq's output.
  auto [fed, moved, out] = cp::sync_wait(cp::when_all(feed(), cp::pump(sort->out(), uniq->in()), uniq->out().async_read_all()));
  std::printf("pumped (%zu bytes in, %zu bytes between the stages):\n%s", fed.value_or(0), moved.value_or(0),
              out.value_or("").c_str());
  return sort->wait().value().success() && uniq->wait().value().success() ? 0 : 1;
}

int main() { return direct() | pumped(); }
