// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_ERROR_HPP
#define CHILDPROC_ERROR_HPP

#include "config.hpp"
#include "detail/errno_name.hpp"

#include <cstdio>        // fputs before abort without exceptions
#include <cstdlib>       // std::abort
#include <string>        // context text
#include <system_error>  // std::error_code, std::system_error
#include <utility>       // std::move

namespace childproc::inline v0 {

/// Failures the library itself detects; OS failures keep their native code.
enum class errc {
  end_of_stream = 1,    ///< the stream or channel reached a clean end
  cancelled,            ///< the operation was cancelled
  invalid_argument,     ///< bad input: empty program, NUL byte, unknown signal, ...
  timed_out,            ///< a timeout expired
  max_buffer_exceeded,  ///< an output stream went past max_buffer
  command_failed,       ///< output::check(): non-zero exit or killed by a signal
  no_process,           ///< the process object owns no child (moved from, detached or reaped)
  no_event_loop,        ///< an awaitable was awaited on a thread where no event_loop runs
  line_too_long,        ///< read_line / read_until found no delimiter within the limit
  channel_closed,       ///< the message channel was disconnected by this side, or never opened
  message_too_large,    ///< a message (sent or received) longer than the channel's max_message_size
  bad_frame,            ///< the channel's byte stream is not a sequence of frames (e.g. cut inside one)
  queue_full,           ///< a channel's send queue is at its high-water mark (the peer reads too slowly)
  busy,                 ///< a second read (or write) on a stream while one is pending: refused, the first goes on
};

namespace detail {
class errc_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "childproc"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::end_of_stream: return "end of stream";
      case errc::cancelled: return "operation cancelled";
      case errc::invalid_argument: return "invalid argument";
      case errc::timed_out: return "timed out";
      case errc::max_buffer_exceeded: return "maxBuffer length exceeded";
      case errc::command_failed: return "command failed";
      case errc::no_process: return "no child process";
      case errc::no_event_loop: return "no event loop runs on this thread";
      case errc::line_too_long: return "line too long";
      case errc::channel_closed: return "channel closed";
      case errc::message_too_large: return "message too large";
      case errc::bad_frame: return "bad frame";
      case errc::queue_full: return "send queue full";
      case errc::busy: return "another operation is pending";
    }
    return "unknown childproc error";
  }
  // So that callers may compare with the portable std::errc values as well.
  std::error_condition default_error_condition(int value) const noexcept override {
    switch (static_cast<errc>(value)) {
      case errc::cancelled: return std::errc::operation_canceled;
      case errc::invalid_argument: return std::errc::invalid_argument;
      case errc::timed_out: return std::errc::timed_out;
      case errc::max_buffer_exceeded: return std::errc::no_buffer_space;
      case errc::no_process: return std::errc::no_child_process;
      case errc::channel_closed: return std::errc::not_connected;
      case errc::message_too_large: return std::errc::message_size;
      case errc::bad_frame: return std::errc::bad_message;
      case errc::queue_full: return std::errc::resource_unavailable_try_again;
      case errc::busy: return std::errc::device_or_resource_busy;
      default: return {value, *this};
    }
  }
};
}  // namespace detail

/// The category of childproc::errc.
inline const std::error_category& childproc_category() noexcept {
  static const detail::errc_category instance;
  return instance;
}

/// Makes childproc::errc usable as a std::error_code.
inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), childproc_category()};
}

/// An error code plus what failed, in Node's words: message() is "spawn nosuchprog ENOENT".
/// It is a std::error_code, so `err == std::errc::no_such_file_or_directory` works.
class error : public std::error_code {
 public:
  error() noexcept = default;
  error(std::error_code code, std::string context = {}) : std::error_code(code), context_(std::move(context)) {}
  error(errc code, std::string context = {}) : error(make_error_code(code), std::move(context)) {}

  /// The error code alone.
  const std::error_code& code() const noexcept { return *this; }
  /// What was being done: "spawn nosuchprog", "write", "kill".
  const std::string& context() const noexcept { return context_; }

  /// "spawn nosuchprog ENOENT" for OS errors; the context (or the category's text) otherwise.
  std::string message() const {
    if (context_.empty()) return std::error_code::message();
#if CHILDPROC_WIN32
    // Win32 codes that have no errno twin keep the system's text.
    if (category() == std::system_category()) return context_ + ": " + std::error_code::message();
    const bool os = category() == std::generic_category();
#else
    const bool os = category() == std::system_category() || category() == std::generic_category();
#endif
    if (!os) return context_;
    const char* name = detail::errno_name(value());
    return context_ + " " + (name ? std::string(name) : "E" + std::to_string(value()));
  }

  /// Throws std::system_error (or, built without exceptions, prints and aborts).
  [[noreturn]] void raise() const {
#if CHILDPROC_EXCEPTIONS
    throw std::system_error(code(), message());
#else
    std::fputs(("childproc: " + message() + "\n").c_str(), stderr);
    std::abort();
#endif
  }

 private:
  std::string context_;
};

namespace detail {
/// The error of the last failed OS call, with context.
inline error last_os_error(int err, std::string context) {
  return error(std::error_code(err, std::system_category()), std::move(context));
}
}  // namespace detail

}  // namespace childproc::inline v0

template <>
struct std::is_error_code_enum<childproc::errc> : std::true_type {};

#endif
