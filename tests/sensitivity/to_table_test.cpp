// to_sensitivity_table: each analysis's results become the planner's table with the right loss and the
// analysed layers' shapes, and bad results are refused with the layer named.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "mixprec/model.hpp"
#include "mixprec/plan/plan.hpp"
#include "mixprec/sensitivity/to_table.hpp"
#include "support/data.hpp"
#include "support/errors.hpp"

using namespace mixprec;

namespace {

const std::vector<quant_spec> candidates = {parse_spec("int4/g16"), parse_spec("int8/channel"), parse_spec("fp16")};

struct two_layers {
  row_matrix a = test::gaussian(12, 32, 0.1f, 1);
  row_matrix b = test::gaussian(20, 48, 0.3f, 2);
  model m;
  two_layers() {
    m.add("a", a);
    m.add("b", b);
  }
};

// The loss the table holds for (layer, spec).
double loss_of(const sensitivity_table& t, const std::string& layer, const quant_spec& spec) {
  for (const layer_shape& l : t.layers())
    if (l.name == layer) return t.loss(l, spec);
  FAIL("no layer " << layer);
  return 0.0;
}

}  // namespace

TEST_CASE("weight scores become a table of the chosen field, with the layers' shapes", "[sensitivity][table]") {
  two_layers t;
  const auto scores = analyze_weights(t.m, candidates);
  const sensitivity_table table = to_sensitivity_table(scores, t.m);
  const std::vector<layer_shape> shapes = table.layers();
  REQUIRE(shapes.size() == 2);
  CHECK(shapes[0] == layer_shape{"a", 12, 32});
  CHECK(shapes[1] == layer_shape{"b", 20, 48});
  for (const weight_score& s : scores) CHECK(loss_of(table, s.layer, s.spec) == s.weight_error);
  // The planner takes it as it is: the same plan as from a table written by hand.
  sensitivity_table by_hand;
  for (const weight_score& s : scores) {
    const layer& l = t.m[s.layer];
    by_hand.add(s.layer, l.rows, l.cols, s.spec, s.weight_error);
  }
  const plan p = plan_builder{table, knapsack_policy{}, bits_budget{6.0}}.build();
  const plan q = plan_builder{by_hand, knapsack_policy{}, bits_budget{6.0}}.build();
  REQUIRE(p.entries.size() == 2);
  CHECK(p.entries[0].spec == q.entries[0].spec);
  CHECK(p.entries[1].spec == q.entries[1].spec);
  // Output error needs a statistic: NaN without one is refused, with one it is the loss.
  CHECK(test::error_code_of([&] { (void)to_sensitivity_table(scores, t.m, weight_loss::output_error); }) == errc::non_finite);
  const Eigen::MatrixXf x = test::gaussian(32, 64, 1.0f, 3);
  t.m["a"].with_activations(x);
  const auto with_x = analyze_weights(std::span<const layer>(&t.m["a"], 1), candidates);
  const sensitivity_table out = to_sensitivity_table(with_x, t.m, weight_loss::output_error);
  for (const weight_score& s : with_x) CHECK(loss_of(out, "a", s.spec) == s.output_error);
  // Results of a layer not given are refused.
  CHECK(test::error_code_of([&] { (void)to_sensitivity_table(scores, std::span<const layer>(&t.m["a"], 1)); }) ==
        errc::invalid_argument);
}

TEST_CASE("a probe report becomes a table of drops; a broken model's infinite drop is refused", "[sensitivity][table]") {
  two_layers t;
  double metric = 1.0;
  const probe_report rep = probe_layers(t.m, candidates, [&] { return metric -= 0.125; });
  const sensitivity_table table = to_sensitivity_table(rep, t.m);
  REQUIRE(rep.results.size() == 6);
  for (const probe_result& r : rep.results) CHECK(loss_of(table, r.layer, r.spec) == r.drop);
  CHECK(table.layers()[1] == layer_shape{"b", 20, 48});
  probe_report broken = rep;
  broken.results[3].drop = std::numeric_limits<double>::infinity();
  CHECK(test::error_code_of([&] { (void)to_sensitivity_table(broken, t.m); }) == errc::non_finite);
}

TEST_CASE("Hessian scores become a table of HAWQ omegas", "[sensitivity][table]") {
  two_layers t;
  const double c = 2.5;
  const hvp_function scaled = [c](const Eigen::VectorXd& v, Eigen::VectorXd& hv) { hv = c * v; };
  const std::vector<hvp_function> hvps = {scaled, scaled};
  const auto h = analyze_hessian(t.m, hvps, candidates);
  const sensitivity_table table = to_sensitivity_table(h, t.m);
  for (const hessian_score& s : h)
    for (const hawq_entry& e : s.candidates) {
      CHECK(loss_of(table, s.layer, e.spec) == e.omega);
      CHECK(e.omega == Approx(c * e.weight_error).epsilon(1e-12));  // Tr(cI)/n = c
    }
  CHECK(table.layers()[0] == layer_shape{"a", 12, 32});
}
