// The llama.cpp side of the LLM study (apps/llm_study/llama_cpp_study.hpp), run in llama.cpp's own
// libllama (npm @node-llama-cpp/linux-x64@3.22.1, llama.cpp 0.5.0; tests/interop/run.sh fetches it) on
// the real llama2.c model of ../shared/models (aidreams260K + tok512), converted to an F32 GGUF by the
// mixprec tool's `convert`: llama.cpp's recipes Q8_0 and Q4_0 quantize it, and the evaluation against
// the F32 file must rank them: KL(F32 || F32) = 0 with 100 % top-1, 0 < KL(Q8_0) < KL(Q4_0), finite
// perplexities. Q4_K_M's 256-element blocks do not tile this model's rows (64 and 172 long): llama.cpp
// falls back to other types tensor by tensor, and the report must say so.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "../../apps/llm_study/llama_cpp_study.hpp"
#include "../../tools/mixprec/convert.hpp"
#include "mixprec/models/calibration.hpp"
#include "mixprec/models/llama.hpp"

namespace {

namespace fs = std::filesystem;
namespace llama_cpp = mixprec_apps::llama_cpp;

fs::path study_dir() {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_llama_cpp_tool_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

// The F32 GGUF of aidreams260K, written by the mixprec tool's convert (tools/mixprec/convert.hpp).
std::string convert_f32(const fs::path& dir) {
  const std::string out = (dir / "aidreams260K-f32.gguf").string();
  (void)mixprec_cli::convert_llama2c(std::string(MIXPREC_SHARED_MODELS_DIR) + "/aidreams260K.bin",
                                     std::string(MIXPREC_SHARED_MODELS_DIR) + "/tok512.bin", out);
  return out;
}

void print(const char* what, const llama_cpp::quantize_report& r) {
  std::printf("%s: %ju bytes;", what, r.bytes);
  for (const auto& [type, n] : r.type_counts) std::printf(" %s x%d", type.c_str(), n);
  std::printf("; %zu fallback(s)\n", r.fallbacks.size());
  for (const auto& line : r.fallbacks) std::printf("  %s\n", line.c_str());
}

}  // namespace

TEST_CASE("llama.cpp's Q8_0 and Q4_0 of aidreams260K rank as expected against its F32 GGUF", "[interop][llama][study]") {
  const fs::path dir = study_dir();
  const std::string f32 = convert_f32(dir);
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
  const auto scores = llama_cpp::score_models(f32, streams, models, {.threads = 2});
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

TEST_CASE("llama.cpp's Q4_K_M falls back on aidreams260K's 64-wide rows, and the report says so", "[interop][llama][study]") {
  const fs::path dir = study_dir();
  const std::string f32 = convert_f32(dir);
  const std::string out = (dir / "q4_k_m.gguf").string();
  const auto r = llama_cpp::quantize_file(f32, out, llama_cpp::ftype::q4_K_M, {}, 2);
  print("Q4_K_M", r);
  // Observed with llama.cpp 0.5.0: no q4_K tensor at all. The 23 64-wide matrices the recipe gives q4_K
  // (token_embd; attn_q/k/output, ffn_gate/up of every layer; attn_v of layers 0-1) get q5_0, its q6_K
  // ones (attn_v of layers 2-3) q8_0, every ffn_down (172 wide) f16: 29 lines. output.weight gets q8_0
  // without a line of its own; the 9 norms stay f32.
  CHECK(r.type_counts.count("q4_K") == 0);
  CHECK(r.type_counts.count("q6_K") == 0);
  CHECK(r.type_counts.at("q5_0") == 23);
  CHECK(r.type_counts.at("q8_0") == 3);
  CHECK(r.type_counts.at("f16") == 4);
  CHECK(r.fallbacks.size() == 29);
  for (const auto& line : r.fallbacks) CHECK(line.find("not divisible by 256") != std::string::npos);
  CHECK(r.warnings.find("29 of 39 tensor(s) required fallback quantization") != std::string::npos);
  fs::remove_all(dir);
}
