// Weight-only sensitivity (SQNR per layer x candidate) of one LLaMA-7B-shaped decoder layer:
// q, k, v, o 4096x4096; gate, up 11008x4096; down 4096x11008 (202M weights), for the candidates
// int4/g128, int8/channel and fp16. items/s = weights analysed per second (weights x candidates).
//   ./build-native/benchmarks/sensitivity_bench
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "mixprec/sensitivity/weight_sensitivity.hpp"

namespace {

struct decoder_layer {
  std::vector<mixprec::row_matrix> weights;
  std::vector<mixprec::layer_ref> layers;
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
      layers.push_back(mixprec::make_layer(s.name, weights.back()));
    }
  }
};

void BM_sensitivity_sqnr(benchmark::State& state) {
  static const decoder_layer layer;
  const std::vector<mixprec::quant_spec> candidates = {mixprec::parse_spec("int4/g128/sym/minmax/s16"),
                                                       mixprec::parse_spec("int8/channel"), mixprec::parse_spec("fp16")};
  std::int64_t weights = 0;
  for (const auto& l : layer.layers) weights += l.size();
  for (auto _ : state) {
    auto scores = mixprec::analyze_weights(layer.layers, candidates, {static_cast<unsigned>(state.range(0)), {}});
    benchmark::DoNotOptimize(scores.data());
  }
  state.SetItemsProcessed(state.iterations() * weights * static_cast<std::int64_t>(candidates.size()));
}
BENCHMARK(BM_sensitivity_sqnr)->Name("BM_sensitivity_sqnr/llama7b_layer/threads")->Arg(1)->Arg(2)
    ->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
