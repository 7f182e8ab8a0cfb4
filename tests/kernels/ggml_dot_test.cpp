// Products on llama.cpp's block types with quantized activations (kernels/ref/ggml_dot_ref.hpp and
// kernels/simd/gemv_ggml.inl): every level equals the scalar reference bit for bit, the reference
// equals an independent double computation on the decoded values, and the activation rounding stays
// within its stated bound of the FP32 product.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "mixprec/formats/ggml.hpp"
#include "mixprec/kernels/gemv.hpp"
#include "mixprec/kernels/quantized_linear.hpp"
#include "mixprec/kernels/ref/ggml_dot_ref.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "support/errors.hpp"
#include "support/isa.hpp"

namespace {

using mixprec::index_t;
using mixprec::ggml_type;
namespace gref = mixprec::ggml::ref;

const ggml_type block_types[] = {ggml_type::q8_0, ggml_type::q4_0, ggml_type::q4_1, ggml_type::q5_0, ggml_type::q5_1, ggml_type::iq4_nl,
                                 ggml_type::q2_k, ggml_type::q3_k, ggml_type::q4_k, ggml_type::q5_k, ggml_type::q6_k, ggml_type::iq4_xs};

mixprec::row_matrix gaussian(index_t rows, index_t cols, float sigma, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  mixprec::row_matrix m(rows, cols);
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = d(gen);
  return m;
}

// The reference product of every row and token: ref::vec_dot on ref-quantized activations.
mixprec::row_matrix reference(const mixprec::quantized_tensor& w, const mixprec::row_matrix& x) {
  gref::quantized_activations act;
  const ggml_type t = w.spec().ggml;
  gref::quantize_activations(mixprec::ggml::vec_dot_type(t), x.data(), x.cols(), x.rows(), static_cast<std::size_t>(x.cols()), act);
  mixprec::row_matrix y(x.rows(), w.rows());
  const std::size_t nb = static_cast<std::size_t>(w.cols() / mixprec::ggml::block_size(t));
  for (index_t b = 0; b < x.rows(); ++b)
    for (index_t r = 0; r < w.rows(); ++r)
      y(b, r) = gref::vec_dot(t, reinterpret_cast<const std::byte*>(w.row_codes(r)), act.row(b), nb);
  return y;
}

bool same_bits(const mixprec::row_matrix& a, const mixprec::row_matrix& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() && std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.size())) == 0;
}

// The activations as the product sees them: each block's codes times its scale, in double.
std::vector<double> decoded_activations(ggml_type t, const float* x, std::size_t n) {
  const auto f = mixprec::ggml::vec_dot_type(t);
  std::vector<std::byte> bytes(mixprec::ggml::dot_row_bytes(f, n));
  gref::quantize_activations(f, x, n, bytes.data());
  std::vector<double> out(n);
  if (f == mixprec::ggml::dot_type::q8_k) {
    for (std::size_t b = 0; b < n / 256; ++b) {
      mixprec::ggml::block_q8_k blk;
      std::memcpy(&blk, bytes.data() + b * sizeof blk, sizeof blk);
      for (int j = 0; j < 256; ++j) out[256 * b + j] = static_cast<double>(blk.d) * blk.qs[j];
      for (int s = 0; s < 16; ++s) {
        int sum = 0;
        for (int j = 0; j < 16; ++j) sum += blk.qs[16 * s + j];
        REQUIRE(blk.bsums[s] == sum);
      }
    }
  } else {
    const std::size_t size = f == mixprec::ggml::dot_type::q8_1 ? sizeof(mixprec::ggml::block_q8_1) : sizeof(mixprec::ggml::block_q8_0);
    for (std::size_t b = 0; b < n / 32; ++b) {
      std::uint16_t d = 0;
      std::memcpy(&d, bytes.data() + b * size, 2);
      const auto* qs = reinterpret_cast<const std::int8_t*>(bytes.data() + b * size + size - 32);
      for (int j = 0; j < 32; ++j) out[32 * b + j] = static_cast<double>(mixprec::fp16_to_fp32(d)) * qs[j];
    }
  }
  return out;
}

}  // namespace

TEST_CASE("ggml products: every level equals the scalar reference bit for bit", "[kernels][ggml_dot]") {
  for (ggml_type t : block_types) {
    const index_t block = mixprec::ggml::block_size(t);
    // Awkward lengths: 1 block, and whole groups of 8 blocks with and without a tail.
    for (index_t blocks : {index_t{1}, index_t{7}, index_t{9}, index_t{17}}) {
      if (block == 256 && blocks > 9) continue;
      const index_t cols = blocks * block;
      // 70 rows: two threads split them (for_row_chunks runs 64 rows or more in parallel).
      const auto w = mixprec::quantize(gaussian(70, cols, 0.02f, 11), mixprec::ggml_spec(t), "w");
      mixprec::row_matrix x = gaussian(3, cols, 1.0f, 12);
      x(0, 0) = 40.0f;                                                 // an outlier block
      x.row(1).head(std::min<index_t>(cols, 256)).setZero();           // all-zero activation blocks (32 and 256)
      const mixprec::row_matrix want = reference(w, x);
      mixprec::test::for_each_isa([&](mixprec::isa i) {
        INFO(mixprec::to_string(t) << " x " << blocks << " blocks");
        mixprec::row_matrix y(x.rows(), w.rows());
        mixprec::gemm(i, w, x, y);
        CHECK(same_bits(y, want));
        mixprec::row_matrix y2(x.rows(), w.rows());
        mixprec::gemm(i, w, x, y2, {.threads = 2});
        CHECK(same_bits(y2, want));
        std::vector<float> yv(static_cast<std::size_t>(w.rows()));
        mixprec::gemv(i, w, {x.data() + cols, static_cast<std::size_t>(cols)}, yv);
        CHECK(std::memcmp(yv.data(), want.row(1).data(), yv.size() * sizeof(float)) == 0);
      });
    }
  }
}

TEST_CASE("ggml products: the reference is the decoded product, and the activation rounding is bounded", "[kernels][ggml_dot]") {
  for (ggml_type t : block_types) {
    INFO(mixprec::to_string(t));
    const index_t cols = 1024;
    const auto w = mixprec::quantize(gaussian(4, cols, 0.02f, 21), mixprec::ggml_spec(t), "w");
    const mixprec::row_matrix wd = mixprec::dequantize(w);
    const mixprec::row_matrix x = gaussian(2, cols, 1.0f, 22);
    const mixprec::row_matrix y = reference(w, x);
    for (index_t b = 0; b < x.rows(); ++b) {
      const std::vector<double> xq = decoded_activations(t, &x(b, 0), static_cast<std::size_t>(cols));
      for (index_t r = 0; r < w.rows(); ++r) {
        double exact = 0.0, magnitude = 0.0, fp32 = 0.0, rounding = 0.0;
        for (index_t j = 0; j < cols; ++j) {
          const double wj = wd(r, j);
          exact += wj * xq[static_cast<std::size_t>(j)];
          magnitude += std::fabs(wj * xq[static_cast<std::size_t>(j)]);
          fp32 += wj * x(b, j);
          rounding += std::fabs(wj) * std::fabs(x(b, j) - xq[static_cast<std::size_t>(j)]);
        }
        // Q8_1's s is d * sum q rounded to FP16 (with the unrounded d): Q4_1 / Q5_1's minimum term m * s is
        // within |m| * sum |xq| * 2^-10 of m * sum xq.
        double s_rounding = 0.0;
        if (mixprec::ggml::vec_dot_type(t) == mixprec::ggml::dot_type::q8_1) {
          const std::size_t size = static_cast<std::size_t>(mixprec::ggml::type_size(t));
          for (index_t k = 0; k < cols / 32; ++k) {
            std::uint16_t m = 0;
            std::memcpy(&m, w.row_codes(r) + static_cast<std::size_t>(k) * size + 2, 2);
            double sum = 0.0;
            for (index_t j = 32 * k; j < 32 * k + 32; ++j) sum += std::fabs(xq[static_cast<std::size_t>(j)]);
            s_rounding += std::fabs(mixprec::fp16_to_fp32(m)) * sum * 0x1.0p-10;
          }
        }
        // FP32 factors, one product per block and its sum: a few roundings per block, relative to sum |w x|.
        CHECK(std::fabs(y(b, r) - exact) <= 1e-5 * magnitude + s_rounding + 1e-12);
        // The activation codes are the nearest to x on their block's grid: |x - d q| <= |d| / 2 (plus the
        // FP16 rounding of Q8_0's d), so y stays within sum |w| |x - xq| of the FP32 product.
        CHECK(std::fabs(y(b, r) - fp32) <= rounding * 1.0001 + 1e-5 * magnitude + s_rounding);
        // And the rounding itself is small: at most about half a step of amax / 127 per element.
        CHECK(rounding <= 0.01 * magnitude + 1e-9);
      }
    }
  }
}

// Offsets of a block's FP16 fields (d, and m or dmin), as formats/ggml_blocks.hpp lays them out.
std::vector<std::size_t> half_fields(ggml_type t) {
  switch (t) {
    case ggml_type::q4_1:
    case ggml_type::q5_1:
    case ggml_type::q4_k:
    case ggml_type::q5_k: return {0, 2};
    case ggml_type::q2_k: return {80, 82};
    case ggml_type::q3_k: return {108};
    case ggml_type::q6_k: return {208};
    default: return {0};
  }
}

TEST_CASE("ggml products: random block bytes (every code and scale field) equal the reference on every level", "[kernels][ggml_dot]") {
  std::mt19937 gen(51);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> half(-0.05f, 0.05f);
  for (ggml_type t : block_types) {
    INFO(mixprec::to_string(t));
    const index_t block = mixprec::ggml::block_size(t);
    const index_t n = (block == 256 ? 10 : 11) * block;  // a group of 8 blocks and a tail
    const auto base = mixprec::quantize(gaussian(6, n, 0.02f, 52), mixprec::ggml_spec(t), "w");
    std::vector<std::uint8_t> codes(base.codes().size());
    for (auto& c : codes) c = static_cast<std::uint8_t>(byte(gen));
    const std::size_t size = static_cast<std::size_t>(mixprec::ggml::type_size(t));
    for (std::size_t b = 0; b < codes.size() / size; ++b)
      for (std::size_t off : half_fields(t)) {
        const std::uint16_t h = mixprec::fp32_to_fp16(half(gen));
        std::memcpy(codes.data() + b * size + off, &h, 2);
      }
    const mixprec::quantized_tensor w(base.spec(), base.rows(), base.cols(), codes, {}, {});
    const mixprec::row_matrix x = gaussian(3, n, 1.0f, 53);
    const mixprec::row_matrix want = reference(w, x);
    mixprec::test::for_each_isa([&](mixprec::isa i) {
      mixprec::row_matrix y(x.rows(), w.rows());
      mixprec::gemm(i, w, x, y);
      CHECK(same_bits(y, want));
    });
  }
}

TEST_CASE("ggml products: a Q8_0 code of -128 (not written by ggml, legal in a file) is exact", "[kernels][ggml_dot]") {
  const index_t cols = 32 * 9;
  auto w = mixprec::quantize(gaussian(3, cols, 0.02f, 31), mixprec::ggml_spec(ggml_type::q8_0), "w");
  std::vector<std::uint8_t> codes(w.codes().begin(), w.codes().end());
  for (std::size_t b = 0; b < codes.size() / 34; ++b)
    for (int j = 0; j < 32; j += 3) codes[34 * b + 2 + static_cast<std::size_t>(j)] = 0x80;  // -128
  const mixprec::quantized_tensor w2(w.spec(), w.rows(), w.cols(), codes, {}, {});
  mixprec::row_matrix x = gaussian(2, cols, 1.0f, 32);
  x.row(1) = -x.row(1).cwiseAbs();  // every sign pairing of -128
  const mixprec::row_matrix want = reference(w2, x);
  mixprec::test::for_each_isa([&](mixprec::isa i) {
    mixprec::row_matrix y(x.rows(), w2.rows());
    mixprec::gemm(i, w2, x, y);
    CHECK(same_bits(y, want));
  });
  // The reference's integers: with every code -128 and every activation code 127, I = -128 * 127 * 32 per block.
  mixprec::ggml::block_q8_0 wb{};
  std::fill(std::begin(wb.qs), std::end(wb.qs), static_cast<std::int8_t>(-128));
  gref::int_block ib;
  (void)gref::to_ints(wb, ib);
  std::int8_t q[32];
  std::fill(std::begin(q), std::end(q), static_cast<std::int8_t>(127));
  CHECK(gref::dot_ints(ib, q).I == -128 * 127 * 32);
}

TEST_CASE("ggml products: refusals and the FP32 reference path", "[kernels][ggml_dot]") {
  const auto w = mixprec::quantize(gaussian(4, 256, 0.02f, 41), mixprec::ggml_spec(ggml_type::q4_k), "w");
  std::vector<float> x(256, 0.5f), y(4);
  x[100] = std::numeric_limits<float>::quiet_NaN();
  CHECK(mixprec::test::error_code_of([&] { mixprec::gemv(w, x, y); }) == mixprec::errc::non_finite);
  x[100] = 0.5f;
  // activations = fp32 decodes rows (the FP32 product of the decoded weights), automatic quantizes x.
  std::vector<float> yf(4), ya(4), yd(4);
  mixprec::gemv(w, x, yf, {.activations = mixprec::activation_type::fp32});
  mixprec::gemv(w, x, ya);
  const mixprec::row_matrix wd = mixprec::dequantize(w);
  for (index_t r = 0; r < 4; ++r) {
    double s = 0.0;
    for (index_t j = 0; j < 256; ++j) s += static_cast<double>(wd(r, j)) * x[static_cast<std::size_t>(j)];
    CHECK(yf[static_cast<std::size_t>(r)] == Approx(s).margin(1e-5));
  }
  // x = 0.5 everywhere is exactly representable on the Q8_K grid (127 * d = 0.5): both paths agree closely.
  for (std::size_t r = 0; r < 4; ++r) CHECK(ya[r] == Approx(yf[r]).margin(1e-5));
  // A layer built on a block type takes the same path.
  mixprec::quantized_linear layer(w);
  layer.forward(x, yd);
  CHECK(std::memcmp(yd.data(), ya.data(), sizeof(float) * 4) == 0);
}
