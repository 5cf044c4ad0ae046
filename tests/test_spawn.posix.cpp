// POSIX-only behaviour of spawn: PATH search, exec errors, descriptors, signals, sessions, ids.
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

static std::string out_of(std::vector<std::string> args, cp::options o = {}) {
  o.stdio = {cp::ignore, cp::pipe, cp::inherit};
  auto r = cp::exec_file(child_path(), args, o);
  REQUIRE(r);
  CHECK(r->ok());
  return r->out;
}

static std::string temp_dir() {
  auto d = std::filesystem::temp_directory_path() / ("childproc_posix_" + std::to_string(getpid()));
  std::filesystem::create_directories(d);
  return d.string();
}

TEST_CASE("PATH search uses the PATH of the child's environment") {
  const auto dir = std::filesystem::path(child_path()).parent_path().string();
  auto r = cp::exec_file("child", {"exit", "4"}, {.env = cp::environment::extend({{"PATH", "/nonexistent:" + dir}})});
  REQUIRE(r);
  CHECK(r->status.exit_code() == 4);
  auto missing = cp::exec_file("child", {}, {.env = cp::environment::extend({{"PATH", "/nonexistent"}})});
  REQUIRE(!missing);
  CHECK(missing.error().message() == "spawn child ENOENT");
  auto sh = cp::exec_file("sh", {"-c", "echo found"}, {.env = cp::environment::replace({})});  // default /usr/bin:/bin
  REQUIRE(sh);
  CHECK(sh->out == "found\n");
}

TEST_CASE("a file that is not executable is EACCES, also through PATH") {
  const auto dir = temp_dir();
  const auto file = dir + "/noexec";
  { std::ofstream(file) << "#!/bin/sh\necho no\n"; }
  chmod(file.c_str(), 0644);
  auto r = cp::spawn(file);
  REQUIRE(!r);
  CHECK(r.error() == std::errc::permission_denied);
  CHECK(r.error().message() == "spawn " + file + " EACCES");
  auto viapath = cp::spawn("noexec", {}, {.env = cp::environment::extend({{"PATH", dir}})});
  REQUIRE(!viapath);
  CHECK(viapath.error().message() == "spawn noexec EACCES");
  std::filesystem::remove_all(dir);
}

TEST_CASE("no descriptor free (the process at its RLIMIT_NOFILE): a child with inherited stdio still starts, is waited for and killed by pid") {
  // Linux: the clone's CLONE_PIDFD needs a free descriptor; without one the child runs by pid.
  rlimit was{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &was) == 0);
  const auto fds = open_fds();
  rlimit tight = was;
  tight.rlim_cur = static_cast<rlim_t>(fds.back() + 8);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &tight) == 0);
  std::vector<int> filler;
  for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) filler.push_back(fd);
  const int full_errno = errno;
  const cp::options inherit_all{.stdio = {cp::inherit, cp::inherit, cp::inherit}};
  auto ended = cp::spawn(child_path(), {"exit", "7"}, inherit_all);
  std::optional<cp::result<cp::exit_status>> ended_status;
  if (ended) ended_status = ended->wait();
  auto killed = cp::spawn(child_path(), {"sleep", "10000"}, inherit_all);
  std::optional<cp::result<cp::exit_status>> killed_status;
  if (killed) {
    CHECK(killed->kill());
    killed_status = killed->wait();
  }
  for (int fd : filler) ::close(fd);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &was) == 0);
  CHECK(full_errno == EMFILE);
  REQUIRE(ended);
  REQUIRE(ended_status);
  REQUIRE(*ended_status);
  CHECK((*ended_status)->exit_code() == 7);
  REQUIRE(killed);
  REQUIRE(killed_status);
  REQUIRE(*killed_status);
  CHECK((*killed_status)->signal() == SIGTERM);
  CHECK(open_fds() == fds);
}

TEST_CASE("a directory is EACCES") {
  auto r = cp::spawn("/tmp");
  REQUIRE(!r);
  CHECK(r.error() == std::errc::permission_denied);
  CHECK(r.error().message() == "spawn /tmp EACCES");
}

TEST_CASE("an executable without a valid format is ENOEXEC (no silent /bin/sh fallback)") {
  const auto dir = temp_dir();
  const auto file = dir + "/garbage";
  { std::ofstream(file) << "\x01\x02garbage"; }
  chmod(file.c_str(), 0755);
  auto r = cp::spawn(file);
  REQUIRE(!r);
  CHECK(r.error().message() == "spawn " + file + " ENOEXEC");
  std::filesystem::remove_all(dir);
}

TEST_CASE("an argument list that is too long is E2BIG") {
  std::vector<std::string> args(64, std::string(128 * 1024 - 1, 'x'));  // 8 MiB > ARG_MAX here
  auto r = cp::spawn(child_path(), args);
  REQUIRE(!r);
  CHECK(r.error() == std::errc::argument_list_too_long);
  CHECK(r.error().message() == "spawn " + child_path() + " E2BIG");
}

TEST_CASE("only the stdio descriptors reach the child, whatever the parent has open") {
  const int leaky = open("/dev/null", O_RDONLY);  // no O_CLOEXEC: would leak without closefrom
  REQUIRE(leaky > 2);
  CHECK(out_of({"fds"}) == "0 1 2\n");
  close(leaky);
}

TEST_CASE("close_other_fds = false keeps inheritable descriptors, never the library's") {
  const int leaky = open("/dev/null", O_RDONLY);
  const auto fds = out_of({"fds"}, {.close_other_fds = false});
  CHECK(fds.find(" " + std::to_string(leaky)) != std::string::npos);
  close(leaky);
}

TEST_CASE("extra stdio entries: a duplex pipe at fd 3, a parent fd at fd 4, inherit and ignore") {
  int pfd[2];
  REQUIRE(::pipe(pfd) == 0);
  auto p = cp::spawn(child_path(), {"write-fd", "3", "via fd 3"},
                     {.stdio = {cp::ignore, cp::ignore, cp::inherit, cp::pipe, cp::fd(pfd[1])}});
  REQUIRE(p);
  CHECK(p->stdio(3).read_all().value() == "via fd 3");
  CHECK(p->wait()->success());
  auto q = cp::spawn(child_path(), {"write-fd", "4", "via fd 4"},
                     {.stdio = {cp::ignore, cp::ignore, cp::inherit, cp::ignore, cp::fd(pfd[1])}});
  REQUIRE(q);
  CHECK(q->wait()->success());
  close(pfd[1]);
  char buf[16] = {};
  CHECK(read(pfd[0], buf, sizeof buf) == 8);
  CHECK(std::string(buf) == "via fd 4");
  close(pfd[0]);
  auto fds = cp::spawn(child_path(), {"fds"}, {.stdio = {cp::ignore, cp::pipe, cp::inherit, cp::ignore, cp::pipe}});
  REQUIRE(fds);
  CHECK(fds->out().read_all().value() == "0 1 2 4\n");
  CHECK(fds->wait()->success());
}

TEST_CASE("stdio fd numbers that collide with targets are moved out of the way") {
  // The parent's fd 1 becomes the child's fd 2 and the parent's fd 2 the child's fd 1.
  auto p = cp::spawn(child_path(), {"write-fd", "2", "x"}, {.stdio = {cp::ignore, cp::fd(2), cp::fd(1)}});
  REQUIRE(p);
  CHECK(p->wait()->success());
}

TEST_CASE("a bad descriptor in stdio is EBADF naming the entry") {
  auto p = cp::spawn(child_path(), {"cwd"}, {.stdio = {cp::ignore, cp::fd(9999), cp::inherit}});
  REQUIRE(!p);
  CHECK(p.error() == std::errc::bad_file_descriptor);
  CHECK(p.error().message() == "spawn " + child_path() + ": stdio[1] fd 9999 EBADF");
}

TEST_CASE("a parent that ignores SIGPIPE and blocks signals does not pass that on") {
  struct sigaction ign {}, old {};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ign, &old);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  const auto s = out_of({"signals"});
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  sigaction(SIGPIPE, &old, nullptr);
  CHECK(s == "SIGPIPE=default\nmask=empty\n");
  // the uid/gid fallback path does the same
  const auto f = out_of({"signals"}, {.uid = getuid()});
  CHECK(f == "SIGPIPE=default\nmask=empty\n");
}

TEST_CASE("detached: a new session; new_process_group: a new group") {
  auto ids = [](const std::string& s, const char* key) {
    const auto at = s.find(key);
    return std::stoi(s.substr(at + std::string(key).size()));
  };
  const auto det = out_of({"ids"}, {.detached = true});
  CHECK(ids(det, "sid=") == ids(det, "pid="));
  CHECK(ids(det, "pgid=") == ids(det, "pid="));
  const auto grp = out_of({"ids"}, {.new_process_group = true});
  CHECK(ids(grp, "pgid=") == ids(grp, "pid="));
  CHECK(ids(grp, "sid=") == getsid(0));
  const auto plain = out_of({"ids"});
  CHECK(ids(plain, "pgid=") == getpgid(0));
}

TEST_CASE("uid and gid (root only: runs as nobody)") {
  if (getuid() != 0) {
    MESSAGE("not root: the uid/gid switch is checked in CI, which runs as root");
    auto r = cp::spawn(child_path(), {"ids"}, {.uid = 0u});
    REQUIRE(!r);
    CHECK(r.error() == std::errc::operation_not_permitted);
    return;
  }
  const auto s = out_of({"ids"}, {.uid = 65534u, .gid = 65534u});
  CHECK(s.find("uid=65534 gid=65534") != std::string::npos);
  const auto cwd = out_of({"cwd"}, {.cwd = "/", .uid = 65534u});
  CHECK(cwd == "/");
}

#if defined(__linux__)
TEST_CASE("Linux: kill_on_parent_exit makes SIGKILL the parent-death signal, also across a uid switch") {
  CHECK(out_of({"pdeathsig"}) == "pdeathsig=0\n");
  CHECK(out_of({"pdeathsig"}, {.kill_on_parent_exit = true}) == "pdeathsig=9\n");
  // A switch of user clears the parent-death signal: it is set after the switch.
  if (getuid() == 0) CHECK(out_of({"pdeathsig"}, {.uid = 65534u, .gid = 65534u, .kill_on_parent_exit = true}) == "pdeathsig=9\n");
  else CHECK(out_of({"pdeathsig"}, {.uid = getuid(), .kill_on_parent_exit = true}) == "pdeathsig=9\n");
}

TEST_CASE("Linux: kill_on_parent_exit follows the spawning thread: its child dies when that thread ends") {
  cp::result<cp::process> with = cp::error(cp::errc::no_process), without = cp::error(cp::errc::no_process);
  std::thread([&] {
    with = cp::spawn(child_path(), {"sleep", "60000"}, {.stdio = {cp::ignore, cp::ignore, cp::inherit}, .kill_on_parent_exit = true});
    without = cp::spawn(child_path(), {"sleep", "60000"}, {.stdio = {cp::ignore, cp::ignore, cp::inherit}});
  }).join();
  REQUIRE(with);
  REQUIRE(without);
  CHECK(with->wait().value().signal() == SIGKILL);  // the thread, not the process, is its parent
  CHECK(!without->try_wait().value());              // still sleeping
  REQUIRE(without->kill(SIGKILL));
  CHECK(without->wait().value().signal() == SIGKILL);
}
#endif

TEST_CASE("the fallback path reports exec errors as errors too") {
  auto r = cp::spawn("/no/such/prog", {}, {.uid = getuid()});
  REQUIRE(!r);
  CHECK(r.error().message() == "spawn /no/such/prog ENOENT");
}

TEST_CASE("a child killed by SIGSEGV: signal and core flag as the system reports them") {
  // The reference: the same child under a bare fork + execv + waitpid.
  const pid_t ref = fork();
  if (ref == 0) {
    const std::string c = child_path();
    execl(c.c_str(), c.c_str(), "signal", std::to_string(SIGSEGV).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(ref, &status, 0);
  REQUIRE(WIFSIGNALED(status));
  auto r = cp::spawn_sync(child_path(), {"signal", std::to_string(SIGSEGV)});
  REQUIRE(r);
  CHECK(r->status.signal() == SIGSEGV);
  CHECK(r->status.core_dumped() == static_cast<bool>(WCOREDUMP(status)));
  CHECK(r->status.crashed());
}

TEST_CASE("every signal that kills is reported with its number and its name") {
  const std::pair<int, const char*> signals[] = {{SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"},
                                                 {SIGABRT, "SIGABRT"}, {SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"},
                                                 {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"}, {SIGBUS, "SIGBUS"},
                                                 {SIGFPE, "SIGFPE"},   {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"}};
  for (const auto& entry : signals) {
    const int sig = entry.first;  // not a structured binding: clang 14 cannot capture one in CHECK_MESSAGE
    const char* name = entry.second;
    auto r = cp::spawn_sync(child_path(), {"signal", std::to_string(sig)});
    REQUIRE(r);
    CHECK_MESSAGE(r->status.signal() == sig, "signal ", sig);
    CHECK(!r->status.exit_code());
    // " (core dumped)" follows for the signals that dump core, where the system writes cores.
    CHECK_MESSAGE(r->status.to_string().rfind(std::string("killed by signal ") + name, 0) == 0, r->status.to_string());
  }
}

TEST_CASE("writing to a child that closed stdin is EPIPE, never SIGPIPE") {
  auto p = cp::spawn(child_path(), {"close-stdin-sleep", "100000"}, {.stdio = {cp::pipe, cp::ignore, cp::ignore}}).value();
  std::string chunk(1 << 20, 'x');
  cp::result<void> w;
  for (int i = 0; i < 100 && w; ++i) w = p.in().write(chunk);
  REQUIRE(!w);
  CHECK(w.error() == std::errc::broken_pipe);
  CHECK(w.error().message() == "write EPIPE");
  sigset_t pending;
  sigpending(&pending);
  CHECK(!sigismember(&pending, SIGPIPE));
}

TEST_CASE("a pid that is not our child when spawn takes hold of it is marked gone: never signalled or waited by pid") {
  // With SIGCHLD ignored the kernel may reap a quick child before spawn opens its pidfd, and
  // give the pid to another process. Both shapes of that, made on purpose:
  cp::detail::native_child c;
  SUBCASE("the child was reaped already (its pid names nothing)") {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    REQUIRE(::waitpid(pid, nullptr, 0) == pid);
    c.pid = pid;
  }
  SUBCASE("the pid names a live process that is not our child (pid 1 stands in for a reused pid)") {
    c.pid = 1;
  }
  cp::detail::adopt_child_posix(c);
  CHECK(c.gone);
  CHECK(!c.handle);
  auto k = cp::detail::kill_native(c, 0);  // signal 0: harmless even if this check failed
  REQUIRE(!k);
  CHECK(k.error().message() == "kill ESRCH");
  auto w = cp::detail::wait_native(c);
  REQUIRE(!w);
  CHECK(w.error().message() == "wait " + std::to_string(c.pid) + " ECHILD");
}

TEST_CASE("a child of ours, alive, is adopted with its pidfd and not marked gone") {
  auto p = cp::spawn(child_path(), {"sleep", "5000"}, {.stdio = {cp::ignore, cp::ignore, cp::ignore}}).value();
  cp::detail::native_child c;
  c.pid = static_cast<pid_t>(p.pid());
  cp::detail::adopt_child_posix(c);
  CHECK(!c.gone);
  CHECK(c.handle);
  CHECK(p.kill());
  CHECK(p.wait()->signal() == SIGTERM);
}

TEST_CASE("SIGCHLD ignored by the application: wait reports ECHILD instead of hanging") {
  struct sigaction ign {}, old {};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGCHLD, &ign, &old);
  auto p = cp::spawn(child_path(), {"exit", "3"}, {.stdio = {cp::ignore, cp::ignore, cp::ignore}}).value();
  auto st = p.wait();
  sigaction(SIGCHLD, &old, nullptr);
  REQUIRE(!st);
  CHECK(st.error() == std::errc::no_child_process);
  CHECK(st.error().message() == "wait " + std::to_string(p.pid()) + " ECHILD");
}

namespace {
std::atomic<int> reaped_by_app{0};
// An application's SIGCHLD handler of the careless kind: it reaps every child, ours included.
void reap_everything(int) {
  const int saved = errno;
  while (::waitpid(-1, nullptr, WNOHANG) > 0) ++reaped_by_app;
  errno = saved;
}
// Waits until the application's handler has reaped `count` children in all.
bool app_reaped(int count) {
  for (int i = 0; i < 10000 && reaped_by_app < count; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return reaped_by_app >= count;
}
}  // namespace

TEST_CASE("an application SIGCHLD handler that reaps every child: wait, exit() and spawn_sync end with ECHILD") {
  struct sigaction reap {}, old {};
  reap.sa_handler = reap_everything;
  reap.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigemptyset(&reap.sa_mask);
  sigaction(SIGCHLD, &reap, &old);
  reaped_by_app = 0;
  const auto quiet = cp::options{.stdio = {cp::ignore, cp::ignore, cp::ignore}};

  auto p = cp::spawn(child_path(), {"exit", "3"}, quiet).value();
  REQUIRE(app_reaped(1));  // the handler took the status first: the library can only say so
  auto st = p.wait();
  REQUIRE(!st);
  CHECK(st.error() == std::errc::no_child_process);
  CHECK(st.error().message() == "wait " + std::to_string(p.pid()) + " ECHILD");

  auto q = cp::spawn(child_path(), {"exit", "4"}, quiet).value();
  REQUIRE(app_reaped(2));
  auto ast = cp::sync_wait([&]() -> cp::task<cp::result<cp::exit_status>> { co_return co_await q.exit(); }());
  REQUIRE(!ast);
  CHECK(ast.error() == std::errc::no_child_process);
  CHECK(ast.error().message() == "wait " + std::to_string(q.pid()) + " ECHILD");

  // spawn_sync serves the pipes until their end, then waits: the status is gone by then.
  auto r = cp::spawn_sync(child_path(), {"exit", "5"});
  sigaction(SIGCHLD, &old, nullptr);
  REQUIRE(!r);
  CHECK(r.error() == std::errc::no_child_process);
  CHECK(r.error().message().rfind("wait ", 0) == 0);
  CHECK(r.error().message().ends_with(" ECHILD"));
}

TEST_CASE("EMFILE: a clear error, nothing leaked, and spawning works again") {
  const auto before = open_fds();
  rlimit old{};
  getrlimit(RLIMIT_NOFILE, &old);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(before.back() + 3);  // room for one pipe, not three
  setrlimit(RLIMIT_NOFILE, &low);
  std::vector<int> filler;
  for (int fd; (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) filler.push_back(fd);
  auto r = cp::spawn(child_path(), {"exit", "0"});
  for (int fd : filler) close(fd);
  setrlimit(RLIMIT_NOFILE, &old);
  REQUIRE(!r);
  CHECK(r.error() == std::errc::too_many_files_open);
  CHECK(r.error().message() == "spawn " + child_path() + ": stdio[0] pipe EMFILE");
  CHECK(open_fds() == before);
  auto again = cp::spawn_sync(child_path(), {"exit", "0"});
  REQUIRE(again);
  CHECK(again->ok());
}

TEST_CASE("shell: the program and arguments are joined by spaces and run by the shell") {
  auto p = cp::spawn("echo", {"$((6*7))", "a"}, {.stdio = {cp::ignore, cp::pipe, cp::inherit}, .shell = true});
  REQUIRE(p);
  CHECK(p->out().read_all().value() == "42 a\n");
  CHECK(p->wait()->success());
}

TEST_CASE("the destructor also kills a child that ignores SIGTERM") {
  cp::pid_type pid = 0;
  {
    auto p = cp::spawn(child_path(), {"ignore-term-sleep", "100000"}, {.stdio = {cp::ignore, cp::pipe, cp::ignore}}).value();
    char buf[6];
    REQUIRE(p.out().read_some(buf).value() > 0);  // it has set SIG_IGN
    pid = p.pid();
  }
  CHECK(!pid_exists(pid));
}


TEST_CASE("ignore past stderr closes the parent's fd with that number in the child") {
  const int leaky = open("/dev/null", O_RDONLY);  // no O_CLOEXEC
  REQUIRE(leaky > 2);
  std::vector<cp::stdio_spec> stdio(static_cast<std::size_t>(leaky) + 1, cp::ignore);
  stdio[1] = cp::pipe;
  stdio[2] = cp::inherit;
  auto p = cp::spawn(child_path(), {"fds"}, {.stdio = stdio});
  REQUIRE(p);
  CHECK(p->out().read_all().value() == "0 1 2\n");
  CHECK(p->wait()->success());
  close(leaky);
}

TEST_CASE("a relative PATH entry with a relative cwd is found from the child's cwd") {
  const std::string top = "childproc_relcwd_" + std::to_string(getpid());
  std::filesystem::create_directories(top + "/sub");
  std::filesystem::create_symlink(std::filesystem::absolute(child_path()), top + "/sub/mychild");
  auto r = cp::exec_file("mychild", {"exit", "5"}, {.cwd = top, .env = cp::environment::extend({{"PATH", "sub"}})});
  std::filesystem::remove_all(top);
  REQUIRE(r);
  CHECK(r->status.exit_code() == 5);
}

#if defined(__linux__)
namespace {
// Waits until the pipe `fd` holds `n` bytes (its writer fills it), for at most 20 s.
bool wait_full(int fd, int n) {
  for (int i = 0; i < 20000; ++i) {
    int avail = 0;
    if (::ioctl(fd, FIONREAD, &avail) != 0) return false;
    if (avail >= n) return true;
    ::poll(nullptr, 0, 1);
  }
  return false;
}

cp::process zeros(long long bytes) {
  return cp::spawn("head", {"-c", std::to_string(bytes), "/dev/zero"}, {.stdio = {cp::ignore, cp::pipe, cp::inherit}}).value();
}

// Reads what is left to the end: the byte count.
long long drain(cp::stream& s) {
  static char buf[65536];
  long long got = 0;
  while (auto r = s.read_some(buf)) got += static_cast<long long>(*r);
  return got;
}
}  // namespace

TEST_CASE("Linux: a child's stdout pipe that two reads in a row find full grows to 1 MiB; every byte arrives") {
  REQUIRE(cp::detail::grown_pipe_bytes.load() == 0);
  auto p = zeros(8 << 20);
  const int fd = p.out().handle();
  const int start = ::fcntl(fd, F_GETPIPE_SZ);
  REQUIRE(start == 65536);
  std::vector<char> buf(65536);
  long long got = 0;
  auto read_full = [&] {
    REQUIRE(wait_full(fd, start));
    auto r = p.out().read_some(buf);
    REQUIRE(r);
    CHECK(*r == buf.size());
    got += static_cast<long long>(*r);
  };
  read_full();
  CHECK(::fcntl(fd, F_GETPIPE_SZ) == start);  // once is not enough
  char small[100];
  CHECK(p.out().read_some(small).value() == sizeof small);  // a short read breaks the row,
  const std::size_t rest = p.out().read_some(buf).value();    // and so does the rest of that page and more
  CHECK(rest < static_cast<std::size_t>(start));
  got += static_cast<long long>(sizeof small + rest);
  read_full();
  CHECK(::fcntl(fd, F_GETPIPE_SZ) == start);
  read_full();
  CHECK(::fcntl(fd, F_GETPIPE_SZ) == 1 << 20);
  CHECK(cp::detail::grown_pipe_bytes.load() == (1 << 20) - start);
  got += drain(p.out());
  CHECK(got == 8 << 20);
  CHECK(p.wait()->exit_code() == 0);
  p.out().close();
  CHECK(cp::detail::grown_pipe_bytes.load() == 0);  // given back
}

TEST_CASE("Linux: the same through co_await async_read_some") {
  auto p = zeros(4 << 20);
  const int fd = p.out().handle();
  const long long got = cp::sync_wait([&]() -> cp::task<long long> {
    std::vector<char> buf(65536);
    long long n = 0;
    for (int k = 0; k < 2; ++k) {
      REQUIRE(wait_full(fd, 65536));
      auto r = co_await p.out().async_read_some(buf);
      REQUIRE(r);
      CHECK(*r == 65536);
      n += static_cast<long long>(*r);
    }
    CHECK(::fcntl(fd, F_GETPIPE_SZ) == 1 << 20);
    while (auto r = co_await p.out().async_read_some(buf)) n += static_cast<long long>(*r);
    co_return n;
  }());
  CHECK(got == 4 << 20);
  CHECK(p.wait()->exit_code() == 0);
  p.out().close();
  CHECK(cp::detail::grown_pipe_bytes.load() == 0);
}

TEST_CASE("Linux: spawn_sync's output pipe grows too, and the output is whole") {
  auto r = cp::spawn_sync(child_path(), {"write-out-pipe-size", std::to_string(32 << 20)}, {.max_buffer = 64 << 20}).value();
  CHECK(r.status.exit_code() == 0);
  CHECK(r.err == "pipe=1048576\n");  // the child saw its stdout grow
  REQUIRE(r.out.size() == std::size_t{32} << 20);
  bool pattern = true;
  for (std::size_t i = 0; i < r.out.size() && pattern; i += 4093) pattern = r.out[i] == static_cast<char>('a' + i % 26);
  CHECK(pattern);
  CHECK(cp::detail::grown_pipe_bytes.load() == 0);  // given back
}

TEST_CASE("Linux: grown pipes stay within the process's budget; a stream that closes gives its share back") {
  const std::size_t each = cp::detail::grown_pipe_size - 65536;
  const std::size_t fit = cp::detail::grown_pipes_budget / each;
  std::vector<cp::process> kids;
  std::vector<int> sizes;
  std::vector<char> buf(65536);
  for (std::size_t i = 0; i < fit + 3; ++i) {
    kids.push_back(zeros(4 << 20));
    cp::stream& s = kids.back().out();
    for (int k = 0; k < 2; ++k) {
      REQUIRE(wait_full(s.handle(), 65536));
      REQUIRE(s.read_some(buf).value() == 65536);
    }
    sizes.push_back(::fcntl(s.handle(), F_GETPIPE_SZ));
  }
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    INFO("child " << i << " of " << sizes.size() << ", " << fit << " fit");
    CHECK(sizes[i] == (i < fit ? 1 << 20 : 65536));
  }
  CHECK(cp::detail::grown_pipe_bytes.load() == fit * each);
  kids.front().out().close();  // its writer dies of SIGPIPE; its share comes back
  CHECK(cp::detail::grown_pipe_bytes.load() == (fit - 1) * each);
  auto late = zeros(4 << 20);
  for (int k = 0; k < 2; ++k) {
    REQUIRE(wait_full(late.out().handle(), 65536));
    REQUIRE(late.out().read_some(buf).value() == 65536);
  }
  CHECK(::fcntl(late.out().handle(), F_GETPIPE_SZ) == 1 << 20);
  CHECK(drain(late.out()) == (4 << 20) - 2 * 65536);
  CHECK(late.wait()->exit_code() == 0);
  for (auto& k : kids) k.out().close();
  for (auto& k : kids) (void)k.wait();
  late.out().close();
  CHECK(cp::detail::grown_pipe_bytes.load() == 0);
}

// The kernel refuses growth past the user's pipe memory (an unprivileged user whose pipes hold
// more than /proc/sys/fs/pipe-user-pages-soft): the stream stays as it is and works.
TEST_CASE("Linux: growth the kernel refuses (the user's pipe memory is used up) leaves the pipe as it was, and it works") {
  std::ifstream soft_limit("/proc/sys/fs/pipe-user-pages-soft");
  long soft = 0;
  soft_limit >> soft;
  REQUIRE_MESSAGE(soft > 0, "this machine sets no per-user pipe memory limit: nothing can refuse growth");
  // A user of its own (a uid no one else runs as, from this pid), so no other process's pipes
  // count against its limit, nor are freed under it, while it runs.
  const auto uid = static_cast<uid_t>(3000000 + ::getpid());
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (::geteuid() == 0 && (::setgid(uid) != 0 || ::setuid(uid) != 0)) ::_exit(10);
    std::vector<int> hogs;
    for (int i = 0; i < 4096; ++i) {  // 1 MiB pipes until the kernel says no
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC) != 0) ::_exit(11);
      hogs.push_back(fds[0]);
      hogs.push_back(fds[1]);
      if (::fcntl(fds[0], F_SETPIPE_SZ, 1 << 20) < 0) break;
    }
    int probe[2];
    if (::pipe2(probe, O_CLOEXEC) != 0 || ::fcntl(probe[0], F_SETPIPE_SZ, 1 << 20) >= 0) ::_exit(12);  // refused now
    auto p = cp::spawn("head", {"-c", std::to_string(4 << 20), "/dev/zero"}, {.stdio = {cp::ignore, cp::pipe, cp::inherit}});
    if (!p) ::_exit(13);
    const int fd = p->out().handle();
    const int before = ::fcntl(fd, F_GETPIPE_SZ);
    std::vector<char> buf(65536);
    long long got = 0;
    for (int k = 0; k < 2; ++k) {  // two full reads: it asks, and is refused
      if (!wait_full(fd, before)) ::_exit(14);
      auto r = p->out().read_some({buf.data(), static_cast<std::size_t>(before)});
      if (!r || *r != static_cast<std::size_t>(before)) ::_exit(15);
      got += static_cast<long long>(*r);
    }
    if (::fcntl(fd, F_GETPIPE_SZ) != before) ::_exit(16);
    if (cp::detail::grown_pipe_bytes.load() != 0) ::_exit(17);  // nothing held for a refusal
    got += drain(p->out());
    if (got != 4 << 20) ::_exit(18);
    ::_exit(p->wait()->exit_code() == 0 ? 0 : 19);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
#endif

#if defined(__linux__)
namespace {
std::atomic<int> late_spawn_status{-1};
struct spawns_when_destroyed {  // a thread_local made before the thread's first spawn: destroyed after the library's own
  ~spawns_when_destroyed() {
    auto r = cp::exec_file(child_path(), {"exit", "7"});
    late_spawn_status = r ? r->status.exit_code().value_or(-3) : -2;
  }
};
}  // namespace

TEST_CASE("a spawn from a thread_local destructor, after the library's per-thread state is gone, still works") {
  std::thread t([] {
    thread_local spawns_when_destroyed late;
    (void)&late;
    auto r = cp::exec_file(child_path(), {"exit", "3"});  // the thread's first spawn makes the library's state
    REQUIRE(r);
    CHECK(r->status.exit_code() == 3);
  });
  t.join();
  CHECK(late_spawn_status.load() == 7);
}
#endif

TEST_CASE("socket_pipe gives the child sockets with 1 MiB send buffers (as the kernel caps them); pipe gives FIFOs") {
  auto piped = cp::exec_file(child_path(), {"fd-kinds"}, {.stdio = {cp::pipe, cp::pipe, cp::pipe}});
  REQUIRE(piped);
  CHECK(piped->out == "0=fifo 1=fifo 2=fifo\n");
  std::string want_sndbuf;
#if defined(__linux__)
  // Linux keeps twice what was asked, and asking is capped at net.core.wmem_max.
  long wmem_max = 0;
  std::ifstream("/proc/sys/net/core/wmem_max") >> wmem_max;
  REQUIRE(wmem_max > 0);
  want_sndbuf = " sndbuf=" + std::to_string(2 * std::min<long>(cp::detail::grown_pipe_size / 2, wmem_max));
#endif
  auto r = cp::exec_file(child_path(), {"fd-kinds"}, {.stdio = {cp::socket_pipe, cp::socket_pipe, cp::socket_pipe}});
  REQUIRE(r);
  CHECK(r->ok());
#if defined(__linux__)
  CHECK(r->out == "0=socket 1=socket 2=socket" + want_sndbuf + "\n");
#else
  CHECK(r->out.rfind("0=socket 1=socket 2=socket sndbuf=", 0) == 0);
#endif
  // Mixed: only the entries asked for are sockets; 2>&1 follows stdout.
  auto m = cp::exec_file(child_path(), {"fd-kinds"}, {.stdio = {cp::pipe, cp::socket_pipe, cp::same_as_stdout}});
  REQUIRE(m);
  CHECK(m->out.rfind("0=fifo 1=socket 2=socket", 0) == 0);
}

TEST_CASE("a child that sends descriptors down a socket_pipe stdout: every byte arrives, no descriptor stays in the parent") {
  const auto before = open_fds();
  constexpr int n = 300;
  const std::string want = std::string(n, 'x') + "end\n";
  {  // the blocking reader
    auto p = cp::spawn(child_path(), {"send-fd-out", std::to_string(n)}, {.stdio = {cp::ignore, cp::socket_pipe, cp::inherit}}).value();
    auto all = p.out().read_all();
    REQUIRE(all);
    CHECK(*all == want);
    CHECK(p.wait()->success());
  }
  CHECK(open_fds() == before);
  {  // the loop's reader
    auto p = cp::spawn(child_path(), {"send-fd-out", std::to_string(n)}, {.stdio = {cp::ignore, cp::socket_pipe, cp::inherit}}).value();
    auto all = cp::sync_wait(p.out().async_read_all());
    REQUIRE(all);
    CHECK(*all == want);
    CHECK(p.wait()->success());
  }
  CHECK(open_fds() == before);
  {  // exec's capture
    auto r = cp::exec_file(child_path(), {"send-fd-out", std::to_string(n)}, {.stdio = {cp::ignore, cp::socket_pipe, cp::socket_pipe}});
    REQUIRE(r);
    CHECK(r->ok());
    CHECK(r->out == want);
  }
  CHECK(open_fds() == before);
  // On a plain pipe the same child cannot send: sendmsg fails (ENOTSOCK) and it says so.
  auto r = cp::exec_file(child_path(), {"send-fd-out", "1"}, {.stdio = {cp::ignore, cp::pipe, cp::pipe}});
  REQUIRE(r);
  CHECK(r->status.exit_code() == 105);
  CHECK(r->out.empty());
}

TEST_CASE("socket_pipe: the parent's end is non-blocking like a pipe's, and release() hands it over as it is") {
  auto p = cp::spawn(child_path(), {"sleep", "100000"}, {.stdio = {cp::socket_pipe, cp::socket_pipe, cp::inherit}}).value();
  for (std::size_t i : {0u, 1u}) {
    const int fd = p.stdio(i).handle();
    struct stat st{};
    REQUIRE(fstat(fd, &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
  }
  const int out = p.out().release();
  CHECK(!p.out().is_open());
  CHECK((fcntl(out, F_GETFL) & O_NONBLOCK) != 0);
  char c;
  CHECK(::read(out, &c, 1) == -1);
  CHECK(errno == EAGAIN);
  ::close(out);
  CHECK(p.kill(SIGKILL));
  CHECK(p.wait()->signal() == SIGKILL);
}

#if defined(__linux__)
TEST_CASE("Linux: why pipe stays the default: a child can open /dev/stdout on a pipe, not on a socket_pipe (ENXIO)") {
  auto on_pipe = cp::exec("echo hi > /dev/stdout", {.stdio = {cp::ignore, cp::pipe, cp::pipe}});
  REQUIRE(on_pipe);
  CHECK(on_pipe->ok());
  CHECK(on_pipe->out == "hi\n");
  auto on_socket = cp::exec("echo hi > /dev/stdout", {.stdio = {cp::ignore, cp::socket_pipe, cp::pipe}});
  REQUIRE(on_socket);
  CHECK(on_socket->status.exit_code() == 2);  // the shell could not open it
  CHECK(on_socket->out.empty());
  CHECK(on_socket->err.find("No such device or address") != std::string::npos);
}
#endif

TEST_CASE("socket_pipe flows one way, as a pipe: the child cannot write its stdin (EPIPE) and reads end of file on its stdout") {
  // On a pipe the wrong direction is EBADF (write-fd exits 104, read-fd 103); on a socket_pipe the
  // direction is shut: a write is EPIPE (SIGPIPE kills the child), a read is end of file at once.
  auto w = cp::exec_file(child_path(), {"write-fd", "0", "x"}, {.stdio = {cp::socket_pipe, cp::pipe, cp::pipe}});
  REQUIRE(w);
  CHECK(w->status.signal() == SIGPIPE);
  auto wp = cp::exec_file(child_path(), {"write-fd", "0", "x"}, {.stdio = {cp::pipe, cp::pipe, cp::pipe}});
  REQUIRE(wp);
  CHECK(wp->status.exit_code() == 104);
  auto r = cp::exec_file(child_path(), {"read-fd", "1"}, {.stdio = {cp::pipe, cp::socket_pipe, cp::pipe}, .timeout = std::chrono::seconds(20)});
  REQUIRE(r);
  CHECK(r->status.exit_code() == 0);  // not the timeout's SIGTERM: it did not wait
  CHECK(r->out.empty());
  auto rp = cp::exec_file(child_path(), {"read-fd", "1"}, {.stdio = {cp::pipe, cp::pipe, cp::pipe}});
  REQUIRE(rp);
  CHECK(rp->status.exit_code() == 103);
}

TEST_CASE("a loop's write waiting on a socket_pipe stdin the child does not read does not spin (no RDHUP asked for a writer)") {
  // The parent's stdin end has the peer's write side shut from the start: a registration that
  // asked for EPOLLRDHUP would fire at every re-arm while the write waits.
  auto p = cp::spawn(child_path(), {"sleep", "100000"}, {.stdio = {cp::socket_pipe, cp::ignore, cp::inherit}}).value();
  const std::string big(64u << 20, 'x');  // more than the socket holds: the write waits
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  auto run = [&]() -> cp::task<int> {
    auto write = [&]() -> cp::task<int> {
      auto w = co_await p.in().async_write(big);
      co_return w ? 1 : 2;
    };
    auto pause = []() -> cp::task<int> {
      (void)co_await cp::event_loop::current()->sleep(std::chrono::milliseconds(1000));
      co_return 0;
    };
    auto first = co_await cp::when_any(pause(), write());
    co_return static_cast<int>(first.index);
  };
  CHECK(cp::sync_wait(run()) == 0);  // the pause ended first: the write still waits
  getrusage(RUSAGE_SELF, &after);
  const auto cpu_us = [](const rusage& u) {
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000000L + u.ru_utime.tv_usec + u.ru_stime.tv_usec;
  };
  MESSAGE("CPU during the 1 s wait: " << (cpu_us(after) - cpu_us(before)) / 1000 << " ms");
  CHECK(cpu_us(after) - cpu_us(before) < 500000);  // a spin takes the whole second
  CHECK(p.kill(SIGKILL));
  CHECK(p.wait()->signal() == SIGKILL);
}
