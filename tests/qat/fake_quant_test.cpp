// Fake quantization: forward values, straight-through and LSQ gradients against finite differences of
// the straight-through surrogate (the rounding offset frozen at the evaluation point, so rounding
// counts as the identity, which is exactly what STE and LSQ assume).
#include <catch2/catch.hpp>

#include <cmath>

#include "mixprec/qat/fake_quant.hpp"
#include "support/data.hpp"

using namespace mixprec;

TEST_CASE("fake_quant forward is dequantize(quantize(W)); backward masks clipped weights", "[qat][ste]") {
  row_matrix w = test::gaussian(6, 64, 1.0f, 1);
  w(2, 5) = 9.0f;  // an outlier that MSE clipping cuts
  fake_quant fq(parse_spec("int4/g32/sym/mse/s16"));
  const row_matrix y = fq.forward(w);
  CHECK(y == dequantize(quantize(w, parse_spec("int4/g32/sym/mse/s16"))));
  const row_matrix ones = row_matrix::Ones(6, 64);
  const row_matrix g = fq.backward(ones);
  CHECK(g(2, 5) == 0.0f);  // clipped: no gradient
  int passed = 0;
  // Surrogate f(w) = d * (clamp(w / d, -z, M - z) + delta) with d, z and the rounding offset delta
  // frozen: derivative 1 inside the clipping range, 0 outside.
  const quantized_tensor& q = fq.quantized();
  for (index_t r = 0; r < 6; ++r)
    for (index_t c = 0; c < 64; ++c) {
      const float d = q.scale(r, c / 32);
      const double z = q.zero_point(r, c / 32);
      const double v = w(r, c) / static_cast<double>(d);
      const double vc = std::clamp(v, -z, 15.0 - z);
      const double delta = std::nearbyint(vc) - vc;
      auto f = [&](double x) { return d * (std::clamp(x / d, -z, 15.0 - z) + delta); };
      passed += g(r, c) == 1.0f;
      const double t = v;  // w * inv in exact arithmetic; the group's extreme sits exactly on -z
      if (std::fabs(t + z) < 1e-3 || std::fabs(t - (15.0 - z)) < 1e-3) continue;  // a kink: no derivative
      const double h = 1e-4 * std::fabs(d);
      const double fd = (f(w(r, c) + h) - f(w(r, c) - h)) / (2 * h);
      CHECK(g(r, c) == Approx(fd).margin(1e-3));
    }
  CHECK(passed < 6 * 64);  // MSE clipping cut some weights...
  CHECK(passed > 6 * 64 * 3 / 4);  // ...but few
  CHECK_THROWS_AS(fq.backward(row_matrix::Ones(2, 2)), error);
}

TEST_CASE("LSQ gradients match finite differences of the straight-through surrogate", "[qat][lsq]") {
  const row_matrix w = test::gaussian(4, 48, 1.0f, 2);
  lsq_quantizer lsq(w, 4, 16);
  lsq.steps() *= 0.3f;  // many weights fall outside [Qn s, Qp s]
  const row_matrix c = test::gaussian(4, 48, 1.0f, 3);  // L = sum(C .* W_hat), dL/dW_hat = C
  const auto grads = lsq.backward(w, c);
  const double qn = lsq.qn(), qp = lsq.qp();
  int clipped = 0;
  for (index_t r = 0; r < 4; ++r)
    for (index_t k = 0; k < 3; ++k) {
      const double s0 = lsq.steps()(r, k);
      // dL/ds of the surrogate sum_j C_j * s * clamp(w_j / s + delta_j, Qn, Qp).
      auto loss = [&](double s) {
        double l = 0.0;
        for (index_t j = 16 * k; j < 16 * (k + 1); ++j) {
          const double v0 = w(r, j) / s0;
          const double delta = std::nearbyint(v0) - v0;
          const double v = w(r, j) / s + delta;
          l += c(r, j) * s * (v0 < qn ? qn : v0 > qp ? qp : v);
        }
        return l;
      };
      const double h = 1e-6 * s0;
      const double fd = (loss(s0 + h) - loss(s0 - h)) / (2 * h);
      CHECK(grads.steps(r, k) * std::sqrt(16.0 * qp) == Approx(fd).epsilon(1e-3).margin(1e-4));
      for (index_t j = 16 * k; j < 16 * (k + 1); ++j) {
        const double v0 = w(r, j) / s0;
        const bool inside = v0 >= qn && v0 <= qp;
        clipped += !inside;
        CHECK(grads.weight(r, j) == (inside ? c(r, j) : 0.0f));
      }
    }
  CHECK(clipped > 0);
}

TEST_CASE("LSQ training lowers the reconstruction error and exports a quantized_tensor", "[qat][lsq]") {
  row_matrix w = test::gaussian(8, 128, 0.05f, 4);
  w(0, 0) = 0.6f;  // a row with an outlier: the best step is not the initial one
  lsq_quantizer lsq(w, 4, 32);
  auto error_of = [&] { return (lsq.forward(w) - w).squaredNorm(); };
  const double before = error_of();
  for (int it = 0; it < 300; ++it) {  // plain gradient descent on L = ||W_hat - W||^2
    const row_matrix grad_out = 2.0f * (lsq.forward(w) - w);
    lsq.steps() -= 0.002f * lsq.backward(w, grad_out).steps;
  }
  const double after = error_of();
  INFO("before " << before << " after " << after);
  CHECK(after < 0.9 * before);
  const quantized_tensor q = lsq.to_quantized(w);
  CHECK(dequantize(q) == lsq.forward(w));
  CHECK(q.bytes() == quantized_bytes(q.spec(), 8, 128));
  CHECK(q.spec() == parse_spec("int4/g32/sym/minmax/s32"));
  CHECK_THROWS_AS(lsq_quantizer(w, 3), error);
  CHECK_THROWS_AS(lsq.forward(row_matrix::Zero(2, 2)), error);
}
