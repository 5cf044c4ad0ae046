// spawn(): arguments, environment, cwd, argv0, stdio, and each bad input with its exact error.
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

static std::string run_out(const std::vector<std::string>& args, cp::options o = {}) {
  o.stdio = {cp::ignore, cp::pipe, cp::inherit};
  auto p = cp::spawn(child_path(), args, o);
  REQUIRE(p);
  auto out = p->out().read_all();
  REQUIRE(out);
  auto st = p->wait();
  REQUIRE(st);
  CHECK(st->exit_code() == 0);
  return *out;
}

static std::string temp_path(const char* name) {
  return (std::filesystem::temp_directory_path() / (std::string("childproc_test_") + name)).string();
}

static std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

TEST_CASE("arguments arrive exactly, including empty ones and spaces") {
  const std::vector<std::string> args = {"args", "a b", "", "\"q\"", "tab\there", "ünïcode", "\\"};
  CHECK(run_out(args) == nul_joined({"a b", "", "\"q\"", "tab\there", "ünïcode", "\\"}));
}

TEST_CASE("the initializer-list form and a vector of const char* both work") {
  auto p = cp::spawn(child_path(), {"exit", "7"});
  REQUIRE(p);
  CHECK(p->wait()->exit_code() == 7);
  std::vector<const char*> v = {"exit", "9"};
  auto q = cp::spawn(child_path(), v);
  REQUIRE(q);
  CHECK(q->wait()->exit_code() == 9);
}

TEST_CASE("argv0 replaces argv[0]; by default it is the program as given") {
  CHECK(run_out({"argv0"}, {.argv0 = "custom0"}) == "custom0");
  CHECK(run_out({"argv0"}) == child_path());
}

TEST_CASE("env: inherit, extend, remove, replace") {
  set_env("CHILDPROC_PARENT_VAR", "from-parent");
  CHECK(run_out({"env", "CHILDPROC_PARENT_VAR"}) == "from-parent");
  CHECK(run_out({"env", "CHILDPROC_NEW"}, {.env = cp::environment::extend({{"CHILDPROC_NEW", "v=1"}})}) == "v=1");
  CHECK(run_out({"env", "CHILDPROC_PARENT_VAR"}, {.env = cp::environment::extend({{"CHILDPROC_PARENT_VAR", "over"}})}) ==
        "over");
  {
    auto p = cp::spawn(child_path(), {"env", "CHILDPROC_PARENT_VAR"},
                       {.env = cp::environment::extend({}, {"CHILDPROC_PARENT_VAR"}), .stdio = {cp::ignore, cp::ignore, cp::ignore}});
    REQUIRE(p);
    CHECK(p->wait()->exit_code() == 3);  // unset in the child
  }
  const auto replaced = run_out({"env-all"}, {.env = cp::environment::replace({{"ONLY", "1"}, {"TWO", ""}})});
#ifdef _WIN32  // Windows keeps SYSTEMROOT and the like in a replaced block (test_spawn.win32.cpp)
  CHECK(replaced.find(nul_joined({"ONLY=1"})) != std::string::npos);
  CHECK(replaced.find(nul_joined({"TWO="})) != std::string::npos);
#else
  CHECK(replaced == nul_joined({"ONLY=1", "TWO="}));
#endif
}

TEST_CASE("cwd") {
  const auto dir = std::filesystem::canonical(std::filesystem::temp_directory_path()).string();
  CHECK(run_out({"cwd"}, {.cwd = dir}) == dir);
  CHECK(run_out({"cwd"}) == std::filesystem::current_path().string());
}

TEST_CASE("stdio: stdin from a pipe, stdout and stderr to pipes") {
  auto p = cp::spawn(child_path(), {"echo-both"});
  REQUIRE(p);
  REQUIRE(p->in().write("hello\n"));
  p->in().close();
  CHECK(p->out().read_all().value() == "hello\n");
  CHECK(p->err().read_all().value() == "hello\n");
  CHECK(p->wait()->success());
}

TEST_CASE("stdio: ignore gives the null device, inherit shares the parent's") {
  auto p = cp::spawn(child_path(), {"count-stdin"}, {.stdio = {cp::ignore, cp::pipe, cp::ignore}});
  REQUIRE(p);
  CHECK(p->out().read_all().value() == "0\n");
  CHECK(p->wait()->success());
  CHECK(!p->in().is_open());
  CHECK(!p->err().is_open());
}

TEST_CASE("stdio: files for reading, truncating and appending") {
  const auto in = temp_path("in"), out = temp_path("out");
  { std::ofstream(in, std::ios::binary) << "file input"; }
  { std::ofstream(out, std::ios::binary) << "old content that is longer"; }
  auto p = cp::spawn(child_path(), {"echo"}, {.stdio = {cp::file_read(in), cp::file(out), cp::inherit}});
  REQUIRE(p);
  CHECK(p->wait()->success());
  CHECK(slurp(out) == "file input");
  auto q = cp::spawn(child_path(), {"echo"}, {.stdio = {cp::file_read(in), cp::file_append(out), cp::inherit}});
  REQUIRE(q);
  CHECK(q->wait()->success());
  CHECK(slurp(out) == "file inputfile input");
  std::remove(in.c_str());
  std::remove(out.c_str());
}

TEST_CASE("stdio: stderr same as stdout keeps the order of writes") {
  auto p = cp::spawn(child_path(), {"echo-both"}, {.stdio = {cp::pipe, cp::pipe, cp::same_as_stdout}});
  REQUIRE(p);
  REQUIRE(p->in().write("xy"));
  p->in().close();
  CHECK(p->out().read_all().value() == "xyxy");
  CHECK(p->wait()->success());
}

TEST_CASE("stdio: a missing input file is an error naming the file; nothing starts") {
  auto p = cp::spawn(child_path(), {"echo"}, {.stdio = {cp::file_read("/nonexistent/in"), cp::pipe, cp::pipe}});
  REQUIRE(!p);
  CHECK(p.error() == std::errc::no_such_file_or_directory);
  CHECK(p.error().message() == "spawn " + child_path() + ": stdio[0] open /nonexistent/in ENOENT");
}

TEST_CASE("bad input: a program that does not exist") {
  auto p = cp::spawn("nosuchprog", {"x"});
  REQUIRE(!p);
  CHECK(p.error() == std::errc::no_such_file_or_directory);
  CHECK(p.error().message() == "spawn nosuchprog ENOENT");
  auto q = cp::spawn("/no/such/dir/prog");
  REQUIRE(!q);
  CHECK(q.error().message() == "spawn /no/such/dir/prog ENOENT");
  CHECK_THROWS_WITH_AS(cp::spawn("nosuchprog").value(), doctest::Contains("spawn nosuchprog ENOENT"), std::system_error);
}

TEST_CASE("bad input: an empty program name") {
  auto p = cp::spawn("");
  REQUIRE(!p);
  CHECK(p.error() == cp::errc::invalid_argument);
  CHECK(p.error().message() == "spawn: the program name is empty");
}

TEST_CASE("bad input: NUL bytes in the program, an argument, cwd, argv0") {
  auto a = cp::spawn(child_path(), {"args", "ok", std::string_view("b\0d", 3)});
  REQUIRE(!a);
  CHECK(a.error() == cp::errc::invalid_argument);
  CHECK(a.error().message() == "spawn " + child_path() + ": argument 3 contains a NUL byte");
  auto prog = cp::spawn(std::string_view("ch\0ild", 6));
  REQUIRE(!prog);
  CHECK(prog.error().message() == "spawn ch: the program name contains a NUL byte");
  auto cwd = cp::spawn(child_path(), {"cwd"}, {.cwd = std::string("/tmp\0x", 6)});
  REQUIRE(!cwd);
  CHECK(cwd.error().message() == "spawn " + child_path() + ": cwd contains a NUL byte");
  auto a0 = cp::spawn(child_path(), {"cwd"}, {.argv0 = std::string("a\0", 2)});
  REQUIRE(!a0);
  CHECK(a0.error().message() == "spawn " + child_path() + ": argv0 contains a NUL byte");
  auto env = cp::spawn(child_path(), {"cwd"}, {.env = cp::environment::extend({{"K", std::string("v\0", 2)}})});
  REQUIRE(!env);
  CHECK(env.error().message() == "spawn " + child_path() + ": an environment variable contains a NUL byte ('K')");
}

TEST_CASE("bad input: a cwd that does not exist, or is a file") {
  auto p = cp::spawn(child_path(), {"cwd"}, {.cwd = "/nonexistent/dir"});
  REQUIRE(!p);
  CHECK(p.error() == std::errc::no_such_file_or_directory);
  CHECK(p.error().message() == "spawn " + child_path() + ": cwd /nonexistent/dir ENOENT");
  auto f = cp::spawn(child_path(), {"cwd"}, {.cwd = child_path()});
  REQUIRE(!f);
  CHECK(f.error() == std::errc::not_a_directory);
  CHECK(f.error().message() == "spawn " + child_path() + ": cwd " + child_path() + " ENOTDIR");
}

TEST_CASE("bad input: detached with kill_on_parent_exit (a child cannot both outlive and die with us)") {
  auto p = cp::spawn(child_path(), {"cwd"}, {.detached = true, .kill_on_parent_exit = true});
  REQUIRE(!p);
  CHECK(p.error() == cp::errc::invalid_argument);
  CHECK(p.error().message() == "spawn " + child_path() + ": detached and kill_on_parent_exit exclude each other");
  auto e = cp::exec_file(child_path(), {"cwd"}, {.detached = true, .kill_on_parent_exit = true});
  REQUIRE(!e);
  CHECK(e.error() == cp::errc::invalid_argument);
}

TEST_CASE("kill_on_parent_exit: the child runs as any other") {
  auto r = cp::exec_file(child_path(), {"args", "a b", "c"}, {.kill_on_parent_exit = true});
  REQUIRE(r);
  CHECK(r->ok());
  CHECK(r->out == std::string("a b\0c\0", 6));
}

TEST_CASE("bad input: same_as_stdout anywhere but stderr") {
  auto p = cp::spawn(child_path(), {"cwd"}, {.stdio = {cp::pipe, cp::same_as_stdout, cp::pipe}});
  REQUIRE(!p);
  CHECK(p.error() == cp::errc::invalid_argument);
  CHECK(p.error().message() == "spawn " + child_path() + ": same_as_stdout is only for stderr (stdio[2])");
}
