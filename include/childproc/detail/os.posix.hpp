// SPDX-License-Identifier: BSL-1.0
// The only list of POSIX headers; every POSIX backend includes this file.
#ifndef CHILDPROC_DETAIL_OS_POSIX_HPP
#define CHILDPROC_DETAIL_OS_POSIX_HPP

#include "../config.hpp"
#if !CHILDPROC_POSIX
#  error "os.posix.hpp is the POSIX backend; include <childproc.hpp>"
#endif

#include <fcntl.h>       // open, fcntl, O_CLOEXEC, O_NONBLOCK
#include <grp.h>         // setgroups in the uid/gid fallback
#include <poll.h>        // poll: sync waits and the poll reactor
#include <pthread.h>     // pthread_sigmask: SIGPIPE-free writes
#include <signal.h>      // kill, sigset_t, sigtimedwait
#include <spawn.h>       // posix_spawn and its attributes
#include <sys/resource.h>  // getrlimit for the close-fds fallback
#include <sys/socket.h>  // socketpair for extra stdio entries
#include <sys/stat.h>    // stat in the PATH search
#include <sys/syscall.h>  // SYS_pidfd_open, SYS_close_range
#include <sys/types.h>   // pid_t
#include <sys/wait.h>    // waitpid, waitid
#include <unistd.h>      // read, write, close, access, execve, fork, _exit

#if CHILDPROC_HAS_EPOLL
#  include <sys/epoll.h>  // the Linux reactor
#endif
#if defined(__linux__)
#  include <sched.h>      // clone: the Linux spawn path
#  include <sys/mman.h>   // its stack
#  include <sys/prctl.h>  // PR_SET_PDEATHSIG for kill_on_parent_exit
#endif

extern char** environ;  // the parent's environment, inherited by default

#endif
