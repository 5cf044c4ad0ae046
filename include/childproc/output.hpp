// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_OUTPUT_HPP
#define CHILDPROC_OUTPUT_HPP

#include "exit_status.hpp"
#include "result.hpp"
#include "detail/wait.hpp"

#include <optional>  // which stream overflowed
#include <string>    // captured bytes

namespace childproc::inline v0 {

/// What exec, exec_file and spawn_sync return: the child's outcome as data (Node's callback arguments).
struct output {
  exit_status status = exit_status::exited(0);  ///< how the child ended
  std::string out;                              ///< stdout bytes (at most max_buffer)
  std::string err;                              ///< stderr bytes (at most max_buffer)
  pid_type pid = 0;                             ///< the child's process id
  bool timed_out = false;                       ///< the timeout fired and the child was killed
  bool cancelled = false;                       ///< options.stop_token fired and the child was killed
  std::optional<int> max_buffer_exceeded;       ///< 1 (stdout) or 2 (stderr) went past max_buffer; child killed
  std::string command;                          ///< the command line, for messages

  /// Exited with code 0, without timeout, cancel or overflow.
  bool ok() const noexcept { return status.success() && !timed_out && !cancelled && !max_buffer_exceeded; }

  /// Success, or errc::command_failed whose message is Node's "Command failed: <cmd>" plus why
  /// and the last 4 KiB of stderr.
  result<void> check() const {
    if (ok()) return {};
    std::string why = status.to_string();
    if (timed_out) why = "timed out, " + why;
    if (cancelled) why = "The operation was aborted, " + why;
    if (max_buffer_exceeded) why = std::string(*max_buffer_exceeded == 1 ? "stdout" : "stderr") + " maxBuffer length exceeded, " + why;
    constexpr std::size_t tail = 4096;
    const std::string shown = err.size() > tail ? "..." + err.substr(err.size() - tail) : err;
    return error(errc::command_failed, "Command failed: " + command + " (" + why + ")" + (shown.empty() ? "" : "\n" + shown));
  }
};

}  // namespace childproc::inline v0

#endif
