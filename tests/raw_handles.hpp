// Test-side OS calls for handle passing: the three kinds of handle a channel must carry (a pipe,
// a file, a socket), made and used with the raw API, so the tests check the library against the
// OS rather than against itself.
#ifndef CHILDPROC_TESTS_RAW_HANDLES_HPP
#define CHILDPROC_TESTS_RAW_HANDLES_HPP

#if defined(_WIN32)
#  include <winsock2.h>  // before <windows.h>, which would bring the old winsock.h
#  include <ws2tcpip.h>
#  include <windows.h>
#else
#  include <fcntl.h>
#  include <sys/socket.h>
#  include <unistd.h>
#endif

#include <childproc.hpp>

#include <cstdint>
#include <string>

namespace raw {

using handle = childproc::native_handle;

/// Reads `h` to its end (blocking, no library code); a socket is read with recv.
inline std::string read_all(handle h, bool socket = false) {
  std::string out;
  char buffer[4096];
  for (;;) {
#if defined(_WIN32)
    DWORD n = 0;
    if (socket) {
      const int r = ::recv(reinterpret_cast<SOCKET>(h), buffer, sizeof buffer, 0);
      if (r <= 0) return out;
      n = static_cast<DWORD>(r);
    } else if (!::ReadFile(h, buffer, sizeof buffer, &n, nullptr) || n == 0) {
      return out;
    }
#else
    (void)socket;
    const ssize_t n = ::read(h, buffer, sizeof buffer);
    if (n <= 0) return out;
#endif
    out.append(buffer, static_cast<std::size_t>(n));
  }
}

/// Writes all of `text` to `h`; false on an error.
inline bool write(handle h, const std::string& text, bool socket = false) {
#if defined(_WIN32)
  if (socket) return ::send(reinterpret_cast<SOCKET>(h), text.data(), static_cast<int>(text.size()), 0) == static_cast<int>(text.size());
  DWORD n = 0;
  return ::WriteFile(h, text.data(), static_cast<DWORD>(text.size()), &n, nullptr) && n == text.size();
#else
  (void)socket;
  return ::write(h, text.data(), text.size()) == static_cast<ssize_t>(text.size());
#endif
}

inline void close(handle h, bool socket = false) {
#if defined(_WIN32)
  if (socket) ::closesocket(reinterpret_cast<SOCKET>(h));
  else ::CloseHandle(h);
#else
  (void)socket;
  ::close(h);
#endif
}

/// Creates (truncates) `path` for reading and writing.
inline handle open_file(const std::string& path) {
#if defined(_WIN32)
  return ::CreateFileA(path.c_str(), GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, nullptr,
                       CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, nullptr);
#else
  return ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
#endif
}

/// The file's contents, read through a new handle.
inline std::string file_contents(const std::string& path) {
#if defined(_WIN32)
  handle h = ::CreateFileA(path.c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr,
                           OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (h == INVALID_HANDLE_VALUE) return "(cannot open)";
#else
  handle h = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (h < 0) return "(cannot open)";
#endif
  std::string s = read_all(h);
  close(h);
  return s;
}

/// A connected pair of stream sockets: socketpair on POSIX, a loopback TCP connection on Win32.
inline bool socket_pair(handle& a, handle& b) {
#if defined(_WIN32)
  WSADATA data;
  if (::WSAStartup(MAKEWORD(2, 2), &data) != 0) return false;
  // Without WSA_FLAG_OVERLAPPED: synchronous sockets, like the other handles here.
  SOCKET listener = ::WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, nullptr, 0, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int len = sizeof addr;
  if (listener == INVALID_SOCKET || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 1) != 0 || ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return false;
  SOCKET client = ::WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, nullptr, 0, 0);
  if (client == INVALID_SOCKET || ::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return false;
  SOCKET server = ::accept(listener, nullptr, nullptr);
  ::closesocket(listener);
  if (server == INVALID_SOCKET) return false;
  a = reinterpret_cast<handle>(client);
  b = reinterpret_cast<handle>(server);
  return true;
#else
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return false;
  a = fds[0];
  b = fds[1];
  return true;
#endif
}

#if defined(_WIN32)
/// A loopback TCP socket listening on a port of its own (`port` set), or INVALID_SOCKET.
inline handle tcp_listener(std::uint16_t& port) {
  SOCKET s = ::WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, nullptr, 0, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int len = sizeof addr;
  if (s == INVALID_SOCKET || ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(s, 4) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return reinterpret_cast<handle>(INVALID_SOCKET);
  port = ntohs(addr.sin_port);
  return reinterpret_cast<handle>(s);
}

/// A TCP connection to 127.0.0.1:`port`, or INVALID_SOCKET (`error` set to WSAGetLastError).
inline handle tcp_connect(std::uint16_t port, int* error = nullptr) {
  SOCKET s = ::WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, nullptr, 0, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (s != INVALID_SOCKET && ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (error) *error = ::WSAGetLastError();
    ::closesocket(s);
    s = INVALID_SOCKET;
  }
  return reinterpret_cast<handle>(s);
}

/// Reads a socket up to and including its first newline (or its end).
inline std::string read_line(handle h) {
  std::string out;
  char c = 0;
  while ((out.empty() || out.back() != '\n') && ::recv(reinterpret_cast<SOCKET>(h), &c, 1, 0) == 1) out += c;
  return out;
}
#endif

/// Winsock must be started in each process that uses sockets (a no-op on POSIX).
inline void start_sockets() {
#if defined(_WIN32)
  WSADATA data;
  ::WSAStartup(MAKEWORD(2, 2), &data);
#endif
}

}  // namespace raw

#endif
