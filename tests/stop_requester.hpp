// A thread that requests one stop per round when asked, for tests racing a stop request against
// an owner on the test's thread. Round numbers start at 1.
#pragma once

#include <atomic>
#include <stop_token>
#include <thread>

class stop_requester {
 public:
  stop_requester()
      : thread_([this] {
          for (int seen = 0;;) {
            while (asked_.load() == seen) std::this_thread::yield();
            seen = asked_.load();
            if (seen < 0) return;
            for (int k = 0; k < (seen * 7919) % delay_; ++k) std::atomic_signal_fence(std::memory_order_seq_cst);
            target_.load()->request_stop();
            answered_.store(seen);
          }
        }) {}
  stop_requester(const stop_requester&) = delete;
  stop_requester& operator=(const stop_requester&) = delete;
  ~stop_requester() {
    asked_.store(-1);
    thread_.join();
  }
  /// Round `round` begins: `src` is stopped soon, after a delay that varies with the round.
  void ask(std::stop_source& src, int round) {
    target_.store(&src);
    asked_.store(round);
  }
  /// Waits until round `round`'s request_stop() has returned (then its source may go).
  void wait(int round) const {
    while (answered_.load() != round) std::this_thread::yield();
  }

 private:
  static constexpr int delay_ = 400;  // pause iterations before the request, at most
  std::atomic<std::stop_source*> target_{nullptr};
  std::atomic<int> asked_{0}, answered_{0};
  std::thread thread_;  // last: starts once the rest is built
};
