// The architectures besides llama2.c's against llama.cpp itself: for "llama" as Llama 3 has it (GQA,
// RoPE base 500000, rope_freqs), "qwen2" (q/k/v biases, NEOX RoPE, tied classifier), "qwen3" (q/k
// head norms, NEOX RoPE, heads of 32 values on a width of 64) and "phi3" (fused attn_qkv, ffn_up of gate
// and up, NEOX RoPE), a seeded random-weight F32 GGUF written
// by support/tiny_arch.hpp with the synthetic vocabulary of support/tiny_llama.hpp, loaded by llama.cpp's
// libllama (npm @node-llama-cpp/linux-x64@3.22.1, through run.sh) and by mixprec's engine: over 64
// positions the logits agree within 1e-4 of the largest |logit| (F32 weights, F32 KV cache, no flash
// attention). Then a file of F16 and BF16 matrices, and the tool's whole path on each (measure, also by
// gradients, -> plan -> quantize at 6 bits per weight): llama.cpp loads the written file, and its logits
// are mixprec's engine's on the same bytes (same_logits says how close, and why not closer).
// The mixture-of-experts architectures ("qwen2moe", "qwen3moe", "llama" with experts as Mixtral) take
// the same path, with the imatrix measure
// writes and a verified plan; then llama.cpp's llama-quantize reads that imatrix: its q4_0 expert
// stacks are the bytes of each expert searched with its own slice of it (quantize_experts).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include "apps/llm_study/llama_cpp.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/io/imatrix.hpp"
#include "mixprec/models/llama.hpp"
#include "support/tiny_arch.hpp"
#include "support/tiny_llama.hpp"
#include "support/tool_run.hpp"

namespace {

namespace fs = std::filesystem;
namespace gguf = mixprec::gguf;
namespace llama_cpp = mixprec_apps::llama_cpp;

fs::path work_dir() {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_llama_arch_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

// llama.cpp's logits for `tokens` from position 0 in one batch (T x vocab), and the warnings it logged
// while loading.
mixprec::row_matrix llama_cpp_logits(const std::string& path, const std::vector<int>& tokens, std::string& warnings) {
  const llama_cpp::api& a = llama_cpp::library();
  auto mp = a.model_default_params();
  mp.n_gpu_layers = 0;
  mp.check_tensors = true;
  const llama_cpp::model model(path, mp);
  warnings = llama_cpp::take_log();
  auto cp = a.context_default_params();
  cp.n_ctx = cp.n_batch = cp.n_ubatch = 128;
  cp.n_threads = cp.n_threads_batch = 1;
  cp.type_k = cp.type_v = 0;  // F32 KV cache
  cp.flash_attn_type = 0;     // the plain attention graph
  llama_cpp::context ctx(model, cp);
  const std::vector<float> l = ctx.logits_all(tokens);
  const auto T = static_cast<mixprec::index_t>(tokens.size());
  return Eigen::Map<const mixprec::row_matrix>(l.data(), T, static_cast<mixprec::index_t>(l.size()) / T);
}

// Largest |a - b| relative to the largest |b|.
double relative_gap(const mixprec::row_matrix& a, const mixprec::row_matrix& b) {
  return static_cast<double>((a - b).cwiseAbs().maxCoeff()) / std::max(1e-30, static_cast<double>(b.cwiseAbs().maxCoeff()));
}

// llama.cpp and mixprec's engine on a file of quantized or half-precision matrices. Block types take
// their activations quantized to 8 bits and F16 / BF16 ones rounded to their type, on both sides, and
// both compute the same products on the same codes; only the FP32 parts (the attention's products, RoPE,
// softmax, and SiLU and exp, which ggml computes with its own SIMD approximation of expf) round
// otherwise, a difference of about 1e-7 that the next activation quantization removes, except where a
// value lies that close to a rounding boundary: then one code moves, and that position's logits with
// it. So: every position but at most `flips` of 64 agrees within 1e-5, and none moves by more than
// `share` of what quantization moved llama.cpp's logits (`f32`, its logits on the F32 file): a fifth for
// block types; for F16/BF16, which move the logits little, one BF16 code (2^-8 apart) moved is about as
// much as the rounding of the whole model, so there the bound is what it moved. Measured on a 2-vCPU Xeon
// (AVX-512): 58 to 64 of 64 positions agree; before the engine rounded F16/BF16 activations and took
// RMSNorm's arithmetic from ggml, a file with one F16 matrix agreed at none, qwen3's 6-bit file at 16.
void same_logits(const std::string& what, const std::string& path, const std::vector<int>& tokens, const mixprec::row_matrix& f32, int flips,
                 double share) {
  std::string warnings;
  const mixprec::row_matrix theirs = llama_cpp_logits(path, tokens, warnings);
  INFO(what << ": llama.cpp's warnings: " << warnings);
  CHECK(warnings.empty());
  const mixprec::models::llama_model m = mixprec::models::load_gguf(path);
  std::size_t typed = 0;
  for (const auto* x : m.matrices()) typed += x->is_fp32() ? 0 : 1;
  CHECK(typed == m.matrices().size());
  mixprec::models::llama_engine e(m);
  const mixprec::row_matrix ours = e.logits(tokens);
  int agree = 0;
  for (mixprec::index_t p = 0; p < ours.rows(); ++p) agree += relative_gap(ours.row(p), theirs.row(p)) < 1e-5 ? 1 : 0;
  const double gap = relative_gap(ours, theirs), moved = relative_gap(f32, theirs);
  std::printf("%s: llama.cpp vs mixprec within 1e-5 at %d of %zu positions, largest difference %.3g; quantization moved llama.cpp's "
              "logits %.3g\n", what.c_str(), agree, tokens.size(), gap, moved);
  CHECK(agree >= static_cast<int>(tokens.size()) - flips);
  CHECK(gap < moved * share);
}

// llama.cpp's logits on an F32 file, checked against the engine's: within 1e-4 of the largest |logit|
// at every position, and varied (not a constant network).
mixprec::row_matrix same_f32_logits(const std::string& arch, const std::string& path, const std::vector<int>& tokens) {
  std::string warnings;
  const mixprec::row_matrix theirs = llama_cpp_logits(path, tokens, warnings);
  INFO("llama.cpp's warnings: " << warnings);
  CHECK(warnings.empty());
  const mixprec::models::llama_model m = mixprec::models::load_gguf(path);
  mixprec::models::llama_engine e(m);
  const double gap = relative_gap(e.logits(tokens), theirs);
  std::printf("%s F32: largest |logit difference| llama.cpp vs mixprec over %zu positions: %.3g of the largest |logit| %.3g\n", arch.c_str(),
              tokens.size(), gap, static_cast<double>(theirs.cwiseAbs().maxCoeff()));
  CHECK(gap < 1e-4);
  CHECK(theirs.row(20).maxCoeff() - theirs.row(20).minCoeff() > 1.0f);
  return theirs;
}

// The vocabulary every test model takes: tiny_llama's, converted by `mixprec convert` into dir.
gguf::metadata test_vocabulary(const fs::path& dir) {
  const auto files = mixprec::test::write_tiny_llama(dir / "vocab", {});
  const std::string vocab_gguf = (dir / "vocab.gguf").string();
  REQUIRE(mixprec::test::tool({"convert", files.model, files.tokenizer, "-o", vocab_gguf}) == 0);
  return gguf::file::open(vocab_gguf).kvs();
}

// The 64 positions both engines run: BOS, then ids spread over the vocabulary.
std::vector<int> test_tokens() {
  std::vector<int> tokens = {1};
  for (int p = 1; p < 64; ++p) tokens.push_back(3 + (p * 97 + 11) % 509);
  return tokens;
}

}  // namespace

TEST_CASE("llama (Llama 3), qwen2, qwen3 and phi3: llama.cpp and mixprec's engine compute the same logits, also after mixprec quantizes",
          "[interop][arch]") {
  const fs::path dir = work_dir();
  const gguf::metadata vocab = test_vocabulary(dir);
  const std::vector<int> tokens = test_tokens();

  for (const char* arch : {"llama", "qwen2", "qwen3", "phi3"}) {
    SECTION(arch) {
      const std::string f32 = (dir / (std::string(arch) + "-f32.gguf")).string();
      mixprec::test::write_tiny_arch(f32, mixprec::test::tiny_arch_defaults(arch), vocab);
      const mixprec::row_matrix theirs = same_f32_logits(arch, f32, tokens);

      // Both engines on a file of F16 and BF16 matrices: ggml rounds a product's activations to the
      // weights' own type first (their vec_dot_type), and so does mixprec's engine.
      const std::string halves = (dir / (std::string(arch) + "-f16.gguf")).string(),
                        halves_plan = (dir / (std::string(arch) + "-f16-plan.json")).string();
      REQUIRE(mixprec::test::tool({"plan", f32, "--types", "f16,bf16", "--tensor-type", "attn_(q|k|v|qkv)\\.|ffn_gate|token_embd=f16",
                                   "--tensor-type", ".=bf16", "--budget", "16", "-o", halves_plan}) == 0);
      REQUIRE(mixprec::test::tool({"quantize", f32, "--plan", halves_plan, "-o", halves}) == 0);
      same_logits(std::string(arch) + " in F16 and BF16", halves, tokens, theirs, 8, 1.0);

      // measure -> plan -> quantize, then both engines on the written bytes.
      const std::string measured = (dir / (std::string(arch) + "-m.json")).string(), plan = (dir / (std::string(arch) + "-plan.json")).string(),
                        quantized = (dir / (std::string(arch) + "-q.gguf")).string();
      REQUIRE(mixprec::test::tool({"measure", f32, "--sample", "4:32", "--seed", "1", "-o", measured}) == 0);
      // The gradient estimate runs too (the backward pass through this architecture's graph).
      REQUIRE(mixprec::test::tool({"measure", f32, "--method", "fisher", "--sample", "4:32", "--seed", "1", "-o",
                            (dir / (std::string(arch) + "-fisher.json")).string()}) == 0);
      REQUIRE(mixprec::test::tool({"plan", f32, "--measured", measured, "--budget", "6", "--no-verify", "-o", plan}) == 0);
      REQUIRE(mixprec::test::tool({"quantize", f32, "--plan", plan, "-o", quantized}) == 0);
      same_logits(std::string(arch) + " at 6 bits per weight", quantized, tokens, theirs, 8, 0.2);
    }
  }
}

TEST_CASE("qwen2moe, qwen3moe and Mixtral-style llama: llama.cpp and mixprec's engine compute the same logits, also after quantizing",
          "[interop][arch][moe]") {
  const fs::path dir = work_dir();
  const gguf::metadata vocab = test_vocabulary(dir);
  const std::vector<int> tokens = test_tokens();

  for (const char* arch : {"qwen2moe", "qwen3moe", "mixtral"}) {
    SECTION(arch) {
      const std::string f32 = (dir / (std::string(arch) + "-f32.gguf")).string();
      const mixprec::test::tiny_arch_options o = mixprec::test::tiny_arch_defaults(arch);
      mixprec::test::write_tiny_arch(f32, o, vocab);
      const mixprec::row_matrix theirs = same_f32_logits(arch, f32, tokens);
      const mixprec::models::llama_model m = mixprec::models::load_gguf(f32);
      CHECK(m.config.n_expert == o.n_expert);
      CHECK(m.config.n_expert_used == o.n_expert_used);
      mixprec::models::llama_engine e(m);
      const mixprec::row_matrix ours = e.logits(tokens);
      // Decoding token by token against the KV cache gives the same logits (the 1-row pass of the experts).
      e.reset();
      for (int p = 0; p < 64; ++p) {
        const Eigen::VectorXf& z = e.forward(tokens[static_cast<std::size_t>(p)], p);
        CHECK(relative_gap(z.transpose(), ours.row(p)) < 1e-5);
      }

      // F16 / BF16 stacks.
      const std::string halves = (dir / (std::string(arch) + "-f16.gguf")).string(),
                        halves_plan = (dir / (std::string(arch) + "-f16-plan.json")).string();
      REQUIRE(mixprec::test::tool({"plan", f32, "--types", "f16,bf16", "--tensor-type", "attn_(q|k|v)\\.|_exps|token_embd=f16", "--tensor-type",
                                   "attn_output|(gate|up|down)_shexp|^output=bf16", "--budget", "16", "-o", halves_plan}) == 0);
      REQUIRE(mixprec::test::tool({"quantize", f32, "--plan", halves_plan, "-o", halves}) == 0);
      same_logits(std::string(arch) + " in F16 and BF16", halves, tokens, theirs, 8, 1.0);

      // measure (with the experts' imatrix) -> plan, verified -> quantize, then both engines on the written bytes.
      const std::string stem = (dir / arch).string(), measured = stem + "-m.json", imatrix = stem + "-imatrix.gguf", plan = stem + "-plan.json",
                        quantized = stem + "-q.gguf";
      REQUIRE(mixprec::test::tool({"measure", f32, "--sample", "4:32", "--seed", "1", "--imatrix-out", imatrix, "-o", measured}) == 0);
      // The gradient estimate runs too (the backward pass through the experts).
      CHECK(mixprec::test::tool({"measure", f32, "--method", "fisher", "--sample", "4:32", "--seed", "1", "-o", stem + "-fisher.json"}) == 0);
      std::size_t stacks = 0;
      const nlohmann::json measurement = mixprec::test::read_json(measured);
      for (const auto& t : measurement.at("tensors"))
        if (t.contains("expert_counts")) {  // every (position, chosen expert) pair once
          ++stacks;
          double sum = 0.0;
          for (const auto& c : t.at("expert_counts")) sum += c.get<double>();
          CHECK(t.at("expert_counts").size() == static_cast<std::size_t>(o.n_expert));
          CHECK(sum == 4.0 * 32.0 * o.n_expert_used);
        }
      CHECK(stacks == 3 * static_cast<std::size_t>(m.config.n_layers));
      REQUIRE(mixprec::test::tool({"plan", f32, "--measured", measured, "--imatrix", imatrix, "--budget", "6", "-o", plan}) == 0);
      CHECK(mixprec::test::read_json(plan).contains("verified"));
      REQUIRE(mixprec::test::tool({"quantize", f32, "--plan", plan, "--imatrix", imatrix, "-o", quantized}) == 0);
      same_logits(std::string(arch) + " at 6 bits per weight", quantized, tokens, theirs, 8, 0.2);

      // llama-quantize reads the experts' imatrix as mixprec does: its q4_0 stacks are each expert
      // searched with its own slice (mixprec::quantize_experts).
      const char* quantize_bin = std::getenv("MIXPREC_LLAMA_QUANTIZE");
      if (!quantize_bin || !*quantize_bin) {
        WARN("SKIPPED: llama.cpp's llama-quantize could not be built here");
      } else {
        const std::string q4 = stem + "-llama-q4_0.gguf";
        std::string log;
        const int rc = mixprec::test::shell("'" + std::string(quantize_bin) + "' --pure --imatrix '" + imatrix + "' '" + f32 + "' '" + q4 + "' Q4_0 2", log);
        INFO(log);
        REQUIRE(rc == 0);
        const std::map<std::string, Eigen::VectorXf> importance = mixprec::imatrix::load_importance(imatrix);
        const auto written = gguf::file::open(q4);
        std::size_t compared = 0;
        for (const mixprec::models::llama_layer& l : m.layers)
          for (const mixprec::models::llama_matrix* s : {&l.gate_exps, &l.up_exps, &l.down_exps}) {
            INFO(s->name());
            const gguf::tensor_info* t = written.find(s->name());
            REQUIRE(t != nullptr);
            REQUIRE(t->type == static_cast<std::uint32_t>(mixprec::ggml_type::q4_0));
            const Eigen::VectorXf& imp = importance.at(s->name());
            const mixprec::quantized_tensor ours = mixprec::quantize_experts(s->to_float(), o.n_expert, mixprec::ggml_spec(mixprec::ggml_type::q4_0),
                                                                             s->name(), std::span<const float>(imp.data(), static_cast<std::size_t>(imp.size())));
            CHECK((ours.codes().size() == t->bytes.size() && std::memcmp(ours.codes().data(), t->bytes.data(), t->bytes.size()) == 0));
            ++compared;
          }
        CHECK(compared == 3 * static_cast<std::size_t>(m.config.n_layers));
      }
    }
  }
}
