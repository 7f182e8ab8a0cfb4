// Plan rules: per-layer overrides selected by name pattern. A rule forces a quantizer, bounds the
// precision (nominal_bits: int2 2, int4 4, int8 and fp8 8, fp16 and bf16 16, fp32 32; llama.cpp's
// types by their code width, q4_K 4, q6_K 6, q8_0 8), or keeps a layer unquantized (fp32).
//
//
// How rules combine (llama.cpp's `--tensor-type` semantics for the forcing ones):
// - forcing rules (PATTERN=SPEC, and PATTERN=fp32, never quantize): the FIRST one whose pattern
//   matches a layer decides its quantizer; later forcing rules that also match it are ignored there;
// - bounds (PATTERN>=BITS, PATTERN<=BITS) all apply: a layer's candidates are those every matching
//   bound allows (and a forced quantizer must be within them too, or the plan fails naming both).
// Every rule must match at least one layer (a typo fails at once).
//
// Patterns: a glob (`*` any run of characters, `?` exactly one; a plain name matches only itself), or an
// ECMAScript regex SEARCHED in the name, as llama.cpp's `--tensor-type` does (`attn_v` matches
// blk.0.attn_v.weight; anchor with ^...$ to match a whole name):
//   plan_rule::at_least("*.attn.*", 8)                         // glob: the default for a string
//   plan_rule::use(name_pattern::regex(R"(blk\.\d+\.attn_v)"), parse_spec("q8_0"))
// Text form (command lines, config files), parse_plan_rule; the one override grammar of the library
// and the mixprec tool (whose --tensor-type reads patterns as regexes, as llama.cpp):
//   "lm_head=fp16"   "*.attn.*>=8"   "*.ffn.*<=4"   "blk.0.*=fp32" (never quantized)   "output.weight=q6_K"
//   "re:attn_v=q8_0"                                   // `re:` makes the pattern a regex
#pragma once

#include <charconv>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>

#include "mixprec/error.hpp"
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
    } else if (star != std::string_view::npos) {  // let the last `*` absorb one more character
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// A layer-name pattern: a glob (whole name) or a regex (searched in the name).
class name_pattern {
 public:
  enum class kind { glob, regex };

  // A glob (implicit, so that a string literal is a glob pattern).
  name_pattern(std::string glob_text) : kind_(kind::glob), text_(std::move(glob_text)) {}  // NOLINT
  name_pattern(const char* glob_text) : name_pattern(std::string(glob_text)) {}           // NOLINT

  [[nodiscard]] static name_pattern glob(std::string text) { return name_pattern(std::move(text)); }
  // Throws mixprec::error(parse_error) for a malformed regex.
  [[nodiscard]] static name_pattern regex(std::string text) {
    name_pattern p(text);
    p.kind_ = kind::regex;
    try {
      p.regex_ = std::make_shared<const std::regex>(text, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw error(errc::parse_error, "name pattern: bad regex '" + text + "': " + e.what());
    }
    return p;
  }

  // Globs match the whole name; regexes are searched in it (std::regex_search, as llama.cpp).
  [[nodiscard]] bool matches(std::string_view name) const {
    if (kind_ == kind::glob) return glob_match(text_, name);
    return std::regex_search(name.begin(), name.end(), *regex_);
  }
  [[nodiscard]] kind type() const noexcept { return kind_; }
  [[nodiscard]] const std::string& text() const noexcept { return text_; }
  // How error messages show it: 'text' for a glob, regex 'text' for a regex.
  [[nodiscard]] std::string describe() const { return (kind_ == kind::regex ? "regex '" : "'") + text_ + "'"; }

  friend bool operator==(const name_pattern& a, const name_pattern& b) noexcept {
    return a.kind_ == b.kind_ && a.text_ == b.text_;
  }

 private:
  kind kind_;
  std::string text_;
  std::shared_ptr<const std::regex> regex_;  // regex only (shared: rules are copied into planners)
};

// One rule for the layers whose names match `pattern` (see the banner).
struct plan_rule {
  name_pattern pattern;
  std::optional<quant_spec> force;  // exactly this quantizer
  int min_bits = 0;                 // at least this precision, e.g. 8 for `*.attn.*`
  int max_bits = 32;                // at most this precision
  bool keep_fp32 = false;           // never quantized (fp32, predicted loss 0)

  [[nodiscard]] static plan_rule at_least(name_pattern p, int bits) { return {std::move(p), std::nullopt, bits, 32, false}; }
  [[nodiscard]] static plan_rule at_most(name_pattern p, int bits) { return {std::move(p), std::nullopt, 0, bits, false}; }
  [[nodiscard]] static plan_rule between(name_pattern p, int min_bits, int max_bits) {
    return {std::move(p), std::nullopt, min_bits, max_bits, false};
  }
  [[nodiscard]] static plan_rule use(name_pattern p, const quant_spec& spec) { return {std::move(p), spec, 0, 32, false}; }
  [[nodiscard]] static plan_rule never_quantize(name_pattern p) { return {std::move(p), std::nullopt, 0, 32, true}; }

  // Whether the rule decides a layer's quantizer (use, never_quantize) rather than bounding it.
  [[nodiscard]] bool forces() const noexcept { return keep_fp32 || force.has_value(); }
  // Whether the rule lets a layer take spec q.
  [[nodiscard]] bool allows(const quant_spec& q) const {
    if (keep_fp32) return q.format == format_id::fp32;
    if (force) return q == *force;
    return nominal_bits(q) >= min_bits && nominal_bits(q) <= max_bits;
  }
  // E.g. "rule 'lm_head' (use fp16)".
  [[nodiscard]] std::string describe() const {
    std::string what;
    if (keep_fp32) what = "never quantize";
    else if (force) what = "use " + to_string(*force);
    else what = std::to_string(min_bits) + ".." + std::to_string(max_bits) + " bits";
    return "rule " + pattern.describe() + " (" + what + ")";
  }
};

// A rule from its text form (see the banner): PATTERN=SPEC uses that quantizer (fp32: never quantize),
// PATTERN>=BITS and PATTERN<=BITS bound the precision; a `re:` prefix makes PATTERN a regex, else it is
// of kind `patterns` (a glob by default; the mixprec tool's --tensor-type passes regex, as llama.cpp).
// Throws mixprec::error(parse_error) naming the text for anything else.
[[nodiscard]] inline plan_rule parse_plan_rule(std::string_view text, name_pattern::kind patterns = name_pattern::kind::glob) {
  const std::string context = "plan rule '" + std::string(text) + "'";
  const auto fail = [&](const std::string& why) { return error(errc::parse_error, why).in_context(context); };
  const std::size_t eq = text.rfind('=');
  if (eq == std::string_view::npos) throw fail("expected PATTERN=SPEC, PATTERN>=BITS or PATTERN<=BITS");
  const bool bound = eq > 0 && (text[eq - 1] == '>' || text[eq - 1] == '<');
  std::string_view pat = text.substr(0, bound ? eq - 1 : eq);
  const std::string_view rhs = text.substr(eq + 1);
  bool is_regex = patterns == name_pattern::kind::regex;
  if (pat.substr(0, 3) == "re:") {
    is_regex = true;
    pat.remove_prefix(3);
  }
  if (pat.empty()) throw fail("empty pattern");
  if (rhs.empty()) throw fail(bound ? "missing bits" : "missing spec");
  name_pattern pattern = is_regex ? name_pattern::regex(std::string(pat)) : name_pattern::glob(std::string(pat));
  if (bound) {
    int bits = 0;
    const auto [end, ec] = std::from_chars(rhs.data(), rhs.data() + rhs.size(), bits);
    if (ec != std::errc{} || end != rhs.data() + rhs.size() || bits < 1 || bits > 32)
      throw fail("bits must be a whole number from 1 to 32, not '" + std::string(rhs) + "'");
    return text[eq - 1] == '>' ? plan_rule::at_least(std::move(pattern), bits)
                               : plan_rule::at_most(std::move(pattern), bits);
  }
  quant_spec spec;
  try {
    spec = parse_spec(rhs);
  } catch (const error& e) {
    throw e.in_context(context, errc::parse_error);
  }
  if (spec.format == format_id::fp32) return plan_rule::never_quantize(std::move(pattern));
  return plan_rule::use(std::move(pattern), spec);
}

}  // namespace mixprec
