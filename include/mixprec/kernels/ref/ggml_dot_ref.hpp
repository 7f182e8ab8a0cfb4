// Products on llama.cpp's block types as ggml's CPU backend computes them: the activations are
// quantized to the block format ggml pairs with the weight type (its vec_dot_type), and each block's
// product is an exact integer. This is the scalar truth of kernels/simd/gemv_ggml.inl, which must
// match it bit for bit on every instruction-set level.
//
// Activations (ggml's quantize_row_q8_*_ref, ggml-quants.c), per block of 32 (Q8_0, Q8_1) or 256 (Q8_K):
// - Q8_0: amax = max |x|; d = amax / 127; id = d ? 1/d : 0; q = roundf(x * id); d stored as FP16.
// - Q8_1: Q8_0's d and q, and s = FP16(d * sum q) (d unrounded FP32, sum an integer).
// - Q8_K: max = the value of largest magnitude with its sign (first on ties); iscale = -127 / max;
//   q = min(127, nearest_int(iscale * x)) (round half to even); d = 1 / iscale (FP32); bsums = the 16
//   sums of 16 consecutive q. An all-zero block: d = 0, q = 0.
//   Every code lies in [-127, 127] (the SIMD kernels rely on it: |q| fits a signed byte's magnitude).
//
// Weights: each block is read as integer codes c_j, per sub-block integer scales S and minimums M, and
// FP16/FP32 block factors, exactly as its dequantize_row_* reads it (kernels/ref/ggml_ref.hpp):
//   Q8_0 c = q; Q4_0 c = nibble - 8; Q5_0 c = 5 bits - 16; IQ4_NL c = kvalues_iq4nl[nibble];
//   Q4_1 / Q5_1 c = nibble / 5 bits, minimum m (FP16);
//   Q4_K / Q5_K: 8 sub-blocks of 32, 6-bit S and M, c = 4 / 5 bits;   Q2_K: 16 of 16, 4-bit S, M, c = 2 bits;
//   Q3_K: 16 of 16, S = 6 bits - 32, c = 3 bits - 4;   Q6_K: 16 of 16, S int8, c = 6 bits - 32;
//   IQ4_XS: 8 of 32, S = 6 bits - 32, c = kvalues_iq4nl[nibble].
// Per block k, in 32-bit integers, exactly (bounds: |I| < 2^28 for every type):
//   I = sum over sub-blocks s of S_s * sum_{j in s} c_j q_j,   J = sum_s M_s * (sum_{j in s} q_j)
// and in FP32, each operation rounded (no FMA contraction in any build: a strict region):
//   a = d_w * d_x;  t = a * float(I);  then, for types with a minimum,
//   Q4_1 / Q5_1: b = m_w * s_x;   Q2_K / Q4_K / Q5_K: b = -((dmin_w * d_x) * float(J)).
// Accumulation: eight accumulators, block k into acc[k mod 8]: acc = acc + t, then acc = acc + b;
// result ((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7)).
// ggml sums its blocks in another order, and llama.cpp's x86 builds quantize Q8_0 / Q8_1 activations
// with their SIMD quantize_row_q8_0/q8_1 (id = 127 / amax, round half to even) rather than the _ref
// ones used here, so results agree with llama.cpp's to FP32 rounding and, rarely, one activation
// code; what is fixed here is that every mixprec level gives the same bits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "mixprec/types.hpp"
#include "mixprec/detail/strict_fp.hpp"
#include "mixprec/error.hpp"
#include "mixprec/formats/float_convert.hpp"
#include "mixprec/formats/ggml_blocks.hpp"
#include "mixprec/kernels/ref/ggml_ref.hpp"

namespace mixprec::ggml {

// The activation formats of ggml's products (ggml-cpu's type_traits_cpu[t].vec_dot_type).
enum class dot_type : unsigned char { f32, f16, bf16, q8_0, q8_1, q8_k };

// The format ggml quantizes a product's activations to for weights of type t.
[[nodiscard]] constexpr dot_type vec_dot_type(ggml_type t) noexcept {
  switch (t) {
    case ggml_type::f32: return dot_type::f32;
    case ggml_type::f16: return dot_type::f16;
    case ggml_type::bf16: return dot_type::bf16;
    case ggml_type::q4_1:
    case ggml_type::q5_1: return dot_type::q8_1;
    case ggml_type::q2_k:
    case ggml_type::q3_k:
    case ggml_type::q4_k:
    case ggml_type::q5_k:
    case ggml_type::q6_k:
    case ggml_type::iq4_xs: return dot_type::q8_k;
    default: return dot_type::q8_0;
  }
}

// Bytes of n activations in block format d (n a multiple of its block, 32 or 256; float formats: n
// values). The caller checks n (the weight's row length, which its own block tiles).
[[nodiscard]] constexpr std::size_t dot_row_bytes(dot_type d, std::size_t n) noexcept {
  switch (d) {
    case dot_type::f32: return 4 * n;
    case dot_type::f16:
    case dot_type::bf16: return 2 * n;
    case dot_type::q8_0: return n / 32 * sizeof(block_q8_0);
    case dot_type::q8_1: return n / 32 * sizeof(block_q8_1);
    case dot_type::q8_k: return n / qk_k * sizeof(block_q8_k);
  }
  return 0;
}

// The type of a weight block struct.
template <class Block>
inline constexpr ggml_type block_type = [] {
  if constexpr (std::is_same_v<Block, block_q8_0>) return ggml_type::q8_0;
  else if constexpr (std::is_same_v<Block, block_q4_0>) return ggml_type::q4_0;
  else if constexpr (std::is_same_v<Block, block_q4_1>) return ggml_type::q4_1;
  else if constexpr (std::is_same_v<Block, block_q5_0>) return ggml_type::q5_0;
  else if constexpr (std::is_same_v<Block, block_q5_1>) return ggml_type::q5_1;
  else if constexpr (std::is_same_v<Block, block_iq4_nl>) return ggml_type::iq4_nl;
  else if constexpr (std::is_same_v<Block, block_q2_k>) return ggml_type::q2_k;
  else if constexpr (std::is_same_v<Block, block_q3_k>) return ggml_type::q3_k;
  else if constexpr (std::is_same_v<Block, block_q4_k>) return ggml_type::q4_k;
  else if constexpr (std::is_same_v<Block, block_q5_k>) return ggml_type::q5_k;
  else if constexpr (std::is_same_v<Block, block_q6_k>) return ggml_type::q6_k;
  else {
    static_assert(std::is_same_v<Block, block_iq4_xs>, "not a weight block");
    return ggml_type::iq4_xs;
  }
}();

MIXPREC_STRICT_FP_BEGIN
namespace ref {

inline void quantize_q8_1(const float* x, block_q8_1& y) noexcept {
  const float amax = max_abs(x, 32);
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y.d = to_half(d);
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    y.qs[j] = id <= std::numeric_limits<float>::max() ? static_cast<std::int8_t>(round_away(x[j] * id))
                                                        : to_int8(std::roundf(x[j] * id));
    sum += y.qs[j];
  }
  y.s = to_half(static_cast<float>(sum) * d);
}

inline void quantize_q8_k(const float* x, block_q8_k& y) noexcept {
  float max = 0.0f, amax = 0.0f;
  for (int j = 0; j < qk_k; ++j) {
    const float ax = std::fabs(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  if (amax == 0.0f) {
    y = block_q8_k{};
    return;
  }
  const float iscale = -127.0f / max;
  for (int j = 0; j < qk_k; ++j) y.qs[j] = static_cast<std::int8_t>(std::min(127, nearest_int(iscale * x[j])));
  for (int s = 0; s < qk_k / 16; ++s) {
    int sum = 0;
    for (int j = 0; j < 16; ++j) sum += y.qs[16 * s + j];
    y.bsums[s] = static_cast<std::int16_t>(sum);
  }
  y.d = 1.0f / iscale;
}

// The blocks of n activations, one quantize(x, block) each, stored one after another.
template <class Block, class Quantize>
void quantize_activation_blocks(const float* x, std::size_t n, std::byte* out, Quantize quantize) noexcept {
  constexpr std::size_t bs = sizeof(Block::qs);  // elements per block: 32, or 256 for Q8_K
  for (std::size_t b = 0; b < n / bs; ++b) {
    Block blk;
    quantize(x + bs * b, blk);
    std::memcpy(out + b * sizeof blk, &blk, sizeof blk);
  }
}
// n activations (finite; n a multiple of the format's block) into out (dot_row_bytes(d, n) bytes), for
// the block formats q8_0, q8_1, q8_k.
inline void quantize_activations(dot_type d, const float* x, std::size_t n, std::byte* out) noexcept {
  switch (d) {
    case dot_type::q8_0: return quantize_activation_blocks<block_q8_0>(x, n, out, quantize_q8_0);
    case dot_type::q8_1: return quantize_activation_blocks<block_q8_1>(x, n, out, quantize_q8_1);
    case dot_type::q8_k: return quantize_activation_blocks<block_q8_k>(x, n, out, quantize_q8_k);
    default: return;
  }
}

// A batch of activation rows (one per token) quantized to a block format, with each 32-element block's
// scale as FP32 (fp16_to_fp32(d)) and Q8_1's s, zero-padded to whole groups of 8 blocks (the SIMD
// kernels load eight at a time).
struct quantized_activations {
  dot_type type = dot_type::q8_0;
  index_t tokens = 0;
  std::size_t blocks = 0;     // per token
  std::size_t row_bytes = 0;  // per token
  std::size_t padded = 0;     // blocks rounded up to a multiple of 8
  std::vector<std::byte> data;
  std::vector<float> d, s;

  [[nodiscard]] const std::byte* row(index_t t) const noexcept { return data.data() + static_cast<std::size_t>(t) * row_bytes; }
  [[nodiscard]] const float* scales(index_t t) const noexcept { return d.data() + static_cast<std::size_t>(t) * padded; }
  [[nodiscard]] const float* sums(index_t t) const noexcept {  // Q8_1 only (null otherwise)
    return s.empty() ? nullptr : s.data() + static_cast<std::size_t>(t) * padded;
  }
};

// Quantizes `tokens` rows of n activations (row t at x + t * ldx; n a multiple of the format's block,
// which the weight's row length is) to the block format f (q8_0, q8_1 or q8_k), reusing out's storage.
// Throws errc::non_finite for a NaN or Inf activation (ggml would quantize it to garbage).
inline void quantize_activations(dot_type f, const float* x, index_t ldx, index_t tokens, std::size_t n, quantized_activations& out) {
  for (index_t t = 0; t < tokens; ++t)
    for (std::size_t j = 0; j < n; ++j)
      if (!std::isfinite(x[t * ldx + static_cast<index_t>(j)]))
        throw error(errc::non_finite, "ggml product: activation " + std::to_string(j) + " of token " + std::to_string(t) +
                                          " is " + (std::isnan(x[t * ldx + static_cast<index_t>(j)]) ? "NaN" : "Inf"));
  out.type = f;
  out.tokens = tokens;
  out.blocks = n / (f == dot_type::q8_k ? qk_k : 32);
  out.row_bytes = dot_row_bytes(f, n);
  out.padded = (out.blocks + 7) / 8 * 8;
  const auto nt = static_cast<std::size_t>(tokens);
  out.data.resize(nt * out.row_bytes);
  out.d.assign(nt * out.padded, 0.0f);
  out.s.assign(f == dot_type::q8_1 ? nt * out.padded : 0, 0.0f);
  for (std::size_t t = 0; t < nt; ++t) {
    std::byte* row = out.data.data() + t * out.row_bytes;
    quantize_activations(f, x + static_cast<index_t>(t) * ldx, n, row);
    if (f == dot_type::q8_0)
      for (std::size_t b = 0; b < out.blocks; ++b) {
        block_q8_0 blk;
        std::memcpy(&blk, row + b * sizeof blk, sizeof blk);
        out.d[t * out.padded + b] = fp16_to_fp32(blk.d);
      }
    if (f == dot_type::q8_1)
      for (std::size_t b = 0; b < out.blocks; ++b) {
        block_q8_1 blk;
        std::memcpy(&blk, row + b * sizeof blk, sizeof blk);
        out.d[t * out.padded + b] = fp16_to_fp32(blk.d);
        out.s[t * out.padded + b] = fp16_to_fp32(blk.s);
      }
  }
}

// One weight block as integers: codes c, per sub-block scales S and minimums M (see the top).
struct int_block {
  std::int8_t c[qk_k];
  std::int32_t S[16] = {};
  std::int32_t M[16] = {};  // zero for the types without minimums
  int sub = 32;   // elements per sub-block
  int subs = 1;   // sub-blocks
};

// The block's FP32 factors: d (the scale of S), and the minimum's factor (m for Q4_1/Q5_1, dmin for
// the K-quants with minimums); has_min says whether the block has one.
struct block_factors {
  float d = 0.0f;
  float min = 0.0f;
  bool has_min = false;
};

inline block_factors to_ints(const block_q8_0& b, int_block& o) noexcept {
  for (int j = 0; j < 32; ++j) o.c[j] = b.qs[j];
  o.S[0] = 1;
  return {fp16_to_fp32(b.d)};
}
inline block_factors to_ints(const block_q4_0& b, int_block& o) noexcept {
  for (int j = 0; j < 16; ++j) {
    o.c[j] = static_cast<std::int8_t>((b.qs[j] & 0xF) - 8);
    o.c[j + 16] = static_cast<std::int8_t>((b.qs[j] >> 4) - 8);
  }
  o.S[0] = 1;
  return {fp16_to_fp32(b.d)};
}
inline block_factors to_ints(const block_q4_1& b, int_block& o) noexcept {
  for (int j = 0; j < 16; ++j) {
    o.c[j] = static_cast<std::int8_t>(b.qs[j] & 0xF);
    o.c[j + 16] = static_cast<std::int8_t>(b.qs[j] >> 4);
  }
  o.S[0] = 1;
  return {fp16_to_fp32(b.d), fp16_to_fp32(b.m), true};
}
inline std::uint32_t q5_high_bits(const std::uint8_t* qh) noexcept {
  std::uint32_t h = 0;
  std::memcpy(&h, qh, 4);
  return h;
}
inline block_factors to_ints(const block_q5_0& b, int_block& o) noexcept {
  const std::uint32_t h = q5_high_bits(b.qh);
  for (int j = 0; j < 16; ++j) {
    o.c[j] = static_cast<std::int8_t>(((b.qs[j] & 0xF) | (((h >> j) & 1u) << 4)) - 16);
    o.c[j + 16] = static_cast<std::int8_t>(((b.qs[j] >> 4) | (((h >> (j + 16)) & 1u) << 4)) - 16);
  }
  o.S[0] = 1;
  return {fp16_to_fp32(b.d)};
}
inline block_factors to_ints(const block_q5_1& b, int_block& o) noexcept {
  const std::uint32_t h = q5_high_bits(b.qh);
  for (int j = 0; j < 16; ++j) {
    o.c[j] = static_cast<std::int8_t>((b.qs[j] & 0xF) | (((h >> j) & 1u) << 4));
    o.c[j + 16] = static_cast<std::int8_t>((b.qs[j] >> 4) | (((h >> (j + 16)) & 1u) << 4));
  }
  o.S[0] = 1;
  return {fp16_to_fp32(b.d), fp16_to_fp32(b.m), true};
}
inline block_factors to_ints(const block_iq4_nl& b, int_block& o) noexcept {
  for (int j = 0; j < 16; ++j) {
    o.c[j] = kvalues_iq4nl[b.qs[j] & 0xF];
    o.c[j + 16] = kvalues_iq4nl[b.qs[j] >> 4];
  }
  o.S[0] = 1;
  return {fp16_to_fp32(b.d)};
}
// Q4_K, and Q5_K with its fifth bits (bit s of qh[l] for element l of sub-block s).
template <class Block>
block_factors to_ints_k4(const Block& b, int_block& o) noexcept {
  o.sub = 32;
  o.subs = 8;
  for (int s = 0; s < 8; ++s) {
    std::uint8_t sc = 0, m = 0;
    get_scale_min_k4(s, b.scales, sc, m);
    o.S[s] = sc;
    o.M[s] = m;
    const std::uint8_t* q = b.qs + 32 * (s / 2);
    for (int l = 0; l < 32; ++l) {
      int code = s % 2 == 0 ? q[l] & 0xF : q[l] >> 4;
      if constexpr (std::is_same_v<Block, block_q5_k>) code |= ((b.qh[l] >> s) & 1) << 4;
      o.c[32 * s + l] = static_cast<std::int8_t>(code);
    }
  }
  return {fp16_to_fp32(b.d), fp16_to_fp32(b.dmin), true};
}
inline block_factors to_ints(const block_q4_k& b, int_block& o) noexcept { return to_ints_k4(b, o); }
inline block_factors to_ints(const block_q5_k& b, int_block& o) noexcept { return to_ints_k4(b, o); }
inline block_factors to_ints(const block_q6_k& b, int_block& o) noexcept {
  o.sub = 16;
  o.subs = 16;
  for (int s = 0; s < 16; ++s) o.S[s] = b.scales[s];
  for (int half = 0; half < 2; ++half) {
    const std::uint8_t* ql = b.ql + 64 * half;
    const std::uint8_t* qh = b.qh + 32 * half;
    std::int8_t* c = o.c + 128 * half;
    for (int l = 0; l < 32; ++l) {
      c[l] = static_cast<std::int8_t>(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
      c[l + 32] = static_cast<std::int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
      c[l + 64] = static_cast<std::int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
      c[l + 96] = static_cast<std::int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
    }
  }
  return {fp16_to_fp32(b.d)};
}
inline block_factors to_ints(const block_q2_k& b, int_block& o) noexcept {
  o.sub = 16;
  o.subs = 16;
  for (int s = 0; s < 16; ++s) {
    o.S[s] = b.scales[s] & 0xF;
    o.M[s] = b.scales[s] >> 4;
  }
  // Element 128 n + 32 j + 16 h + l is bits 2 j of qs[32 n + 16 h + l] (sub-block 8 n + 2 j + h).
  for (int e = 0; e < qk_k; ++e) {
    const int n = e / 128, j = (e % 128) / 32, k = e % 32;
    o.c[e] = static_cast<std::int8_t>((b.qs[32 * n + k] >> (2 * j)) & 3);
  }
  return {fp16_to_fp32(b.d), fp16_to_fp32(b.dmin), true};
}
inline block_factors to_ints(const block_q3_k& b, int_block& o) noexcept {
  o.sub = 16;
  o.subs = 16;
  for (int s = 0; s < 16; ++s) o.S[s] = scale_q3_k(s, b.scales);
  // Low bits as Q2_K's; the high bit of element 128 n + 32 j + k is bit 4 n + j of hmask[k].
  for (int e = 0; e < qk_k; ++e) {
    const int n = e / 128, j = (e % 128) / 32, k = e % 32;
    const int low = (b.qs[32 * n + k] >> (2 * j)) & 3;
    const int high = (b.hmask[k] >> (4 * n + j)) & 1;
    o.c[e] = static_cast<std::int8_t>(low - (high ? 0 : 4));
  }
  return {fp16_to_fp32(b.d)};
}
inline block_factors to_ints(const block_iq4_xs& b, int_block& o) noexcept {
  o.sub = 32;
  o.subs = 8;
  for (int s = 0; s < 8; ++s) {
    o.S[s] = (((b.scales_l[s / 2] >> 4 * (s % 2)) & 0xF) | (((b.scales_h >> 2 * s) & 3) << 4)) - 32;
    const std::uint8_t* q = b.qs + 16 * s;
    for (int j = 0; j < 16; ++j) {
      o.c[32 * s + j] = kvalues_iq4nl[q[j] & 0xF];
      o.c[32 * s + j + 16] = kvalues_iq4nl[q[j] >> 4];
    }
  }
  return {fp16_to_fp32(b.d)};
}

// The integers I and J of one block against its activation codes q (see the top).
struct block_ints {
  std::int32_t I = 0;
  std::int32_t J = 0;
};
inline block_ints dot_ints(const int_block& w, const std::int8_t* q) noexcept {
  block_ints r;
  for (int s = 0; s < w.subs; ++s) {
    std::int32_t cq = 0, sq = 0;
    for (int j = s * w.sub; j < (s + 1) * w.sub; ++j) {
      cq += w.c[j] * q[j];
      sq += q[j];
    }
    r.I += w.S[s] * cq;
    r.J += w.M[s] * sq;
  }
  return r;
}

// Block k's FP32 terms from its integers (t = a * float(I), then b): the one place the float stage
// is written for the scalar reference; the SIMD kernels state the same operations.
struct block_terms {
  float t = 0.0f;
  float b = 0.0f;
};
inline block_terms q8_0_terms(const block_factors& f, float dx, block_ints n) noexcept {
  return {(f.d * dx) * static_cast<float>(n.I)};
}
inline block_terms q8_1_terms(const block_factors& f, float dx, float sx, block_ints n) noexcept {
  return {(f.d * dx) * static_cast<float>(n.I), f.min * sx};
}
inline block_terms q8_k_terms(const block_factors& f, float dx, block_ints n) noexcept {
  return {(f.d * dx) * static_cast<float>(n.I), f.has_min ? -((f.min * dx) * static_cast<float>(n.J)) : 0.0f};
}

// The reduction of the eight accumulators.
inline float reduce8(const float* acc) noexcept {
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

template <class Block>
float vec_dot_blocks(const std::byte* w, const std::byte* x, std::size_t nb) noexcept {
  float acc[8] = {};
  int_block ib;
  for (std::size_t k = 0; k < nb; ++k) {
    Block wb;
    std::memcpy(&wb, w + k * sizeof wb, sizeof wb);
    const block_factors f = to_ints(wb, ib);
    block_terms t;
    if constexpr (vec_dot_type(block_type<Block>) == dot_type::q8_0) {
      block_q8_0 xb;
      std::memcpy(&xb, x + k * sizeof xb, sizeof xb);
      t = q8_0_terms(f, fp16_to_fp32(xb.d), dot_ints(ib, xb.qs));
    } else if constexpr (vec_dot_type(block_type<Block>) == dot_type::q8_1) {
      block_q8_1 xb;
      std::memcpy(&xb, x + k * sizeof xb, sizeof xb);
      t = q8_1_terms(f, fp16_to_fp32(xb.d), fp16_to_fp32(xb.s), dot_ints(ib, xb.qs));
    } else {
      block_q8_k xb;
      std::memcpy(&xb, x + k * sizeof xb, sizeof xb);
      t = q8_k_terms(f, xb.d, dot_ints(ib, xb.qs));
    }
    float& a = acc[k % 8];
    a = a + t.t;
    if (f.has_min) a = a + t.b;
  }
  return reduce8(acc);
}

// The product of one row of weights (nb blocks of type t) with activations quantized to
// vec_dot_type(t) (nb blocks of it). Block types only; unchecked (the callers check shapes).
MIXPREC_STRICT_FP_ENTRY inline float vec_dot(ggml_type t, const std::byte* w, const std::byte* x, std::size_t nb) noexcept {
  switch (t) {
    case ggml_type::q8_0: return vec_dot_blocks<block_q8_0>(w, x, nb);
    case ggml_type::q4_0: return vec_dot_blocks<block_q4_0>(w, x, nb);
    case ggml_type::q4_1: return vec_dot_blocks<block_q4_1>(w, x, nb);
    case ggml_type::q5_0: return vec_dot_blocks<block_q5_0>(w, x, nb);
    case ggml_type::q5_1: return vec_dot_blocks<block_q5_1>(w, x, nb);
    case ggml_type::iq4_nl: return vec_dot_blocks<block_iq4_nl>(w, x, nb);
    case ggml_type::q2_k: return vec_dot_blocks<block_q2_k>(w, x, nb);
    case ggml_type::q3_k: return vec_dot_blocks<block_q3_k>(w, x, nb);
    case ggml_type::q4_k: return vec_dot_blocks<block_q4_k>(w, x, nb);
    case ggml_type::q5_k: return vec_dot_blocks<block_q5_k>(w, x, nb);
    case ggml_type::q6_k: return vec_dot_blocks<block_q6_k>(w, x, nb);
    case ggml_type::iq4_xs: return vec_dot_blocks<block_iq4_xs>(w, x, nb);
    default: return 0.0f;
  }
}

}  // namespace ref
MIXPREC_STRICT_FP_END

}  // namespace mixprec::ggml
