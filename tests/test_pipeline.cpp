// Pipelines: children connected by an OS pipe at spawn (make_pipe, spawn_pipeline), and by an
// in-loop pump between two children's pipes.
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <string>

static std::string child() { return child_path(); }

TEST_CASE("make_pipe: one child's stdout handed straight to another's stdin") {
  auto link = cp::make_pipe().value();
  auto writer = cp::spawn(child(), {"write-out", "300000"}, {.stdio = {cp::ignore, cp::fd(link.write.handle()), cp::inherit}}).value();
  auto counter = cp::spawn(child(), {"count-stdin"}, {.stdio = {cp::fd(link.read.handle()), cp::pipe, cp::inherit}}).value();
  link.read.close();  // only the children hold the pipe now: the counter sees end of file when the writer exits
  link.write.close();
  CHECK(counter.out().read_all().value() == "300000\n");
  CHECK(writer.wait()->success());
  CHECK(counter.wait()->success());
}

TEST_CASE("make_pipe ends are ordinary blocking streams") {
  auto link = cp::make_pipe().value();
  REQUIRE(link.write.write("through"));
  link.write.close();
  CHECK(link.read.read_all().value() == "through");
}

TEST_CASE("spawn_pipeline: three stages, bytes flow through the children only") {
  auto stages = cp::spawn_pipeline({
                                       {child(), {"echo"}},
                                       {child(), {"echo"}},
                                       {child(), {"count-stdin"}},
                                   })
                    .value();
  REQUIRE(stages.size() == 3);
  CHECK(!stages[1].in().is_open());   // the links are not the parent's
  CHECK(!stages[0].out().is_open());
  REQUIRE(stages[0].in().write(std::string(123457, 'z')));
  stages[0].in().close();
  CHECK(stages[2].out().read_all().value() == "123457\n");
  for (auto& p : stages) CHECK(p.wait()->success());
}

TEST_CASE("spawn_pipeline: a stage that cannot start is an error naming it; started stages are reaped") {
  auto r = cp::spawn_pipeline({{child(), {"sleep", "100000"}}, {"childproc-no-such-program", {}}});
  REQUIRE(!r);
  CHECK(r.error() == std::errc::no_such_file_or_directory);
  CHECK(r.error().message() == "spawn childproc-no-such-program ENOENT");
#if !defined(_WIN32)
  CHECK(zombie_children() == 0);
#endif
  auto none = cp::spawn_pipeline({});
  CHECK(none.error() == cp::errc::invalid_argument);
  CHECK(none.error().message() == "spawn_pipeline: no commands");
}

TEST_CASE("pump: one child's stdout copied into another's stdin on the loop") {
  auto src = cp::spawn(child(), {"write-out", "1000000"}, {.stdio = {cp::ignore, cp::pipe, cp::inherit}}).value();
  auto dst = cp::spawn(child(), {"count-stdin"}).value();
  auto [moved, counted] = cp::sync_wait(cp::when_all(cp::pump(src.out(), dst.in()), dst.out().async_read_all()));
  CHECK(moved.value() == 1000000u);
  CHECK(counted.value() == "1000000\n");
  CHECK(!dst.in().is_open());  // the pump closed it at the end
  CHECK(src.wait()->success());
  CHECK(dst.wait()->success());
}

TEST_CASE("pump into a child that stops reading ends with EPIPE, not a signal") {
  auto src = cp::spawn(child(), {"write-out", "50000000"}, {.stdio = {cp::ignore, cp::pipe, cp::inherit}}).value();
  auto dst = cp::spawn(child(), {"exit", "0"}).value();
  CHECK(dst.wait()->success());
  auto moved = cp::sync_wait(cp::pump(src.out(), dst.in()));
  REQUIRE(!moved);
  CHECK(moved.error() == std::errc::broken_pipe);
  src.out().close();
  CHECK(src.wait().has_value());
}
