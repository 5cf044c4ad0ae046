// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_TASK_HPP
#define CHILDPROC_TASK_HPP

#include "config.hpp"
#include "error.hpp"

#include <coroutine>    // the coroutine machinery
#include <concepts>     // when_any of one type
#include <exception>    // exceptions stored and rethrown at co_await
#include <memory>       // when_any's shared state
#include <optional>     // results of when_all
#include <stop_token>   // when_any stops the losers
#include <tuple>        // when_all of several tasks
#include <type_traits>  // void results
#include <utility>      // std::exchange
#include <variant>      // the promise's result
#include <vector>       // when_all of a range

namespace childproc::inline v0 {

template <class T = void>
class task;

namespace detail {

template <class T>
struct task_result {
  std::variant<std::monostate, T, std::exception_ptr> value;
  template <class U>
  void return_value(U&& v) { value.template emplace<1>(std::forward<U>(v)); }
  T take() {
    if (value.index() == 2) std::rethrow_exception(std::get<2>(value));
    return std::move(std::get<1>(value));
  }
};

template <>
struct task_result<void> {
  std::variant<std::monostate, std::monostate, std::exception_ptr> value;
  void return_void() noexcept { value.template emplace<1>(); }
  void take() {
    if (value.index() == 2) std::rethrow_exception(std::get<2>(value));
  }
};

// Where a task stands relative to the co_await that started it. A task that ends before the
// resume() that started it returns hands control back through that call (the awaiter then does
// not suspend), instead of resuming its awaiter from deeper in the stack: a loop of awaits that
// complete at once (frames already buffered, say) keeps a flat stack even where the compiler
// makes no tail calls (sanitizers, -O0 on some compilers). A task that ends later, from the
// event loop, resumes its awaiter by symmetric transfer.
enum class task_state : unsigned char { idle, started_inline, ended_inline, suspended };

template <class T>
struct task_promise : task_result<T> {
  std::coroutine_handle<> continuation = std::noop_coroutine();
  task_state state = task_state::idle;

  task<T> get_return_object() noexcept;
  std::suspend_always initial_suspend() noexcept { return {}; }  // lazy: runs when awaited

  struct final_awaiter {
    bool await_ready() noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<task_promise> h) noexcept {
      auto& p = h.promise();
      if (p.state == task_state::started_inline) {  // still inside the awaiter's resume(): return there
        p.state = task_state::ended_inline;
        return std::noop_coroutine();
      }
      return p.continuation;
    }
    void await_resume() noexcept {}
  };
  final_awaiter final_suspend() noexcept { return {}; }

  void unhandled_exception() noexcept {
#if CHILDPROC_EXCEPTIONS
    this->value.template emplace<2>(std::current_exception());
#else
    std::terminate();
#endif
  }
};

}  // namespace detail

/// A lazy coroutine: it starts when awaited (or run by sync_wait / event_loop::run), and an
/// exception thrown inside is rethrown at the co_await. Move-only.
template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;
  using value_type = T;

  task() noexcept = default;
  explicit task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  task(task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  task& operator=(task&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  ~task() {
    if (h_) h_.destroy();
  }

  /// Whether the task has run to its end.
  bool done() const noexcept { return !h_ || h_.done(); }

  auto operator co_await() && noexcept {
    struct awaiter {
      std::coroutine_handle<promise_type> h;
      bool await_ready() noexcept { return !h || h.done(); }
      bool await_suspend(std::coroutine_handle<> awaiting) {
        auto& p = h.promise();
        p.continuation = awaiting;
        p.state = detail::task_state::started_inline;
        h.resume();
        if (p.state == detail::task_state::ended_inline) return false;  // ended already: go on here
        p.state = detail::task_state::suspended;  // it will resume `awaiting` when it ends
        return true;
      }
      T await_resume() { return h.promise().take(); }
    };
    return awaiter{h_};
  }

 private:
  std::coroutine_handle<promise_type> h_;
};

template <class T>
task<T> detail::task_promise<T>::get_return_object() noexcept {
  return task<T>(std::coroutine_handle<task_promise>::from_promise(*this));
}

namespace detail {

// A coroutine that starts at once and frees itself at its end: runs one task of a when_all.
struct eager_task {
  struct promise_type {
    eager_task get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }  // run_into catches everything
  };
};

// Counts finished tasks; the last one resumes the waiting coroutine.
struct when_all_latch {
  std::size_t remaining;
  std::coroutine_handle<> waiter;
  std::exception_ptr error;
  void arrive() {
    if (--remaining == 0 && waiter) std::exchange(waiter, {}).resume();
  }
};

template <class T>
using when_all_slot = std::optional<std::conditional_t<std::is_void_v<T>, std::monostate, T>>;

template <class T>
eager_task run_into(task<T> t, when_all_slot<T>& slot, when_all_latch& latch) {
#if CHILDPROC_EXCEPTIONS
  try {
#endif
    if constexpr (std::is_void_v<T>) {
      co_await std::move(t);
      slot.emplace();
    } else {
      slot.emplace(co_await std::move(t));
    }
#if CHILDPROC_EXCEPTIONS
  } catch (...) {
    if (!latch.error) latch.error = std::current_exception();
  }
#endif
  latch.arrive();
}

struct latch_awaiter {
  when_all_latch& latch;
  bool await_ready() noexcept { return latch.remaining == 0; }
  void await_suspend(std::coroutine_handle<> h) noexcept { latch.waiter = h; }
  void await_resume() {
    if (latch.error) std::rethrow_exception(latch.error);
  }
};

}  // namespace detail

/// Runs every task concurrently (on the current loop) and completes when all have; the results
/// in order (std::monostate for task<void>). The first exception is rethrown once all have ended.
template <class... T>
task<std::tuple<std::conditional_t<std::is_void_v<T>, std::monostate, T>...>> when_all(task<T>... tasks) {
  std::tuple<detail::when_all_slot<T>...> slots;
  detail::when_all_latch latch{sizeof...(T) + 1, {}, {}};
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (detail::run_into(std::move(tasks), std::get<I>(slots), latch), ...);
  }(std::index_sequence_for<T...>{});
  --latch.remaining;  // the +1 kept the latch from firing while tasks were still being started
  co_await detail::latch_awaiter{latch};
  co_return std::apply([](auto&... s) { return std::tuple(std::move(*s)...); }, slots);
}

/// when_all over a vector of tasks of one type.
template <class T>
task<std::vector<std::conditional_t<std::is_void_v<T>, std::monostate, T>>> when_all(std::vector<task<T>> tasks) {
  std::vector<detail::when_all_slot<T>> slots(tasks.size());
  detail::when_all_latch latch{tasks.size() + 1, {}, {}};
  for (std::size_t i = 0; i < tasks.size(); ++i) detail::run_into(std::move(tasks[i]), slots[i], latch);
  --latch.remaining;
  co_await detail::latch_awaiter{latch};
  std::vector<std::conditional_t<std::is_void_v<T>, std::monostate, T>> out;
  out.reserve(slots.size());
  for (auto& s : slots) out.push_back(std::move(*s));
  co_return out;
}

/// What when_any gives: which task finished first (its position) and its value.
template <class T>
struct when_any_result {
  std::size_t index = 0;
  T value;
};
template <>
struct when_any_result<void> {
  std::size_t index = 0;
};

namespace detail {

// Shared by when_any and its tasks; the last one to end frees it.
template <class T>
struct when_any_state {
  std::optional<when_any_result<T>> winner;
  std::exception_ptr error;
  bool finished = false;
  std::size_t running = 0;
  bool wait_all = false;  // with a stop source: resume when every task has ended
  std::coroutine_handle<> waiter;
  std::stop_source stop;
  bool ready() const noexcept { return finished && (!wait_all || running == 0); }
};

template <class T>
eager_task run_any(task<T> t, std::shared_ptr<when_any_state<T>> state, std::size_t index) {
  std::exception_ptr thrown;
  std::optional<when_any_result<T>> mine;
#if CHILDPROC_EXCEPTIONS
  try {
#endif
    if constexpr (std::is_void_v<T>) {
      co_await std::move(t);
      mine.emplace(when_any_result<T>{index});
    } else {
      T value = co_await std::move(t);  // not inside the braces: g++ 12 mishandles co_await there
      mine.emplace(when_any_result<T>{index, std::move(value)});
    }
#if CHILDPROC_EXCEPTIONS
  } catch (...) {
    thrown = std::current_exception();
  }
#endif
  --state->running;
  if (!state->finished) {  // the winner; a loser's result is dropped
    state->finished = true;
    state->winner = std::move(mine);
    state->error = thrown;
    state->stop.request_stop();
  }
  if (state->waiter && state->ready()) std::exchange(state->waiter, {}).resume();
}

template <class T>
struct any_awaiter {
  when_any_state<T>& state;
  bool await_ready() noexcept { return state.ready(); }
  void await_suspend(std::coroutine_handle<> h) noexcept { state.waiter = h; }
  void await_resume() const noexcept {}
};

}  // namespace detail

/// Runs the tasks concurrently (on the current loop); the first to end wins: its position and
/// value (its exception is rethrown). Then `stop` is requested, and when_any completes once every
/// other task has ended too: give them `stop`'s token so that they end at once (errc::cancelled).
/// At least one task.
template <class T>
task<when_any_result<T>> when_any(std::stop_source stop, std::vector<task<T>> tasks) {
  if (tasks.empty()) error(errc::invalid_argument, "when_any: no tasks").raise();
  auto state = std::make_shared<detail::when_any_state<T>>();
  state->wait_all = stop.stop_possible();
  state->stop = std::move(stop);
  state->running = tasks.size();
  for (std::size_t i = 0; i < tasks.size(); ++i) detail::run_any(std::move(tasks[i]), state, i);
  co_await detail::any_awaiter<T>{*state};
  if (state->error) std::rethrow_exception(state->error);
  co_return std::move(*state->winner);
}

/// when_any without a stop source: like Promise.race, it completes when the first task ends and
/// the others run on by themselves (their results dropped); they must not use what the caller
/// frees, and should end before the loop does (a task still waiting then is never freed).
template <class T>
task<when_any_result<T>> when_any(std::vector<task<T>> tasks) {
  return when_any(std::stop_source(std::nostopstate), std::move(tasks));
}

/// when_any of tasks given one by one (of one type).
template <class T, class... U>
  requires(std::same_as<T, U> && ...)
task<when_any_result<T>> when_any(std::stop_source stop, task<T> first, task<U>... rest) {
  std::vector<task<T>> all;
  all.reserve(1 + sizeof...(U));
  all.push_back(std::move(first));
  (all.push_back(std::move(rest)), ...);
  return when_any(std::move(stop), std::move(all));
}

/// when_any of tasks given one by one, without a stop source.
template <class T, class... U>
  requires(std::same_as<T, U> && ...)
task<when_any_result<T>> when_any(task<T> first, task<U>... rest) {
  return when_any(std::stop_source(std::nostopstate), std::move(first), std::move(rest)...);
}

}  // namespace childproc::inline v0

#endif
