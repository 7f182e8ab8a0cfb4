// ggml block quantizers (kernels/ref/ggml_ref.hpp via quantize/ggml.hpp: ggml's algorithms and bytes) on a 1024x4096
// Gaussian matrix, with and without importance weights, plus dequantization; BM_memcpy of the same
// FP32 bytes is the same-run baseline. Bytes processed = FP32 input bytes (quantize) or FP32 output
// bytes (dequantize), so bytes_per_second compares directly with ggml's "fp32 input bytes per second".
// With MIXPREC_GGML_BASE set to llama.cpp's libggml-base.so (tests/interop/run.sh fetches it into
// build/tests/interop/package/bins/linux-x64/), BM_ggml_quantize[_imatrix]/<type> runs ggml's own
// ggml_quantize_chunk on the same matrix in the same run: the ratio of the two is the comparison.
//   MIXPREC_GGML_BASE=build/tests/interop/package/bins/linux-x64/libggml-base.so
//   ./build/benchmarks/ggml_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include <dlfcn.h>

#include "mixprec/formats/ggml.hpp"

namespace {

constexpr mixprec::index_t rows = 1024, cols = 4096;

const mixprec::row_matrix& weights() {
  static const mixprec::row_matrix w = [] {
    std::mt19937 gen(1);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    mixprec::row_matrix m(rows, cols);
    for (mixprec::index_t i = 0; i < m.size(); ++i) m.data()[i] = dist(gen);
    return m;
  }();
  return w;
}

const std::vector<float>& importance() {
  static const std::vector<float> v = [] {
    std::mt19937 gen(2);
    std::normal_distribution<float> dist(0.0f, 1.5f);
    std::vector<float> out(cols);
    for (float& x : out) x = std::exp(dist(gen));
    return out;
  }();
  return v;
}

void BM_memcpy(benchmark::State& state) {
  const auto& w = weights();
  std::vector<float> dst(static_cast<std::size_t>(w.size()));
  for (auto _ : state) {
    std::memcpy(dst.data(), w.data(), dst.size() * sizeof(float));
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * w.size() * static_cast<std::int64_t>(sizeof(float)));
}

void BM_quantize(benchmark::State& state, mixprec::ggml_type t, bool weighted) {
  const auto& w = weights();
  std::optional<std::span<const float>> imp;
  if (weighted) imp = std::span<const float>(importance());
  std::vector<std::byte> out(static_cast<std::size_t>(rows) * mixprec::ggml::row_bytes(t, cols));  // as ggml's below
  for (auto _ : state) {
    mixprec::ggml::quantize_into(t, w, out, imp);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * w.size() * static_cast<std::int64_t>(sizeof(float)));
}

void BM_dequantize(benchmark::State& state, mixprec::ggml_type t) {
  const auto& w = weights();
  const auto bytes = mixprec::ggml::quantize(t, w);
  for (auto _ : state) {
    auto m = mixprec::ggml::dequantize(t, bytes, rows, cols);
    benchmark::DoNotOptimize(m.data());
  }
  state.SetBytesProcessed(state.iterations() * w.size() * static_cast<std::int64_t>(sizeof(float)));
}

// ggml.h: size_t ggml_quantize_chunk(enum ggml_type, const float * src, void * dst, int64_t start,
//                                    int64_t nrows, int64_t n_per_row, const float * imatrix);
using quantize_chunk_fn = std::size_t (*)(int, const float*, void*, std::int64_t, std::int64_t, std::int64_t, const float*);

quantize_chunk_fn ggml_quantize_chunk() {
  static const quantize_chunk_fn fn = []() -> quantize_chunk_fn {
    const char* path = std::getenv("MIXPREC_GGML_BASE");
    if (!path) return nullptr;
    void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      std::fprintf(stderr, "ggml_bench: cannot load %s: %s\n", path, dlerror());
      return nullptr;
    }
    if (auto init = reinterpret_cast<void (*)(int)>(dlsym(h, "ggml_quantize_init")))
      for (mixprec::ggml_type t : mixprec::all_ggml_types) init(static_cast<int>(t));
    return reinterpret_cast<quantize_chunk_fn>(dlsym(h, "ggml_quantize_chunk"));
  }();
  return fn;
}

void BM_ggml_quantize(benchmark::State& state, mixprec::ggml_type t, bool weighted) {
  const auto& w = weights();
  std::vector<std::byte> out(static_cast<std::size_t>(rows) * mixprec::ggml::row_bytes(t, cols));
  const float* imp = weighted ? importance().data() : nullptr;
  for (auto _ : state) {
    ggml_quantize_chunk()(static_cast<int>(t), w.data(), out.data(), 0, rows, cols, imp);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * w.size() * static_cast<std::int64_t>(sizeof(float)));
}

void register_all() {
  benchmark::RegisterBenchmark("BM_memcpy", BM_memcpy)->Unit(benchmark::kMillisecond);
  using mixprec::ggml_type;
  for (ggml_type t : mixprec::all_ggml_types) {
    const std::string name(mixprec::to_string(t));
    benchmark::RegisterBenchmark(("BM_quantize/" + name).c_str(), BM_quantize, t, false)->Unit(benchmark::kMillisecond);
    if (t != ggml_type::f32 && t != ggml_type::f16 && t != ggml_type::bf16)
      benchmark::RegisterBenchmark(("BM_quantize_imatrix/" + name).c_str(), BM_quantize, t, true)
          ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("BM_dequantize/" + name).c_str(), BM_dequantize, t)->Unit(benchmark::kMillisecond);
    if (ggml_quantize_chunk()) {
      benchmark::RegisterBenchmark(("BM_ggml_quantize/" + name).c_str(), BM_ggml_quantize, t, false)->Unit(benchmark::kMillisecond);
      if (t != ggml_type::f32 && t != ggml_type::f16 && t != ggml_type::bf16)
        benchmark::RegisterBenchmark(("BM_ggml_quantize_imatrix/" + name).c_str(), BM_ggml_quantize, t, true)
            ->Unit(benchmark::kMillisecond);
    }
  }
}

// Registered at static initialisation, as BENCHMARK() registers (the list is built at run time).
const bool registered = (register_all(), true);

}  // namespace

BENCHMARK_MAIN();
