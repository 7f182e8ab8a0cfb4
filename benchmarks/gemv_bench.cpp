// Quantized GEMV/GEMM against Eigen FP32 on LLaMA-7B shapes, batch 1 and 8, one thread.
// Names: BM_gemv/<format>/<rows>x<cols>/<batch>, BM_memcpy/<bytes>. Bytes processed = weight bytes
// (the quantized storage, or FP32 for Eigen), so bytes_per_second is the achieved weight traffic.
//   ./build-native/benchmarks/gemv_bench --benchmark_format=json
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "mixprec/kernels/gemv.hpp"
#include "mixprec/quantize/quantize.hpp"

namespace {

mixprec::row_matrix random_matrix(mixprec::index_t rows, mixprec::index_t cols, float sigma, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  mixprec::row_matrix m(rows, cols);
  for (mixprec::index_t i = 0; i < m.size(); ++i) m.data()[i] = dist(gen);
  return m;
}

void eigen_bm(benchmark::State& state, mixprec::index_t rows, mixprec::index_t cols, mixprec::index_t batch) {
  const mixprec::row_matrix w = random_matrix(rows, cols, 0.02f, 1);
  const mixprec::row_matrix x = random_matrix(batch, cols, 1.0f, 2);
  mixprec::row_matrix y(batch, rows);
  for (auto _ : state) {
    if (batch == 1)
      y.row(0).transpose().noalias() = w * x.row(0).transpose();
    else
      y.noalias() = x * w.transpose();
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * rows * cols * 4);
}

void quant_bm(benchmark::State& state, const char* spec, mixprec::index_t rows, mixprec::index_t cols,
              mixprec::index_t batch) {
  const mixprec::quantized_tensor q = mixprec::quantize(random_matrix(rows, cols, 0.02f, 1), mixprec::parse_spec(spec));
  const mixprec::row_matrix x = random_matrix(batch, cols, 1.0f, 2);
  mixprec::row_matrix y(batch, rows);
  for (auto _ : state) {
    if (batch == 1)
      mixprec::gemv(q, x.data(), y.data());
    else
      mixprec::gemm(q, x, y);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(q.bytes()));
}

void memcpy_bm(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  std::vector<char> a(bytes, 1), b(bytes, 2);
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), bytes);
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}

const bool registered = [] {
  benchmark::RegisterBenchmark("BM_memcpy/67108864", memcpy_bm)->Arg(64 << 20)->ArgName("")->Unit(benchmark::kMillisecond);
  const struct {
    mixprec::index_t rows, cols;
  } shapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
  const struct {
    const char* name;
    const char* spec;
  } formats[] = {{"int4_g128", "int4/g128/sym/minmax/s16"}, {"int4_g32", "int4/g32/sym/minmax/s16"},
                 {"int8_pc", "int8/channel/sym/minmax/s32"}, {"fp16", "fp16"}, {"bf16", "bf16"}};
  for (const auto& s : shapes)
    for (mixprec::index_t batch : {1, 8}) {
      const std::string suffix = "/" + std::to_string(s.rows) + "x" + std::to_string(s.cols) + "/" + std::to_string(batch);
      benchmark::RegisterBenchmark(("BM_gemv/fp32_eigen" + suffix).c_str(), eigen_bm, s.rows, s.cols, batch)
          ->Unit(benchmark::kMicrosecond);
      for (const auto& f : formats)
        benchmark::RegisterBenchmark(("BM_gemv/" + std::string(f.name) + suffix).c_str(), quant_bm, f.spec, s.rows,
                                     s.cols, batch)
            ->Unit(benchmark::kMicrosecond);
    }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
