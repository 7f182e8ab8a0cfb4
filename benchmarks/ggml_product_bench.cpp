// Products on llama.cpp's block types: mixprec::gemm (activations quantized to ggml's vec_dot_type,
// kernels/ref/ggml_dot_ref.hpp) against ggml's own CPU backend as llama.cpp ships it, in one run.
//
// ggml's side is the variant llama.cpp's backend loader would pick for this CPU: every
// libggml-cpu-*.so beside MIXPREC_GGML_BASE (libggml-base.so from the npm package
// @node-llama-cpp/linux-x64, which tests/interop/run.sh fetches) is opened and the one whose
// ggml_backend_score() is highest is used. Its product is what ggml_compute_forward_mul_mat does per
// row without repacking: each token's x quantized by from_float to the vec_dot_type, then one
// vec_dot per weight row and token. Both sides split rows over the same worker pool
// (detail::for_row_chunks) and include their activation quantization.
// Weights: a seeded N(0, 0.02^2) matrix quantized by mixprec (its bytes are llama.cpp's).
// BM_memcpy copies the weight bytes of the same type: the memory roofline beside the products.
//   MIXPREC_GGML_BASE=build/tests/interop/package/bins/linux-x64/libggml-base.so ./build/benchmarks/ggml_product_bench
// Without MIXPREC_GGML_BASE (or without the libraries) the ggml rows are skipped with a message.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <dlfcn.h>

#include "mixprec/mixprec.hpp"

namespace {

using mixprec::index_t;

// ggml-cpu.h's ggml_type_traits_cpu (llama.cpp 0.5.0 / ggml 0.25.1).
using from_float_fn = void (*)(const float* x, void* y, std::int64_t k);
using vec_dot_fn = void (*)(int n, float* s, std::size_t bs, const void* x, std::size_t bx, const void* y, std::size_t by, int nrc);
struct ggml_type_traits_cpu {
  from_float_fn from_float;
  vec_dot_fn vec_dot;
  int vec_dot_type;
  std::int64_t nrows;
};
using traits_fn = const ggml_type_traits_cpu* (*)(int type);
using row_size_fn = std::size_t (*)(int type, std::int64_t ne);

struct ggml_cpu {
  traits_fn traits = nullptr;
  row_size_fn row_size = nullptr;
  std::string variant;
};

// The CPU variant llama.cpp's loader picks (highest ggml_backend_score), or nothing.
const ggml_cpu& ggml() {
  static const ggml_cpu cpu = [] {
    ggml_cpu c;
    const char* base = std::getenv("MIXPREC_GGML_BASE");
    if (!base) return c;
    void* b = dlopen(base, RTLD_NOW | RTLD_GLOBAL);
    if (!b) return c;
    c.row_size = reinterpret_cast<row_size_fn>(dlsym(b, "ggml_row_size"));
    int best = 0;
    void* chosen = nullptr;
    for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(base).parent_path())) {
      const std::string name = e.path().filename().string();
      if (name.rfind("libggml-cpu-", 0) != 0) continue;
      void* h = dlopen(e.path().c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) continue;
      auto score = reinterpret_cast<int (*)()>(dlsym(h, "ggml_backend_score"));
      const int s = score ? score() : 0;
      if (s > best) {
        best = s;
        chosen = h;
        c.variant = name;
      }
    }
    if (!chosen || !c.row_size) return c;
    if (auto init = reinterpret_cast<void (*)()>(dlsym(chosen, "ggml_cpu_init"))) init();
    c.traits = reinterpret_cast<traits_fn>(dlsym(chosen, "ggml_get_type_traits_cpu"));
    return c;
  }();
  return cpu;
}

struct problem {
  mixprec::quantized_tensor w;
  mixprec::row_matrix x;  // batch x cols
};

const problem& get(mixprec::ggml_type t, index_t rows, index_t cols, index_t batch) {
  static std::map<std::tuple<int, index_t, index_t, index_t>, problem> cache;
  const auto key = std::make_tuple(static_cast<int>(t), rows, cols, batch);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  std::mt19937 gen(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  mixprec::row_matrix w(rows, cols);
  for (index_t i = 0; i < w.size(); ++i) w.data()[i] = dist(gen);
  mixprec::row_matrix x(batch, cols);
  std::normal_distribution<float> xd(0.0f, 1.0f);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = xd(gen);
  return cache.emplace(key, problem{mixprec::quantize(w, mixprec::ggml_spec(t), "w"), std::move(x)}).first->second;
}

void set_counters(benchmark::State& state, const problem& p) {
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(p.w.bytes()));
  state.counters["batch"] = static_cast<double>(p.x.rows());
}

// args: rows, cols, batch, threads
void BM_mixprec(benchmark::State& state, mixprec::ggml_type t) {
  const problem& p = get(t, state.range(0), state.range(1), state.range(2));
  mixprec::row_matrix y(p.x.rows(), p.w.rows());
  const mixprec::gemv_options o{.threads = static_cast<unsigned>(state.range(3))};
  for (auto _ : state) {
    mixprec::gemm(p.w, p.x, y, o);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, p);
}

void BM_ggml(benchmark::State& state, mixprec::ggml_type t) {
  const ggml_cpu& g = ggml();
  if (!g.traits) {
    state.SkipWithError("MIXPREC_GGML_BASE does not name llama.cpp's libggml-base.so beside its CPU variants");
    return;
  }
  const problem& p = get(t, state.range(0), state.range(1), state.range(2));
  const ggml_type_traits_cpu* wt = g.traits(static_cast<int>(t));
  const ggml_type_traits_cpu* at = g.traits(wt->vec_dot_type);
  const index_t rows = p.w.rows(), cols = p.w.cols(), batch = p.x.rows();
  const std::size_t arow = g.row_size(wt->vec_dot_type, cols), wrow = p.w.row_bytes();
  std::vector<std::byte> act(static_cast<std::size_t>(batch) * arow);
  mixprec::row_matrix y(batch, rows);
  const auto threads = static_cast<unsigned>(state.range(3));
  for (auto _ : state) {
    for (index_t b = 0; b < batch; ++b) at->from_float(&p.x(b, 0), act.data() + b * arow, cols);
    mixprec::detail::for_row_chunks(rows, threads, [&](index_t r0, index_t r1) {
      for (index_t r = r0; r < r1; ++r)
        for (index_t b = 0; b < batch; ++b)
          wt->vec_dot(static_cast<int>(cols), &y(b, r), 0, p.w.row_codes(r), wrow, act.data() + b * arow, arow, 1);
    });
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, p);
  state.SetLabel(g.variant);
}

void BM_memcpy(benchmark::State& state, mixprec::ggml_type t) {
  const problem& p = get(t, state.range(0), state.range(1), 1);
  std::vector<std::uint8_t> dst(p.w.codes().size());
  for (auto _ : state) {
    std::memcpy(dst.data(), p.w.codes().data(), dst.size());
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(dst.size()));
}

void shapes(benchmark::internal::Benchmark* b) {
  for (const auto& [rows, cols] : {std::pair<index_t, index_t>{4096, 4096}, {11008, 4096}})
    for (index_t batch : {1, 8})
      for (index_t threads : {1, 2}) b->Args({rows, cols, batch, threads});
  b->ArgNames({"rows", "cols", "batch", "threads"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

const int registered = [] {
  using mixprec::ggml_type;
  for (ggml_type t : {ggml_type::q4_0, ggml_type::q4_1, ggml_type::q5_0, ggml_type::q5_1, ggml_type::q8_0, ggml_type::iq4_nl,
                      ggml_type::q2_k, ggml_type::q3_k, ggml_type::q4_k, ggml_type::q5_k, ggml_type::q6_k, ggml_type::iq4_xs}) {
    const std::string n(mixprec::to_string(t));
    benchmark::RegisterBenchmark(("BM_mixprec/" + n).c_str(), BM_mixprec, t)->Apply(shapes);
    benchmark::RegisterBenchmark(("BM_ggml/" + n).c_str(), BM_ggml, t)->Apply(shapes);
    benchmark::RegisterBenchmark(("BM_memcpy/" + n).c_str(), BM_memcpy, t)
        ->Args({4096, 4096})
        ->Args({11008, 4096})
        ->ArgNames({"rows", "cols"})
        ->Unit(benchmark::kMicrosecond);
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
