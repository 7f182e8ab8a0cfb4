// Quantize + pack and dequantize throughput on a 4096x4096 FP32 matrix: xsimd kernels vs the scalar
// reference, with memcpy of the same FP32 bytes as the bandwidth baseline, all in one run.
// Bytes processed = the FP32 matrix bytes (64 MiB) for every benchmark, so rates compare directly.
// Outputs are allocated once outside the loop (as memcpy's is). "scalar" is the reference kernels
// compiled without auto-vectorisation (this file gets -fno-tree-vectorize, which leaves xsimd's
// explicit SIMD untouched), so the ratio measures the hand-written kernels against plain scalar code.
//   ./build/benchmarks/quantize_bench --benchmark_format=json   (build with -DMIXPREC_NATIVE=ON)
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <string>
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

template <class K>
void quantize_bm(benchmark::State& state, const char* spec_text) {
  const auto spec = mixprec::parse_spec(spec_text);
  const auto& w = matrix();
  mixprec::quantized_tensor q = mixprec::quantize(w, spec);  // output buffers allocated once, as for memcpy
  for (auto _ : state) {
    mixprec::quantize_into<K>(w, spec, q);
    benchmark::DoNotOptimize(q.codes().data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * matrix_bytes);
}

template <class K>
void dequantize_bm(benchmark::State& state, const char* spec_text) {
  const auto q = mixprec::quantize(matrix(), mixprec::parse_spec(spec_text));
  mixprec::row_matrix y(side, side);
  for (auto _ : state) {
    mixprec::dequantize_into<K>(q, y);
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
    benchmark::RegisterBenchmark((q + "/simd").c_str(), quantize_bm<mixprec::default_kernels>, f.spec)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark((q + "/scalar").c_str(), quantize_bm<mixprec::reference_kernels>, f.spec)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark((d + "/simd").c_str(), dequantize_bm<mixprec::default_kernels>, f.spec)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark((d + "/scalar").c_str(), dequantize_bm<mixprec::reference_kernels>, f.spec)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
