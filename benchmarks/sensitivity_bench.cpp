// Weight-only sensitivity (SQNR, MSE, max error, cosine per layer x candidate) of one LLaMA-7B-shaped
// decoder layer: q, k, v, o 4096x4096; gate, up 11008x4096; down 4096x11008 (202M weights).
// - BM_weight_sqnr/<spec>/threads:N   analyze_weights with one candidate; items = weights analysed.
// - BM_weight_sqnr/all3/threads:N     int4/g128 + int8/channel + fp16 in one call; items = weights x 3.
// - BM_baseline_whole/<spec>          the straightforward way in the same binary: quantize the whole
//                                     matrix, dequantize it, then Eigen double reductions for |W|^2,
//                                     |Q(W) - W|^2 (what analyze_weights fuses into one blocked pass).
// One iteration takes about a second, so a run is short:
//   ./build/benchmarks/sensitivity_bench --benchmark_min_time=0.1
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "mixprec/model.hpp"
#include "mixprec/sensitivity/weight_sensitivity.hpp"

namespace {

struct decoder_layer {
  std::vector<mixprec::row_matrix> weights;
  mixprec::model m;
  decoder_layer() {
    const struct {
      const char* name;
      mixprec::index_t rows, cols;
    } shapes[] = {{"q_proj", 4096, 4096},     {"k_proj", 4096, 4096},  {"v_proj", 4096, 4096}, {"o_proj", 4096, 4096},
                  {"gate_proj", 11008, 4096}, {"up_proj", 11008, 4096}, {"down_proj", 4096, 11008}};
    std::mt19937 gen(1);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    weights.reserve(7);
    for (const auto& s : shapes) {
      weights.emplace_back(s.rows, s.cols);
      for (mixprec::index_t i = 0; i < weights.back().size(); ++i) weights.back().data()[i] = dist(gen);
      m.add(s.name, weights.back());
    }
  }
};

const decoder_layer& layer() {
  static const decoder_layer l;
  return l;
}

const std::vector<std::string> spec_names = {"int4/g128/sym/minmax/s16", "int8/channel", "fp16"};

void BM_weight_sqnr(benchmark::State& state, std::vector<std::string> specs) {
  const decoder_layer& l = layer();
  std::vector<mixprec::quant_spec> candidates;
  for (const auto& s : specs) candidates.push_back(mixprec::parse_spec(s));
  const mixprec::weight_analysis_options options{static_cast<unsigned>(state.range(0)), {}};
  for (auto _ : state) {
    auto scores = mixprec::analyze_weights(l.m, candidates, options);
    benchmark::DoNotOptimize(scores.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * l.m.parameters() * static_cast<std::int64_t>(candidates.size()));
}

void BM_baseline_whole(benchmark::State& state, std::string spec) {
  const decoder_layer& l = layer();
  const mixprec::quant_spec s = mixprec::parse_spec(spec);
  for (auto _ : state) {
    double sum = 0.0;
    for (const auto& w : l.weights) {
      const mixprec::row_matrix back = mixprec::dequantize(mixprec::quantize(w, s));
      const double signal = w.cast<double>().squaredNorm();
      const double noise = (back.cast<double>() - w.cast<double>()).squaredNorm();
      sum += 10.0 * std::log10(signal / noise);
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * l.m.parameters());
}

void register_all() {
  for (const auto& s : spec_names) {
    benchmark::RegisterBenchmark(("BM_weight_sqnr/" + s).c_str(), BM_weight_sqnr, std::vector<std::string>{s})
        ->ArgName("threads")->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("BM_baseline_whole/" + s).c_str(), BM_baseline_whole, s)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
  }
  benchmark::RegisterBenchmark("BM_weight_sqnr/all3", BM_weight_sqnr, spec_names)
      ->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
}

// Registered at static initialisation, as BENCHMARK() registers (the list is built at run time).
const bool registered = (register_all(), true);

}  // namespace

BENCHMARK_MAIN();
