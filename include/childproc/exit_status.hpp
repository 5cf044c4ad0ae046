// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_EXIT_STATUS_HPP
#define CHILDPROC_EXIT_STATUS_HPP

#include "detail/signal_name.hpp"

#include <csignal>   // SIGSEGV and friends, for crashed()
#include <optional>  // Node's null code or signal
#include <string>    // to_string

namespace childproc::inline v0 {

/// How a child ended: exited with a code, or killed by a signal (POSIX) / crashed (Win32 NTSTATUS).
class exit_status {
 public:
  /// The child called exit(code). On Win32 the code is the full 32-bit exit code.
  static constexpr exit_status exited(int code) noexcept { return exit_status(code, 0, false); }
  /// The child was killed by `signal`.
  static constexpr exit_status signaled(int signal, bool core_dumped = false) noexcept {
    return exit_status(0, signal, core_dumped);
  }

  /// The exit code, or nullopt if a signal ended the child (Node's `code`).
  constexpr std::optional<int> exit_code() const noexcept {
    return signal_ ? std::nullopt : std::optional<int>(code_);
  }
  /// The signal that ended the child, or nullopt if it exited (Node's `signal`).
  constexpr std::optional<int> signal() const noexcept {
    return signal_ ? std::optional<int>(signal_) : std::nullopt;
  }
  /// Whether it exited normally (with any code).
  constexpr bool exited() const noexcept { return signal_ == 0; }
  /// Whether a signal ended it.
  constexpr bool signaled() const noexcept { return signal_ != 0; }
  /// Whether the system wrote a core dump (POSIX WCOREDUMP).
  constexpr bool core_dumped() const noexcept { return core_; }
  /// Exited with code 0.
  constexpr bool success() const noexcept { return signal_ == 0 && code_ == 0; }
  /// Ended by a fault: SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, or an NTSTATUS error code on Win32.
  constexpr bool crashed() const noexcept {
#ifdef _WIN32
    if (signal_ == 0) return (static_cast<unsigned>(code_) & 0xC0000000u) == 0xC0000000u;
#endif
#ifdef SIGBUS
    if (signal_ == SIGBUS) return true;
#endif
    return signal_ == SIGSEGV || signal_ == SIGILL || signal_ == SIGFPE || signal_ == SIGABRT;
  }

  /// "exited with code 3", "killed by signal SIGSEGV (core dumped)", "crashed with code 0xC0000005".
  std::string to_string() const {
    if (crashed() && !signal_) {  // Win32: an NTSTATUS such as 0xC0000005 (access violation)
      const char* hex = "0123456789ABCDEF";
      std::string s = "crashed with code 0x";
      for (int shift = 28; shift >= 0; shift -= 4) s += hex[(static_cast<unsigned>(code_) >> shift) & 0xF];
      return s;
    }
    if (!signal_) return "exited with code " + std::to_string(code_);
    const char* name = detail::signal_name(signal_);
    return std::string("killed by signal ") + (name ? name : std::to_string(signal_).c_str()) +
           (core_ ? " (core dumped)" : "");
  }

  constexpr bool operator==(const exit_status&) const noexcept = default;

 private:
  constexpr exit_status(int code, int signal, bool core) noexcept : code_(code), signal_(signal), core_(core) {}
  int code_;
  int signal_;
  bool core_;
};

}  // namespace childproc::inline v0

#endif
