// Quantize + pack and dequantize throughput on a 4096x4096 FP32 matrix: the SIMD kernels of every
// instruction-set level this CPU runs (names end in /<level>) vs the scalar reference, with memcpy of
// the same FP32 bytes as the bandwidth baseline, all in one run.
// Bytes processed = the FP32 matrix bytes (64 MiB) for every benchmark, so rates compare directly.
// Outputs are allocated once outside the loop (as memcpy's is). "scalar" is the reference kernels
// compiled without auto-vectorisation (this file gets -fno-tree-vectorize, which leaves the explicit
// SIMD untouched), so the ratio measures the hand-written kernels against plain scalar code.
//   ./build/benchmarks/quantize_bench --benchmark_format=json
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "mixprec/quantize/quantize.hpp"

namespace {

constexpr mixprec::index_t side = 4096;

const mixprec::row_matrix& matrix() {
  static const mixprec::row_matrix w = [] {
    std::mt19937 gen(7);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    mixprec::row_matrix m(side, side);
    for (mixprec::index_t i = 0; i < m.size(); ++i) m.data()[i] = dist(gen);
    return m;
  }();
  return w;
}

constexpr std::int64_t matrix_bytes = side * side * static_cast<std::int64_t>(sizeof(float));

// K: a kernel set, or void for the SIMD kernels of level `level`.
template <class K>
void quantize_bm(benchmark::State& state, const char* spec_text, mixprec::isa level) {
  const auto spec = mixprec::parse_spec(spec_text);
  const auto& w = matrix();
  mixprec::quantized_tensor q = mixprec::quantize(w, spec);  // output buffers allocated once, as for memcpy
  for (auto _ : state) {
    if constexpr (std::is_void_v<K>)
      mixprec::with_kernels(level, [&]<class S>() { q = mixprec::quantize_with<S>(w, spec, "w", &q); });
    else
      q = mixprec::quantize_with<K>(w, spec, "w", &q);
    benchmark::DoNotOptimize(q.codes().data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * matrix_bytes);
}

template <class K>
void dequantize_bm(benchmark::State& state, const char* spec_text, mixprec::isa level) {
  const auto q = mixprec::quantize(matrix(), mixprec::parse_spec(spec_text));
  mixprec::row_matrix y(side, side);
  for (auto _ : state) {
    if constexpr (std::is_void_v<K>)
      mixprec::with_kernels(level, [&]<class S>() { mixprec::dequantize_into_with<S>(q, y); });
    else
      mixprec::dequantize_into_with<K>(q, y);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * matrix_bytes);
}

void memcpy_bm(benchmark::State& state) {
  const auto& w = matrix();
  std::vector<float> out(static_cast<std::size_t>(w.size()));
  for (auto _ : state) {
    std::memcpy(out.data(), w.data(), static_cast<std::size_t>(matrix_bytes));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * matrix_bytes);
}

struct format_case {
  const char* name;
  const char* spec;
};
constexpr format_case formats[] = {
    {"int8_pc", "int8/channel/sym/minmax/s32"},
    {"int4_g32", "int4/g32/sym/minmax/s16"},
    {"int4_g128", "int4/g128/sym/minmax/s16"},
    {"fp16", "fp16"},
    {"bf16", "bf16"},
};

const bool registered = [] {
  benchmark::RegisterBenchmark("BM_memcpy", memcpy_bm)->Unit(benchmark::kMillisecond)->UseRealTime();
  for (const auto& f : formats) {
    const std::string q = std::string("BM_quantize/") + f.name, d = std::string("BM_dequantize/") + f.name;
    for (mixprec::isa level : mixprec::supported_isas()) {
      const std::string tag = "/" + mixprec::isa_name(level);
      benchmark::RegisterBenchmark((q + tag).c_str(), quantize_bm<void>, f.spec, level)
          ->Unit(benchmark::kMillisecond)->UseRealTime();
      benchmark::RegisterBenchmark((d + tag).c_str(), dequantize_bm<void>, f.spec, level)
          ->Unit(benchmark::kMillisecond)->UseRealTime();
    }
    benchmark::RegisterBenchmark((q + "/scalar").c_str(), quantize_bm<mixprec::reference_kernels>, f.spec,
                                 mixprec::isa::baseline)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark((d + "/scalar").c_str(), dequantize_bm<mixprec::reference_kernels>, f.spec,
                                 mixprec::isa::baseline)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
