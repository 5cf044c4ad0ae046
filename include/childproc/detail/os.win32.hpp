// SPDX-License-Identifier: BSL-1.0
// The only file that includes <windows.h>, lean and without min/max macros, which are undefined
// again so the user's translation unit is left as it was. Also: Win32 errors in Node's words.
#ifndef CHILDPROC_DETAIL_OS_WIN32_HPP
#define CHILDPROC_DETAIL_OS_WIN32_HPP

#include "../config.hpp"
#include "../error.hpp"
#if !CHILDPROC_WIN32
#  error "os.win32.hpp is the Win32 backend; include <childproc.hpp>"
#endif

#ifndef WIN32_LEAN_AND_MEAN
#  define WIN32_LEAN_AND_MEAN
#  define CHILDPROC_UNDEF_LEAN
#endif
#ifndef NOMINMAX
#  define NOMINMAX
#  define CHILDPROC_UNDEF_NOMINMAX
#endif
#include <windows.h>  // CreateProcessW, named pipes, job objects, I/O completion ports
#ifdef CHILDPROC_UNDEF_LEAN
#  undef WIN32_LEAN_AND_MEAN
#  undef CHILDPROC_UNDEF_LEAN
#endif
#ifdef CHILDPROC_UNDEF_NOMINMAX
#  undef NOMINMAX
#  undef CHILDPROC_UNDEF_NOMINMAX
#endif

#include <cerrno>  // the errno values known Win32 errors translate to
#include <string>  // contexts

namespace childproc::inline v0::detail {

/// A Win32 error as an error: the ones Node/libuv name are translated to their errno (so
/// `== std::errc::no_such_file_or_directory` and "spawn x ENOENT" work the same on every OS);
/// others keep their Win32 code in std::system_category().
inline error win32_error(DWORD code, std::string context) {
  int e = 0;
  switch (code) {
    case ERROR_FILE_NOT_FOUND: case ERROR_PATH_NOT_FOUND: case ERROR_INVALID_DRIVE: case ERROR_BAD_PATHNAME:
    case ERROR_DIRECTORY: case ERROR_INVALID_NAME: case ERROR_MOD_NOT_FOUND: e = ENOENT; break;
    case ERROR_ACCESS_DENIED: case ERROR_SHARING_VIOLATION: case ERROR_LOCK_VIOLATION: e = EACCES; break;
    case ERROR_NOT_ENOUGH_MEMORY: case ERROR_OUTOFMEMORY: e = ENOMEM; break;
    case ERROR_INVALID_PARAMETER: e = EINVAL; break;
    case ERROR_BROKEN_PIPE: case ERROR_NO_DATA: case ERROR_PIPE_NOT_CONNECTED: e = EPIPE; break;
    case ERROR_BAD_EXE_FORMAT: case ERROR_EXE_MACHINE_TYPE_MISMATCH: e = ENOEXEC; break;
    case ERROR_FILENAME_EXCED_RANGE: e = ENAMETOOLONG; break;
    case ERROR_TOO_MANY_OPEN_FILES: e = EMFILE; break;
    case ERROR_INVALID_HANDLE: e = EBADF; break;
    case ERROR_OPERATION_ABORTED: e = ECANCELED; break;
    case ERROR_NOT_SUPPORTED: e = ENOTSUP; break;
    case ERROR_FILE_EXISTS: case ERROR_ALREADY_EXISTS: e = EEXIST; break;
    case WAIT_TIMEOUT: case ERROR_SEM_TIMEOUT: e = ETIMEDOUT; break;
    default: break;
  }
  if (e) return error(std::error_code(e, std::generic_category()), std::move(context));
  return error(std::error_code(static_cast<int>(code), std::system_category()), std::move(context));
}

/// The last Win32 error, translated.
inline error last_win32_error(std::string context) { return win32_error(::GetLastError(), std::move(context)); }

/// An errno value as an error, for failures the library detects on Win32.
inline error errno_error(int e, std::string context) {
  return error(std::error_code(e, std::generic_category()), std::move(context));
}

}  // namespace childproc::inline v0::detail

#endif
