// A plan as llama.cpp's tensor-type file, the per-tensor types `llama-quantize --tensor-type-file FILE`
// applies (llama.cpp PR #18572; tools/quantize/quantize.cpp of llama.cpp 0.5.0):
//
//   ^blk\.0\.attn_q\.weight$=q4_K
//   ^blk\.0\.attn_k\.weight$=q6_K
//   ...
//
// One `PATTERN=TYPE` entry per line, as llama-quantize reads them: entries are separated by white
// space, PATTERN is everything before the first '=' and is lower-cased, then searched in each tensor's
// name as an ECMAScript regex (std::regex_search), the first entry that matches giving the type; TYPE is
// ggml's type name (`ggml_type_name`, matched case-insensitively). So that an entry names exactly its
// tensor (`blk.1.attn_q.weight` is also found inside `blk.11.attn_q.weight`), each name is anchored
// with ^...$ and every character that is not a lower-case letter, a digit or '_' is escaped: '.' as
// "\.", anything else (upper-case letters, which lower-casing would change; white space and '=', which
// would end the pattern) as "\xHH".
//
// What llama-quantize does with the entries depends on its other arguments (the base type, --pure, the
// fallback for rows a type's block does not divide); docs/reference.md says which base type applies every
// entry as written, and tests/interop checks that the bytes are those `mixprec quantize` writes.
//
// Errors (mixprec::error): a layer whose spec no GGUF type stores (int4/g128...: errc::unsupported), a
// layer name with a byte outside ASCII or a NUL (errc::invalid_argument: llama-quantize's patterns are
// narrow-char regexes, where such a byte is not portable).
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

#include "mixprec/error.hpp"
#include "mixprec/plan/result.hpp"
#include "mixprec/quantize/spec.hpp"

namespace mixprec {

// The regex that matches exactly the tensor name `name` under llama-quantize's reading (see the banner).
[[nodiscard]] inline std::string tensor_type_pattern(std::string_view name) {
  std::string out = "^";
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u == 0 || u >= 0x80)
      throw error(errc::invalid_argument, "tensor name '" + std::string(name) +
                                              "' has a byte outside ASCII, which a llama.cpp tensor-type pattern cannot name portably");
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
      out += c;
    } else if (c == '.') {
      out += "\\.";
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", u);
      out += hex;
    }
  }
  return out + "$";
}

// The plan's entries as a tensor-type file's text, in the plan's order, one per line (see the banner).
[[nodiscard]] inline std::string to_tensor_type_file(const plan& p) {
  std::string out;
  for (const plan_entry& e : p.entries) {
    const auto type = ggml_type_of(e.spec);
    if (!type)
      throw error(errc::unsupported, "plan entry '" + e.layer + "' is " + to_string(e.spec) +
                                         ", which no GGUF type stores: a llama.cpp tensor-type file names only ggml types");
    out += tensor_type_pattern(e.layer);
    out += '=';
    out += to_string(*type);
    out += '\n';
  }
  return out;
}

}  // namespace mixprec
