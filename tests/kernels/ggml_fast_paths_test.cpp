// The quantizers' fast paths (kernels/ref/ggml_ref.hpp's block references: integer max/min scans,
// candidate grids computed side by side, branch-free packing; kernels/ggml_row.hpp's vectorised row
// checks and conversions) against the sequential code they replaced, on adversarial blocks: the bytes
// must be the same, bit for bit. The library's references are these fast forms themselves, so they
// cannot be their own oracle: `seq` below is mixprec's previous scalar code (one candidate at a time,
// as ggml's loops run), which tests/interop checked against llama.cpp itself; where the library keeps
// that sequential code as its fallback (ref::min_max_seq, ref::make_qx_quants_seq) `seq` uses it. The
// interop test checks the new code against llama.cpp too, on fewer matrices.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "mixprec/kernels/ggml_row.hpp"
#include "mixprec/kernels/ref/ggml_ref.hpp"
#include "support/errors.hpp"
#include "support/isa.hpp"

namespace ggml = mixprec::ggml;
using mixprec::ggml_type;

namespace seq {
using namespace mixprec::ggml;
using mixprec::fp16_to_fp32;
using mixprec::fp32_to_fp16;
using ref::best_index_int8;
using ref::kvalues_iq4nl;
using ref::nearest_int;
using ref::pack_2bit;
using ref::pack_q5;
using ref::requantize_k4;
using ref::scale_q3_k;
using ref::to_int8;

MIXPREC_STRICT_FP_BEGIN
inline void quantize_q8_0(const float* x, block_q8_0& y) noexcept {
  float amax = 0.0f;
  for (int j = 0; j < qk8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y.d = fp32_to_fp16(d);
  for (int j = 0; j < qk8_0; ++j)
    y.qs[j] = to_int8(std::roundf(x[j] * id));
}

inline float signed_absmax(const float* x, int n) noexcept {
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

// ggml's scan for the smallest and largest (the first of equal values): the library's fallback.
inline std::pair<float, float> min_max(const float* x, int n) noexcept { return ref::min_max_seq(x, n); }

inline void quantize_q4_0(const float* x, block_q4_0& y) noexcept {
  const float max = signed_absmax(x, qk4_0);
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y.d = fp32_to_fp16(d);
  for (int j = 0; j < qk4_0 / 2; ++j) {
    // x * id is in [-8, 8] (up to rounding): the truncation sees [0.5, 16.5] (see to_int8 for Inf).
    const auto q0 = static_cast<std::uint8_t>(std::min(15, static_cast<int>(to_int8(x[j] * id + 8.5f))));
    const auto q1 = static_cast<std::uint8_t>(std::min(15, static_cast<int>(to_int8(x[j + qk4_0 / 2] * id + 8.5f))));
    y.qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
  }
}

inline void quantize_q4_1(const float* x, block_q4_1& y) noexcept {
  const auto [min, max] = min_max(x, qk4_1);
  const float d = (max - min) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y.d = fp32_to_fp16(d);
  y.m = fp32_to_fp16(min);
  for (int j = 0; j < qk4_1 / 2; ++j) {
    const auto q0 = static_cast<std::uint8_t>(std::min(15, static_cast<int>(to_int8((x[j] - min) * id + 0.5f))));
    const auto q1 = static_cast<std::uint8_t>(std::min(15, static_cast<int>(to_int8((x[j + qk4_1 / 2] - min) * id + 0.5f))));
    y.qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
  }
}

inline void quantize_q5_0(const float* x, block_q5_0& y) noexcept {
  const float max = signed_absmax(x, qk5_0);
  const float d = max / -16.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y.d = fp32_to_fp16(d);
  std::uint8_t L[qk5_0];
  for (int j = 0; j < qk5_0; ++j) L[j] = static_cast<std::uint8_t>(std::min(31, static_cast<int>(to_int8(x[j] * id + 16.5f))));
  pack_q5(L, y.qs, y.qh);
}

inline void quantize_q5_1(const float* x, block_q5_1& y) noexcept {
  const auto [min, max] = min_max(x, qk5_1);
  const float d = (max - min) / 31.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y.d = fp32_to_fp16(d);
  y.m = fp32_to_fp16(min);
  std::uint8_t L[qk5_1];
  for (int j = 0; j < qk5_1; ++j) L[j] = static_cast<std::uint8_t>(to_int8((x[j] - min) * id + 0.5f));
  pack_q5(L, y.qs, y.qh);
}

// ggml's make_qx_quants as its loop runs: the library's fallback after the all-zero check.
inline float make_qx_quants(int n, int nmax, const float* x, std::int8_t* L, const float* qw) noexcept {
  const float max = signed_absmax(x, n);
  if (std::fabs(max) < group_max_eps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  return ref::make_qx_quants_seq(n, nmax, x, L, qw, max);
}

inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, std::uint8_t* L, float* the_min,
                              std::uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad = false) noexcept {
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.0f;
  }
  const auto fnmax = static_cast<float>(nmax);
  float iscale = fnmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + fnmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min))));
      Laux[i] = static_cast<std::uint8_t>(l);
      const float w = weights[i];
      const auto fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

inline void finish_q3_k(const float* x, std::int8_t* L, block_q3_k& y) noexcept {
  for (int j = 0; j < qk_k / 16; ++j) {
    const auto sc = static_cast<std::int8_t>(scale_q3_k(j, y.scales));
    const float d = fp16_to_fp32(y.d) * static_cast<float>(sc);
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = static_cast<std::int8_t>(std::max(-4, std::min(3, nearest_int(x[16 * j + ii] / d))) + 4);
  }
  std::memset(y.hmask, 0, sizeof y.hmask);
  int m = 0;
  std::uint8_t hm = 1;
  std::uint8_t U[qk_k];
  for (int j = 0; j < qk_k; ++j) {
    if (L[j] > 3) {
      y.hmask[m] = static_cast<std::uint8_t>(y.hmask[m] | hm);
      L[j] = static_cast<std::int8_t>(L[j] - 4);
    }
    if (++m == qk_k / 8) {
      m = 0;
      hm = static_cast<std::uint8_t>(hm << 1);
    }
    U[j] = static_cast<std::uint8_t>(L[j]);
  }
  pack_2bit(U, y.qs);
}

inline void finish_q5_k(const float* x, std::uint8_t* L, block_q5_k& y) noexcept {
  requantize_k4(x, L, y, 31);
  std::memset(y.qh, 0, sizeof y.qh);
  std::uint8_t* ql = y.qs;
  std::uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < qk_k; n += 64) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j];
      if (l1 > 15) {
        l1 -= 16;
        y.qh[j] = static_cast<std::uint8_t>(y.qh[j] | m1);
      }
      int l2 = L[n + j + 32];
      if (l2 > 15) {
        l2 -= 16;
        y.qh[j] = static_cast<std::uint8_t>(y.qh[j] | m2);
      }
      ql[j] = static_cast<std::uint8_t>(l1 | (l2 << 4));
    }
    m1 = static_cast<std::uint8_t>(m1 << 2);
    m2 = static_cast<std::uint8_t>(m2 << 2);
    ql += 32;
  }
}

inline void quantize_iq4_nl_impl(int super_block, const float* x, std::uint16_t& dh, std::uint8_t* q4, std::uint16_t* scales_h,
                                 std::uint8_t* scales_l, const float* qw) noexcept {
  constexpr int block = 32, ntry = 7;
  const std::int8_t* values = kvalues_iq4nl;
  float scales[qk_k / 32];
  float weight[block];
  std::uint8_t L[qk_k];
  float sigma2 = 0;
  for (int j = 0; j < super_block; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / static_cast<float>(super_block);
  std::memset(q4, 0, static_cast<std::size_t>(super_block / 2));
  std::memset(L, 0, sizeof L);
  dh = fp32_to_fp16(0.f);
  float max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < super_block / block; ++ib) {
    const float* xb = x + ib * block;
    std::uint8_t* Lb = L + ib * block;
    for (int j = 0; j < block; ++j) weight[j] = qw ? qw[ib * block + j] * std::sqrt(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
    const float max = signed_absmax(xb, block);
    if (std::fabs(max) < group_max_eps) {
      scales[ib] = 0;
      continue;
    }
    float d = -max / static_cast<float>(values[0]);
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < block; ++j) {
      const int l = best_index_int8(16, values, id * xb[j]);
      Lb[j] = static_cast<std::uint8_t>(l);
      const auto q = static_cast<float>(values[l]);
      const float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
      id = static_cast<float>(itry + values[0]) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < block; ++j) {
        const int l = best_index_int8(16, values, id * xb[j]);
        const auto q = static_cast<float>(values[l]);
        const float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    const float abs_d = std::fabs(d);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = d;
    }
  }
  if (super_block / block > 1) {
    *scales_h = 0;
    const float d = -max_scale / 32;
    dh = fp32_to_fp16(d);
    const float id = d != 0.0f ? 1 / d : 0.f;
    for (int ib = 0; ib < super_block / block; ++ib) {
      int l = std::max(-32, std::min(31, nearest_int(id * scales[ib])));
      const float dl = d * static_cast<float>(l);
      const float idl = dl != 0.0f ? 1 / dl : 0.f;
      std::uint8_t* Lb = L + ib * block;
      const float* xb = x + ib * block;
      for (int j = 0; j < block; ++j) Lb[j] = static_cast<std::uint8_t>(best_index_int8(16, values, idl * xb[j]));
      l += 32;
      const auto l_l = static_cast<std::uint8_t>(l & 0xf);
      const auto l_h = static_cast<std::uint8_t>(l >> 4);
      if (ib % 2 == 0) scales_l[ib / 2] = l_l;
      else scales_l[ib / 2] = static_cast<std::uint8_t>(scales_l[ib / 2] | (l_l << 4));
      *scales_h = static_cast<std::uint16_t>(*scales_h | (l_h << 2 * (ib % 8)));
    }
  } else {
    dh = fp32_to_fp16(scales[0]);
    const float id = scales[0] != 0.0f ? 1 / scales[0] : 0;
    for (int j = 0; j < super_block; ++j) L[j] = static_cast<std::uint8_t>(best_index_int8(16, values, id * x[j]));
  }
  for (int i = 0; i < super_block / 32; ++i)
    for (int j = 0; j < 16; ++j) q4[16 * i + j] = static_cast<std::uint8_t>(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}
MIXPREC_STRICT_FP_END
}  // namespace seq

namespace {

// Blocks of n values that stress the fast paths: Gaussian at scales from denormal to 1e11, signed
// zeros (alone and mixed), constant blocks, one outlier, exact ties of the grids (multiples of 1/2,
// small integers), one sign only, denormals.
std::vector<float> block(std::mt19937& rng, int n, int kind) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::uniform_int_distribution<int> small(-8, 8);
  std::vector<float> x(static_cast<std::size_t>(n));
  const float scales[] = {1e-40f, 1e-30f, 1e-12f, 0.02f, 1.0f, 300.0f, 1e11f};
  const float s = scales[static_cast<std::size_t>(rng() % 7)];
  for (int i = 0; i < n; ++i) {
    float& v = x[static_cast<std::size_t>(i)];
    switch (kind % 9) {
      case 0: v = s * g(rng); break;
      case 1: v = (rng() % 2) ? 0.0f : -0.0f; break;
      case 2: v = (rng() % 3) ? ((rng() % 2) ? 0.0f : -0.0f) : s * g(rng); break;
      case 3: v = (kind & 16) ? -0.75f * s : 1.25f; break;
      case 4: v = i == 5 ? 1e3f * s : s * g(rng); break;
      case 5: v = 0.5f * static_cast<float>(small(rng)); break;
      case 6: v = static_cast<float>(small(rng)); break;
      case 7: v = std::fabs(s * g(rng)) * ((kind & 32) ? -1.0f : 1.0f); break;
      default: v = std::numeric_limits<float>::denorm_min() * static_cast<float>(small(rng)); break;
    }
  }
  return x;
}

std::vector<float> importance(std::mt19937& rng, int n, int kind) {
  std::normal_distribution<float> g(0.0f, 1.5f);
  std::vector<float> w(static_cast<std::size_t>(n));
  for (float& v : w) v = kind % 4 == 0 ? 1.0f : kind % 4 == 1 ? std::exp(g(rng)) : kind % 4 == 2 ? ((rng() % 3) ? std::exp(g(rng)) : 0.0f) : 1e-30f;
  return w;
}

template <class Block>
bool same(const Block& a, const Block& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

// Adversarial blocks per test; under CPU emulation a fifth of them (the same generator, every path).
const int rounds = mixprec::test::emulated() ? 600 : 3000;

}  // namespace

TEST_CASE("fast paths: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 blocks equal the sequential code", "[ggml][fast]") {
  std::mt19937 rng(11);
  for (int r = 0; r < rounds; ++r) {
    const auto x = block(rng, 32, r);
    {
      ggml::block_q8_0 a{}, b{};
      ggml::ref::quantize_q8_0(x.data(), a);
      seq::quantize_q8_0(x.data(), b);
      REQUIRE(same(a, b));
    }
    {
      ggml::block_q4_0 a{}, b{};
      ggml::ref::quantize_q4_0(x.data(), a);
      seq::quantize_q4_0(x.data(), b);
      REQUIRE(same(a, b));
    }
    {
      ggml::block_q4_1 a{}, b{};
      ggml::ref::quantize_q4_1(x.data(), a);
      seq::quantize_q4_1(x.data(), b);
      REQUIRE(same(a, b));
    }
    {
      ggml::block_q5_0 a{}, b{};
      ggml::ref::quantize_q5_0(x.data(), a);
      seq::quantize_q5_0(x.data(), b);
      REQUIRE(same(a, b));
    }
    {
      ggml::block_q5_1 a{}, b{};
      ggml::ref::quantize_q5_1(x.data(), a);
      seq::quantize_q5_1(x.data(), b);
      REQUIRE(same(a, b));
    }
    REQUIRE(ggml::ref::signed_absmax(x.data(), 32) == seq::signed_absmax(x.data(), 32));
    REQUIRE(std::signbit(ggml::ref::signed_absmax(x.data(), 32)) == std::signbit(seq::signed_absmax(x.data(), 32)));
    const auto [lo, hi] = ggml::ref::min_max(x.data(), 32);
    const auto [slo, shi] = seq::min_max(x.data(), 32);
    REQUIRE(std::bit_cast<std::uint32_t>(lo) == std::bit_cast<std::uint32_t>(slo));
    REQUIRE(std::bit_cast<std::uint32_t>(hi) == std::bit_cast<std::uint32_t>(shi));
  }
}

TEST_CASE("fast paths: make_qx_quants' side-by-side grids equal ggml's loop", "[ggml][fast]") {
  std::mt19937 rng(12);
  struct shape {
    int n, nmax;
    bool weighted;
  };
  const shape shapes[] = {{16, 32, false}, {16, 32, true}, {32, 8, true}, {32, 16, true}, {16, 4, true}};
  for (int r = 0; r < rounds; ++r) {
    for (const shape& s : shapes) {
      const auto x = block(rng, s.n, r);
      const auto w = importance(rng, s.n, r);
      std::int8_t La[32], Lb[32];
      const float a = ggml::ref::make_qx_quants(s.n, s.nmax, x.data(), La, s.weighted ? w.data() : nullptr);
      const float b = seq::make_qx_quants(s.n, s.nmax, x.data(), Lb, s.weighted ? w.data() : nullptr);
      REQUIRE(std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b));
      REQUIRE(std::memcmp(La, Lb, static_cast<std::size_t>(s.n)) == 0);
    }
  }
}

TEST_CASE("fast paths: make_qkx2_quants' lanes (every instruction-set level) equal ggml's loop, minimum updates included", "[ggml][fast]") {
  std::mt19937 rng(13);
  struct shape {
    int n, nmax;
    float rmin, rdelta;
    int nstep;
    bool mad;
  };
  const shape shapes[] = {{32, 15, -1.f, 0.1f, 20, false},  {32, 31, -0.5f, 0.1f, 15, false}, {32, 15, -0.9f, 0.05f, 36, false},
                          {32, 31, -0.9f, 0.05f, 36, false}, {16, 3, -0.5f, 0.1f, 15, true},    {16, 3, -0.9f, 0.05f, 36, false}};
  for (int r = 0; r < rounds; ++r) {
    const auto levels = mixprec::supported_isas();  // the grids run on the level in use
    mixprec::isa_scope scope(levels[static_cast<std::size_t>(r) % levels.size()]);
    for (const shape& s : shapes) {
      const auto x = block(rng, s.n, r);
      auto w = importance(rng, s.n, r);
      if (r % 5 == 4)
        for (int i = 0; i < s.n; ++i) w[static_cast<std::size_t>(i)] = std::fabs(x[static_cast<std::size_t>(i)]);
      std::uint8_t La[32], Lb[32], aux[32];
      float ma = 0, mb = 0;
      const float a = ggml::ref::make_qkx2_quants(s.n, s.nmax, x.data(), w.data(), La, &ma, aux, s.rmin, s.rdelta, s.nstep, s.mad);
      const float b = seq::make_qkx2_quants(s.n, s.nmax, x.data(), w.data(), Lb, &mb, aux, s.rmin, s.rdelta, s.nstep, s.mad);
      REQUIRE(std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b));
      REQUIRE(std::bit_cast<std::uint32_t>(ma) == std::bit_cast<std::uint32_t>(mb));
      REQUIRE(std::memcmp(La, Lb, static_cast<std::size_t>(s.n)) == 0);
    }
  }
}

TEST_CASE("fast paths: Q3_K's and Q5_K's branch-free packing equals the sequential one", "[ggml][fast]") {
  std::mt19937 rng(14);
  for (int r = 0; r < rounds / 3; ++r) {
    const auto x = block(rng, ggml::qk_k, r);
    ggml::block_q3_k y3{};
    for (auto& b : y3.scales) b = static_cast<std::uint8_t>(rng());
    y3.d = static_cast<std::uint16_t>(r % 4 == 0 ? 0 : rng() % 0x7C00u);
    std::int8_t L3a[ggml::qk_k], L3b[ggml::qk_k];
    for (int i = 0; i < ggml::qk_k; ++i) L3a[i] = L3b[i] = static_cast<std::int8_t>(rng() % 8);
    ggml::block_q3_k a3 = y3, b3 = y3;
    ggml::ref::finish_q3_k(x.data(), L3a, a3);
    seq::finish_q3_k(x.data(), L3b, b3);
    REQUIRE(same(a3, b3));

    ggml::block_q5_k y5{};
    for (auto& b : y5.scales) b = static_cast<std::uint8_t>(rng());
    y5.d = static_cast<std::uint16_t>(r % 4 == 0 ? 0 : rng() % 0x7C00u);
    y5.dmin = static_cast<std::uint16_t>(rng() % 0x7C00u);
    std::uint8_t L5a[ggml::qk_k], L5b[ggml::qk_k];
    for (int i = 0; i < ggml::qk_k; ++i) L5a[i] = L5b[i] = static_cast<std::uint8_t>(rng() % 32);
    ggml::block_q5_k a5 = y5, b5 = y5;
    ggml::ref::finish_q5_k(x.data(), L5a, a5);
    seq::finish_q5_k(x.data(), L5b, b5);
    REQUIRE(same(a5, b5));
  }
}

TEST_CASE("fast paths: IQ4_NL / IQ4_XS tries side by side equal ggml's loop", "[ggml][fast]") {
  std::mt19937 rng(15);
  for (int r = 0; r < rounds / 3; ++r) {
    const auto x = block(rng, ggml::qk_k, r);
    const auto w = importance(rng, ggml::qk_k, r);
    for (const float* qw : {static_cast<const float*>(nullptr), w.data()}) {
      ggml::block_iq4_nl a{}, b{};
      ggml::ref::quantize_iq4_nl_impl(32, x.data(), a.d, a.qs, nullptr, nullptr, qw);
      seq::quantize_iq4_nl_impl(32, x.data(), b.d, b.qs, nullptr, nullptr, qw);
      REQUIRE(same(a, b));
      ggml::block_iq4_xs c{}, d{};
      ggml::ref::quantize_iq4_nl_impl(ggml::qk_k, x.data(), c.d, c.qs, &c.scales_h, c.scales_l, qw);
      seq::quantize_iq4_nl_impl(ggml::qk_k, x.data(), d.d, d.qs, &d.scales_h, d.scales_l, qw);
      REQUIRE(same(c, d));
    }
    for (int v = -1300; v <= 1300; ++v) {  // the grid's value on and between its points, and beyond
      const float t = 0.1f * static_cast<float>(v);
      REQUIRE(ggml::ref::iq4nl_value(t) ==
              static_cast<float>(ggml::ref::kvalues_iq4nl[ggml::ref::best_index_int8(16, ggml::ref::kvalues_iq4nl, t)]));
    }
  }
}

TEST_CASE("fast paths: F32 / F16 / BF16 rows on every instruction-set level equal the scalar conversions", "[ggml][fast]") {
  std::mt19937 rng(16);
  std::vector<float> x;
  for (int k = 0; k < 64; ++k) {
    const auto b = block(rng, 32, k);
    x.insert(x.end(), b.begin(), b.end());
  }
  // Every rounding case of FP16/BF16: values around half ulps, subnormal FP16s, up to 65504.
  std::uniform_int_distribution<std::uint32_t> bits(0, 0x477FE000u);
  for (int k = 0; k < 4096; ++k) {
    const float v = std::bit_cast<float>(bits(rng));
    x.push_back(k % 2 ? -v : v);
  }
  x.push_back(3.0e38f);  // BF16 rounds it to Inf, as ggml's conversion does
  const auto n = x.size() - x.size() % 2;
  for (mixprec::isa level : mixprec::supported_isas()) {
    mixprec::isa_scope scope(level);
    std::vector<std::byte> out(n * 4);
    const std::span<const float> row(x.data(), n);
    ggml::quantize_row(ggml_type::f32, row, std::span<std::byte>(out.data(), n * 4));
    REQUIRE(std::memcmp(out.data(), x.data(), n * 4) == 0);
    std::vector<float> small;  // what FP16 holds (overflow is an error, tested below)
    for (float v : x)
      if ((mixprec::fp32_to_fp16(v) & 0x7C00u) != 0x7C00u) small.push_back(v);
    ggml::quantize_row(ggml_type::f16, small, std::span<std::byte>(out.data(), small.size() * 2));
    for (std::size_t i = 0; i < small.size(); ++i) {
      std::uint16_t h = 0;
      std::memcpy(&h, out.data() + 2 * i, 2);
      REQUIRE(h == mixprec::fp32_to_fp16(small[i]));
    }
    ggml::quantize_row(ggml_type::bf16, row, std::span<std::byte>(out.data(), n * 2));
    for (std::size_t i = 0; i < n; ++i) {
      std::uint16_t h = 0;
      std::memcpy(&h, out.data() + 2 * i, 2);
      REQUIRE(h == mixprec::fp32_to_bf16(x[i]));
    }
    // NaN / Inf anywhere: errc::non_finite for every type; F16 overflow: errc::not_representable.
    for (ggml_type t : mixprec::all_ggml_types) {
      std::vector<float> bad(256, 0.5f);
      bad[200] = std::numeric_limits<float>::quiet_NaN();
      std::vector<std::byte> o(ggml::row_bytes(t, 256));
      REQUIRE(mixprec::test::error_code_of([&] { ggml::quantize_row(t, bad, o); }) == mixprec::errc::non_finite);
    }
    std::vector<float> big(64, 1.0f);
    big[40] = 70000.0f;
    std::vector<std::byte> o(128);
    REQUIRE(mixprec::test::error_code_of([&] { ggml::quantize_row(ggml_type::f16, big, o); }) ==
            mixprec::errc::not_representable);
  }
}
