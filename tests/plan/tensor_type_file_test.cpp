// A plan as llama.cpp's tensor-type file: read back as llama-quantize reads one (white-space separated
// entries, the pattern up to the first '=' lower-cased and searched as an ECMAScript regex, the first
// matching entry's type, the type name case-insensitive), every tensor gets its planned type and no
// other tensor's entry matches it. tests/interop runs llama.cpp's own llama-quantize on such a file.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "mixprec/plan/plan.hpp"
#include "mixprec/plan/tensor_type_file.hpp"
#include "support/errors.hpp"

using namespace mixprec;

namespace {

// llama-quantize's reading of the file (tools/quantize/quantize.cpp, llama.cpp 0.5.0), written from its description.
std::vector<std::pair<std::regex, quant_spec>> read_as_llama_quantize(const std::string& text) {
  std::vector<std::pair<std::regex, quant_spec>> entries;
  std::istringstream in(text);
  for (std::string word; in >> word;) {
    const auto eq = word.find('=');
    REQUIRE(eq != std::string::npos);
    std::string pattern = word.substr(0, eq);
    std::transform(pattern.begin(), pattern.end(), pattern.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    entries.emplace_back(std::regex(pattern), parse_spec(word.substr(eq + 1)));
  }
  return entries;
}

std::optional<quant_spec> type_for(const std::vector<std::pair<std::regex, quant_spec>>& entries, const std::string& name) {
  for (const auto& [re, spec] : entries)
    if (std::regex_search(name, re)) return spec;
  return std::nullopt;
}

plan_entry entry(std::string name, ggml_type t) {
  plan_entry e;
  e.layer = std::move(name);
  e.spec = ggml_spec(t);
  e.rows = 4;
  e.cols = 256;
  e.bytes = quantized_bytes(e.spec, e.rows, e.cols);
  return e;
}

}  // namespace

TEST_CASE("a tensor-type file gives every tensor its planned type, and no other tensor's", "[plan][tensor_type_file]") {
  // Names whose plain text would match other names (blk.1 inside blk.11), or that lower-casing, white
  // space, '=' or regex syntax would change.
  const std::vector<std::string> names = {"blk.1.attn_q.weight", "blk.11.attn_q.weight", "blk.1.attn_q.weight.extra", "x.blk.1.attn_q.weight",
                                          "Output.Weight",       "output.weight",        "a b=c",                     "x+y(z)[w]{v}|u^t$s*r?q\\p/o-n",
                                          "token_embd.weight",   "blkx1xattn_qxweight"};
  const ggml_type types[] = {ggml_type::q4_0, ggml_type::q4_k, ggml_type::q5_1, ggml_type::q8_0, ggml_type::f16,
                             ggml_type::bf16, ggml_type::f32,  ggml_type::q6_k, ggml_type::iq4_xs, ggml_type::q2_k};
  plan p;
  for (std::size_t i = 0; i < names.size(); ++i) p.entries.push_back(entry(names[i], types[i % std::size(types)]));
  const std::string text = to_tensor_type_file(p);
  CHECK(std::count(text.begin(), text.end(), '\n') == static_cast<long>(names.size()));
  const auto entries = read_as_llama_quantize(text);
  REQUIRE(entries.size() == names.size());
  for (const plan_entry& e : p.entries) {
    INFO(e.layer);
    const auto got = type_for(entries, e.layer);
    REQUIRE(got);
    CHECK(*got == e.spec);
    std::size_t matching = 0;  // the entries that match this name: its own only
    for (const auto& [re, spec] : entries) matching += std::regex_search(e.layer, re) ? 1 : 0;
    CHECK(matching == 1);
  }
  // A name the plan does not hold gets no type (llama-quantize then uses its own recipe).
  CHECK_FALSE(type_for(entries, "blk.1.attn_q.weigh"));
  CHECK_FALSE(type_for(entries, "blk.1.attn_k.weight"));
  // The common names read as themselves, dots escaped.
  CHECK(text.find("^blk\\.1\\.attn_q\\.weight$=q4_0\n") == 0);
}

TEST_CASE("a plan a GGUF cannot store, or a name a pattern cannot hold, is refused by name", "[plan][tensor_type_file]") {
  plan p;
  p.entries.push_back(entry("blk.0.ffn_up.weight", ggml_type::q4_0));
  p.entries.push_back(entry("blk.0.ffn_down.weight", ggml_type::q8_0));
  p.entries.back().spec = parse_spec("int4/g128/sym/minmax/s16");
  const auto e = test::error_of([&] { (void)to_tensor_type_file(p); });
  REQUIRE(e);
  CHECK(e->code() == errc::unsupported);
  CHECK_THAT(e->what(), Catch::Contains("blk.0.ffn_down.weight") && Catch::Contains("int4/g128"));
  CHECK(test::error_code_of([] { (void)tensor_type_pattern("caf\xc3\xa9.weight"); }) == errc::invalid_argument);
  CHECK(test::error_code_of([] { (void)tensor_type_pattern(std::string("a\0b", 3)); }) == errc::invalid_argument);
  CHECK(to_tensor_type_file(plan{}).empty());
}
