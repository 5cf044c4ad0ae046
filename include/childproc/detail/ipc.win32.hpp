// SPDX-License-Identifier: BSL-1.0
// Win32 backend of ipc.hpp.
#ifndef CHILDPROC_DETAIL_IPC_WIN32_HPP
#define CHILDPROC_DETAIL_IPC_WIN32_HPP

#include "os.win32.hpp"
#include "utf.hpp"

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

inline auto self_exe_native() -> result<std::string> {
  std::wstring path(32768, L'\0');
  const DWORD n = ::GetModuleFileNameW(nullptr, path.data(), static_cast<DWORD>(path.size()));
  if (n == 0 || n == path.size()) return last_win32_error("fork_self: GetModuleFileNameW");
  path.resize(n);
  return utf16_to_utf8(std::u16string_view(reinterpret_cast<const char16_t*>(path.data()), path.size()));
}

}  // namespace childproc::inline v0::detail

#endif
