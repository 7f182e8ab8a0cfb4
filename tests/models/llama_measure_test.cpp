// The library's measured sensitivity (models/llama/measure.hpp) against an independent computation:
// each one-tensor KL is the full model run whole with that tensor's quantized bytes in place; the
// model comes back bit for bit; shards and threads change no number; the fallback chain; errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "mixprec/models/calibration.hpp"
#include "mixprec/models/llama.hpp"
#include "mixprec/models/llama/measure.hpp"
#include "mixprec/sensitivity/rank.hpp"
#include "support/errors.hpp"
#include "support/model_kl.hpp"
#include "support/tiny_llama.hpp"

namespace mm = mixprec::models;
using mixprec::parse_spec;

namespace {

std::vector<std::vector<int>> some_streams(const mm::llama_model& m) {
  mm::llama_model copy = m;
  mm::llama_engine e(copy);
  return mm::sample_streams(e, {.streams = 3, .length = 12, .seed = 5, .first = 1});
}

}  // namespace

TEST_CASE("measure_llama: each one-tensor KL is the whole model run with that tensor's bytes", "[models][measure]") {
  mm::llama_model m = mm::from_llama2c(mixprec::test::tiny_llama());
  const auto streams = some_streams(m);
  const mm::llama_model before = m;
  const std::vector<mixprec::quant_spec> types = {parse_spec("q4_0"), parse_spec("q8_0"), parse_spec("f32")};
  const mm::llama_measurement r = mm::measure_llama(m, streams, {.types = types});

  // The model is back as it was: every matrix bit for bit.
  const auto now = mm::llama_measure_matrices(m);
  mm::llama_model b = before;
  const auto was = mm::llama_measure_matrices(b);
  REQUIRE(now.size() == was.size());
  for (std::size_t k = 0; k < now.size(); ++k) CHECK(now[k].first->to_float() == was[k].first->to_float());

  REQUIRE(r.tensors.size() == now.size());
  CHECK(r.matrices == now.size());
  CHECK(r.positions == 36);
  std::size_t checked = 0;
  for (const auto& t : r.tensors) {
    CHECK(t.index == static_cast<std::size_t>(&t - r.tensors.data()));
    const mixprec::row_matrix w = was[t.index].first->to_float();
    for (const auto& x : t.types) {
      CHECK(x.kl >= 0.0);
      CHECK(x.kl_ci95.low <= x.kl + 1e-12);
      CHECK(x.kl_ci95.high >= x.kl - 1e-12);
      if (x.spec.format == mixprec::format_id::fp32) {
        CHECK(x.kl == 0.0);  // the same values: exactly the reference
        CHECK(x.weight_error == 0.0);
        continue;
      }
      // The bytes a writer stores: quantized with the measured imatrix where there is one.
      const bool has_imp = r.inputs.contains(t.name);
      const Eigen::VectorXf imp = has_imp ? r.inputs.mean_squares(t.name) : Eigen::VectorXf();
      const mixprec::quantized_tensor q =
          has_imp ? mixprec::quantize(w, x.spec, t.name, std::span<const float>(imp.data(), static_cast<std::size_t>(imp.size())))
                  : mixprec::quantize(w, x.spec, t.name);
      CHECK(x.bytes == q.bytes());
      CHECK(x.weight_error == Approx((mixprec::dequantize(q).cast<double>() - w.cast<double>()).squaredNorm()).epsilon(1e-12));
      if (t.index % 5 == 0) {  // a sample of the tensors, every kind of layer among them
        CHECK(x.kl == Approx(mixprec::test::one_tensor_kl(before, streams, t.name, mm::llama_matrix(t.name, q))).epsilon(1e-6));
        ++checked;
      }
    }
  }
  CHECK(checked >= 8);
  // q4_0 costs more than q8_0 on most tensors (not on every one: noise on a tiny model).
  std::size_t worse = 0, both = 0;
  for (const auto& t : r.tensors)
    if (t.types.size() == 3) ++both, worse += t.types[0].kl > t.types[1].kl ? 1 : 0;
  CHECK(worse * 10 >= both * 8);
}

TEST_CASE("measure_llama: shards and threads change no number; the input moments; the fallback chain", "[models][measure]") {
  mm::llama_model m = mm::from_llama2c(mixprec::test::tiny_llama());
  const auto streams = some_streams(m);
  // q4_K needs rows of 256: no tiny tensor holds it. ffn_down's rows of 172 hold no 32-wide block
  // either: it falls back to the first last-resort type, f16.
  const std::vector<mixprec::quant_spec> types = {parse_spec("q4_K"), parse_spec("q5_0")};
  const mm::llama_measurement whole = mm::measure_llama(m, streams, {.types = types, .threads = 1});
  const mm::llama_measurement two = mm::measure_llama(m, streams, {.types = types, .threads = 2});
  std::vector<mm::tensor_measurement> shards;
  for (int i = 0; i < 3; ++i) {
    const auto part = mm::measure_llama(m, streams, {.types = types, .threads = 1, .shard_index = i, .shard_count = 3});
    for (const auto& t : part.tensors) CHECK(static_cast<int>(t.index % 3) == i);
    shards.insert(shards.end(), part.tensors.begin(), part.tensors.end());
  }
  std::sort(shards.begin(), shards.end(), [](const auto& a, const auto& b) { return a.index < b.index; });
  REQUIRE(shards.size() == whole.tensors.size());
  REQUIRE(two.tensors.size() == whole.tensors.size());
  std::size_t fell_back = 0;
  for (std::size_t k = 0; k < whole.tensors.size(); ++k) {
    const auto& t = whole.tensors[k];
    REQUIRE(t.types.size() == shards[k].types.size());
    REQUIRE(t.types.size() == two.tensors[k].types.size());
    for (std::size_t j = 0; j < t.types.size(); ++j) {
      CHECK(t.types[j].kl == shards[k].types[j].kl);
      CHECK(t.types[j].kl == two.tensors[k].types[j].kl);
      CHECK(t.types[j].gram_proxy == shards[k].types[j].gram_proxy);
      CHECK(t.types[j].kl_ci95.high == shards[k].types[j].kl_ci95.high);
    }
    CHECK(t.notes.front().find("q4_K left out") == 0);
    if (t.cols == 172) {
      ++fell_back;
      REQUIRE(t.types.size() == 1);
      CHECK(t.types[0].spec == parse_spec("f16"));
      CHECK(t.notes.back().find("fallback types " + mixprec::to_string(parse_spec("f16"))) != std::string::npos);
    } else {
      REQUIRE(t.types.size() == 1);
      CHECK(t.types[0].spec == parse_spec("q5_0"));
    }
  }
  CHECK(fell_back == 4);  // one ffn_down per layer
  // The input moments are the imatrix's sums: wq's inputs are the attention norm's output, one per position.
  const std::string wq = m.layers[1].wq.name();
  CHECK(whole.inputs.count(wq) == 36.0);
  mixprec::input_moments again;
  {
    mm::llama_engine e(m);
    e.observe([&](const std::string& name, const float* x, mixprec::index_t n) { again.observe(name, x, n); });
    for (const auto& s : streams) (void)e.logits(s);
  }
  CHECK(again.sum_squares(wq).isApprox(whole.inputs.sum_squares(wq), 1e-12));
  CHECK(mixprec::test::error_code_of([&] { (void)again.count("no such matrix"); }) == mixprec::errc::invalid_argument);
  const float three[3] = {1, 2, 3};
  CHECK(mixprec::test::error_code_of([&] { again.observe(wq, three, 3); }) == mixprec::errc::shape_mismatch);
}

TEST_CASE("measure_llama: Fisher estimates rank the measured KL; shards, threads and probes change none of them", "[models][measure]") {
  mm::llama_model m = mm::from_llama2c(mixprec::test::tiny_llama());
  const auto streams = some_streams(m);
  const std::vector<mixprec::quant_spec> types = {parse_spec("q4_0"), parse_spec("q5_1"), parse_spec("q8_0")};
  const mm::llama_measurement both = mm::measure_llama(m, streams, {.types = types, .threads = 1, .fisher_draws = 8});
  const mm::llama_measurement fisher = mm::measure_llama(m, streams, {.types = types, .threads = 2, .fisher_draws = 8, .probe = false});
  std::vector<mm::tensor_measurement> shards;
  for (int i = 0; i < 2; ++i) {
    const auto part = mm::measure_llama(m, streams, {.types = types, .threads = 1, .shard_index = i, .shard_count = 2, .fisher_draws = 8, .probe = false});
    shards.insert(shards.end(), part.tensors.begin(), part.tensors.end());
  }
  std::sort(shards.begin(), shards.end(), [](const auto& a, const auto& b) { return a.index < b.index; });
  REQUIRE(fisher.tensors.size() == both.tensors.size());
  REQUIRE(shards.size() == both.tensors.size());
  std::vector<double> kl, estimate;
  for (std::size_t k = 0; k < both.tensors.size(); ++k)
    for (std::size_t j = 0; j < both.tensors[k].types.size(); ++j) {
      const mm::type_measurement& b = both.tensors[k].types[j];
      const mm::type_measurement& f = fisher.tensors[k].types[j];
      REQUIRE(b.fisher);
      REQUIRE(f.fisher);
      CHECK(f.kl == 0.0);  // not probed
      CHECK(b.kl > 0.0);
      CHECK(f.fisher->sequence == b.fisher->sequence);
      CHECK(f.fisher->diagonal == b.fisher->diagonal);
      CHECK(shards[k].types[j].fisher->token == b.fisher->token);
      CHECK(shards[k].types[j].fisher->kfac == b.fisher->kfac);
      CHECK(f.gram_proxy == b.gram_proxy);
      kl.push_back(b.kl);
      estimate.push_back(b.fisher->sequence);
    }
  const auto rho = mixprec::spearman(kl, estimate);
  REQUIRE(rho);
  INFO("Spearman of fisher_sequence against the measured KL over " << kl.size() << " tensor x type: " << *rho);
  CHECK(*rho > 0.9);
  // Without probes the Fisher pass is needed.
  CHECK(mixprec::test::error_code_of([&] { (void)mm::measure_llama(m, streams, {.types = types, .probe = false}); }) == mixprec::errc::invalid_argument);
  CHECK(mixprec::test::error_code_of([&] { (void)mm::measure_llama(m, streams, {.types = types, .fisher_draws = -1}); }) == mixprec::errc::invalid_argument);
}

TEST_CASE("measure_llama with tune_rounds measures GPTQ's bytes: lower Gram proxy and KL, the embedding untouched", "[models][measure][tune]") {
  mm::llama_model m = mm::from_llama2c(mixprec::test::tiny_llama());
  const auto streams = some_streams(m);
  const std::vector<mixprec::quant_spec> types = {parse_spec("q4_0"), parse_spec("q5_1")};
  const mm::llama_measurement plain = mm::measure_llama(m, streams, {.types = types});
  const mm::llama_measurement tuned = mm::measure_llama(m, streams, {.types = types, .tune_rounds = 0});
  REQUIRE(plain.tensors.size() == tuned.tensors.size());
  double gram_plain = 0.0, gram_tuned = 0.0, kl_plain = 0.0, kl_tuned = 0.0;
  int lower = 0, compared = 0;
  for (std::size_t k = 0; k < plain.tensors.size(); ++k) {
    const auto& a = plain.tensors[k];
    const auto& b = tuned.tensors[k];
    REQUIRE(a.types.size() == b.types.size());
    for (std::size_t j = 0; j < a.types.size(); ++j) {
      INFO(a.name << " " << mixprec::to_string(a.types[j].spec));
      CHECK(a.types[j].bytes == b.types[j].bytes);
      if (a.index == 0 || a.types[j].spec.format != mixprec::format_id::ggml_block) {
        CHECK(a.types[j].kl == b.types[j].kl);  // not tuned: the same bytes, the same run
        continue;
      }
      ++compared;
      lower += b.types[j].gram_proxy < a.types[j].gram_proxy ? 1 : 0;
      gram_plain += a.types[j].gram_proxy, gram_tuned += b.types[j].gram_proxy;
      kl_plain += a.types[j].kl, kl_tuned += b.types[j].kl;
    }
  }
  REQUIRE(compared > 20);
  CHECK(lower == compared);  // GPTQ minimises exactly this, on these inputs
  CHECK(gram_tuned < 0.8 * gram_plain);
  CHECK(kl_tuned < kl_plain);
  CHECK(mixprec::test::error_code_of([&] { (void)mm::measure_llama(m, streams, {.types = types, .tune_rounds = 17}); }) == mixprec::errc::invalid_argument);
}

TEST_CASE("measure_llama: refusals", "[models][measure]") {
  mm::llama_model m = mm::from_llama2c(mixprec::test::tiny_llama());
  const std::vector<std::vector<int>> streams = {{1, 5, 9}};
  using mixprec::errc;
  using mixprec::test::error_code_of;
  CHECK(error_code_of([&] { (void)mm::measure_llama(m, streams, {}); }) == errc::invalid_argument);
  const std::vector<mixprec::quant_spec> types = {parse_spec("q8_0")};
  CHECK(error_code_of([&] { (void)mm::measure_llama(m, {}, {.types = types}); }) == errc::invalid_argument);
  CHECK(error_code_of([&] { (void)mm::measure_llama(m, {{1, 2}, {}}, {.types = types}); }) == errc::invalid_argument);
  CHECK(error_code_of([&] { (void)mm::measure_llama(m, streams, {.types = types, .shard_index = 2, .shard_count = 2}); }) == errc::invalid_argument);
  CHECK(error_code_of([&] { (void)mm::measure_llama(m, streams, {.types = types, .shard_count = 0}); }) == errc::invalid_argument);
}

TEST_CASE("with_fallback: requested types, then every fallback that holds, then the first last resort", "[plan][fallback]") {
  auto holds_only = [](std::vector<std::string> names) {
    return [names](const mixprec::quant_spec& s) -> std::optional<std::string> {
      const std::string n = mixprec::to_string(s);
      if (std::find(names.begin(), names.end(), n) == names.end()) return std::nullopt;
      return n;
    };
  };
  const std::vector<mixprec::quant_spec> wanted = {parse_spec("q4_K"), parse_spec("q6_K")};
  auto a = mixprec::with_fallback(wanted, holds_only({"q6_K", "q4_0"}));
  CHECK(!a.fell_back);
  CHECK(a.taken == std::vector<std::string>{"q6_K"});
  auto b = mixprec::with_fallback(wanted, holds_only({"q4_0", "q8_0", mixprec::to_string(parse_spec("f16")), "fp32"}));
  CHECK(b.fell_back);
  CHECK(b.taken == std::vector<std::string>{"q4_0", "q8_0"});
  CHECK(mixprec::spec_list(b) == "q4_0, q8_0");
  const std::string bf16 = mixprec::to_string(parse_spec("bf16"));
  auto c = mixprec::with_fallback(wanted, holds_only({bf16, mixprec::to_string(parse_spec("f32"))}));
  CHECK(c.fell_back);
  CHECK(c.taken == std::vector<std::string>{bf16});
  auto d = mixprec::with_fallback(wanted, holds_only({}));
  CHECK(d.taken.empty());
}
