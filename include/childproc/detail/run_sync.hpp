// SPDX-License-Identifier: BSL-1.0
// Platform-free: the engine of exec, exec_file and spawn_sync on a private reactor. stdin is
// written while stdout and stderr are read, so no pipe can fill up and deadlock the pair.
#ifndef CHILDPROC_DETAIL_RUN_SYNC_HPP
#define CHILDPROC_DETAIL_RUN_SYNC_HPP

#include "../output.hpp"
#include "../process.hpp"
#include "../spawn.hpp"
#include "reactor.hpp"
#include "stop_watch.hpp"

#include <atomic>      // the stop request, from any thread
#include <csignal>     // SIGKILL
#include <memory>      // the stop callback's state
#include <mutex>       // ... which it may reach from any thread
#include <stop_token>  // options.stop_token
#include <string>      // captured output

namespace childproc::inline v0::detail {

class sync_run {
 public:
  sync_run(process& p, const options& o, output& out) : p_(p), o_(o), out_(out) {}
  sync_run(const sync_run&) = delete;
  sync_run& operator=(const sync_run&) = delete;
  ~sync_run() {
    if (!stop_) return;
    {
      std::lock_guard lock(stop_->m);
      stop_->self = nullptr;  // a callback under way elsewhere ends without touching this run
    }
    stop_watch_.end();
  }

  result<void> run() {
    if (auto r = reactor_.open(); !r) return r;
    const auto now = reactor_clock::now();
    if (p_.in().is_open()) {
      if (o_.input.empty()) p_.in().close();
      else start_write();
    }
    for (int i : {1, 2}) {
      fill_[i] = sink(i).size();
      if (p_.stdio(static_cast<std::size_t>(i)).is_open()) start_read(i);
    }
    for (std::size_t i = 3; i < o_.stdio.size(); ++i) p_.stdio(i).close();  // only 0-2 are captured
    exit_.child = &child();
    exit_.complete = [](reactor_op* op) { static_cast<exit_event*>(op)->self->on_exit(); };
    exit_.self = this;
    reactor_.start_exit_wait(&exit_);
    timeout_.self = grace_.self = drain_.self = this;
    timeout_.complete = [](reactor_op* op) { static_cast<timer_event*>(op)->self->on_timeout(); };
    grace_.complete = [](reactor_op* op) { static_cast<timer_event*>(op)->self->on_grace(); };
    drain_.complete = [](reactor_op* op) { static_cast<timer_event*>(op)->self->on_drain(); };
    if (o_.timeout.count() > 0) reactor_.start_timer(&timeout_, deadline_after(now, o_.timeout));
    if (o_.stop_token.stop_possible()) {
      if (auto r = reactor_.enable_wake(); !r) return r;
      stop_ = std::make_shared<stop_wake>();
      stop_->self = this;
      stop_watch_.start(o_.stop_token, stop_);  // runs at once if already requested
    }
    while (!exited_ || reading_[1] || reading_[2] || writing_) {
      if (stop_requested_.exchange(false) && !exited_) {
        out_.cancelled = true;
        kill_child();
      }
      auto r = reactor_.run_once();
      if (!r) {
        trim(1), trim(2);
        return std::move(r).error();
      }
    }
    trim(1), trim(2);
    return {};
  }

 private:
  struct io_event : io_op {
    sync_run* self = nullptr;
    int index = 0;
  };
  struct exit_event : exit_op {
    sync_run* self = nullptr;
  };
  struct timer_event : timer_op {
    sync_run* self = nullptr;
  };

  // The stop callback may run on any thread: it only raises a flag and wakes the reactor.
  struct stop_wake {
    std::mutex m;
    sync_run* self = nullptr;  // null once the run has ended
    void on_stop() noexcept {
      std::lock_guard lock(m);
      if (!self) return;
      self->stop_requested_.store(true);
      self->reactor_.wake();
    }
  };

  native_child& child() { return p_.native(); }

  std::string& sink(int i) { return i == 1 ? out_.out : out_.err; }

  void start_read(int i) {
    std::string& s = sink(i);
    const std::size_t chunk = 65536;
    // The string stays at its full size while it is read into (fill_ says how much is output),
    // so each byte is zero-filled once, as the string grows, and not again at every read.
    if (s.size() < fill_[i] + chunk) s.resize(std::max(s.size() * 2, fill_[i] + chunk));
    io_event& op = reads_[i];
    op.self = this;
    op.index = i;
    op.handle = p_.stdio(static_cast<std::size_t>(i)).handle();
    op.data = s.data() + fill_[i];
    op.size = s.size() - fill_[i];
    op.write = false;
    op.complete = [](reactor_op* o) { auto* e = static_cast<io_event*>(o); e->self->on_read(e->index); };
    reading_[i] = true;
    reactor_.start_io(&op);
  }

  void on_read(int i) {
    io_event& op = reads_[i];
    fill_[i] += op.bytes;
    if (op.err || op.bytes == 0) {  // end of stream, an error, or cancelled
      trim(i);
      return end_read(i);
    }
    p_.stdio(static_cast<std::size_t>(i)).note_read(op.bytes);  // a pipe found full grows
    if (fill_[i] > o_.max_buffer) {
      fill_[i] = o_.max_buffer;
      trim(i);
      if (!out_.max_buffer_exceeded) out_.max_buffer_exceeded = i;
      // As Node: the child is killed and both streams destroyed. Kill first, so the child's
      // status is the kill signal and not its own reaction to a broken pipe (Win32 has no SIGPIPE).
      kill_child();
      end_read(i);
      close_stream(1);
      close_stream(2);
      return;
    }
    start_read(i);
  }

  // The output so far, without the room still kept for reads.
  void trim(int i) { sink(i).resize(fill_[i]); }

  void end_read(int i) {
    reading_[i] = false;
    close_stream(i);
    if (!reading_[1] && !reading_[2]) reactor_.cancel_timer(&drain_);
  }

  // Closes the parent's end; a read pending on it completes (cancelled) in a later round.
  void close_stream(int i) {
    stream& st = p_.stdio(static_cast<std::size_t>(i));
    if (!st.is_open()) return;
    reactor_.forget(st.handle());
    st.close();
  }

  void start_write() {
    writing_ = true;
    write_.self = this;
    write_.handle = p_.in().handle();
    write_.data = const_cast<char*>(o_.input.data()) + written_;
    write_.size = o_.input.size() - written_;
    write_.write = true;
    write_.complete = [](reactor_op* o) { static_cast<io_event*>(o)->self->on_write(); };
    reactor_.start_io(&write_);
  }

  void on_write() {
    written_ += write_.bytes;
    // A child that stops reading (EPIPE) simply gets no more input, as in Node's spawnSync.
    if (!write_.err && written_ < o_.input.size() && !exited_) return start_write();
    writing_ = false;
    close_stream(0);
  }

  void on_exit() {
    exited_ = true;
    reactor_.cancel_timer(&timeout_);
    reactor_.cancel_timer(&grace_);
    if (writing_) {  // nobody will read the rest of the input
      reactor_.cancel(p_.in().handle());
    }
    if (reading_[1] || reading_[2]) reactor_.start_timer(&drain_, deadline_after(reactor_clock::now(), o_.drain_timeout));
  }

  void on_timeout() {
    if (exited_) return;
    out_.timed_out = true;
    kill_child();
  }

  void kill_child() {
    if (exited_ || killed_) return;
    killed_ = true;
    (void)p_.kill(o_.kill_signal);
    reactor_.start_timer(&grace_, deadline_after(reactor_clock::now(), o_.kill_grace));
  }

  void on_grace() {
    if (exited_) return;
#ifdef SIGKILL
    (void)p_.kill(SIGKILL);
#endif
  }

  void on_drain() {  // a grandchild still holds the pipes: stop reading, keep what came
    close_stream(1);
    close_stream(2);
  }

  process& p_;
  const options& o_;
  output& out_;
  reactor reactor_;
  io_event reads_[3];
  io_event write_;
  exit_event exit_;
  timer_event timeout_, grace_, drain_;
  std::size_t fill_[3] = {0, 0, 0};
  std::size_t written_ = 0;
  bool reading_[3] = {false, false, false};
  bool writing_ = false;
  bool exited_ = false;
  bool killed_ = false;
  std::atomic<bool> stop_requested_{false};
  std::shared_ptr<stop_wake> stop_;
  stop_watch<stop_wake> stop_watch_;
};

}  // namespace childproc::inline v0::detail

#endif
