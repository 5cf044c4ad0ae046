// SPDX-License-Identifier: BSL-1.0
// Win32 backend of reactor.hpp. Windows binds a handle to one completion port for its whole
// life, and a stream or channel may be used by any loop, one after another: so every handle is
// bound to one process-wide port, whose thread hands each completion to the port of the reactor
// that issued it. A reactor's own port also takes its wake-ups and child exits (a wait
// registration posts there).
#ifndef CHILDPROC_DETAIL_REACTOR_WIN32_HPP
#define CHILDPROC_DETAIL_REACTOR_WIN32_HPP

#include "os.win32.hpp"

#include <atomic>         // an exit wait's callback runs on a pool thread
#include <mutex>          // the shared port's records
#include <unordered_set>  // handles bound to the shared port, operations in flight
#include <vector>         // pending exit waits

namespace childproc::inline v0::detail {

// One overlapped operation in flight; freed when its completion is taken off its reactor's port
// (or, once its reactor is gone, off the shared port).
struct overlapped_op_win32 {
  OVERLAPPED ov{};
  io_op* op = nullptr;      // nullptr once withdrawn: its packet is dropped
  HANDLE owner = nullptr;   // the issuing reactor's port; nullptr once that reactor is gone
  bool forwarded = false;   // the shared port's thread posted it to `owner`
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
inline constexpr ULONG_PTR io_key_win32 = 3;

// The process-wide port every handle is bound to, and the thread that routes its completions.
// It lives as long as the process (its thread waits on it until the process ends).
struct shared_port_win32 {
  HANDLE port = nullptr;
  DWORD failure = 0;                 // why it could not be made
  std::mutex m;                      // guards `bound` and every record's owner / forwarded
  std::unordered_set<HANDLE> bound;  // forgotten when the handle closes: a new one may take its value
};

inline DWORD WINAPI route_completions_win32(void* context) {
  auto* hub = static_cast<shared_port_win32*>(context);
  OVERLAPPED_ENTRY entries[64];
  for (;;) {
    ULONG n = 0;
    if (!::GetQueuedCompletionStatusEx(hub->port, entries, 64, &n, INFINITE, FALSE)) continue;
    std::lock_guard lock(hub->m);
    for (ULONG i = 0; i < n; ++i) {
      auto* o = reinterpret_cast<overlapped_op_win32*>(entries[i].lpOverlapped);
      if (!o->owner) {  // its reactor is gone, and withdrew it first: nobody wants the outcome
        delete o;
        continue;
      }
      o->forwarded = true;
      ::PostQueuedCompletionStatus(o->owner, entries[i].dwNumberOfBytesTransferred, io_key_win32, &o->ov);
    }
  }
}

inline shared_port_win32& shared_port_instance_win32() {
  static shared_port_win32* hub = [] {
    auto* h = new shared_port_win32;  // never freed: its thread uses it until the process ends
    h->port = ::CreateIoCompletionPort(INVALID_HANDLE_VALUE, nullptr, 0, 1);
    if (!h->port) {
      h->failure = ::GetLastError();
      return h;
    }
    HANDLE thread = ::CreateThread(nullptr, 64 * 1024, route_completions_win32, h, STACK_SIZE_PARAM_IS_A_RESERVATION, nullptr);
    if (!thread) {
      h->failure = ::GetLastError();
      ::CloseHandle(h->port);
      h->port = nullptr;
      return h;
    }
    ::CloseHandle(thread);
    return h;
  }();
  return *hub;
}

struct reactor_state {
  HANDLE port = nullptr;  // this reactor's own
  std::vector<exit_wait_win32*> exits;
  std::unordered_set<overlapped_op_win32*> active;     // in flight for an io_op
  std::unordered_set<overlapped_op_win32*> withdrawn;  // their packets not yet taken off the port
};

// Sets an io_op's outcome from a Win32 error: end of pipe is a 0-byte read, EPIPE on a write.
// A cancelled operation keeps its count: a large pipe write cancelled halfway has written that
// much (its owner must not write those bytes again).
inline void finish_io_win32(io_op* op, DWORD err, DWORD bytes) {
  op->bytes = bytes;
  op->err = {};
  if (!err) return;
  if (err == ERROR_OPERATION_ABORTED) {
    op->err = error(errc::cancelled);
    return;
  }
  op->bytes = 0;
  if (!op->write && (err == ERROR_BROKEN_PIPE || err == ERROR_HANDLE_EOF)) return;
  op->err = win32_error(err, op->write ? "write" : "read");
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
  auto& hub = shared_port_instance_win32();
  if (!hub.port) {
    op->err = win32_error(hub.failure, "CreateIoCompletionPort");
    return done.push(op);
  }
  {
    std::lock_guard lock(hub.m);
    if (hub.bound.insert(op->handle).second && !::CreateIoCompletionPort(op->handle, hub.port, 0, 0)) {
      const DWORD err = ::GetLastError();
      hub.bound.erase(op->handle);
      op->err = win32_error(err, op->write ? "write: CreateIoCompletionPort" : "read: CreateIoCompletionPort");
      return done.push(op);
    }
  }
  auto* o = new overlapped_op_win32;
  o->op = op;
  o->owner = s.port;
  op->pending = o;
  s.active.insert(o);
  const auto size = static_cast<DWORD>(std::min<std::size_t>(op->size, 1u << 30));
  const BOOL ok = op->write ? ::WriteFile(op->handle, op->data, size, nullptr, &o->ov)
                            : ::ReadFile(op->handle, op->data, size, nullptr, &o->ov);
  const DWORD err = ok ? 0 : ::GetLastError();
  op->waiting = err == ERROR_IO_PENDING;
  if (ok || err == ERROR_IO_PENDING) return;  // the completion arrives on the port either way
  op->pending = nullptr;
  s.active.erase(o);
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
  for (auto* o : s.active)  // this reactor's only: another loop's (or thread's) I/O on `h` goes on
    if (o->op->handle == h) ::CancelIoEx(h, &o->ov);  // completions arrive, aborted, in a later round
  if (closing) forget_handle_native(h);
}

inline void cancel_io_native(reactor_state&, io_op* op, op_queue&) {
  // The completion arrives on the port: aborted, or with its bytes if it had already finished.
  if (auto* o = static_cast<overlapped_op_win32*>(op->pending)) ::CancelIoEx(op->handle, &o->ov);
}

inline constexpr bool cancelled_write_counted_native = false;

inline void withdraw_io_native(reactor_state& s, io_op* op, read_sink* meanwhile) noexcept {
  auto* o = static_cast<overlapped_op_win32*>(op->pending);
  if (!o) return;
  if (op->write && meanwhile) {
    const auto [bytes, err] = finish_write_reading_win32(op->handle, &o->ov, *meanwhile);
    finish_io_win32(op, err, bytes);
    op->pending = nullptr;
    o->op = nullptr;
    s.active.erase(o);
    s.withdrawn.insert(o);
    return;
  }
  ::CancelIoEx(op->handle, &o->ov);
  // Not GetOverlappedResult(TRUE): without an event it waits on the handle's own signal, which
  // another operation on the handle may have taken (seen to hang under Wine). A cancel ends
  // promptly: look until it has.
  DWORD bytes = 0, err = 0;
  for (int look = 0;; ++look) {
    err = ::GetOverlappedResult(op->handle, &o->ov, &bytes, FALSE) ? 0 : ::GetLastError();
    if (err != ERROR_IO_INCOMPLETE) break;
    ::Sleep(look < 16 ? 0 : 1);
  }
  finish_io_win32(op, err, bytes);
  op->pending = nullptr;
  o->op = nullptr;
  s.active.erase(o);
  s.withdrawn.insert(o);
}

inline void cancel_all_native(reactor_state& s, op_queue& done) noexcept {
  for (auto* o : std::vector<overlapped_op_win32*>(s.active.begin(), s.active.end())) {
    io_op* op = o->op;
    withdraw_io_native(s, op, nullptr);
    op->err = error(errc::cancelled);  // op->bytes: what had moved (a read's owner keeps it)
    done.push(op);
  }
  for (auto* w : std::vector<exit_wait_win32*>(s.exits)) cancel_exit_wait_native(s, w->op, done);
}

inline bool pending_native(const reactor_state& s) noexcept { return !s.active.empty() || !s.exits.empty(); }

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
    auto* o = reinterpret_cast<overlapped_op_win32*>(entries[i].lpOverlapped);  // io_key_win32, from the shared port
    if (!o->op) {  // withdrawn: its owner already has the outcome
      s.withdrawn.erase(o);
      delete o;
      continue;
    }
    o->op->pending = nullptr;
    s.active.erase(o);
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

inline void forget_handle_native(native_handle h) noexcept {
  auto& hub = shared_port_instance_win32();
  std::lock_guard lock(hub.m);
  hub.bound.erase(h);  // a new handle may take this value: bind that one anew
}

inline void reactor_close_native(reactor_state& s) noexcept {
  for (auto* w : s.exits) {
    if (!w->unregistered) ::UnregisterWaitEx(w->wait, INVALID_HANDLE_VALUE);  // waits for a running callback
    delete w;
  }
  s.exits.clear();
  // The OS must be done with every buffer before its owner goes.
  for (auto* o : std::vector<overlapped_op_win32*>(s.active.begin(), s.active.end())) withdraw_io_native(s, o->op, nullptr);
  if (!s.port) return;
  // A withdrawn record's packet is either still on the shared port (its thread frees it once
  // it sees no owner) or already forwarded onto ours (freed here).
  if (!s.withdrawn.empty()) {
    auto& hub = shared_port_instance_win32();
    {
      std::lock_guard lock(hub.m);
      std::erase_if(s.withdrawn, [](overlapped_op_win32* o) {
        if (o->forwarded) return false;
        o->owner = nullptr;
        return true;
      });
    }
    OVERLAPPED_ENTRY entries[64];
    ULONG n = 0;
    while (!s.withdrawn.empty() && ::GetQueuedCompletionStatusEx(s.port, entries, 64, &n, 0, FALSE))
      for (ULONG i = 0; i < n; ++i)
        if (entries[i].lpCompletionKey == io_key_win32) {
          auto* o = reinterpret_cast<overlapped_op_win32*>(entries[i].lpOverlapped);
          if (s.withdrawn.erase(o)) delete o;
        }
  }
  ::CloseHandle(s.port);
  s.port = nullptr;
}

}  // namespace childproc::inline v0::detail

#endif
