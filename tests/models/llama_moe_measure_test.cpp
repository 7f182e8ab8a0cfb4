// Measurement and verification of a mixture-of-experts model (models/llama/measure.hpp, verify.hpp)
// against an independent computation. The model's experts are copies of a dense FFN
// (support/tiny_moe.hpp), so layer 0's routing and every expert's inputs there follow from the dense
// model's FFN inputs and the router alone: the per-expert imatrix sums and counts, and the Gram proxy
// through each expert's own inputs, are checked against that; each stack's KL against the model run
// whole with the stack's bytes (each expert searched with its own slice of the importance).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "mixprec/models/calibration.hpp"
#include "mixprec/models/llama.hpp"
#include "mixprec/models/llama/measure.hpp"
#include "mixprec/models/llama/verify.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "mixprec/sensitivity/rank.hpp"
#include "support/errors.hpp"
#include "support/model_kl.hpp"
#include "support/tiny_llama.hpp"
#include "support/tiny_moe.hpp"

namespace mm = mixprec::models;
using mixprec::index_t;
using mixprec::parse_spec;
using mixprec::row_matrix;

namespace {

constexpr int E = 4;  // experts

// The dense model (hidden 96: ggml's blocks tile every matrix, down's rows included).
mm::llama_model dense_model() { return mm::from_llama2c(mixprec::test::tiny_llama({.hidden_dim = 96})); }

// Every input of `name` in the dense model on the streams, position by position (rows), in stream order.
row_matrix dense_inputs(const mm::llama_model& dense, const std::vector<std::vector<int>>& streams, const std::string& name) {
  std::vector<float> seen;
  index_t cols = 0;
  mm::llama_engine e(dense);
  e.observe([&](const std::string& n, const float* x, index_t len) {
    if (n != name) return;
    seen.insert(seen.end(), x, x + len);
    cols = len;
  });
  for (const auto& s : streams) (void)e.logits(s);
  return Eigen::Map<const row_matrix>(seen.data(), static_cast<index_t>(seen.size()) / cols, cols);
}

// The K experts each row of x (a layer's FFN inputs) is routed to: the largest router logits (computed
// here in double; softmax keeps their order).
std::vector<std::vector<int>> routes(const row_matrix& x, const row_matrix& router, int K) {
  std::vector<std::vector<int>> out;
  for (index_t p = 0; p < x.rows(); ++p) {
    const Eigen::VectorXd z = router.cast<double>() * x.row(p).cast<double>().transpose();
    std::vector<int> order(static_cast<std::size_t>(z.size()));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return z[a] > z[b]; });
    out.emplace_back(order.begin(), order.begin() + K);
  }
  return out;
}

// Rows of x routed to expert e.
row_matrix rows_of(const row_matrix& x, const std::vector<std::vector<int>>& route, int e) {
  std::vector<index_t> rows;
  for (std::size_t p = 0; p < route.size(); ++p)
    if (std::find(route[p].begin(), route[p].end(), e) != route[p].end()) rows.push_back(static_cast<index_t>(p));
  row_matrix out(static_cast<index_t>(rows.size()), x.cols());
  for (std::size_t r = 0; r < rows.size(); ++r) out.row(static_cast<index_t>(r)) = x.row(rows[r]);
  return out;
}

}  // namespace

TEST_CASE("measure_llama on experts: per-expert imatrix sums and counts, each expert's Gram proxy, each stack's KL", "[models][measure][moe]") {
  const mm::llama_model dense = dense_model();
  constexpr int K = 2;
  mm::llama_model m = mixprec::test::experts_of(dense, E, K, true);
  const std::vector<std::vector<int>> streams = {{1, 40, 7, 300, 12, 99, 5, 17, 250, 3, 64, 8},
                                                 {1, 200, 201, 9, 33, 410, 2, 77, 18, 6, 120, 45},
                                                 {1, 5, 5, 5, 90, 91, 92, 500, 11, 260, 31, 4}};
  const std::vector<mixprec::quant_spec> types = {parse_spec("q4_0"), parse_spec("q8_0"), parse_spec("f32")};
  const mm::llama_measurement r = mm::measure_llama(m, streams, {.types = types});
  REQUIRE(r.positions == 36);
  REQUIRE(r.tensors.size() == 1 + 4 * 7 + 1);  // token_embd; q k v o and three stacks per layer; the classifier

  // Layer 0's experts see what the dense model's FFN sees, split by the router.
  const row_matrix ffn_in = dense_inputs(dense, streams, dense.layers[0].gate.name());
  const row_matrix down_in = dense_inputs(dense, streams, dense.layers[0].down.name());
  const auto route = routes(ffn_in, m.layers[0].gate_inp.fp32(), K);
  for (const auto& [stack, x] : {std::pair{std::string("blk.0.ffn_gate_exps.weight"), &ffn_in}, {"blk.0.ffn_up_exps.weight", &ffn_in},
                                 {"blk.0.ffn_down_exps.weight", &down_in}}) {
    INFO(stack);
    const mixprec::input_moments::moments& got = r.inputs.at(stack);
    REQUIRE(got.n_mat() == E);
    REQUIRE(got.cols() == x->cols());
    for (int e = 0; e < E; ++e) {
      const row_matrix xe = rows_of(*x, route, e);
      CHECK(got.counts[static_cast<std::size_t>(e)] == static_cast<double>(xe.rows()));
      const Eigen::VectorXd want = xe.cast<double>().array().square().colwise().sum().transpose();
      CHECK((got.sum_squares.segment(e * x->cols(), x->cols()) - want).cwiseAbs().maxCoeff() <= 1e-5 * want.maxCoeff());
    }
  }
  // Every stack: each (position, chosen expert) pair counted once; the counts reported with the tensor.
  std::size_t stacks = 0;
  for (const auto& t : r.tensors) {
    if (t.name.find("_exps.") == std::string::npos) {
      CHECK(t.expert_counts.empty());
      continue;
    }
    ++stacks;
    REQUIRE(t.expert_counts.size() == E);
    CHECK(std::accumulate(t.expert_counts.begin(), t.expert_counts.end(), 0.0) == 36.0 * K);
    CHECK(t.expert_counts == r.inputs.at(t.name).counts);
  }
  CHECK(stacks == 12);

  const auto matrices = mm::llama_measure_matrices(m);
  for (const auto& t : r.tensors) {
    if (t.name.find("_exps.") == std::string::npos) continue;
    INFO(t.name);
    const row_matrix w = matrices[t.index].first->to_float();
    const Eigen::VectorXf imp = r.inputs.mean_squares(t.name);
    const std::span<const float> search(imp.data(), static_cast<std::size_t>(imp.size()));
    for (const auto& x : t.types) {
      if (x.spec.format == mixprec::format_id::fp32) {
        CHECK(x.kl == 0.0);
        continue;
      }
      // The bytes a writer stores: expert by expert, each with its own importance.
      const mixprec::quantized_tensor q = mixprec::quantize_experts(w, E, x.spec, t.name, search);
      CHECK(x.bytes == q.bytes());
      const row_matrix d = mixprec::dequantize(q) - w;
      CHECK(x.weight_error == Approx(d.cast<double>().squaredNorm()).epsilon(1e-9));
      CHECK(x.kl == Approx(mixprec::test::one_tensor_kl(m, streams, t.name, mm::llama_matrix(t.name, q))).epsilon(1e-6));
      CHECK(x.kl > 0.0);
      if (t.name.starts_with("blk.0.")) {  // the Gram proxy through each expert's own inputs
        const row_matrix& in = t.name.find("down") != std::string::npos ? down_in : ffn_in;
        const index_t per = w.rows() / E;
        double gram = 0.0;
        for (int e = 0; e < E; ++e) gram += (rows_of(in, route, e).cast<double>() * d.middleRows(e * per, per).cast<double>().transpose()).squaredNorm();
        CHECK(x.gram_proxy == Approx(gram / 36.0).epsilon(1e-4));
      }
    }
  }
}

TEST_CASE("measure_llama on experts: an expert no position reaches weighs 1 in the search and 0 in the proxy", "[models][measure][moe]") {
  // One expert used; layer 0's expert 3 routes by the mean of experts 0's and 1's router rows, so its
  // logit is never above both (it is never the one chosen).
  mm::llama_model m = mixprec::test::experts_of(dense_model(), E, 1, true);
  row_matrix router = m.layers[0].gate_inp.fp32();
  router.row(3) = (router.row(0) + router.row(1)) / 2.0f;
  m.layers[0].gate_inp = mm::llama_matrix(m.layers[0].gate_inp.name(), router);
  const std::vector<std::vector<int>> streams = {{1, 40, 7, 300, 12, 99, 5, 17}, {1, 200, 201, 9, 33, 410, 2, 77}};
  const mm::llama_measurement r = mm::measure_llama(m, streams, {.types = {parse_spec("q4_0")}, .shard_index = 0, .shard_count = 2});
  const std::string stack = "blk.0.ffn_up_exps.weight";
  const auto& moments = r.inputs.at(stack);
  REQUIRE(moments.counts.size() == E);
  CHECK(moments.counts[3] == 0.0);
  CHECK(moments.counts[0] + moments.counts[1] + moments.counts[2] == 16.0);
  const Eigen::VectorXf imp = r.inputs.mean_squares(stack);
  const index_t cols = moments.cols();
  CHECK(imp.segment(3 * cols, cols) == Eigen::VectorXf::Ones(cols));  // llama-quantize's rule for a count of 0
  CHECK(imp.segment(0, cols) != Eigen::VectorXf::Ones(cols));
  // The proxy: each expert's squared error weighted by its sums of x^2 per position; none for expert 3.
  const auto it = std::find_if(r.tensors.begin(), r.tensors.end(), [&](const mm::tensor_measurement& t) { return t.name == stack; });
  REQUIRE(it != r.tensors.end());  // matrix 6, in shard 0 of 2
  const row_matrix w = mm::llama_measure_matrices(m)[it->index].first->to_float();
  const row_matrix d = mixprec::dequantize(mixprec::quantize_experts(w, E, parse_spec("q4_0"), stack,
                                                                     std::span<const float>(imp.data(), static_cast<std::size_t>(imp.size())))) - w;
  const index_t per = w.rows() / E;
  double proxy = 0.0;
  for (int e = 0; e < 3; ++e)
    proxy += (d.middleRows(e * per, per).cast<double>().array().square().rowwise() * (moments.sum_squares.segment(e * cols, cols) / 16.0).transpose().array()).sum();
  CHECK(it->types.at(0).proxy == Approx(proxy).epsilon(1e-7));  // the importance is rounded to float first
  CHECK(d.middleRows(3 * per, per).squaredNorm() > 0.0f);  // expert 3's error is there, and left out of the proxy
}

TEST_CASE("measure_llama on experts: Fisher estimates of every tensor, the stacks' from each expert's routed gradients, rank the KL",
          "[models][measure][moe]") {
  mm::llama_model m = mixprec::test::experts_of(dense_model(), E, 2, true);
  const std::vector<std::vector<int>> streams = {{1, 40, 7, 300, 12, 99, 5, 17, 250, 3, 64, 8}, {1, 200, 201, 9, 33, 410, 2, 77, 18, 6, 120, 45}};
  const std::vector<mixprec::quant_spec> types = {parse_spec("q4_0"), parse_spec("q5_1"), parse_spec("q8_0")};
  const mm::llama_measurement both = mm::measure_llama(m, streams, {.types = types, .threads = 1, .fisher_draws = 8});
  const mm::llama_measurement shard = mm::measure_llama(m, streams, {.types = types, .threads = 2, .shard_index = 1, .shard_count = 3, .fisher_draws = 8,
                                                                     .probe = false});
  std::vector<double> kl, estimate;
  std::size_t stacks = 0;
  for (const auto& t : both.tensors)
    for (const auto& x : t.types) {
      REQUIRE(x.fisher);
      CHECK(std::isfinite(x.fisher->sequence));
      CHECK(x.fisher->diagonal > 0.0);
      CHECK(x.fisher->kfac > 0.0);
      kl.push_back(x.kl);
      estimate.push_back(x.fisher->sequence);
      if (t.name.find("_exps.") != std::string::npos) ++stacks;
    }
  CHECK(stacks == 12 * types.size());
  // A shard on other threads, without probes, prices each of its tensors as the whole run does.
  for (const auto& t : shard.tensors) {
    REQUIRE(t.index % 3 == 1);
    const mm::tensor_measurement& w = both.tensors[t.index];
    REQUIRE(w.types.size() == t.types.size());
    for (std::size_t j = 0; j < t.types.size(); ++j) {
      CHECK(t.types[j].fisher->sequence == w.types[j].fisher->sequence);
      CHECK(t.types[j].fisher->diagonal == w.types[j].fisher->diagonal);
    }
  }
  const auto rho = mixprec::spearman(kl, estimate);
  REQUIRE(rho);
  INFO("Spearman of fisher_sequence against the measured KL over " << kl.size() << " tensor x type: " << *rho);
  CHECK(*rho > 0.9);
}

TEST_CASE("plan_verifier on experts: a plan's KL is the model run whole with its bytes, each expert searched with its importance", "[models][verify][moe]") {
  mm::llama_model m = mixprec::test::experts_of(dense_model(), E, 2, false);
  mixprec::plan p;
  for (auto& [mat, layer] : mm::llama_measure_matrices(m)) {
    mixprec::plan_entry e;
    e.layer = mat->name(), e.spec = parse_spec(mat->name().find("_exps.") != std::string::npos ? "q4_0" : "q8_0"), e.rows = mat->rows(),
    e.cols = mat->cols();
    p.entries.push_back(e);
  }
  // An importance for one stack, different for each expert.
  const std::string stack = "blk.1.ffn_gate_exps.weight";
  Eigen::VectorXf imp(E * m.config.dim);
  for (index_t i = 0; i < imp.size(); ++i) imp[i] = 0.1f + static_cast<float>((i * 7919) % 101) / 10.0f;
  mm::plan_verifier plain(m, 1, {.streams = 2, .length = 12, .seed = 3, .threads = 1});
  mm::plan_verifier searched(m, 1, {.streams = 2, .length = 12, .seed = 3, .threads = 1}, mm::ggml_matrix_quantizer({{stack, imp}}));
  const auto direct = [&](bool with_importance) {
    mm::llama_model q = m;
    for (auto& [mat, layer] : mm::llama_measure_matrices(q)) {
      const mixprec::quant_spec spec = p.at(mat->name()).spec;
      const row_matrix w = mat->to_float();
      *mat = mm::llama_matrix(mat->name(), with_importance && mat->name() == stack
                                               ? mixprec::quantize_experts(w, E, spec, stack, std::span<const float>(imp.data(), static_cast<std::size_t>(imp.size())))
                                               : mixprec::quantize(w, spec, mat->name()));
    }
    return mixprec::test::whole_model_kl(m, q, plain.streams());
  };
  const double a = plain.verify(p).kl, b = searched.verify(p).kl;
  CHECK(a > 0.0);
  CHECK(a == Approx(direct(false)).epsilon(1e-9));
  CHECK(b == Approx(direct(true)).epsilon(1e-9));
  CHECK(a != b);
  // An importance of neither cols nor experts x cols values is refused.
  mm::plan_verifier bad(m, 1, {.streams = 1, .length = 4, .threads = 1}, mm::ggml_matrix_quantizer({{stack, Eigen::VectorXf::Ones(m.config.dim + 1)}}));
  CHECK(mixprec::test::error_code_of([&] { (void)bad.verify(p); }) == mixprec::errc::shape_mismatch);
}

TEST_CASE("quantize_experts: each matrix of a stack searched with its own importance; refusals", "[quantize][moe]") {
  const mixprec::row_matrix w = mixprec::row_matrix::Random(3 * 8, 64);
  Eigen::VectorXf imp(3 * 64);
  for (index_t i = 0; i < imp.size(); ++i) imp[i] = 0.01f + static_cast<float>((i * 31) % 17);
  const mixprec::quant_spec spec = parse_spec("q4_K");
  const mixprec::row_matrix w256 = mixprec::row_matrix::Random(3 * 8, 256);
  Eigen::VectorXf imp256(3 * 256);
  for (index_t i = 0; i < imp256.size(); ++i) imp256[i] = 0.01f + static_cast<float>((i * 31) % 17);
  const std::span<const float> all(imp256.data(), static_cast<std::size_t>(imp256.size()));
  const mixprec::quantized_tensor q = mixprec::quantize_experts(w256, 3, spec, "s", all);
  for (int e = 0; e < 3; ++e) {
    const mixprec::quantized_tensor own = mixprec::quantize(w256.middleRows(e * 8, 8), spec, "s", all.subspan(static_cast<std::size_t>(e) * 256, 256));
    const auto rb = q.row_bytes();
    CHECK(std::equal(own.codes().begin(), own.codes().end(), q.codes().begin() + static_cast<std::ptrdiff_t>(e * 8 * rb)));
  }
  // Expert 1 searched with expert 0's slice gives other bytes: the slices are used.
  const mixprec::quantized_tensor other = mixprec::quantize(w256.middleRows(8, 8), spec, "s", all.subspan(0, 256));
  CHECK_FALSE(std::equal(other.codes().begin(), other.codes().end(), q.codes().begin() + static_cast<std::ptrdiff_t>(8 * q.row_bytes())));
  // Without importance: the stack quantized whole (ggml's rows are independent).
  const mixprec::quantized_tensor whole = mixprec::quantize(w256, spec, "s"), stacked = mixprec::quantize_experts(w256, 3, spec, "s");
  CHECK(std::equal(whole.codes().begin(), whole.codes().end(), stacked.codes().begin(), stacked.codes().end()));
  using mixprec::errc;
  using mixprec::test::error_code_of;
  CHECK(error_code_of([&] { (void)mixprec::quantize_experts(w, 5, parse_spec("q8_0"), "s"); }) == errc::shape_mismatch);
  CHECK(error_code_of([&] { (void)mixprec::quantize_experts(w, 3, parse_spec("q8_0"), "s", std::span<const float>(imp.data(), 64)); }) ==
        errc::shape_mismatch);
  CHECK(error_code_of([&] { (void)mixprec::quantize_experts(w, 3, parse_spec("int4/g32"), "s"); }) == errc::unsupported);
  CHECK(error_code_of([&] { (void)mixprec::quantize_experts(w, 0, parse_spec("q8_0"), "s"); }) == errc::shape_mismatch);
}
