// SPDX-License-Identifier: BSL-1.0
// Win32 backend of reactor.hpp: an I/O completion port; child exits arrive through a wait
// registration that posts to the port.
#ifndef CHILDPROC_DETAIL_REACTOR_WIN32_HPP
#define CHILDPROC_DETAIL_REACTOR_WIN32_HPP

#include "os.win32.hpp"

#include <atomic>         // an exit wait's callback runs on a pool thread
#include <unordered_set>  // handles bound to the port
#include <vector>         // pending exit waits

namespace childproc::inline v0::detail {

// One overlapped operation in flight; freed when its completion is taken off the port.
struct overlapped_op_win32 {
  OVERLAPPED ov{};
  io_op* op = nullptr;  // nullptr once withdrawn: its packet is dropped
};

// One child-exit wait in flight.
struct exit_wait_win32 {
  HANDLE wait = nullptr;
  HANDLE port = nullptr;
  exit_op* op = nullptr;
  std::atomic<bool> posted{false};  // the callback ran: a packet for this wait is on the port
  bool unregistered = false;        // UnregisterWaitEx already ran (a cancel)
};

inline constexpr ULONG_PTR exit_key_win32 = 1;
inline constexpr ULONG_PTR wake_key_win32 = 2;

struct reactor_state {
  HANDLE port = nullptr;
  std::unordered_set<HANDLE> bound;
  std::vector<exit_wait_win32*> exits;
  std::unordered_set<overlapped_op_win32*> withdrawn;  // their packets not yet taken off the port
};

// Sets an io_op's outcome from a Win32 error: end of pipe is a 0-byte read, EPIPE on a write.
inline void finish_io_win32(io_op* op, DWORD err, DWORD bytes) {
  op->bytes = bytes;
  op->err = {};
  if (!err) return;
  op->bytes = 0;
  if (!op->write && (err == ERROR_BROKEN_PIPE || err == ERROR_HANDLE_EOF)) return;
  op->err = err == ERROR_OPERATION_ABORTED ? error(errc::cancelled) : win32_error(err, op->write ? "write" : "read");
}

inline void CALLBACK on_exit_win32(void* context, BOOLEAN) {
  auto* w = static_cast<exit_wait_win32*>(context);
  w->posted.store(true);
  ::PostQueuedCompletionStatus(w->port, 0, exit_key_win32, reinterpret_cast<LPOVERLAPPED>(w));
}

inline auto reactor_open_native(reactor_state& s) -> result<void> {
  s.port = ::CreateIoCompletionPort(INVALID_HANDLE_VALUE, nullptr, 0, 1);
  if (!s.port) return last_win32_error("CreateIoCompletionPort");
  return {};
}

inline void start_io_native(reactor_state& s, io_op* op, op_queue& done) {
  if (s.bound.insert(op->handle).second && !::CreateIoCompletionPort(op->handle, s.port, 0, 0)) {
    s.bound.erase(op->handle);
    finish_io_win32(op, ::GetLastError(), 0);
    return done.push(op);
  }
  auto* o = new overlapped_op_win32;
  o->op = op;
  op->pending = o;
  const auto size = static_cast<DWORD>(std::min<std::size_t>(op->size, 1u << 30));
  const BOOL ok = op->write ? ::WriteFile(op->handle, op->data, size, nullptr, &o->ov)
                            : ::ReadFile(op->handle, op->data, size, nullptr, &o->ov);
  const DWORD err = ok ? 0 : ::GetLastError();
  if (ok || err == ERROR_IO_PENDING) return;  // the completion arrives on the port either way
  op->pending = nullptr;
  delete o;
  finish_io_win32(op, err, 0);
  done.push(op);
}

inline void start_exit_wait_native(reactor_state& s, exit_op* op, op_queue& done) {
  auto exited = has_exited_native(*op->child);
  if (!exited || *exited) {
    op->err = exited ? error() : std::move(exited).error();
    return done.push(op);
  }
  auto* w = new exit_wait_win32;
  w->port = s.port;
  w->op = op;
  if (!::RegisterWaitForSingleObject(&w->wait, op->child->handle.get(), on_exit_win32, w, INFINITE,
                                     WT_EXECUTEONLYONCE)) {
    op->err = last_win32_error("RegisterWaitForSingleObject");
    delete w;
    return done.push(op);
  }
  op->pending = w;
  s.exits.push_back(w);
}

inline void cancel_native(reactor_state& s, native_handle h, bool closing, op_queue&) {
  if (s.bound.count(h)) ::CancelIoEx(h, nullptr);  // completions arrive, aborted, in a later round
  if (closing) s.bound.erase(h);  // a new handle may take this value: bind that one anew
}

inline void cancel_io_native(reactor_state&, io_op* op, op_queue&) {
  // The completion arrives on the port: aborted, or with its bytes if it had already finished.
  if (auto* o = static_cast<overlapped_op_win32*>(op->pending)) ::CancelIoEx(op->handle, &o->ov);
}

inline void withdraw_io_native(reactor_state& s, io_op* op) noexcept {
  auto* o = static_cast<overlapped_op_win32*>(op->pending);
  if (!o) return;
  ::CancelIoEx(op->handle, &o->ov);
  DWORD bytes = 0;
  const DWORD err = ::GetOverlappedResult(op->handle, &o->ov, &bytes, TRUE) ? 0 : ::GetLastError();
  finish_io_win32(op, err, bytes);
  op->pending = nullptr;
  o->op = nullptr;
  s.withdrawn.insert(o);
}

inline void cancel_exit_wait_native(reactor_state& s, exit_op* op, op_queue& done) {
  auto* w = static_cast<exit_wait_win32*>(op->pending);
  if (!w || w->unregistered) return;
  ::UnregisterWaitEx(w->wait, INVALID_HANDLE_VALUE);  // returns once a running callback has finished
  w->unregistered = true;
  if (w->posted.load()) return;  // its packet is on the port: the wait completes normally
  std::erase(s.exits, w);
  op->pending = nullptr;
  op->err = error(errc::cancelled);
  done.push(op);
  delete w;
}

inline auto reactor_poll_native(reactor_state& s, int timeout_ms, op_queue& done) -> result<void> {
  OVERLAPPED_ENTRY entries[64];
  ULONG n = 0;
  if (!::GetQueuedCompletionStatusEx(s.port, entries, 64, &n, timeout_ms < 0 ? INFINITE : static_cast<DWORD>(timeout_ms),
                                     FALSE)) {
    const DWORD err = ::GetLastError();
    if (err == WAIT_TIMEOUT) return {};
    return win32_error(err, "GetQueuedCompletionStatusEx");
  }
  for (ULONG i = 0; i < n; ++i) {
    if (entries[i].lpCompletionKey == wake_key_win32) continue;
    if (entries[i].lpCompletionKey == exit_key_win32) {
      auto* w = reinterpret_cast<exit_wait_win32*>(entries[i].lpOverlapped);
      if (!w->unregistered) ::UnregisterWaitEx(w->wait, nullptr);
      std::erase(s.exits, w);
      w->op->pending = nullptr;
      w->op->err = {};
      done.push(w->op);
      delete w;
      continue;
    }
    auto* o = reinterpret_cast<overlapped_op_win32*>(entries[i].lpOverlapped);
    if (!o->op) {  // withdrawn: its owner already has the outcome
      s.withdrawn.erase(o);
      delete o;
      continue;
    }
    o->op->pending = nullptr;
    DWORD bytes = 0;
    const DWORD err = ::GetOverlappedResult(o->op->handle, &o->ov, &bytes, FALSE) ? 0 : ::GetLastError();
    finish_io_win32(o->op, err, bytes);
    done.push(o->op);
    delete o;
  }
  return {};
}

inline auto reactor_enable_wake_native(reactor_state&) -> result<void> { return {}; }

inline void reactor_wake_native(reactor_state& s) noexcept {
  ::PostQueuedCompletionStatus(s.port, 0, wake_key_win32, nullptr);
}

inline void reactor_close_native(reactor_state& s) noexcept {
  for (auto* w : s.exits) {
    if (!w->unregistered) ::UnregisterWaitEx(w->wait, INVALID_HANDLE_VALUE);  // waits for a running callback
    delete w;
  }
  s.exits.clear();
  for (auto* o : s.withdrawn) delete o;  // the OS finished with them before they were withdrawn
  s.withdrawn.clear();
  if (s.port) ::CloseHandle(s.port);
  s.port = nullptr;
}

}  // namespace childproc::inline v0::detail

#endif
