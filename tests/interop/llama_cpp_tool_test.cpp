// The llama.cpp side of the LLM study (apps/llm_study/llama_cpp_study.hpp), run in llama.cpp's own
// libllama (npm @node-llama-cpp/linux-x64@3.22.1, llama.cpp 0.5.0; tests/interop/run.sh fetches it) on
// the seeded synthetic model of tests/support/tiny_llama.hpp (the shapes of llama2.c's 260K example:
// dim 64, hidden 172, 4 layers, GQA), converted to an F32 GGUF by the mixprec tool's `convert`:
//   - llama.cpp's recipes Q8_0 and Q4_0 quantize it, and the evaluation against the F32 file must rank
//     them: KL(F32 || F32) = 0 with 100 % top-1, 0 < KL(Q8_0) < KL(Q4_0), finite perplexities;
//   - Q4_K_M's 256-element blocks tile none of this model's rows (64 and 172 long): llama.cpp falls back
//     to other types tensor by tensor, and the report must say so, line by line, as the file has them.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "apps/llm_study/llama_cpp_study.hpp"
#include "tools/mixprec/convert.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/models/calibration.hpp"
#include "mixprec/models/llama.hpp"
#include "support/tiny_llama.hpp"

namespace {

namespace fs = std::filesystem;
namespace llama_cpp = mixprec_apps::llama_cpp;

fs::path study_dir() {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_llama_cpp_tool_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

// The synthetic model with its own classifier. With the default shared one (N(0, 1) embeddings) the
// model mostly copies its input token (its own embedding dominates the logits), so the streams sampled
// from it would be runs of one token; a separate classifier makes them varied.
mixprec::test::tiny_llama_options untied() {
  mixprec::test::tiny_llama_options o;
  o.shared_classifier = false;
  return o;
}

// The synthetic model as llama2.c files in `dir`, and its F32 GGUF written by the mixprec tool's
// convert (tools/mixprec/convert.hpp).
std::string convert_f32(const fs::path& dir, const mixprec::test::tiny_llama_options& o = {}) {
  const auto files = mixprec::test::write_tiny_llama(dir, o);
  const std::string out = (dir / "tiny-f32.gguf").string();
  (void)mixprec_cli::convert_llama2c(files.model, files.tokenizer, out);
  return out;
}

void print(const char* what, const llama_cpp::quantize_report& r) {
  std::printf("%s: %ju bytes;", what, r.bytes);
  for (const auto& [type, n] : r.type_counts) std::printf(" %s x%d", type.c_str(), n);
  std::printf("; %zu fallback(s)\n", r.fallbacks.size());
  for (const auto& line : r.fallbacks) std::printf("  %s\n", line.c_str());
}

}  // namespace

TEST_CASE("llama.cpp's Q8_0 and Q4_0 of the synthetic model rank as expected against its F32 GGUF", "[interop][llama][study]") {
  const fs::path dir = study_dir();
  const std::string f32 = convert_f32(dir, untied());
  const std::string q8 = (dir / "q8_0.gguf").string(), q4 = (dir / "q4_0.gguf").string();
  const auto r8 = llama_cpp::quantize_file(f32, q8, llama_cpp::ftype::q8_0, {}, 2);
  const auto r4 = llama_cpp::quantize_file(f32, q4, llama_cpp::ftype::q4_0, {}, 2);
  print("Q8_0", r8);
  print("Q4_0", r4);
  CHECK(r8.type_counts.count("q8_0") == 1);
  CHECK(r4.type_counts.count("q4_0") == 1);
  CHECK(r4.bytes < r8.bytes);

  // Token streams sampled from the model (mixprec's engine, seeded), through the tool's text format.
  const auto model = mixprec::models::load_gguf(f32);  // the engine refers to it
  mixprec::models::llama_engine engine(model);
  const auto sampled = mixprec::models::sample_streams(engine, {.streams = 4, .length = 64, .seed = 1});
  const std::string tokens = (dir / "tokens.txt").string();
  {
    std::ofstream out(tokens);
    for (const auto& s : sampled) {
      for (int id : s) out << id << ' ';
      out << '\n';
    }
  }
  const auto streams = mixprec::models::read_token_streams(tokens, mixprec::models::token_file_format::text,
                                                           llama_cpp::vocabulary_size(f32));
  REQUIRE(streams == sampled);

  const std::vector<std::string> models = {f32, q8, q4};
  const auto scores = llama_cpp::score_models(f32, streams, models, {.threads = 1});
  REQUIRE(scores.size() == 3);
  for (const auto& s : scores)
    std::printf("%-12s %8ju bytes  KL %.6g nats  top-1 %.2f %%  PPL %.4f (ref %.4f)\n", fs::path(s.path).filename().c_str(), s.bytes,
                s.kl, s.top1, s.ppl, s.ref_ppl);
  const auto& self = scores[0];
  CHECK(self.positions == 4 * 64);
  CHECK(self.kl == 0.0);
  CHECK(self.top1 == 100.0);
  CHECK(self.ppl == self.ref_ppl);
  CHECK(scores[1].kl > 0.0);
  CHECK(scores[1].kl < scores[2].kl);
  for (const auto& s : scores) {
    CHECK(std::isfinite(s.ppl));
    CHECK(s.ppl > 1.0);
    CHECK(s.ref_ppl == self.ref_ppl);
  }
  const auto json = llama_cpp::to_json(scores);
  CHECK(json.size() == 3);
  CHECK(json[2]["kl"].get<double>() == scores[2].kl);
  fs::remove_all(dir);
}

TEST_CASE("llama.cpp's Q4_K_M falls back on the synthetic model's 64- and 172-wide rows, and the report says so",
          "[interop][llama][study]") {
  namespace gguf = mixprec::gguf;
  const fs::path dir = study_dir();
  const std::string f32 = convert_f32(dir);
  const std::string out = (dir / "q4_k_m.gguf").string();
  const auto r = llama_cpp::quantize_file(f32, out, llama_cpp::ftype::q4_K_M, {}, 2);
  print("Q4_K_M", r);

  // The premise: no row of any matrix is a multiple of 256 long, so no K-quant block fits anywhere.
  const auto in = gguf::file::open(f32);
  std::set<std::string> matrices;
  for (const auto& t : in.tensors())
    if (t.dims.size() == 2) {
      INFO(t.name << ": rows of " << t.row_length());
      REQUIRE(t.row_length() % 256 != 0);
      matrices.insert(t.name);
    }
  REQUIRE(matrices.size() == 2 + 7 * 4);

  const auto q = gguf::file::open(out);
  auto type_name = [&](const std::string& name) { return std::string(gguf::type_traits_of(q.at(name).type)->name); };
  int counted = 0;
  for (const auto& [type, n] : r.type_counts) {
    CHECK(type.find("_K") == std::string::npos);  // q2_K..q6_K: none
    counted += n;
  }
  CHECK(counted == static_cast<int>(q.tensors().size()));
  CHECK(q.tensors().size() == in.tensors().size());
  for (const auto& t : q.tensors())
    if (t.dims.size() != 2) CHECK(type_name(t.name) == "f32");  // norms stay F32, as the recipe leaves them

  // Every matrix the recipe gives a K type (all but output.weight) has a line of its own naming its
  // width and the type it got instead, which is the type the file holds. output.weight takes no
  // fallback: llama.cpp's recipe itself gives an output matrix that 256 does not tile q8_0.
  std::set<std::string> named;
  for (const auto& line : r.fallbacks) {
    INFO(line);
    std::string tensor;
    std::istringstream words(line);
    for (std::string w; words >> w;)
      if (matrices.count(w)) tensor = w;
    REQUIRE(!tensor.empty());
    CHECK(named.insert(tensor).second);
    CHECK(line.find("not divisible by 256") != std::string::npos);
    CHECK(line.find(std::to_string(in.at(tensor).row_length())) != std::string::npos);
    // "(required for type q4_K)": the type the recipe wanted, a K type of 256-blocks.
    const auto wanted = line.find("required for type ");
    REQUIRE(wanted != std::string::npos);
    std::istringstream recipe(line.substr(wanted + 18));
    std::string recipe_type;
    recipe >> recipe_type;
    CHECK(recipe_type.rfind("_K)") == recipe_type.size() - 3);
    const auto to = line.find("falling back to ");
    REQUIRE(to != std::string::npos);
    std::istringstream rest(line.substr(to + 16));
    std::string fallback;
    rest >> fallback;
    CHECK(fallback == type_name(tensor));
  }
  std::set<std::string> expected = matrices;
  expected.erase("output.weight");
  CHECK(named == expected);
  CHECK(type_name("output.weight") == "q8_0");
  const std::string summary = std::to_string(r.fallbacks.size()) + " of " + std::to_string(q.tensors().size()) +
                              " tensor(s) required fallback quantization";
  INFO(r.warnings);
  CHECK(r.warnings.find(summary) != std::string::npos);
  fs::remove_all(dir);
}
