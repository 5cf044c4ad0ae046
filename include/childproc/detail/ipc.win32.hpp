// SPDX-License-Identifier: BSL-1.0
// Win32 backend of ipc.hpp.
#ifndef CHILDPROC_DETAIL_IPC_WIN32_HPP
#define CHILDPROC_DETAIL_IPC_WIN32_HPP

#include "framing.hpp"  // uv_frames::info_size, the same description inside libuv's frames
#include "os.win32.hpp"
#include "utf.hpp"

#include <cstdint>   // WSAPROTOCOL_INFOW fields, read by offset
#include <cstring>   // memcpy
#include <io.h>      // _get_osfhandle, _close
#include <stdlib.h>  // _putenv_s

namespace childproc::inline v0::detail {

inline auto create_channel_native() -> result<pipe_pair> {
  return make_named_pipe_win32(PIPE_ACCESS_DUPLEX, GENERIC_READ | GENERIC_WRITE, FILE_FLAG_OVERLAPPED);
}

inline auto adopt_channel_native(int fd) -> result<unique_handle> {
  const auto os = fd >= 0 ? ::_get_osfhandle(fd) : -1;
  if (os == -1 || os == -2) return error(std::error_code(EBADF, std::generic_category()), "channel: fd " + std::to_string(fd));
  HANDLE own = nullptr;
  if (!::DuplicateHandle(::GetCurrentProcess(), reinterpret_cast<HANDLE>(os), ::GetCurrentProcess(), &own, 0, FALSE,
                         DUPLICATE_SAME_ACCESS))
    return last_win32_error("channel: DuplicateHandle");
  ::_close(fd);  // the inherited, inheritable one
  return unique_handle(own);
}

inline void unset_env_native(const char* name) noexcept {
  auto wide = utf8_to_utf16(name);
  if (wide) ::SetEnvironmentVariableW(reinterpret_cast<const wchar_t*>(wide->c_str()), nullptr);
  ::_putenv_s(name, "");
}

inline auto channel_peer_native(native_handle transport, const native_child* child) -> result<unique_handle> {
  HANDLE process = nullptr;
  if (child) {
    if (!::DuplicateHandle(::GetCurrentProcess(), child->handle.get(), ::GetCurrentProcess(), &process,
                           PROCESS_DUP_HANDLE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE, 0))
      return last_win32_error("channel: DuplicateHandle of the child process");
    return unique_handle(process);
  }
  ULONG pid = 0;
  if (!::GetNamedPipeServerProcessId(transport, &pid)) return last_win32_error("channel: GetNamedPipeServerProcessId");
  process = ::OpenProcess(PROCESS_DUP_HANDLE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
  if (!process) return last_win32_error("channel: OpenProcess " + std::to_string(pid));
  return unique_handle(process);
}

// Winsock, loaded by name so that programs that pass no sockets need not link ws2_32 (and a
// process that has a socket has ws2_32 loaded already). Types are spelled out so that this
// header does not bring <winsock2.h> into the user's translation unit.
struct winsock_win32 {
  static constexpr std::size_t protocol_info_size = 628;  // sizeof(WSAPROTOCOL_INFOW), the same on every Win32 ABI
  using getsockopt_fn = int(WINAPI*)(UINT_PTR, int, int, char*, int*);
  using duplicate_fn = int(WINAPI*)(UINT_PTR, DWORD, void*);
  using socket_fn = UINT_PTR(WINAPI*)(int, int, int, void*, unsigned, DWORD);
  using startup_fn = int(WINAPI*)(WORD, void*);
  using error_fn = int(WINAPI*)();
  using getpeername_fn = int(WINAPI*)(UINT_PTR, void*, int*);
  getsockopt_fn getsockopt = nullptr;
  getpeername_fn getpeername = nullptr;
  duplicate_fn duplicate = nullptr;
  socket_fn socket = nullptr;
  startup_fn startup = nullptr;
  error_fn last_error = nullptr;

  // The functions of a ws2_32 already loaded (`load` false), or loaded now.
  static winsock_win32 get(bool load) {
    winsock_win32 w;
    HMODULE m = ::GetModuleHandleW(L"ws2_32.dll");
    if (!m && load) m = ::LoadLibraryW(L"ws2_32.dll");
    if (!m) return w;
    const auto f = [m](const char* name) { return reinterpret_cast<void*>(::GetProcAddress(m, name)); };
    w.getsockopt = reinterpret_cast<getsockopt_fn>(f("getsockopt"));
    w.getpeername = reinterpret_cast<getpeername_fn>(f("getpeername"));
    w.duplicate = reinterpret_cast<duplicate_fn>(f("WSADuplicateSocketW"));
    w.socket = reinterpret_cast<socket_fn>(f("WSASocketW"));
    w.startup = reinterpret_cast<startup_fn>(f("WSAStartup"));
    w.last_error = reinterpret_cast<error_fn>(f("WSAGetLastError"));
    return w;
  }
  bool usable() const noexcept { return getsockopt && getpeername && duplicate && socket && startup && last_error; }

  // Whether `h` is a socket: getsockopt(SOL_SOCKET, SO_TYPE) succeeds only on one.
  bool is_socket(HANDLE h) const {
    int type = 0, size = sizeof type;
    return usable() && getsockopt(reinterpret_cast<UINT_PTR>(h), 0xffff /* SOL_SOCKET */, 0x1008 /* SO_TYPE */,
                                  reinterpret_cast<char*>(&type), &size) == 0;
  }
};
static_assert(winsock_win32::protocol_info_size == uv_frames::info_size, "libuv's frames carry the WSAPROTOCOL_INFOW itself");

inline auto prepare_handle_native(native_handle h, native_handle peer) -> result<outgoing_handle> {
  // INVALID_HANDLE_VALUE is also this process's pseudo handle: never send ourselves by mistake.
  if (h == invalid_handle() || !h) return win32_error(ERROR_INVALID_HANDLE, "send: DuplicateHandle");
  if (peer == invalid_handle() || !peer)
    return error(errc::invalid_argument, "send: this channel does not know its peer process, so it cannot pass handles");
  outgoing_handle out;
  out.payload.assign(8, '\0');
  if (const auto ws = winsock_win32::get(false); ws.is_socket(h)) {
    out.payload.resize(8 + winsock_win32::protocol_info_size);
    if (ws.duplicate(reinterpret_cast<UINT_PTR>(h), ::GetProcessId(peer), out.payload.data() + 8) != 0)
      return win32_error(static_cast<DWORD>(ws.last_error()), "send: WSADuplicateSocketW");
    return out;
  }
  HANDLE remote = nullptr;  // inheritable there: the mark the receiver checks
  if (!::DuplicateHandle(::GetCurrentProcess(), h, peer, &remote, 0, TRUE, DUPLICATE_SAME_ACCESS))
    return last_win32_error("send: DuplicateHandle");
  out.remote = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(remote));
  out.peer = peer;
  for (int i = 0; i < 8; ++i) out.payload[i] = static_cast<char>(out.remote >> (8 * i));
  return out;
}

inline void sent_handle_native(outgoing_handle&) noexcept {}

inline void drop_handle_native(outgoing_handle& h) noexcept {
  if (h.remote && h.peer != invalid_handle())
    ::DuplicateHandle(h.peer, reinterpret_cast<HANDLE>(static_cast<std::uintptr_t>(h.remote)), nullptr, nullptr, 0,
                      FALSE, DUPLICATE_CLOSE_SOURCE);
  h.remote = 0;
}

inline auto take_received_handle_native(std::string_view payload, unique_handle, native_handle) -> result<unique_handle> {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < 8 && i < payload.size(); ++i)
    value |= std::uint64_t{static_cast<unsigned char>(payload[i])} << (8 * i);
  if (payload.size() == 8 + winsock_win32::protocol_info_size && value == 0) {
    const auto ws = winsock_win32::get(true);
    if (!ws.usable()) return win32_error(ERROR_MOD_NOT_FOUND, "receive: a socket arrived but ws2_32.dll cannot be loaded");
    alignas(8) char data[1024];  // WSADATA; WSAStartup counts its callers, and this one stays
    if (const int e = ws.startup(0x0202, data); e != 0) return win32_error(static_cast<DWORD>(e), "receive: WSAStartup");
    std::string info(payload.substr(8));  // WSASocketW wants it writable and aligned
    const UINT_PTR sock = ws.socket(-1, -1, -1, info.data(), 0, 0x01 /* WSA_FLAG_OVERLAPPED */ | 0x80 /* NO_HANDLE_INHERIT */);
    if (sock == ~UINT_PTR{0}) return win32_error(static_cast<DWORD>(ws.last_error()), "receive: WSASocketW");
    return unique_handle(reinterpret_cast<HANDLE>(sock));
  }
  if (payload.size() != 8 || value == 0) return error(errc::bad_frame, "receive: a handle was announced without its value");
  const auto h = reinterpret_cast<HANDLE>(static_cast<std::uintptr_t>(value));
  DWORD flags = 0;
  if (!::GetHandleInformation(h, &flags))
    return error(errc::bad_frame, "receive: the peer announced handle " + std::to_string(value) + ", which is not open here");
  if (!(flags & HANDLE_FLAG_INHERIT))  // not the sender's mark: one of ours, never to be taken or closed
    return error(errc::bad_frame, "receive: the peer announced handle " + std::to_string(value) + ", which it did not send");
  if (!::SetHandleInformation(h, HANDLE_FLAG_INHERIT, 0)) return last_win32_error("receive: SetHandleInformation");
  return unique_handle(h);
}

inline std::size_t held_descriptors_native() noexcept { return 16384; }

inline bool node_frames_native() noexcept { return true; }

inline auto node_handle_type_native(native_handle h) -> result<std::string> {
  const auto ws = winsock_win32::get(false);
  // libuv passes TCP sockets only on Win32 (a pipe handle cannot go to Node there).
  if (!ws.is_socket(h))
    return error(std::make_error_code(std::errc::not_supported),
                 "send: only TCP sockets can go to a Node process on Win32 (libuv passes no other handle there)");
  alignas(8) char info[winsock_win32::protocol_info_size] = {};
  int size = sizeof info;
  const auto s = reinterpret_cast<UINT_PTR>(h);
  if (ws.getsockopt(s, 0xffff /* SOL_SOCKET */, 0x2005 /* SO_PROTOCOL_INFOW */, info, &size) != 0)
    return win32_error(static_cast<DWORD>(ws.last_error()), "send: getsockopt SO_PROTOCOL_INFOW");
  const auto field = [&](std::size_t at) {
    std::int32_t v = 0;
    std::memcpy(&v, info + at, sizeof v);
    return v;
  };
  // iAddressFamily, iSocketType, iProtocol of WSAPROTOCOL_INFOW (offsets checked by the tests)
  const std::int32_t family = field(76), type = field(88), protocol = field(92);
  if ((family != 2 /* AF_INET */ && family != 23 /* AF_INET6 */) || type != 1 /* SOCK_STREAM */ || protocol != 6 /* TCP */)
    return error(errc::invalid_argument, "send: socket " + std::to_string(s) +
                                             " cannot go to a Node process, which takes TCP sockets only on Win32");
  int listening = 0;
  size = sizeof listening;
  if (ws.getsockopt(s, 0xffff, 0x0002 /* SO_ACCEPTCONN */, reinterpret_cast<char*>(&listening), &size) != 0)
    return win32_error(static_cast<DWORD>(ws.last_error()), "send: getsockopt SO_ACCEPTCONN");
  if (listening) return std::string("net.Server");
  alignas(8) char peer[128];  // a SOCKADDR_STORAGE
  int peer_size = sizeof peer;
  if (ws.getpeername(s, peer, &peer_size) != 0)  // libuv sends only a connection or a server
    return error(errc::invalid_argument, "send: socket " + std::to_string(s) +
                                             " is neither listening nor connected, so Node could not take it");
  return std::string("net.Socket");
}

inline handle_identity handle_identity_native(native_handle) noexcept { return {}; }

inline bool handle_still_native(native_handle, const handle_identity&) noexcept { return false; }

inline auto self_exe_native(const std::string&) -> result<std::string> {
  std::wstring path(32768, L'\0');
  const DWORD n = ::GetModuleFileNameW(nullptr, path.data(), static_cast<DWORD>(path.size()));
  if (n == 0 || n == path.size()) return last_win32_error("fork_self: GetModuleFileNameW");
  path.resize(n);
  return utf16_to_utf8(std::u16string_view(reinterpret_cast<const char16_t*>(path.data()), path.size()));
}

}  // namespace childproc::inline v0::detail

#endif
