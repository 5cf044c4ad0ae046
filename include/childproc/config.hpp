// SPDX-License-Identifier: BSL-1.0
// The only file that inspects the OS and the compiler. Every macro is 0 or 1.
#ifndef CHILDPROC_CONFIG_HPP
#define CHILDPROC_CONFIG_HPP

// Said first, before the errors an older standard gives in <coroutine>, <span> and concepts.
#if (defined(_MSVC_LANG) ? _MSVC_LANG : __cplusplus) < 202002L
#  error "childproc needs C++20: compile with -std=c++20 (MSVC: /std:c++20)"
#endif

#if defined(_WIN32)
#  define CHILDPROC_WIN32 1
#  define CHILDPROC_POSIX 0
#else
#  define CHILDPROC_WIN32 0
#  define CHILDPROC_POSIX 1
#endif

#if defined(__linux__)
#  define CHILDPROC_LINUX 1
#else
#  define CHILDPROC_LINUX 0
#endif

// The reactor uses epoll on Linux unless the build asks for poll (so CI can test the poll backend).
#if CHILDPROC_LINUX && !defined(CHILDPROC_USE_POLL)
#  define CHILDPROC_HAS_EPOLL 1
#else
#  define CHILDPROC_HAS_EPOLL 0
#endif

#if __has_include(<features.h>)
#  include <features.h>  // __GLIBC__, __GLIBC_MINOR__
#endif

// glibc 2.29 added posix_spawn_file_actions_addchdir_np, 2.34 addclosefrom_np.
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29))
#  define CHILDPROC_HAS_ADDCHDIR 1
#else
#  define CHILDPROC_HAS_ADDCHDIR 0
#endif
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
#  define CHILDPROC_HAS_ADDCLOSEFROM 1
#else
#  define CHILDPROC_HAS_ADDCLOSEFROM 0
#endif

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#  define CHILDPROC_EXCEPTIONS 1
#else
#  define CHILDPROC_EXCEPTIONS 0
#endif

#endif
