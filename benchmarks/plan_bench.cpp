// Planning 1,000 layers x 5 candidate formats under a byte budget (half-way between all-INT4 and
// all-FP16): the allocation policies on one problem. Layer shapes are drawn from LLaMA-like
// dimensions; losses are random (the solvers never look at where they come from).
//   ./build-native/benchmarks/plan_bench
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "mixprec/plan/plan.hpp"

namespace {

struct instance {
  std::vector<mixprec::plan_layer_info> layers;
  mixprec::table_source source;
  std::vector<mixprec::quant_spec> candidates;
  double budget = 0.0;

  instance() {
    for (const char* s : {"int4/g128/sym/minmax/s16", "int4/g32/sym/minmax/s16", "int8/channel", "fp8_e4m3/channel", "fp16"})
      candidates.push_back(mixprec::parse_spec(s));
    const mixprec::index_t dims[] = {1024, 2048, 4096, 5120, 11008, 14336};
    std::mt19937 gen(42);
    std::uniform_int_distribution<int> pick(0, 5);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    double lo = 0.0, hi = 0.0;
    for (int i = 0; i < 1000; ++i) {
      mixprec::plan_layer_info l{"layer." + std::to_string(i), dims[pick(gen)], dims[pick(gen) % 4]};
      const double scale = u(gen);
      for (std::size_t k = 0; k < candidates.size(); ++k)  // more bits, less loss
        source.losses[l.name][mixprec::to_string(candidates[k])] = scale * std::pow(0.25, static_cast<double>(k)) * (1 + 0.1 * u(gen));
      lo += static_cast<double>(mixprec::quantized_bytes(candidates[0], l.rows, l.cols));
      hi += static_cast<double>(mixprec::quantized_bytes(candidates[4], l.rows, l.cols));
      layers.push_back(l);
    }
    budget = 0.5 * (lo + hi);
  }
};

const instance& problem() {
  static const instance inst;
  return inst;
}

template <class Policy>
void BM_plan(benchmark::State& state) {
  const instance& inst = problem();
  bool optimal = false;
  for (auto _ : state) {
    const auto p = mixprec::mixed_precision_plan{inst.source, Policy{}, mixprec::byte_budget{inst.budget}}
                       .candidates(inst.candidates)
                       .build(inst.layers);
    optimal = p.proven_optimal;
    state.counters["predicted_loss"] = p.predicted_loss();
    state.counters["loss_lower_bound"] = p.loss_lower_bound;
    benchmark::DoNotOptimize(p.entries.data());
  }
  state.counters["proven_optimal"] = optimal ? 1 : 0;
}
BENCHMARK(BM_plan<mixprec::knapsack_policy>)->Name("BM_plan/knapsack/1000x5")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_plan<mixprec::greedy_policy>)->Name("BM_plan/greedy/1000x5")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_plan<mixprec::lagrangian_policy>)->Name("BM_plan/lagrangian/1000x5")->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
