// What one `mixprec measure` probe costs on a LLaMA-7B-shaped model (dim 4096, hidden 11008, 32 heads,
// vocabulary 32000; one layer of random N(0, 0.02^2) weights, FP32), per calibration position:
//   BM_run_layer/T   llama_engine::run_layer over T positions (one layer: 7 products, attention)
//   BM_head/T        llama_engine::head over T positions (output norm + the 32000 x 4096 classifier)
//   BM_kl/T          the KL of T positions' logits against kept reference distributions (sensitivity/kl.hpp kl_reference)
//   BM_quantize_q4_K a 4096 x 4096 matrix to q4_K with an importance vector, and back (per probe)
//   BM_eigen_gemm/T  the baseline: Eigen's FP32 X W^T for one 4096 x 4096 matrix, T rows, one call
//   BM_forward/T     the one-layer model's whole forward pass (embed, run_layer, head) over T positions
//   BM_backward/T    the same forward kept for a backward pass (llama_backprop), one sampled-label loss and
//                    the backward (layer recomputed, every product's dX): one Fisher draw of --method fisher
// Counter us_per_token = time / T. A probe of a tensor in layer L of an n-layer model costs about
// T * ((n - L) * run_layer + head + kl) + quantize; the full-precision pass T * (n * run_layer + head).
// A plan's verification (models/llama/verify.hpp), on a stories15M-shaped model (dim 288, hidden 768, 6
// layers, 6 heads, vocabulary 32000, the classifier shared with the embedding; random weights, FP32) and
// plan's default held-out streams (8 x 64 tokens), 2 threads:
//   BM_verify_reference   the baseline: the full-precision pass over the streams (plan_verifier::reference_pass)
//   BM_verify_all_new     plan_verifier::verify of a plan none of whose tensors the last plan used (every
//                         matrix re-quantized: q4_0 and q8_0 plans in turn; stories15M's 288-wide rows
//                         take no K type), the pass and the statistics
//   BM_verify_neighbour   verify of a plan that differs from the last in one matrix (a frontier's neighbours,
//                         a refinement's children)
// The target: verify <= 2 x the full-precision pass.
//   ./build/benchmarks/measure_bench --benchmark_min_time=1
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mixprec/models/llama.hpp"
#include "mixprec/models/llama/backward.hpp"
#include "mixprec/models/llama/measure.hpp"
#include "mixprec/models/llama/verify.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "mixprec/sensitivity/kl.hpp"

namespace {

namespace mm = mixprec::models;

// Cheap reproducible N(0, sigma^2)-like values (sum of 4 uniforms), enough for timing.
mixprec::row_matrix random_matrix(mixprec::index_t rows, mixprec::index_t cols, float sigma, std::uint64_t seed) {
  mixprec::row_matrix m(rows, cols);
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (mixprec::index_t i = 0; i < m.size(); ++i) {
    float u = 0.0f;
    for (int k = 0; k < 4; ++k) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      u += static_cast<float>(s >> 40) / 16777216.0f - 0.5f;
    }
    m.data()[i] = u * sigma * 1.732f;
  }
  return m;
}

const mm::llama_model& model_7b_layer() {
  static const mm::llama_model m = [] {
    mm::llama_model x;
    x.config = {4096, 11008, 1, 32, 32, 32000, 512, 128, 10000.0f, 1.0f, 1e-5f};
    x.token_embd = mm::llama_matrix("token_embd.weight", random_matrix(32000, 4096, 0.02f, 1));
    mm::llama_layer l;
    l.attn_norm = l.ffn_norm = Eigen::VectorXf::Ones(4096);
    l.wq = mm::llama_matrix("blk.0.attn_q.weight", random_matrix(4096, 4096, 0.02f, 2));
    l.wk = mm::llama_matrix("blk.0.attn_k.weight", random_matrix(4096, 4096, 0.02f, 3));
    l.wv = mm::llama_matrix("blk.0.attn_v.weight", random_matrix(4096, 4096, 0.02f, 4));
    l.wo = mm::llama_matrix("blk.0.attn_output.weight", random_matrix(4096, 4096, 0.02f, 5));
    l.gate = mm::llama_matrix("blk.0.ffn_gate.weight", random_matrix(11008, 4096, 0.02f, 6));
    l.up = mm::llama_matrix("blk.0.ffn_up.weight", random_matrix(11008, 4096, 0.02f, 7));
    l.down = mm::llama_matrix("blk.0.ffn_down.weight", random_matrix(4096, 11008, 0.02f, 8));
    x.layers.push_back(std::move(l));
    x.output_norm = Eigen::VectorXf::Ones(4096);
    x.output = mm::llama_matrix("output.weight", random_matrix(32000, 4096, 0.02f, 9));
    x.validate();
    return x;
  }();
  return m;
}

std::vector<int> tokens(int n) {
  std::vector<int> t(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<std::size_t>(i)] = (i * 7919 + 1) % 32000;
  return t;
}

void per_token(benchmark::State& state, int T) {
  state.counters["us_per_token"] = benchmark::Counter(static_cast<double>(T) * 1e-6, benchmark::Counter::kIsIterationInvariantRate |
                                                                                          benchmark::Counter::kInvert);
}

void BM_run_layer(benchmark::State& state) {
  const int T = static_cast<int>(state.range(0));
  mm::llama_engine e(model_7b_layer(), {}, {.threads = 2});
  const mixprec::row_matrix x0 = e.embed(tokens(T));
  for (auto _ : state) {
    mixprec::row_matrix x = x0;
    e.run_layer(0, x);
    benchmark::DoNotOptimize(x.data());
  }
  per_token(state, T);
}

void BM_head(benchmark::State& state) {
  const int T = static_cast<int>(state.range(0));
  mm::llama_engine e(model_7b_layer(), {}, {.threads = 2});
  const mixprec::row_matrix x = e.embed(tokens(T));
  for (auto _ : state) benchmark::DoNotOptimize(e.head(x).data());
  per_token(state, T);
}

void BM_kl(benchmark::State& state) {
  const int T = static_cast<int>(state.range(0));
  mm::llama_engine e(model_7b_layer(), {}, {.threads = 2});
  const mixprec::row_matrix logits = e.head(e.embed(tokens(T)));
  const mixprec::kl_reference ref(logits);
  const mixprec::row_matrix other = logits * 1.01f;
  for (auto _ : state) benchmark::DoNotOptimize(ref.per_row(other, 2).sum());
  per_token(state, T);
}

void BM_quantize_q4_K(benchmark::State& state) {
  const auto& w = model_7b_layer().layers[0].wq.fp32();
  const Eigen::VectorXf imp = Eigen::VectorXf::Ones(4096);
  const auto spec = mixprec::parse_spec("q4_K");
  for (auto _ : state) {
    const auto q = mixprec::quantize(w, spec, "wq", std::span<const float>(imp.data(), 4096));
    benchmark::DoNotOptimize(mixprec::dequantize(q).data());
  }
}

void BM_eigen_gemm(benchmark::State& state) {
  const int T = static_cast<int>(state.range(0));
  const auto& w = model_7b_layer().layers[0].wq.fp32();
  const mixprec::row_matrix x = random_matrix(T, 4096, 1.0f, 11);
  mixprec::row_matrix y(T, 4096);
  for (auto _ : state) {
    y.noalias() = x * w.transpose();
    benchmark::DoNotOptimize(y.data());
  }
  per_token(state, T);
}

void BM_forward(benchmark::State& state) {
  const int T = static_cast<int>(state.range(0));
  mm::llama_engine e(model_7b_layer(), {}, {.threads = 2});
  const std::vector<int> t = tokens(T);
  for (auto _ : state) benchmark::DoNotOptimize(e.logits(t).data());
  per_token(state, T);
}

void BM_backward(benchmark::State& state) {
  const int T = static_cast<int>(state.range(0));
  mm::llama_engine e(model_7b_layer(), {}, {.threads = 2});
  mm::llama_backprop bp(e);
  const std::vector<int> t = tokens(T);
  for (auto _ : state) {
    const mixprec::row_matrix& z = bp.forward(t);
    const mm::llama_gradients g = bp.backward(mm::sampled_nll(z, 1).dlogits);
    benchmark::DoNotOptimize(g.embedding.data());
  }
  per_token(state, T);
}

const mm::llama_model& model_stories15m() {
  static const mm::llama_model m = [] {
    mm::llama_model x;
    x.config = {288, 768, 6, 6, 6, 32000, 256, 48, 10000.0f, 1.0f, 1e-5f};
    x.token_embd = mm::llama_matrix("token_embd.weight", random_matrix(32000, 288, 0.02f, 1));
    const char* names[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    for (int L = 0; L < 6; ++L) {
      mm::llama_layer l;
      l.attn_norm = l.ffn_norm = Eigen::VectorXf::Ones(288);
      mm::llama_matrix* slots[] = {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down};
      for (int k = 0; k < 7; ++k) {
        const mixprec::index_t rows = k == 4 || k == 5 ? 768 : 288, cols = k == 6 ? 768 : 288;
        *slots[k] = mm::llama_matrix("blk." + std::to_string(L) + "." + names[k] + ".weight",
                                     random_matrix(rows, cols, 0.05f, static_cast<std::uint64_t>(10 * L + k + 2)));
      }
      x.layers.push_back(std::move(l));
    }
    x.output_norm = Eigen::VectorXf::Ones(288);
    x.validate();
    return x;
  }();
  return m;
}

// Every matrix of m at `type`; `other` for the one named `except`.
mixprec::plan plan_of(const mm::llama_model& m, const char* type, const std::string& except = "", const char* other = "") {
  mm::llama_model copy = m;
  mixprec::plan p;
  for (auto& [mat, layer] : mm::llama_measure_matrices(copy)) {
    mixprec::plan_entry e;
    e.layer = mat->name(), e.rows = mat->rows(), e.cols = mat->cols();
    e.spec = mixprec::parse_spec(mat->name() == except ? other : type);
    p.entries.push_back(e);
  }
  return p;
}

constexpr mm::verify_options verify_defaults{.streams = 8, .length = 64, .threads = 2};

void BM_verify_reference(benchmark::State& state) {
  const mm::plan_verifier v(model_stories15m(), 1, verify_defaults);
  for (auto _ : state) benchmark::DoNotOptimize(v.reference_pass().front().data());
  per_token(state, 8 * 64);
}

void BM_verify_all_new(benchmark::State& state) {
  mm::plan_verifier v(model_stories15m(), 1, verify_defaults);
  const mixprec::plan plans[] = {plan_of(model_stories15m(), "q4_0"), plan_of(model_stories15m(), "q8_0")};
  std::size_t k = 0;
  for (auto _ : state) benchmark::DoNotOptimize(v.verify(plans[k++ % 2]).kl);
  per_token(state, 8 * 64);
}

void BM_verify_neighbour(benchmark::State& state) {
  mm::plan_verifier v(model_stories15m(), 1, verify_defaults);
  const mixprec::plan plans[] = {plan_of(model_stories15m(), "q4_0"), plan_of(model_stories15m(), "q4_0", "blk.3.ffn_down.weight", "q8_0")};
  (void)v.verify(plans[1]);
  std::size_t k = 0;
  for (auto _ : state) benchmark::DoNotOptimize(v.verify(plans[k++ % 2]).kl);
  per_token(state, 8 * 64);
}

BENCHMARK(BM_eigen_gemm)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_run_layer)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_head)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_kl)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_quantize_q4_K)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_forward)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_backward)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_verify_reference)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_verify_all_new)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_verify_neighbour)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
