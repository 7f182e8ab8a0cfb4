// Plan rules: name-pattern overrides (glob: `*` any run, `?` one character), minimum and maximum
// precision, forced formats, layers never quantized.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mixprec/quantize/spec.hpp"

namespace mixprec {

// Whether `name` matches the glob `pattern` (`*` any run of characters, `?` exactly one).
[[nodiscard]] inline bool glob_match(std::string_view pattern, std::string_view name) noexcept {
  std::size_t p = 0, n = 0, star = std::string_view::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p;
      ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// One rule for the layers whose names match `pattern`. Bits are storage bits of one element of the
// format (int4: 4, int8: 8, fp16: 16, fp32: 32). Every rule must match at least one layer.
struct plan_rule {
  std::string pattern;
  std::optional<quant_spec> force;  // exactly this quantizer
  int min_bits = 0;                 // at least this precision, e.g. 8 for `*.attn.*`
  int max_bits = 32;                // at most this precision
  bool keep_fp32 = false;           // never quantized

  // Constructors for the common cases.
  static plan_rule at_least(std::string pattern, int bits) { return {std::move(pattern), std::nullopt, bits, 32, false}; }
  static plan_rule at_most(std::string pattern, int bits) { return {std::move(pattern), std::nullopt, 0, bits, false}; }
  static plan_rule use(std::string pattern, const quant_spec& spec) { return {std::move(pattern), spec, 0, 32, false}; }
  static plan_rule never_quantize(std::string pattern) { return {std::move(pattern), std::nullopt, 0, 32, true}; }
};

}  // namespace mixprec
