// `plan --refine SECONDS`: the knapsack plan refined by the whole model's measured KL (the library's
// plan_builder::refine, EvoPress's search: plan/refine.hpp), then checked on the held-out streams.
//   fitness    mean KL per position of the whole plan against the model as stored (plan_verifier::mean_kl)
//              on streams of their own (--refine-streams N:LEN, default 64:64, --refine-seed, default 3;
//              never the held-out ones): stage 0 on the first N/8 streams, stage 1 on N/4, the last on all N
//   guarantee  the refined plan is kept only when its KL on the held-out streams (verify()) is below the
//              knapsack plan's; otherwise the knapsack plan is written, and the record says so. The choice
//              is made on those streams, so the refined plan's recorded verification is optimistic by the
//              choice: score a claim on other streams (docs/measurements.md "Refined plans" does)
// plan.json records "refined": the search (seconds, generations, evaluations per stage, accepted), the
// fitness streams, the fitness before and after, the knapsack plan's held-out verification and which plan
// was kept.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <nlohmann/json.hpp>

#include <mixprec/plan/plan.hpp>

#include "verify.hpp"

namespace mixprec_cli {

struct refine_request {
  double seconds = 0.0;
  int streams = 64, length = 64;
  std::uint64_t seed = 3;
};

struct refined_choice {
  mixprec::plan plan;     // the one to write: the refined plan or, when it is no better held out, the start
  nlohmann::json record;  // plan.json's "refined"
};

// Refines `start` (planner.build()'s) within the planner's budget as the banner says; verify(p) is the
// held-out check (the caller's, which may remember its results).
template <class Planner, class Verify>
[[nodiscard]] refined_choice refine_plan(const Planner& planner, const mixprec::plan& start, plan_verifier& verifier,
                                         const refine_request& r, Verify&& verify) {
  const std::size_t set = verifier.add_streams(r.streams, r.length, r.seed);
  const std::size_t n = static_cast<std::size_t>(r.streams);
  const std::vector<std::size_t> first{std::max<std::size_t>(1, n / 8), std::max<std::size_t>(1, n / 4), n};
  auto fitness = [&](const mixprec::plan& p, std::size_t stage) { return verifier.mean_kl(p, set, first[stage]); };
  const mixprec::refined_plan refined = planner.refine(start, fitness, {.seconds = r.seconds, .seed = r.seed});
  const verification before = verify(start);
  const verification after = verify(refined.result);
  const bool changed = refined.result.entries != start.entries;
  const bool kept = changed && after.kl < before.kl;
  auto percent = [](double to, double from) { return from > 0.0 ? 100.0 * (to / from - 1.0) : 0.0; };
  const auto& s = refined.search;
  std::printf("\nrefined for %.0f s: %zu generations, %zu plans run, %zu accepted; KL on the %d refinement streams %.5g -> %.5g (%+.1f %%)\n"
              "held out: knapsack plan KL %.5g [%.5g, %.5g], refined plan %.5g [%.5g, %.5g] (%+.1f %%): %s\n",
              s.seconds, s.generations, s.evaluations[0] + s.evaluations[1] + s.evaluations[2], s.accepted, r.streams, s.start_fitness,
              s.fitness, percent(s.fitness, s.start_fitness), before.kl, before.kl_low, before.kl_high, after.kl, after.kl_low,
              after.kl_high, percent(after.kl, before.kl),
              kept                     ? "the refined plan is kept"
              : !changed                ? "the knapsack plan is kept (the search found nothing better)"
                                        : "the knapsack plan is kept (the refinement did not help on the held-out streams)");
  nlohmann::json record = {{"seconds", s.seconds},
                           {"generations", s.generations},
                           {"evaluations", s.evaluations},
                           {"accepted", s.accepted},
                           {"streams", r.streams},
                           {"length", r.length},
                           {"seed", r.seed},
                           {"ids_fnv1a64", calibration_hash(verifier.stream_ids(set))},
                           {"fitness_start", s.start_fitness},
                           {"fitness", s.fitness},
                           {"knapsack_verified", before.to_json(start.predicted_loss())},
                           {"kept", kept ? "refined" : "knapsack"}};
  return {kept ? refined.result : start, std::move(record)};
}

}  // namespace mixprec_cli
