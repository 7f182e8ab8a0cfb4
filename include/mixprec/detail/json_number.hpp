// Integers read from JSON with their range checked (optional: needs nlohmann-json, like every JSON
// header). nlohmann's get<T>() casts without checking: a float 4.6e30 read as a long is undefined
// behaviour (UBSan, found by the plan_json fuzzer), -1 read as a size_t becomes 2^64-1, and 2.5 read
// as an int becomes 2. Every JSON reader of the project (plan, sensitivity tables, reports,
// safetensors headers, the mixprec tool's files) reads integers through json_integer instead.
#pragma once

#include <concepts>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "mixprec/error.hpp"

namespace mixprec::detail {

// v as a T when v is a JSON integer (not a float, however whole) inside T's range; nullopt otherwise.
template <std::integral T>
[[nodiscard]] std::optional<T> json_to_integer(const nlohmann::json& v) noexcept {
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return std::nullopt;
    return static_cast<T>(u);
  }
  if (v.is_number_integer()) {  // signed and negative (nlohmann stores non-negative integers as unsigned)
    const auto s = v.get<std::int64_t>();
    if constexpr (std::is_unsigned_v<T>) {
      if (s < 0) return std::nullopt;
      if (static_cast<std::uint64_t>(s) > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return std::nullopt;
    } else {
      if (s < static_cast<std::int64_t>(std::numeric_limits<T>::min()) || s > static_cast<std::int64_t>(std::numeric_limits<T>::max()))
        return std::nullopt;
    }
    return static_cast<T>(s);
  }
  return std::nullopt;
}

// Why v is not a T, in words, for an error message that starts with what the value is
// ("layer 'x': rows"). Only numbers are dumped: a deeply nested array would bloat the message.
template <std::integral T>
[[nodiscard]] std::string json_integer_problem(const nlohmann::json& v, const std::string& what) {
  if (v.is_number_integer()) {
    if (std::is_unsigned_v<T> && !v.is_number_unsigned())
      return what + " is negative (" + v.dump() + ")";
    return what + " is out of range (" + v.dump() + ", at most " + std::to_string(std::numeric_limits<T>::max()) + ")";
  }
  if (v.is_number()) return what + " is not an integer (" + v.dump() + ")";
  return what + " is a JSON " + std::string(v.type_name()) + (std::is_unsigned_v<T> ? ", not a non-negative integer" : ", not an integer");
}

// v as a T, or mixprec::error(parse_error) naming `what` and the problem (json_integer_problem).
template <std::integral T>
[[nodiscard]] T json_integer(const nlohmann::json& v, const std::string& what) {
  if (auto x = json_to_integer<T>(v)) return *x;
  throw error(errc::parse_error, json_integer_problem<T>(v, what));
}

}  // namespace mixprec::detail
