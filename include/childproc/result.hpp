// SPDX-License-Identifier: BSL-1.0
#ifndef CHILDPROC_RESULT_HPP
#define CHILDPROC_RESULT_HPP

#include "error.hpp"

#include <optional>     // the value
#include <type_traits>  // constraints
#include <utility>      // std::move

namespace childproc::inline v0 {

/// A value or a childproc::error, shaped like std::expected<T, std::error_code>.
/// `.value()` on an error throws std::system_error (aborts without exceptions).
template <class T>
class [[nodiscard]] result {
 public:
  using value_type = T;
  using error_type = childproc::error;

  template <class U = T>
    requires std::is_constructible_v<T, U&&> && (!std::is_same_v<std::remove_cvref_t<U>, result>) &&
             (!std::is_convertible_v<U&&, childproc::error>)
  result(U&& value) : value_(std::forward<U>(value)) {}
  result(childproc::error e) : error_(std::move(e)) {}
  result(std::error_code e) : error_(e) {}
  result(errc e) : error_(e) {}

  bool has_value() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { check(); return *value_; }
  const T& value() const& { check(); return *value_; }
  T&& value() && { check(); return std::move(*value_); }

  T& operator*() & noexcept { return *value_; }
  const T& operator*() const& noexcept { return *value_; }
  T&& operator*() && noexcept { return std::move(*value_); }
  T* operator->() noexcept { return &*value_; }
  const T* operator->() const noexcept { return &*value_; }

  /// The error; an empty (false) error when there is a value.
  const childproc::error& error() const& noexcept { return error_; }
  childproc::error&& error() && noexcept { return std::move(error_); }

  template <class U>
  T value_or(U&& fallback) const& { return has_value() ? *value_ : static_cast<T>(std::forward<U>(fallback)); }

 private:
  void check() const { if (!has_value()) error_.raise(); }
  std::optional<T> value_;
  childproc::error error_;
};

/// Success or a childproc::error.
template <>
class [[nodiscard]] result<void> {
 public:
  using value_type = void;
  using error_type = childproc::error;

  result() noexcept = default;
  result(childproc::error e) : error_(std::move(e)) {}
  result(std::error_code e) : error_(e) {}
  result(errc e) : error_(e) {}

  bool has_value() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return has_value(); }
  void value() const { if (error_) error_.raise(); }
  void operator*() const noexcept {}
  const childproc::error& error() const& noexcept { return error_; }
  childproc::error&& error() && noexcept { return std::move(error_); }

 private:
  childproc::error error_;
};

}  // namespace childproc::inline v0

#endif
