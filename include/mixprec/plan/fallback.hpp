// The fallback chain: which types a tensor is measured and planned with when none of the requested
// types can hold it. llama.cpp falls back too (llama-quantize: a type whose block does not divide the
// row takes another); mixprec measures the fallbacks instead of picking one:
//   1. the requested types that hold the tensor;
//   2. if none: every fallback type (q4_0, q4_1, q5_0, q5_1, q8_0: 32-value blocks) that holds it, for
//      the plan to choose among;
//   3. if none: the first last-resort type that holds it (f16, bf16, f32; f32 holds any float tensor).
// "Holds" is the caller's test (a block that divides the row, a quantizer that accepts the values), so
// the one chain serves the analysis, the measurement and the size floor alike.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixprec/quantize/spec.hpp"

namespace mixprec {

// Step 2 of the chain (banner).
[[nodiscard]] inline std::vector<quant_spec> fallback_types() {
  return {parse_spec("q4_0"), parse_spec("q4_1"), parse_spec("q5_0"), parse_spec("q5_1"), parse_spec("q8_0")};
}
// Step 3 of the chain (banner).
[[nodiscard]] inline std::vector<quant_spec> last_resort_types() { return {parse_spec("f16"), parse_spec("bf16"), parse_spec("f32")}; }

// What the chain took for one tensor: the results of the types that hold it, in order, and whether they
// are fallbacks (steps 2-3) rather than requested types.
template <class R>
struct fallback_result {
  std::vector<R> taken;
  std::vector<quant_spec> specs;  // the type of each result
  bool fell_back = false;
};

// Runs the chain (banner): attempt(spec) gives a result for a type that holds the tensor, std::nullopt for
// one that does not (and may throw for anything else, which propagates).
template <class Attempt>
[[nodiscard]] auto with_fallback(std::span<const quant_spec> requested, Attempt&& attempt) {
  using R = typename std::invoke_result_t<Attempt&, const quant_spec&>::value_type;
  fallback_result<R> out;
  auto take = [&](const quant_spec& spec) {
    if (std::optional<R> r = attempt(spec)) {
      out.taken.push_back(std::move(*r));
      out.specs.push_back(spec);
      return true;
    }
    return false;
  };
  for (const quant_spec& spec : requested) (void)take(spec);
  if (!out.taken.empty()) return out;
  out.fell_back = true;
  for (const quant_spec& spec : fallback_types()) (void)take(spec);
  if (!out.taken.empty()) return out;
  for (const quant_spec& spec : last_resort_types())
    if (take(spec)) break;
  return out;
}

// The types a fallback result took, as "q4_0, q5_0" (for the note a tool prints).
template <class R>
[[nodiscard]] std::string spec_list(const fallback_result<R>& r) {
  std::string s;
  for (const quant_spec& spec : r.specs) s += (s.empty() ? "" : ", ") + to_string(spec);
  return s;
}

}  // namespace mixprec
