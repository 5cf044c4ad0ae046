// SPDX-License-Identifier: BSL-1.0
// Win32 backend of pipe.hpp.
#ifndef CHILDPROC_DETAIL_PIPE_WIN32_HPP
#define CHILDPROC_DETAIL_PIPE_WIN32_HPP

#include "os.win32.hpp"

#include <atomic>  // unique pipe names
#include <string>  // the name

namespace childproc::inline v0::detail {

// An overlapped server end for the parent and a synchronous client end for the child, neither
// inheritable: spawn duplicates the child's end into an inheritable handle for the one child.
inline auto make_named_pipe_win32(DWORD server_access, DWORD client_access, DWORD client_flags = 0) -> result<pipe_pair> {
  static std::atomic<unsigned long> counter{0};
  const std::wstring name = L"\\\\.\\pipe\\childproc-" + std::to_wstring(::GetCurrentProcessId()) + L"-" +
                            std::to_wstring(counter.fetch_add(1)) + L"-" + std::to_wstring(::GetTickCount64());
  HANDLE server = ::CreateNamedPipeW(name.c_str(), server_access | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
                                     PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS, 1,
                                     65536, 65536, 0, nullptr);
  if (server == INVALID_HANDLE_VALUE) return last_win32_error("pipe");
  pipe_pair p;
  p.parent.reset(server);
  HANDLE client = ::CreateFileW(name.c_str(), client_access, 0, nullptr, OPEN_EXISTING, client_flags, nullptr);
  if (client == INVALID_HANDLE_VALUE) return last_win32_error("pipe");
  p.child.reset(client);
  return p;
}

inline auto create_pipe_native(bool child_reads) -> result<pipe_pair> {
  return child_reads ? make_named_pipe_win32(PIPE_ACCESS_OUTBOUND, GENERIC_READ | FILE_WRITE_ATTRIBUTES)
                     : make_named_pipe_win32(PIPE_ACCESS_INBOUND, GENERIC_WRITE | FILE_READ_ATTRIBUTES);
}

inline auto create_duplex_native() -> result<pipe_pair> {
  return make_named_pipe_win32(PIPE_ACCESS_DUPLEX, GENERIC_READ | GENERIC_WRITE);
}

inline auto create_socket_pipe_native(bool child_reads) -> result<pipe_pair> { return create_pipe_native(child_reads); }

inline auto create_plain_pipe_native() -> result<pipe_pair> {
  HANDLE read = nullptr, write = nullptr;
  if (!::CreatePipe(&read, &write, nullptr, 0)) return last_win32_error("pipe");
  pipe_pair p;
  p.parent.reset(read);
  p.child.reset(write);
  return p;
}

// One overlapped ReadFile/WriteFile waited for on an event. The event's low bit set keeps the
// completion out of any I/O completion port the handle is bound to.
inline auto overlapped_io_win32(HANDLE h, void* data, DWORD size, bool write) -> result<std::size_t> {
  OVERLAPPED ov{};
  HANDLE event = ::CreateEventW(nullptr, TRUE, FALSE, nullptr);
  if (!event) return last_win32_error(write ? "write" : "read");
  ov.hEvent = reinterpret_cast<HANDLE>(reinterpret_cast<ULONG_PTR>(event) | 1);
  DWORD n = 0;
  BOOL ok = write ? ::WriteFile(h, data, size, &n, &ov) : ::ReadFile(h, data, size, &n, &ov);
  DWORD err = ok ? 0 : ::GetLastError();
  if (err == ERROR_IO_PENDING) err = ::GetOverlappedResult(h, &ov, &n, TRUE) ? 0 : ::GetLastError();
  ::CloseHandle(event);
  if (!err) return static_cast<std::size_t>(n);
  if (!write && (err == ERROR_BROKEN_PIPE || err == ERROR_HANDLE_EOF)) return std::size_t{0};
  return win32_error(err, write ? "write" : "read");
}

inline int make_blocking_socket_native(native_handle) noexcept { return 0; }

inline void undo_blocking_socket_native(native_handle) noexcept {}

inline auto wait_readable_native(native_handle h, int timeout_ms) -> result<bool> {
  const ULONGLONG until = ::GetTickCount64() + static_cast<ULONGLONG>(timeout_ms < 0 ? 0 : timeout_ms);
  for (;;) {
    DWORD avail = 0;
    if (!::PeekNamedPipe(h, nullptr, 0, nullptr, &avail, nullptr)) {
      const DWORD err = ::GetLastError();
      if (err == ERROR_BROKEN_PIPE) return true;  // the end: a read says so
      return win32_error(err, "PeekNamedPipe");
    }
    if (avail || ::GetTickCount64() >= until) return avail != 0;
    ::Sleep(1);
  }
}

inline auto read_some_native(native_handle h, std::span<char> buffer, std::vector<unique_handle>*, bool, bool)
    -> result<std::size_t> {
  const auto size = static_cast<DWORD>(std::min<std::size_t>(buffer.size(), 1u << 30));
  return overlapped_io_win32(h, buffer.data(), size, false);
}

inline auto write_some_native(native_handle h, std::span<const char> data, native_handle, bool) -> result<std::size_t> {
  const auto size = static_cast<DWORD>(std::min<std::size_t>(data.size(), 1u << 30));
  return overlapped_io_win32(h, const_cast<char*>(data.data()), size, true);
}

inline auto write_some_reading_native(native_handle h, std::span<const char> data, native_handle, bool,
                                      read_sink& sink) -> result<std::size_t> {
  // Two overlapped operations on the handle, each with its own event; the events' low bit keeps
  // the completions out of a completion port the handle may be bound to.
  struct op {
    OVERLAPPED ov{};
    HANDLE event = nullptr;
    bool pending = false;
    ~op() {
      if (event) ::CloseHandle(event);
    }
    bool open() {
      event = ::CreateEventW(nullptr, TRUE, FALSE, nullptr);
      ov.hEvent = reinterpret_cast<HANDLE>(reinterpret_cast<ULONG_PTR>(event) | 1);
      return event != nullptr;
    }
    // The outcome of the finished operation: bytes, or the Win32 error (0: none).
    std::pair<DWORD, DWORD> finish(HANDLE h, BOOL wait) {
      DWORD n = 0;
      const DWORD err = ::GetOverlappedResult(h, &ov, &n, wait) ? 0 : ::GetLastError();
      pending = false;
      ::ResetEvent(event);
      return {n, err};
    }
  } w, r;
  if (!w.open() || !r.open()) return last_win32_error("write");
  const auto deliver = [&](std::pair<DWORD, DWORD> outcome) {
    const auto [n, err] = outcome;
    if (!err || err == ERROR_BROKEN_PIPE || err == ERROR_HANDLE_EOF) return sink.arrived(std::size_t{err ? 0 : n});
    if (err != ERROR_OPERATION_ABORTED) sink.arrived(win32_error(err, "read"));
  };
  const auto size = static_cast<DWORD>(std::min<std::size_t>(data.size(), 1u << 30));
  if (!::WriteFile(h, data.data(), size, nullptr, &w.ov) && ::GetLastError() != ERROR_IO_PENDING)
    return win32_error(::GetLastError(), "write");
  w.pending = true;
  bool peer_ended = false;
  for (;;) {
    if (!r.pending && !peer_ended) {
      const std::span<char> room = sink.room();
      if (!room.empty()) {
        const auto want = static_cast<DWORD>(std::min<std::size_t>(room.size(), 1u << 30));
        if (::ReadFile(h, room.data(), want, nullptr, &r.ov) || ::GetLastError() == ERROR_IO_PENDING) {
          r.pending = true;
        } else {
          const DWORD err = ::GetLastError();
          peer_ended = true;
          deliver({0, err});
        }
      }
    }
    const HANDLE events[2] = {w.event, r.event};
    const DWORD which = ::WaitForMultipleObjects(r.pending ? 2 : 1, events, FALSE, INFINITE);
    if (which == WAIT_OBJECT_0 + 1) {
      const auto outcome = r.finish(h, FALSE);
      peer_ended = outcome.second != 0 || outcome.first == 0;
      deliver(outcome);
      continue;
    }
    if (which != WAIT_OBJECT_0) {
      const DWORD err = ::GetLastError();
      ::CancelIoEx(h, nullptr);  // neither buffer may be left to the OS
      if (r.pending) deliver(r.finish(h, TRUE));
      (void)w.finish(h, TRUE);
      return win32_error(err, "WaitForMultipleObjects");
    }
    const auto [n, err] = w.finish(h, TRUE);
    if (r.pending) {  // what it read before the cancel took is delivered, nothing lost
      ::CancelIoEx(h, &r.ov);
      deliver(r.finish(h, TRUE));
    }
    if (err) return win32_error(err, "write");
    return static_cast<std::size_t>(n);
  }
}

// Waits for a write already issued on `h` (`written`, no event of its own) to finish, reading
// into `sink` meanwhile so that a peer that writes too goes on: for a write that must not be
// cancelled, since a pipe write cancelled halfway reports 0 bytes under Wine (its count lost).
// Returns its bytes and Win32 error.
inline std::pair<DWORD, DWORD> finish_write_reading_win32(HANDLE h, OVERLAPPED* written, read_sink& sink) noexcept {
  OVERLAPPED rov{};
  HANDLE event = ::CreateEventW(nullptr, TRUE, FALSE, nullptr);
  rov.hEvent = reinterpret_cast<HANDLE>(reinterpret_cast<ULONG_PTR>(event) | 1);  // no port packet
  const auto deliver = [&](DWORD n, DWORD err) {
    if (!err || err == ERROR_BROKEN_PIPE || err == ERROR_HANDLE_EOF) return sink.arrived(std::size_t{err ? 0 : n});
    if (err != ERROR_OPERATION_ABORTED) sink.arrived(win32_error(err, "read"));
  };
  bool reading = false, peer_ended = false;
  std::pair<DWORD, DWORD> outcome{0, 0};
  for (;;) {
    DWORD n = 0;
    if (::GetOverlappedResult(h, written, &n, FALSE)) {
      outcome = {n, 0};
      break;
    }
    if (const DWORD err = ::GetLastError(); err != ERROR_IO_INCOMPLETE) {
      outcome = {n, err};
      break;
    }
    if (!reading && !peer_ended && event) {
      const std::span<char> room = sink.room();
      if (!room.empty()) {
        const auto want = static_cast<DWORD>(std::min<std::size_t>(room.size(), 1u << 30));
        if (::ReadFile(h, room.data(), want, nullptr, &rov) || ::GetLastError() == ERROR_IO_PENDING) {
          reading = true;
        } else {
          peer_ended = true;
          deliver(0, ::GetLastError());
        }
      }
    }
    // The write has no event to wait on (its completion goes to a port): look again each ms.
    if (!reading) {
      ::Sleep(1);
      continue;
    }
    if (::WaitForSingleObject(event, 1) != WAIT_OBJECT_0) continue;
    DWORD got = 0;
    const DWORD err = ::GetOverlappedResult(h, &rov, &got, FALSE) ? 0 : ::GetLastError();
    reading = false;
    ::ResetEvent(event);
    peer_ended = err != 0 || got == 0;
    deliver(got, err);
  }
  if (reading) {  // what it read before the cancel took is delivered, nothing lost
    ::CancelIoEx(h, &rov);
    DWORD got = 0;
    const DWORD err = ::GetOverlappedResult(h, &rov, &got, TRUE) ? 0 : ::GetLastError();
    deliver(got, err);
  }
  if (event) ::CloseHandle(event);
  return outcome;
}

inline auto write_now_native(native_handle, std::span<const char>, native_handle, bool) -> result<std::size_t> {
  return std::size_t{0};
}

inline std::size_t pipe_capacity_native(native_handle) noexcept { return 0; }

inline std::size_t grow_pipe_native(native_handle, std::size_t) noexcept { return 0; }

}  // namespace childproc::inline v0::detail

#endif
