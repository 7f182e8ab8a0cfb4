// mixprec's copy of llama.cpp's quantization policy (plan/llama_quant_policy.hpp) against llama.cpp's own
// source, the one the npm package ships (tests/interop/llama_quantize.sh unpacks it into
// $MIXPREC_INTEROP_CACHE/llama.cpp-src), read as text:
//   1. the names llama-quantize never quantizes: every name.find("...") of src/llama-quant.cpp's
//      tensor_allows_quantization is the router's part or one of never_quantized_parts, and each of those
//      is there; its whole-name comparisons (LLM_TN(arch)(LLM_TENSOR_X, "weight")) are never_quantized_names;
//   2. general.file_type: each case of the model loader's guess (src/llama-model-loader.cpp,
//      "case GGML_TYPE_X: ftype = LLAMA_FTYPE_Y") gives llama_file_type("x") == Y's value in include/llama.h,
//      and llama_file_type names no type that switch leaves out but mxfp4 (MOSTLY_MXFP4_MOE).
// A newer pinned source that adds a rule fails here until the library follows it: every
// `quantize &= ...` statement and early `return false` of that function must be of a form this reads.
// Skipped (with a warning) where the source bundle could not be fetched or built (llama_quantize.sh exit 77).
#include <catch2/catch.hpp>

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <string>

#include "interop/llama_cpp_source.hpp"
#include "mixprec/formats/ggml_types.hpp"
#include "mixprec/plan/llama_quant_policy.hpp"

namespace fs = std::filesystem;

namespace {

using mixprec::test::slurp;

// llama.cpp's source folder, or empty when the bundle is not here.
fs::path llama_source() { return mixprec::test::llama_cpp_source("src/llama-quant.cpp"); }

// The text of the function `name` defined in `source`: from its name to the first "\n}".
std::string function_body(const std::string& source, const std::string& name) {
  const std::size_t at = source.find("bool " + name + "(");
  REQUIRE(at != std::string::npos);
  const std::size_t end = source.find("\n}", at);
  REQUIRE(end != std::string::npos);
  return source.substr(at, end - at);
}

// ggml's name of GGML_TYPE_<upper>: lower case but for the K of the K types ("Q4_K" -> "q4_K").
std::string ggml_name(std::string upper) {
  for (char& c : upper) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (upper.size() > 2 && upper.ends_with("_k")) upper.back() = 'K';
  return upper;
}

bool is_ggml_type(const std::string& name) {
  for (const auto& info : mixprec::ggml::type_table)
    if (info.name == name && !info.removed()) return true;
  return false;
}

}  // namespace

TEST_CASE("the tensors llama-quantize keeps in float are the library's", "[policy]") {
  const fs::path src = llama_source();
  if (src.empty()) {
    WARN("llama.cpp's source bundle is not here (offline?): skipped");
    return;
  }
  const std::string body = function_body(slurp(src / "src" / "llama-quant.cpp"), "tensor_allows_quantization");
  INFO("llama.cpp's tensor_allows_quantization:\n" << body);
  // The rules the library's function applies besides the lists.
  CHECK(body.find("ggml_n_dims(tensor) < 2") != std::string::npos);
  CHECK(body.find("rfind(\"weight\") == name.size() - 6") != std::string::npos);
  // Every rule is of a form read below or one the library knows it leaves to the caller, so that a new
  // rule of another form fails here instead of passing unread.
  {
    const std::regex rule_re(R"re(quantize\s*&=\s*([^;]+);)re");
    const std::regex known_re(R"re(^(name\.find\("[^"]+"\)\s*==\s*std::string::npos|name\s*!=\s*LLM_TN\(arch\)\(LLM_TENSOR_\w+,\s*"\w+"\))$)re");
    int rules = 0;
    for (std::sregex_iterator it(body.begin(), body.end(), rule_re), end; it != end; ++it, ++rules) {
      const std::string rule = (*it)[1].str();
      INFO("llama.cpp's rule: quantize &= " << rule);
      // --leave-output-tensor is llama-quantize's option, not a policy: mixprec plans output.weight.
      CHECK((std::regex_match(rule, known_re) || rule == "params->quantize_output_tensor || name != \"output.weight\""));
    }
    CHECK(rules > 20);
    const std::regex early_re(R"re(if\s*\(([^\n]+)\)\s*return false;)re");
    for (std::sregex_iterator it(body.begin(), body.end(), early_re), end; it != end; ++it) {
      const std::string guard = (*it)[1].str();
      INFO("llama.cpp's guard: if (" << guard << ") return false");
      CHECK((guard == "params->only_copy" || guard == "ggml_n_dims(tensor) < 2"));
    }
  }

  std::set<std::string> parts;
  const std::regex find_re(R"re(name\.find\("([^"]+)"\)\s*==\s*std::string::npos)re");
  for (std::sregex_iterator it(body.begin(), body.end(), find_re), end; it != end; ++it) parts.insert((*it)[1].str());
  REQUIRE(parts.size() > 20);
  CHECK(parts.erase("ffn_gate_inp.weight") == 1);  // the router: its own role
  const std::set<std::string> ours(std::begin(mixprec::never_quantized_parts), std::end(mixprec::never_quantized_parts));
  CHECK(ours.size() == std::size(mixprec::never_quantized_parts));  // no part twice
  for (const std::string& p : parts) {
    INFO("llama.cpp keeps tensors named *" << p << "* in float");
    CHECK(ours.count(p) == 1);
    CHECK(mixprec::tensor_role_of("blk.0." + p + ".weight", std::vector<std::uint64_t>{64, 64}) == mixprec::tensor_role::kept_float);
  }
  for (const std::string& p : ours) {
    INFO("the library keeps *" << p << "* in float");
    CHECK(parts.count(p) == 1);
  }

  // Whole names: LLM_TN(arch)(LLM_TENSOR_X, "weight"), X's name from src/llama-arch.cpp.
  const std::string arch = slurp(src / "src" / "llama-arch.cpp");
  std::set<std::string> wholes;
  const std::regex tn_re(R"re(name\s*!=\s*LLM_TN\(arch\)\((LLM_TENSOR_\w+),\s*"(\w+)"\))re");
  for (std::sregex_iterator it(body.begin(), body.end(), tn_re), end; it != end; ++it) {
    const std::regex name_re("\\{\\s*" + (*it)[1].str() + R"re(,\s*"([^"]+)"\s*\})re");
    std::smatch m;
    REQUIRE(std::regex_search(arch, m, name_re));
    wholes.insert(m[1].str() + "." + (*it)[2].str());
  }
  const std::set<std::string> our_wholes(std::begin(mixprec::never_quantized_names), std::end(mixprec::never_quantized_names));
  CHECK(wholes == our_wholes);
  for (const std::string& w : wholes) CHECK(mixprec::tensor_role_of(w, std::vector<std::uint64_t>{64, 64}) == mixprec::tensor_role::kept_float);
}

TEST_CASE("general.file_type is llama.cpp's for every type its loader names", "[policy]") {
  const fs::path src = llama_source();
  if (src.empty()) {
    WARN("llama.cpp's source bundle is not here (offline?): skipped");
    return;
  }
  // enum llama_ftype's values (commented-out, removed ones are not matched: the line starts with the name).
  const std::string header = slurp(src / "include" / "llama.h");
  std::map<std::string, std::uint32_t> ftype;
  const std::regex value_re(R"re(\n\s*(LLAMA_FTYPE_\w+)\s*=\s*(\d+))re");
  for (std::sregex_iterator it(header.begin(), header.end(), value_re), end; it != end; ++it)
    ftype[(*it)[1].str()] = static_cast<std::uint32_t>(std::stoul((*it)[2].str()));
  REQUIRE(ftype.count("LLAMA_FTYPE_MOSTLY_Q4_K_M") == 1);

  const std::string loader = slurp(src / "src" / "llama-model-loader.cpp");
  const std::regex case_re(R"re(case\s+GGML_TYPE_(\w+)\s*:\s*ftype\s*=\s*(LLAMA_FTYPE_\w+)\s*;)re");
  std::set<std::string> named;
  for (std::sregex_iterator it(loader.begin(), loader.end(), case_re), end; it != end; ++it) {
    const std::string type = ggml_name((*it)[1].str());
    INFO("llama.cpp's loader: GGML_TYPE_" << (*it)[1].str() << " -> " << (*it)[2].str());
    REQUIRE(ftype.count((*it)[2].str()) == 1);
    CHECK(is_ggml_type(type));  // the name convention holds
    CHECK(mixprec::llama_file_type(type) == ftype.at((*it)[2].str()));
    named.insert(type);
  }
  REQUIRE(named.size() > 20);
  CHECK(mixprec::llama_file_type("mxfp4") == ftype.at("LLAMA_FTYPE_MOSTLY_MXFP4_MOE"));
  // No file type the loader does not know: every ggml type with one is in the switch (or mxfp4).
  for (const auto& info : mixprec::ggml::type_table) {
    const std::string name(info.name);
    if (name == "mxfp4" || !mixprec::llama_file_type(name)) continue;
    INFO(name << " has a file type in the library");
    CHECK(named.count(name) == 1);
  }
}
