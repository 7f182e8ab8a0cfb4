// The LLaMA study on the seeded synthetic model of support/tiny_llama.hpp, shortened: a knapsack plan
// below the all-INT8 size has no more KL than all-INT4, and a plan's bytes equal the engine's matrix
// bytes.
#include <catch2/catch.hpp>

#include "study.hpp"
#include "support/tiny_llama.hpp"

TEST_CASE("study: knapsack beats all-INT4 below the all-INT8 size; bytes add up", "[llama][study]") {
  // A separate classifier: with the shared one, each token's own embedding dominates its logits and the
  // sampled reference streams would repeat BOS.
  auto ck = mixprec::test::tiny_llama({.shared_classifier = false});
  const auto int4 = mixprec::parse_spec("int4/g32/sym/minmax/s16");
  const auto int8 = mixprec::parse_spec("int8/channel/sym/minmax/s32");
  const llama::reference ref = llama::make_reference(ck, {2, 24, 7});
  const auto matrices = llama::measure_matrices(ck, ref, int4, int8);
  REQUIRE(matrices.size() == 29);
  for (const auto& m : matrices) {
    CHECK(m.kl_int4 > m.kl_int8);  // fewer bits, more divergence, for every matrix
    CHECK(m.sqnr_int4_db > 15.0);
  }
  const auto q4 = llama::quality_of(ck, llama::uniform(ck, int4), ref);
  const auto q8 = llama::quality_of(ck, llama::uniform(ck, int8), ref);
  const double budget = 0.5 * static_cast<double>(q4.bytes + q8.bytes);
  const auto plan = mixprec::plan_builder{llama::kl_source(matrices, int4, int8), mixprec::knapsack_policy{},
                                                  mixprec::byte_budget{budget}}
                        .candidates({int4, int8})
                        .build(llama::infos(matrices));
  CHECK(plan.proven_optimal);
  llama::transformer engine(ck, llama::specs_of(plan));
  CHECK(engine.matrix_bytes() == plan.bytes());  // every scale counted the same way
  CHECK(static_cast<double>(plan.bytes()) < static_cast<double>(q8.bytes));
  const auto qk = llama::quality_of(ck, llama::specs_of(plan), ref);
  INFO("KL knapsack " << qk.kl_mean << " int4 " << q4.kl_mean << " int8 " << q8.kl_mean);
  CHECK(qk.kl_mean <= q4.kl_mean);
  CHECK(q8.kl_mean < q4.kl_mean);
  CHECK(qk.top1 >= q4.top1);
  // The same plan with INT8 activations: same bytes, some extra divergence from rounding the inputs.
  const auto qa8 = llama::quality_of(ck, llama::specs_of(plan), ref, mixprec::activation_type::int8);
  INFO("KL knapsack+a8 " << qa8.kl_mean);
  CHECK(qa8.bytes == qk.bytes);
  CHECK(qa8.kl_mean > qk.kl_mean);
}
