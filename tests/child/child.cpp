// Helper child program for the childproc test suite.
//
// The tests spawn this program and check what it observes (arguments,
// environment, working directory, open descriptors, signal state, ids) and
// what it produces (output patterns, exit codes, deaths by signal).
//
//   usage: child <mode> [args...]      (the modes are listed in kModes below)
//
// Exit codes: 0 success, 3 `env` variable unset, 99 mode unsupported on this
// platform, 100 usage error, 101 survived `signal`, 102 write error on
// stdout/stderr, 103 read error, 104 `write-fd` failed, 105 another system
// call failed.
//
// Only the standard library and POSIX are used. POSIX-specific code sits in
// `#ifndef _WIN32` blocks so that a Win32 port can be added later; until then
// those modes report "unsupported" on Windows.

#ifdef _WIN32
#define _CRT_SECURE_NO_WARNINGS
#endif

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>  // memcpy
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>  // std::exchange
#include <vector>

#ifdef _WIN32
#include <winsock2.h>  // uv-node-echo's sockets; before <windows.h>
#include <direct.h>
#include <fcntl.h>
#include <io.h>
#include <windows.h>
#include <shellapi.h>  // CommandLineToArgvW: argv in UTF-8, not the ANSI code page
#else
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>  // fd-kinds, send-fd-out
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>  // PR_GET_PDEATHSIG
#endif

extern "C" char** environ;
#endif

namespace {

constexpr int kOk = 0;
constexpr int kEnvUnset = 3;
constexpr int kUnsupported = 99;
constexpr int kUsage = 100;
constexpr int kSurvivedSignal = 101;
constexpr int kWriteError = 102;
constexpr int kReadError = 103;
constexpr int kWriteFdFailed = 104;
constexpr int kSystemError = 105;

constexpr std::size_t kChunk = 64 * 1024;
constexpr std::size_t kMaxIo = std::size_t{1} << 30;  // fits Win32's int counts

// ---------------------------------------------------------------------------
// Thin platform layer

#ifdef _WIN32
std::ptrdiff_t sys_read(int fd, char* buf, std::size_t n) {
    return _read(fd, buf, static_cast<unsigned>(n));
}
std::ptrdiff_t sys_write(int fd, const char* buf, std::size_t n) {
    return _write(fd, buf, static_cast<unsigned>(n));
}
int sys_close(int fd) { return _close(fd); }
std::string to_utf8(const wchar_t* w) {
    const int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, nullptr, 0, nullptr, nullptr);
    std::string s(static_cast<std::size_t>(n > 0 ? n - 1 : 0), '\0');
    if (n > 1) WideCharToMultiByte(CP_UTF8, 0, w, -1, s.data(), n, nullptr, nullptr);
    return s;
}
std::wstring to_wide(const char* s) {
    const int n = MultiByteToWideChar(CP_UTF8, 0, s, -1, nullptr, 0);
    std::wstring w(static_cast<std::size_t>(n > 0 ? n - 1 : 0), L'\0');
    if (n > 1) MultiByteToWideChar(CP_UTF8, 0, s, -1, w.data(), n);
    return w;
}
std::optional<std::string> get_env(const char* name) {
    const wchar_t* v = _wgetenv(to_wide(name).c_str());
    if (!v) return std::nullopt;
    return to_utf8(v);
}
std::vector<std::string> environment_entries() {  // the block itself: _wenviron is lazy under main()
    std::vector<std::string> out;
    wchar_t* block = GetEnvironmentStringsW();
    for (const wchar_t* e = block; e && *e; e += wcslen(e) + 1)
        if (*e != L'=') out.push_back(to_utf8(e));
    FreeEnvironmentStringsW(block);
    return out;
}
std::optional<std::string> current_dir() {
    wchar_t buf[32768];
    if (!_wgetcwd(buf, 32768)) return std::nullopt;
    return to_utf8(buf);
}
void set_binary(int fd) { _setmode(fd, _O_BINARY); }
#else
std::ptrdiff_t sys_read(int fd, char* buf, std::size_t n) { return ::read(fd, buf, n); }
std::ptrdiff_t sys_write(int fd, const char* buf, std::size_t n) { return ::write(fd, buf, n); }
int sys_close(int fd) { return ::close(fd); }
std::optional<std::string> get_env(const char* name) {
    const char* v = std::getenv(name);
    if (!v) return std::nullopt;
    return std::string(v);
}
std::vector<std::string> environment_entries() {
    std::vector<std::string> out;
    for (char** e = environ; e && *e; ++e) out.emplace_back(*e);
    return out;
}
std::optional<std::string> current_dir() {
    std::vector<char> buf(256);
    while (!::getcwd(buf.data(), buf.size())) {
        if (errno != ERANGE) return std::nullopt;
        buf.resize(buf.size() * 2);
    }
    return std::string(buf.data());
}
void set_binary(int) {}
#endif

// ---------------------------------------------------------------------------
// I/O helpers

// Writes all of [data, data + size) to fd, retrying short writes and EINTR.
bool write_all(int fd, const char* data, std::size_t size) {
    while (size > 0) {
        const std::ptrdiff_t n = sys_write(fd, data, std::min(size, kMaxIo));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

bool write_all(int fd, std::string_view text) { return write_all(fd, text.data(), text.size()); }

// Writes text to stdout and maps the outcome to an exit code.
int emit(std::string_view text) { return write_all(1, text) ? kOk : kWriteError; }

// Reads up to size bytes, retrying EINTR: bytes read, 0 at EOF, -1 on error.
std::ptrdiff_t read_some(int fd, char* buf, std::size_t size) {
    for (;;) {
        const std::ptrdiff_t n = sys_read(fd, buf, std::min(size, kMaxIo));
        if (n >= 0 || errno != EINTR) return n;
    }
}

std::array<char, kChunk> g_buffer;

// Reads fd to EOF, passing every chunk to sink, which returns false when it
// fails to write. Returns an exit code.
template <class Sink>
int drain(int fd, Sink sink) {
    for (;;) {
        const std::ptrdiff_t n = read_some(fd, g_buffer.data(), g_buffer.size());
        if (n == 0) return kOk;
        if (n < 0) return kReadError;
        if (!sink(std::string_view(g_buffer.data(), static_cast<std::size_t>(n)))) return kWriteError;
    }
}

// Writes "child: <parts...>\n" to stderr and returns code.
template <class... Parts>
int complain(int code, const Parts&... parts) {
    std::string message = "child: ";
    ((message += parts), ...);
    message += '\n';
    write_all(2, message);
    return code;
}

// Parses a whole string as a decimal number (no sign for unsigned types).
template <class T>
std::optional<T> parse_number(std::string_view text) {
    T value{};
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (ec != std::errc{} || ptr != end) return std::nullopt;
    return value;
}

int bad_number(std::string_view text) { return complain(kUsage, "not a valid number: '", text, "'"); }

void sleep_ms(std::uint32_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// ---------------------------------------------------------------------------
// Modes

struct Args {
    const char* argv0;
    std::span<char* const> rest;  // the arguments after the mode name

    const char* operator[](std::size_t i) const { return rest[i]; }
};

int mode_echo(const Args&) {
    return drain(0, [](std::string_view chunk) { return write_all(1, chunk); });
}

int mode_echo_both(const Args&) {
    return drain(0, [](std::string_view chunk) { return write_all(1, chunk) && write_all(2, chunk); });
}

int mode_count_stdin(const Args&) {
    std::uint64_t total = 0;
    const int rc = drain(0, [&total](std::string_view chunk) {
        total += chunk.size();
        return true;
    });
    return rc != kOk ? rc : emit(std::to_string(total) + "\n");
}

int mode_args(const Args& a) {
    std::string out;
    for (const char* arg : a.rest) {
        out += arg;
        out += '\0';
    }
    return emit(out);
}

int mode_argv0(const Args& a) { return emit(a.argv0); }

int mode_env(const Args& a) {
    const auto value = get_env(a[0]);
    return value ? emit(*value) : kEnvUnset;
}

int mode_env_all(const Args&) {
    std::string out;
    for (const auto& entry : environment_entries()) {
        out += entry;
        out += '\0';
    }
    return emit(out);
}

int mode_cwd(const Args&) {
    const auto dir = current_dir();
    return dir ? emit(*dir) : complain(kSystemError, "getcwd failed");
}

int mode_exit(const Args& a) {
    const auto code = parse_number<int>(a[0]);
    return code ? *code : bad_number(a[0]);
}

// Writes `count` bytes, the byte at offset i being 'a' + i % 26, to every fd
// in fds, taking turns one 64 KiB chunk at a time.
int write_pattern(std::initializer_list<int> fds, std::string_view count) {
    const auto total = parse_number<std::uint64_t>(count);
    if (!total) return bad_number(count);

    // One chunk plus 26 bytes, so a chunk can start at any offset % 26.
    static const auto pattern = [] {
        std::array<char, kChunk + 26> bytes{};
        for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>('a' + i % 26);
        return bytes;
    }();

    for (std::uint64_t offset = 0; offset < *total; offset += kChunk) {
        const auto size = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, *total - offset));
        const char* chunk = pattern.data() + offset % 26;
        for (int fd : fds) {
            if (!write_all(fd, chunk, size)) return kWriteError;
        }
    }
    return kOk;
}

int mode_write_out(const Args& a) { return write_pattern({1}, a[0]); }
int mode_write_err(const Args& a) { return write_pattern({2}, a[0]); }
int mode_write_both(const Args& a) { return write_pattern({1, 2}, a[0]); }

int mode_write_fd(const Args& a) {
    const auto fd = parse_number<int>(a[0]);
    if (!fd || *fd < 0) return bad_number(a[0]);
    set_binary(*fd);
    return write_all(*fd, a[1]) ? kOk : kWriteFdFailed;
}

int mode_read_fd(const Args& a) {
    const auto fd = parse_number<int>(a[0]);
    if (!fd || *fd < 0) return bad_number(a[0]);
    set_binary(*fd);
    return drain(*fd, [](std::string_view chunk) { return write_all(1, chunk); });
}

int mode_sleep(const Args& a) {
    const auto ms = parse_number<std::uint32_t>(a[0]);
    if (!ms) return bad_number(a[0]);
    sleep_ms(*ms);
    return kOk;
}

int mode_print_then_sleep(const Args& a) {
    const auto ms = parse_number<std::uint32_t>(a[1]);
    if (!ms) return bad_number(a[1]);
    if (!write_all(1, a[0])) return kWriteError;
    sleep_ms(*ms);
    return kOk;
}

int mode_close_stdin_sleep(const Args& a) {
    const auto ms = parse_number<std::uint32_t>(a[0]);
    if (!ms) return bad_number(a[0]);
    sys_close(0);
    sleep_ms(*ms);
    return kOk;
}

// Ends as a crash does. POSIX: SIGSEGV. Win32: the exit code of an access violation
// (0xC0000005); a real fault would start Wine's debugger, so the status is what is tested.
int mode_crash(const Args&) {
#ifdef _WIN32
    TerminateProcess(GetCurrentProcess(), 0xC0000005u);
#else
    ::signal(SIGSEGV, SIG_DFL);
    ::raise(SIGSEGV);
#endif
    return kSurvivedSignal;
}

#ifdef _WIN32
// Starts this program again as `sleep MS`, holding the inherited stdout and stderr, and returns.
int mode_grandchild_win32(const Args& a) {
    if (!parse_number<std::uint32_t>(a[0])) return bad_number(a[0]);
    wchar_t self[32768];
    GetModuleFileNameW(nullptr, self, 32768);
    std::wstring line = L"\"" + std::wstring(self) + L"\" sleep " + to_wide(a[0]);
    STARTUPINFOW si{};
    si.cb = sizeof si;
    si.dwFlags = STARTF_USESTDHANDLES;
    si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
    si.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE);
    si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
    for (HANDLE h : {si.hStdOutput, si.hStdError}) SetHandleInformation(h, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);
    PROCESS_INFORMATION pi{};
    if (!CreateProcessW(self, line.data(), nullptr, nullptr, TRUE, 0, nullptr, nullptr, &si, &pi))
        return complain(kSystemError, "CreateProcessW failed");
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    return emit("ready\n");
}

// The same, but this process stays too (asleep as long): a kill then meets it alive, for sure.
int mode_grandchild_stay(const Args& a) {
    const int rc = mode_grandchild_win32(a);
    if (rc != kOk) return rc;
    sleep_ms(*parse_number<std::uint32_t>(a[0]));
    return kOk;
}
#endif

#ifndef _WIN32

int mode_signal(const Args& a) {
    const auto sig = parse_number<int>(a[0]);
    sigset_t set;
    sigemptyset(&set);
    if (!sig || sigaddset(&set, *sig) != 0) return complain(kUsage, "not a valid signal: '", a[0], "'");

    // A crashing signal (SIGSEGV, SIGABRT, ...) should not leave a core file.
    const rlimit no_core{0, 0};
    setrlimit(RLIMIT_CORE, &no_core);

    struct sigaction action {};
    action.sa_handler = SIG_DFL;
    sigemptyset(&action.sa_mask);
    sigaction(*sig, &action, nullptr);  // fails harmlessly for SIGKILL/SIGSTOP
    sigprocmask(SIG_UNBLOCK, &set, nullptr);
    raise(*sig);
    return kSurvivedSignal;
}

// Ascending list of the descriptors open in this process.
std::vector<int> open_fds() {
    std::vector<int> fds;
#ifdef __linux__
    if (DIR* dir = opendir("/proc/self/fd")) {
        const int own = dirfd(dir);
        while (const dirent* entry = readdir(dir)) {
            const auto fd = parse_number<int>(entry->d_name);  // skips "." and ".."
            if (fd && *fd != own) fds.push_back(*fd);
        }
        closedir(dir);
        std::sort(fds.begin(), fds.end());
        return fds;
    }
#endif
    for (int fd = 0; fd < 1024; ++fd) {
        if (fcntl(fd, F_GETFD) != -1) fds.push_back(fd);
    }
    return fds;
}

int mode_fds(const Args&) {
    std::string out;
    for (int fd : open_fds()) {
        if (!out.empty()) out += ' ';
        out += std::to_string(fd);
    }
    return emit(out + "\n");
}

// What fds 0-2 are ("0=fifo 1=socket 2=chr"), and fd 1's SO_SNDBUF when it is a socket.
int mode_fd_kinds(const Args&) {
    std::string out;
    for (int fd = 0; fd < 3; ++fd) {
        struct stat st {};
        const char* kind = fstat(fd, &st) != 0   ? "closed"
                           : S_ISSOCK(st.st_mode) ? "socket"
                           : S_ISFIFO(st.st_mode) ? "fifo"
                           : S_ISCHR(st.st_mode)  ? "chr"
                           : S_ISREG(st.st_mode)  ? "file"
                                                  : "other";
        out += (fd ? " " : "") + std::to_string(fd) + "=" + kind;
    }
    int size = 0;
    socklen_t len = sizeof size;
    if (getsockopt(1, SOL_SOCKET, SO_SNDBUF, &size, &len) == 0) out += " sndbuf=" + std::to_string(size);
    return emit(out + "\n");
}

// Sends N one-byte messages "x" down fd 1, each carrying a descriptor (SCM_RIGHTS of fd 2), then
// "end\n": what a hostile child on a socket stdout can do.
int mode_send_fd_out(const Args& a) {
    const auto n = parse_number<std::uint32_t>(a[0]);
    if (!n) return bad_number(a[0]);
    for (std::uint32_t i = 0; i < *n; ++i) {
        char byte = 'x';
        iovec io{&byte, 1};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
        msghdr m{};
        m.msg_iov = &io;
        m.msg_iovlen = 1;
        m.msg_control = control;
        m.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        const int fd = 2;
        std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
        if (sendmsg(1, &m, 0) != 1) return complain(kSystemError, "sendmsg failed");
    }
    return emit("end\n");
}

int mode_grandchild(const Args& a) {
    const auto ms = parse_number<std::uint32_t>(a[0]);
    if (!ms) return bad_number(a[0]);
    const pid_t pid = fork();
    if (pid < 0) return complain(kSystemError, "fork failed");
    if (pid == 0) {  // the grandchild keeps the inherited stdout/stderr open
        sleep_ms(*ms);
        _exit(0);
    }
    return emit("ready\n");
}

int mode_grandchild_stay(const Args& a) {
    const int rc = mode_grandchild(a);
    if (rc != kOk) return rc;
    sleep_ms(*parse_number<std::uint32_t>(a[0]));
    return kOk;
}

std::string_view disposition(const struct sigaction& action) {
    if (action.sa_flags & SA_SIGINFO) return "handler";
    if (action.sa_handler == SIG_DFL) return "default";
    if (action.sa_handler == SIG_IGN) return "ignore";
    return "handler";
}

int mode_signals(const Args&) {
    struct sigaction pipe_action {};
    sigset_t mask;
    sigemptyset(&mask);
    if (sigaction(SIGPIPE, nullptr, &pipe_action) != 0 || sigprocmask(SIG_BLOCK, nullptr, &mask) != 0) {
        return complain(kSystemError, "cannot query the signal state");
    }

    std::string blocked;
    for (int sig = 1; sig <= 31; ++sig) {
        if (sigismember(&mask, sig) != 1) continue;
        if (!blocked.empty()) blocked += ',';
        blocked += std::to_string(sig);
    }

    std::string out = "SIGPIPE=";
    out += disposition(pipe_action);
    out += "\nmask=";
    out += blocked.empty() ? "empty" : blocked;
    out += '\n';
    return emit(out);
}

// Every signal whose disposition is not the default, and every blocked one ("none" / "empty").
int mode_dispositions(const Args&) {
    sigset_t mask;
    sigemptyset(&mask);
    if (sigprocmask(SIG_BLOCK, nullptr, &mask) != 0) return complain(kSystemError, "cannot query the signal mask");
    std::string changed, blocked;
    for (int sig = 1; sig < NSIG; ++sig) {
        struct sigaction action {};
        if (sigaction(sig, nullptr, &action) == 0 && disposition(action) != std::string_view("default"))
            changed += (changed.empty() ? "" : ",") + std::to_string(sig) + ":" + std::string(disposition(action));
        if (sigismember(&mask, sig) == 1) blocked += (blocked.empty() ? "" : ",") + std::to_string(sig);
    }
    return emit("changed=" + (changed.empty() ? std::string("none") : changed) + "\nmask=" +
                (blocked.empty() ? std::string("empty") : blocked) + "\n");
}

int mode_ids(const Args&) {
    return emit("pid=" + std::to_string(getpid()) + " ppid=" + std::to_string(getppid()) +
                " pgid=" + std::to_string(getpgid(0)) + " sid=" + std::to_string(getsid(0)) +
                " uid=" + std::to_string(getuid()) + " gid=" + std::to_string(getgid()) + "\n");
}

int mode_ignore_term_sleep(const Args& a) {
    const auto ms = parse_number<std::uint32_t>(a[0]);
    if (!ms) return bad_number(a[0]);
    struct sigaction action {};
    action.sa_handler = SIG_IGN;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGTERM, &action, nullptr) != 0) return complain(kSystemError, "sigaction failed");
    if (!write_all(1, "ready\n")) return kWriteError;
    sleep_ms(*ms);
    return kOk;
}

#endif  // !_WIN32

#ifdef __linux__
// The signal this process gets when its parent ends (0: none).
int mode_pdeathsig(const Args&) {
    int sig = 0;
    if (prctl(PR_GET_PDEATHSIG, &sig) != 0) return complain(kSystemError, "prctl failed");
    return emit("pdeathsig=" + std::to_string(sig) + "\n");
}

// Writes the pattern to stdout, then says on stderr how large the stdout pipe is by then.
int mode_write_out_pipe_size(const Args& a) {
    if (const int rc = write_pattern({1}, a[0]); rc != kOk) return rc;
    return write_all(2, "pipe=" + std::to_string(fcntl(1, F_GETPIPE_SZ)) + "\n") ? kOk : kWriteError;
}
#define LINUX_ONLY(fn) fn
#else
#define LINUX_ONLY(fn) nullptr
#endif

#ifdef _WIN32
// Plays a Node child on Win32 the way libuv's pipe IPC works: the channel is the C runtime's
// fd NODE_CHANNEL_FD (lpReserved2), every frame a 16-byte header (flags, ignored, length, zero;
// little-endian) checked as libuv checks it, then its data; Node's JSON lines are read from the
// data of all frames. Says "hello" first, then answers each line in a frame of its own:
// "split" with {"a":1} cut across two frames and [2] after it in the second; "junk" with a line, then a
// header libuv would refuse; anything else with itself. Ends at the end of the stream.
struct overlapped_pipe {
    HANDLE h;
    HANDLE event = CreateEventW(nullptr, TRUE, FALSE, nullptr);
    bool io(bool write, char* data, DWORD size, DWORD& done) {
        OVERLAPPED o{};
        o.hEvent = event;
        const BOOL ok = write ? WriteFile(h, data, size, nullptr, &o) : ReadFile(h, data, size, nullptr, &o);
        if (!ok && GetLastError() != ERROR_IO_PENDING) return false;
        return GetOverlappedResult(h, &o, &done, TRUE) != 0;
    }
    bool read_exact(char* p, std::size_t n) {
        while (n) {
            DWORD got = 0;
            if (!io(false, p, static_cast<DWORD>(n), got) || got == 0) return false;
            p += got;
            n -= got;
        }
        return true;
    }
    // One frame: `data` after a socket's description `xfer` (632 bytes, flags 3 or 7) if any.
    bool frame(std::string_view data, std::uint32_t flags = 1, std::string_view xfer = {}) {
        std::string out(16, '\0');
        const auto put = [&](std::size_t at, std::uint32_t v) {
            for (int i = 0; i < 4; ++i) out[at + static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i));
        };
        put(0, data.empty() ? (xfer.empty() ? 0 : flags & ~1u) : flags);  // no data, no data flag
        put(8, static_cast<std::uint32_t>(data.size()));  // the data's length alone
        out.append(xfer);
        out.append(data);
        for (std::size_t at = 0; at < out.size();) {
            DWORD put_n = 0;
            if (!io(true, out.data() + at, static_cast<DWORD>(out.size() - at), put_n)) return false;
            at += put_n;
        }
        return true;
    }
};

// A loopback TCP socket: listening (`port` set to its port), or connected to `port`.
SOCKET tcp_socket(bool listen_on, std::uint16_t& port) {
    const SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = listen_on ? 0 : htons(port);
    int len = sizeof addr;
    if (s == INVALID_SOCKET) return s;
    if (!listen_on) return connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 ? s : INVALID_SOCKET;
    if (bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(s, 4) != 0 ||
        getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
        return INVALID_SOCKET;
    port = ntohs(addr.sin_port);
    return s;
}

// Reads from `s` up to and including the first newline.
std::string recv_line(SOCKET s) {
    std::string out;
    char c = 0;
    while (out.empty() || out.back() != '\n') {
        if (recv(s, &c, 1, 0) != 1) break;
        out += c;
    }
    return out;
}

int mode_uv_node_echo(const Args&) {
    const auto fd = get_env("NODE_CHANNEL_FD");
    if (!fd) return kEnvUnset;
    if (get_env("NODE_CHANNEL_SERIALIZATION_MODE") != std::optional<std::string>("json") || get_env("CHILDPROC_CHANNEL"))
        return complain(kSystemError, "NODE_CHANNEL_SERIALIZATION_MODE is not json, or CHILDPROC_CHANNEL is set");
    const intptr_t os = _get_osfhandle(std::atoi(fd->c_str()));
    if (os == -1 || os == -2) return complain(kSystemError, "no handle at fd ", *fd);
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) return complain(kSystemError, "WSAStartup failed");
    overlapped_pipe pipe{reinterpret_cast<HANDLE>(os)};
    if (!pipe.frame("\"hello\"\n")) return complain(kWriteError, "write failed");
    std::string lines;
    SOCKET received = INVALID_SOCKET;  // the socket of the last frame that carried one
    std::uint32_t received_flags = 0;
    // The next line of the data of all frames (false at the end of the stream).
    const auto next_line = [&](std::string& line) -> int {
        for (;;) {
            if (const std::size_t nl = lines.find('\n'); nl != std::string::npos) {
                line = lines.substr(0, nl + 1);
                lines.erase(0, nl + 1);
                return kOk;
            }
            unsigned char head[16];
            if (!pipe.read_exact(reinterpret_cast<char*>(head), 16)) return -1;  // the end (or a cut header)
            const auto word = [&](int i) {
                return std::uint32_t{head[4 * i]} | std::uint32_t{head[4 * i + 1]} << 8 | std::uint32_t{head[4 * i + 2]} << 16 |
                       std::uint32_t{head[4 * i + 3]} << 24;
            };
            const std::uint32_t flags = word(0), length = word(2);
            // As libuv: a connection flag only with a socket, a length only with data.
            if ((flags & ~7u) || word(3) != 0 || (!(flags & 1) && length) || ((flags & 4) && !(flags & 2)))
                return complain(kReadError, "not a libuv frame: flags ", std::to_string(flags), ", length ", std::to_string(length));
            if (flags & 2) {  // a WSAPROTOCOL_INFOW, then a 32-bit delayed error
                WSAPROTOCOL_INFOW info;
                static_assert(sizeof info == 628);
                char error[4];
                if (!pipe.read_exact(reinterpret_cast<char*>(&info), sizeof info) || !pipe.read_exact(error, 4))
                    return complain(kReadError, "a socket's description cut short");
                if (received != INVALID_SOCKET) return complain(kReadError, "a second socket before the first one's line");
                received = WSASocketW(FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, &info, 0, WSA_FLAG_OVERLAPPED);
                if (received == INVALID_SOCKET) return complain(kSystemError, "WSASocketW failed: ", std::to_string(WSAGetLastError()));
                received_flags = flags;
            }
            std::string data(length, '\0');
            if (!pipe.read_exact(data.data(), length)) return complain(kReadError, "a frame cut short");
            lines += data;
        }
    };
    // Sends a socket for `pid` in a frame with `line` (a connection if `connection`), then
    // closes this copy, as Node does with a net.Socket it sent.
    const auto send_socket = [&](SOCKET s, std::string_view pid, bool connection, const std::string& line) {
        WSAPROTOCOL_INFOW info;
        if (WSADuplicateSocketW(s, static_cast<DWORD>(std::atoi(std::string(pid).c_str())), &info) != 0) return false;
        std::string xfer(reinterpret_cast<const char*>(&info), sizeof info);
        xfer.append(4, '\0');  // no delayed error
        closesocket(s);
        return pipe.frame(line, connection ? 7 : 3, xfer);
    };
    for (std::string line;;) {
        if (const int rc = next_line(line); rc != kOk) return rc < 0 ? kOk : rc;
        bool ok = true;
        const std::string_view view(line);
        const std::string_view word = view.substr(0, view.find(' '));
        const std::string_view pid = view.size() > word.size() + 1 ? view.substr(word.size() + 1, view.size() - word.size() - 3) : "";
        std::uint16_t port = 0;
        if (line == "\"split\"\n") {
            ok = pipe.frame("{\"a\":") && pipe.frame("1}\n[2]\n");
        } else if (line == "\"junk\"\n") {
            ok = pipe.frame("\"before\"\n") && pipe.frame("x", 9);
        } else if (view.starts_with("{\"cmd\":\"NODE_HANDLE\"")) {
            // Node's answer, then the socket used: a connection says so on it and closes, a
            // server takes one connection and says so on it; then what arrived is told.
            const SOCKET s = std::exchange(received, INVALID_SOCKET);
            if (s == INVALID_SOCKET) {
                ok = pipe.frame("{\"cmd\":\"NODE_HANDLE_NACK\"}\n") && pipe.frame("{\"nosocket\":true}\n");
            } else {
                ok = pipe.frame("{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
                const SOCKET c = (received_flags & 4) ? s : accept(s, nullptr, nullptr);
                const std::string said = (received_flags & 4) ? "via socket\n" : "via server\n";
                ok = ok && c != INVALID_SOCKET && send(c, said.data(), static_cast<int>(said.size()), 0) == static_cast<int>(said.size());
                if (c != s && c != INVALID_SOCKET) closesocket(c);
                closesocket(s);
                ok = ok && pipe.frame("{\"flags\":" + std::to_string(received_flags) + ",\"line\":" + line.substr(0, line.size() - 1) + "}\n");
            }
        } else if (word == "\"bare" || word == "\"late") {
            // A socket in a frame of its own, without data: "bare" sends it before a NODE_HANDLE
            // line (which it belongs to, as libuv hands it to the data that follows), "late" after
            // one and before a plain line "after" (so the NODE_HANDLE line is NACKed). Each
            // answers with what the channel said back.
            const SOCKET listener = tcp_socket(true, port);
            const std::string msg = "{\"port\":" + std::to_string(port) + "}";
            const std::string handle_line = "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Server\",\"msg\":" + msg + "}\n";
            if (word == "\"bare")
                ok = listener != INVALID_SOCKET && send_socket(listener, pid, false, "") && pipe.frame(handle_line);
            else
                ok = listener != INVALID_SOCKET && pipe.frame(handle_line) && send_socket(listener, pid, false, "") &&
                     pipe.frame("{\"after\":" + msg + "}\n");
            std::string answer;
            if (ok) {
                if (const int rc = next_line(answer); rc != kOk) return rc < 0 ? complain(kReadError, "no answer") : rc;
                ok = pipe.frame(answer == "{\"cmd\":\"NODE_HANDLE_ACK\"}\n" ? std::string("{\"acked\":true}\n")
                                                                            : "{\"answer\":" + answer.substr(0, answer.size() - 1) + "}\n");
            }
        } else if (word == "\"server" || word == "\"socket" || word == "\"stray" || word == "\"nosock\"\n") {
            // Node sending: "server <pid>" a listening socket, "socket <pid>" a connected one
            // (it says "from node" on it first, and reads a line back once ACKed), "stray <pid>"
            // a listening socket with a line that is not NODE_HANDLE, "nosock" a NODE_HANDLE
            // line without one. Each answers with what the channel said back.
            const SOCKET listener = tcp_socket(true, port);
            SOCKET mine = INVALID_SOCKET;  // the far end of a connection sent
            const std::string msg = "{\"port\":" + std::to_string(port) + "}";
            if (word == "\"server") {
                ok = listener != INVALID_SOCKET &&
                     send_socket(listener, pid, false, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Server\",\"msg\":" + msg + "}\n");
            } else if (word == "\"socket") {
                mine = tcp_socket(false, port);
                const SOCKET theirs = mine != INVALID_SOCKET ? accept(listener, nullptr, nullptr) : INVALID_SOCKET;
                closesocket(listener);
                ok = theirs != INVALID_SOCKET && send(mine, "from node\n", 10, 0) == 10 &&
                     send_socket(theirs, pid, true, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":" + msg + "}\n");
            } else if (word == "\"stray") {
                ok = listener != INVALID_SOCKET && send_socket(listener, pid, false, "{\"stray\":" + msg + "}\n") &&
                     pipe.frame("{\"closed\":true}\n");
            } else {
                closesocket(listener);
                ok = pipe.frame("{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Server\",\"msg\":" + msg + "}\n");
            }
            if (ok && word != "\"stray") {
                std::string answer;
                if (const int rc = next_line(answer); rc != kOk) return rc < 0 ? complain(kReadError, "no answer") : rc;
                if (answer == "{\"cmd\":\"NODE_HANDLE_ACK\"}\n" && mine != INVALID_SOCKET)
                    answer = "{\"acked\":true,\"read\":\"" + recv_line(mine).substr(0, 4) + "\"}\n";
                else if (answer == "{\"cmd\":\"NODE_HANDLE_ACK\"}\n")
                    answer = "{\"acked\":true}\n";
                else
                    answer = "{\"answer\":" + answer.substr(0, answer.size() - 1) + "}\n";
                ok = pipe.frame(answer);
            }
            if (mine != INVALID_SOCKET) closesocket(mine);
        } else {
            ok = pipe.frame(line);
        }
        if (!ok) return complain(kWriteError, "a socket or write failed: ", std::to_string(WSAGetLastError()));
    }
}
#define WIN32_ONLY(fn) fn
#else
#define WIN32_ONLY(fn) nullptr
#endif

// ---------------------------------------------------------------------------
// Dispatch

#ifdef _WIN32
#define POSIX_ONLY(fn) nullptr
#else
#define POSIX_ONLY(fn) fn
#endif

struct Mode {
    std::string_view name;
    int arg_count;  // -1: any number
    int (*run)(const Args&);  // nullptr: unsupported on this platform
};

constexpr Mode kModes[] = {
    {"echo", 0, mode_echo},
    {"echo-both", 0, mode_echo_both},
    {"count-stdin", 0, mode_count_stdin},
    {"args", -1, mode_args},
    {"argv0", 0, mode_argv0},
    {"env", 1, mode_env},
    {"env-all", 0, mode_env_all},
    {"cwd", 0, mode_cwd},
    {"exit", 1, mode_exit},
    {"signal", 1, POSIX_ONLY(mode_signal)},
    {"write-out", 1, mode_write_out},
    {"write-err", 1, mode_write_err},
    {"write-both", 1, mode_write_both},
    {"write-fd", 2, mode_write_fd},
    {"read-fd", 1, mode_read_fd},
    {"sleep", 1, mode_sleep},
    {"print-then-sleep", 2, mode_print_then_sleep},
    {"fds", 0, POSIX_ONLY(mode_fds)},
    {"fd-kinds", 0, POSIX_ONLY(mode_fd_kinds)},
    {"send-fd-out", 1, POSIX_ONLY(mode_send_fd_out)},
    {"uv-node-echo", 0, WIN32_ONLY(mode_uv_node_echo)},
#ifdef _WIN32
    {"grandchild", 1, mode_grandchild_win32},
    {"grandchild-stay", 1, mode_grandchild_stay},
#else
    {"grandchild", 1, mode_grandchild},
    {"grandchild-stay", 1, mode_grandchild_stay},
#endif
    {"crash", 0, mode_crash},
    {"signals", 0, POSIX_ONLY(mode_signals)},
    {"dispositions", 0, POSIX_ONLY(mode_dispositions)},
    {"ids", 0, POSIX_ONLY(mode_ids)},
    {"close-stdin-sleep", 1, mode_close_stdin_sleep},
    {"ignore-term-sleep", 1, POSIX_ONLY(mode_ignore_term_sleep)},
    {"pdeathsig", 0, LINUX_ONLY(mode_pdeathsig)},
    {"write-out-pipe-size", 1, LINUX_ONLY(mode_write_out_pipe_size)},
};

}  // namespace

int main(int argc, char** argv) {
    for (int fd : {0, 1, 2}) set_binary(fd);
#ifdef _WIN32
    // The arguments as UTF-8, split by CommandLineToArgvW: what the library's quoting targets.
    int wargc = 0;
    wchar_t** wargv = CommandLineToArgvW(GetCommandLineW(), &wargc);
    static std::vector<std::string> utf8_args;
    static std::vector<char*> utf8_argv;
    for (int i = 0; i < wargc; ++i) utf8_args.push_back(to_utf8(wargv[i]));
    for (auto& arg : utf8_args) utf8_argv.push_back(arg.data());
    utf8_argv.push_back(nullptr);
    argc = wargc;
    argv = utf8_argv.data();
#endif
    if (argc < 2) return complain(kUsage, "usage: child <mode> [args...]");

    const std::string_view name = argv[1];
    const Args args{argv[0], std::span<char* const>(argv + 2, static_cast<std::size_t>(argc - 2))};
    for (const Mode& mode : kModes) {
        if (mode.name != name) continue;
        if (mode.arg_count >= 0 && args.rest.size() != static_cast<std::size_t>(mode.arg_count)) {
            return complain(kUsage, "wrong number of arguments for mode '", name, "'");
        }
        if (!mode.run) return complain(kUnsupported, name, ": unsupported");
        return mode.run(args);
    }
    return complain(kUsage, "unknown mode '", name, "'");
}
