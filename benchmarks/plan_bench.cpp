// Planning 1,000 layers x 5 candidate formats under a byte budget (half-way between the smallest and
// the largest reachable size). Shapes are drawn from LLaMA-like dimensions; losses are random but
// decreasing with precision (the solvers never look at where losses come from).
//   BM_plan/<policy>      the whole planner: validation, exact byte costs, table lookups, solving, the plan
//   BM_allocate/<policy>  the allocation alone, on the prepared multiple-choice knapsack
// Counters: predicted_loss, lower_bound (LP bound), proven_optimal (1 when the policy proved it).
// The label is the solver used. Run: ./build/benchmarks/plan_bench
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "mixprec/plan/plan.hpp"

namespace {

struct instance {
  mixprec::sensitivity_table table;
  double budget = 0.0;

  explicit instance(int layers) {
    std::vector<mixprec::quant_spec> candidates;
    for (const char* s : {"int4/g128/sym/minmax/s16", "int4/g32/sym/minmax/s16", "int8/channel", "fp8_e4m3/channel", "fp16"})
      candidates.push_back(mixprec::parse_spec(s));
    const mixprec::index_t dims[] = {1024, 2048, 4096, 5120, 11008, 14336};
    std::mt19937 gen(42);
    std::uniform_int_distribution<int> pick(0, 5);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    double lo = 0.0, hi = 0.0;
    for (int i = 0; i < layers; ++i) {
      const std::string name = "layer." + std::to_string(i);
      const mixprec::index_t rows = dims[pick(gen)], cols = dims[pick(gen) % 4];
      const double scale = u(gen);
      for (std::size_t k = 0; k < candidates.size(); ++k)  // more bits, less loss
        table.add(name, rows, cols, candidates[k], scale * std::pow(0.25, static_cast<double>(k)) * (1 + 0.1 * u(gen)));
      lo += static_cast<double>(mixprec::quantized_bytes(candidates[0], rows, cols));
      hi += static_cast<double>(mixprec::quantized_bytes(candidates[4], rows, cols));
    }
    budget = 0.5 * (lo + hi);
  }
};

const instance& problem(int layers) {
  static const instance i1000(1000), i10000(10000);
  return layers == 1000 ? i1000 : i10000;
}

void report(benchmark::State& state, const mixprec::plan& p) {
  state.counters["predicted_loss"] = p.predicted_loss();
  state.counters["lower_bound"] = p.lower_bound;
  state.counters["proven_optimal"] = p.proven_optimal ? 1 : 0;
  state.SetLabel(p.solver);
}

template <class Policy>
void BM_plan(benchmark::State& state) {
  const instance& inst = problem(static_cast<int>(state.range(0)));
  const auto planner = mixprec::plan_builder{inst.table, Policy{}, mixprec::byte_budget{inst.budget}};
  mixprec::plan p;
  for (auto _ : state) {
    p = planner.build();
    benchmark::DoNotOptimize(p.entries.data());
  }
  report(state, p);
}

template <class Policy>
void BM_allocate(benchmark::State& state) {
  const instance& inst = problem(static_cast<int>(state.range(0)));
  const auto problem_ = mixprec::plan_builder{inst.table, Policy{}, mixprec::byte_budget{inst.budget}}.problem(
      inst.table.layers());
  mixprec::allocation_result r;
  for (auto _ : state) {
    r = Policy{}.allocate(problem_);
    benchmark::DoNotOptimize(r.choice.data());
  }
  state.counters["predicted_loss"] = r.loss;
  state.counters["lower_bound"] = r.lower_bound;
  state.counters["proven_optimal"] = r.proven_optimal ? 1 : 0;
  state.SetLabel(r.solver);
}

struct lagrangian_fill_policy : mixprec::lagrangian_policy {
  lagrangian_fill_policy() : mixprec::lagrangian_policy{true} {}
};

BENCHMARK(BM_plan<mixprec::knapsack_policy>)->Name("BM_plan/knapsack")->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_plan<mixprec::greedy_policy>)->Name("BM_plan/greedy")->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_allocate<mixprec::knapsack_policy>)->Name("BM_allocate/knapsack")->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_allocate<mixprec::greedy_policy>)->Name("BM_allocate/greedy")->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_allocate<mixprec::lagrangian_policy>)->Name("BM_allocate/lagrangian")->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_allocate<lagrangian_fill_policy>)->Name("BM_allocate/lagrangian+fill")->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_allocate<mixprec::threshold_policy>)->Name("BM_allocate/threshold")->Arg(1000)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
