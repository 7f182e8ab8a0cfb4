// Quantized GEMV/GEMM against Eigen FP32 on LLaMA-7B shapes, batch 1 and 8, one thread.
// Names: BM_gemv/<format>/<rows>x<cols>/<batch> (FP32 activations), BM_gemv_a8/<format>/<rows>x<cols>/<batch>
// (activations quantized to INT8 per token, integer dot products), BM_memcpy/<bytes>. Bytes processed =
// weight bytes (the quantized storage, or FP32 for Eigen), so bytes_per_second is the achieved weight
// traffic. Counter roofline_us = weight bytes / the memcpy bandwidth measured earlier in the same run
// (BM_memcpy runs first); ratios against fp32_eigen come from the same run. BM_gemv_direct calls the
// kernel set of the active level without going through dispatch (its gap to BM_gemv is the dispatch cost).
// The level is the best the CPU runs; MIXPREC_ISA=sse2|avx2|avx512|avx512_vnni caps it. gemv_bench_native
// is this file built with -march=native (Eigen's best case); benchmarks/gemv_table.sh runs both and
// prints the ratios.
//   ./build/benchmarks/gemv_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "mixprec/kernels/gemv.hpp"
#include "mixprec/kernels/kernel_set.hpp"
#include "mixprec/quantize/quantize.hpp"

namespace {

double memcpy_bytes_per_second = 0.0;  // best BM_memcpy rate of this run

void set_roofline(benchmark::State& state, std::size_t bytes) {
  if (memcpy_bytes_per_second > 0.0)
    state.counters["roofline_us"] = static_cast<double>(bytes) / memcpy_bytes_per_second * 1e6;
}

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
  set_roofline(state, static_cast<std::size_t>(rows * cols * 4));
}

void quant_bm(benchmark::State& state, const char* spec, mixprec::index_t rows, mixprec::index_t cols,
              mixprec::index_t batch) {
  const mixprec::quantized_tensor q = mixprec::quantize(random_matrix(rows, cols, 0.02f, 1), mixprec::parse_spec(spec));
  const mixprec::row_matrix x = random_matrix(batch, cols, 1.0f, 2);
  mixprec::row_matrix y(batch, rows);
  for (auto _ : state) {
    if (batch == 1)
      mixprec::gemv(q, {x.data(), static_cast<std::size_t>(cols)}, {y.data(), static_cast<std::size_t>(rows)});
    else
      mixprec::gemm(q, x, y);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(q.bytes()));
  set_roofline(state, q.bytes());
}

void quant_a8_bm(benchmark::State& state, const char* spec, mixprec::index_t rows, mixprec::index_t cols,
                 mixprec::index_t batch) {
  const mixprec::gemv_options a8{.activations = mixprec::activation_type::int8};
  const mixprec::quantized_tensor q = mixprec::quantize(random_matrix(rows, cols, 0.02f, 1), mixprec::parse_spec(spec));
  const mixprec::row_matrix x = random_matrix(batch, cols, 1.0f, 2);
  mixprec::row_matrix y(batch, rows);
  for (auto _ : state) {
    if (batch == 1)
      mixprec::gemv(q, {x.data(), static_cast<std::size_t>(cols)}, {y.data(), static_cast<std::size_t>(rows)}, a8);
    else
      mixprec::gemm(q, x, y, a8);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(q.bytes()));
  set_roofline(state, q.bytes());
}

// The same gemv with the level's kernel set resolved once, outside the loop: the difference to quant_bm
// is what run-time dispatch costs per call.
void direct_bm(benchmark::State& state, const char* spec, mixprec::index_t rows, mixprec::index_t cols) {
  const mixprec::quantized_tensor q = mixprec::quantize(random_matrix(rows, cols, 0.02f, 1), mixprec::parse_spec(spec));
  const mixprec::row_matrix x = random_matrix(1, cols, 1.0f, 2);
  mixprec::row_matrix y(1, rows);
  mixprec::with_kernels(mixprec::active_isa(), [&]<class K>() {
    for (auto _ : state) {
      K::gemv(q, x.data(), y.data(), {});
      benchmark::DoNotOptimize(y.data());
      benchmark::ClobberMemory();
    }
  });
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(q.bytes()));
}

void memcpy_bm(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  std::vector<char> a(bytes, 1), b(bytes, 2);
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), bytes);
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (seconds > 0.0)
    memcpy_bytes_per_second =
        std::max(memcpy_bytes_per_second, static_cast<double>(bytes) * static_cast<double>(state.iterations()) / seconds);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}

const bool registered = [] {
  benchmark::AddCustomContext("mixprec_isa", mixprec::isa_name(mixprec::active_isa()));
  benchmark::RegisterBenchmark("BM_memcpy/67108864", memcpy_bm)->Arg(64 << 20)->ArgName("")->Unit(benchmark::kMillisecond);
  const struct {
    mixprec::index_t rows, cols;
  } shapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
  const struct {
    const char* name;
    const char* spec;
  } formats[] = {{"int4_g128", "int4/g128/sym/minmax/s16"}, {"int4_g32", "int4/g32/sym/minmax/s16"},
                 {"int8_pc", "int8/channel/sym/minmax/s32"}, {"fp16", "fp16"}, {"bf16", "bf16"}};
  benchmark::RegisterBenchmark("BM_gemv_direct/int4_g128/4096x4096/1", direct_bm, "int4/g128/sym/minmax/s16",
                               mixprec::index_t{4096}, mixprec::index_t{4096})
      ->Unit(benchmark::kMicrosecond);
  for (const auto& s : shapes)
    for (mixprec::index_t batch : {1, 8}) {
      const std::string suffix = "/" + std::to_string(s.rows) + "x" + std::to_string(s.cols) + "/" + std::to_string(batch);
      benchmark::RegisterBenchmark(("BM_gemv/fp32_eigen" + suffix).c_str(), eigen_bm, s.rows, s.cols, batch)
          ->Unit(benchmark::kMicrosecond);
      for (const auto& f : formats)
        benchmark::RegisterBenchmark(("BM_gemv/" + std::string(f.name) + suffix).c_str(), quant_bm, f.spec, s.rows,
                                     s.cols, batch)
            ->Unit(benchmark::kMicrosecond);
      for (const auto& f : formats)
        if (std::string(f.name).rfind("int", 0) == 0)
          benchmark::RegisterBenchmark(("BM_gemv_a8/" + std::string(f.name) + suffix).c_str(), quant_a8_bm, f.spec,
                                       s.rows, s.cols, batch)
              ->Unit(benchmark::kMicrosecond);
    }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
