// y = Q(W) x with dynamically INT8-quantized activations and integer dot products: the SIMD side of
// kernels/ref/gemv_q8_ref.hpp (numerics and layout are defined there; results match it bit for bit).
//
// Integer stage, per row and unit, the 16 lane sums R[i] of u * q:
// - AVX-512 with VNNI (checked at run time): vpdpbusd, 64 products per instruction; INT4 nibbles
//   are masked into bytes (low nibbles against the even activations, high nibbles against the odd
//   ones, both rearranged once per call);
// - AVX-512BW without VNNI, and AVX2: vpmaddubsw + vpmaddwd; INT8 weights go through u - 128 with
//   the sign moved onto q (|u - 128| <= 128, so the 16-bit pair sums cannot saturate);
// - other architectures: scalar loops (the same integers).
// Then, vectorised over the 16 lanes: D = R - (z - offset) * qs (qs: per-lane sums of q, once per
// call), acc = acc + s * float(D) (no FMA), a fixed reduction tree, y = acc[0] * sx.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <xsimd/xsimd.hpp>

#include "mixprec/detail/simd.hpp"
#include "mixprec/kernels/gemv_int.hpp"
#include "mixprec/kernels/ref/gemv_q8_ref.hpp"

namespace mixprec::detail {

// Whether this CPU has AVX-512 VNNI (vpdpbusd).
inline bool cpu_has_avx512_vnni() noexcept {
#if MIXPREC_X86 && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

// 32-bit lane permutation of integers: lane i = s[idx[i]] (s has `lanes` readable ints).
template <class A>
inline ibatch<A> permute_lanes_i32(const std::int32_t* s, ibatch<A> idx) noexcept {
#if MIXPREC_X86
  if constexpr (is_avx512<A>) {
    return _mm512_permutexvar_epi32(idx, _mm512_loadu_si512(s));
  } else if constexpr (is_avx2<A>) {
    return _mm256_permutevar8x32_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s)), idx);
  } else
#endif
  {
    alignas(A::alignment()) std::int32_t ix[ibatch<A>::size];
    alignas(A::alignment()) std::int32_t lanes[ibatch<A>::size];
    idx.store_aligned(ix);
    for (std::size_t i = 0; i < ibatch<A>::size; ++i) lanes[i] = s[ix[i]];
    return ibatch<A>::load_aligned(lanes);
  }
}

// The quantized activations of one call, rearranged for the integer stage.
template <class A>
struct q8_activations {
  q8_layout l;
  float sx = 0.0f;
  const std::int8_t* q = nullptr;    // cols, natural order (tail columns)
  const std::int8_t* qa = nullptr;   // main columns; INT4: per block the even then the odd columns
  const std::int32_t* qs = nullptr;  // units x 16 lane sums of q
};

// sx and q exactly as ref::quantize_activations (scalar: the same operations in the same order).
template <class A>
float quantize_activations(const float* x, index_t n, std::int8_t* q) {
  float amax = 0.0f;
  bool finite = true;
  for (index_t j = 0; j < n; ++j) {
    finite = finite && std::isfinite(x[j]);
    amax = std::max(amax, std::fabs(x[j]));
  }
  if (!finite) throw error(errc::non_finite, "gemv_int8: non-finite activation");
  const float sx = amax / 127.0f, inv = sx > 0.0f ? 1.0f / sx : 0.0f;
  for (index_t j = 0; j < n; ++j) q[j] = static_cast<std::int8_t>(std::nearbyint(x[j] * inv));
  return sx;
}

#if MIXPREC_X86 && (defined(__GNUC__) || defined(__clang__))
#define MIXPREC_Q8_HAS_VNNI_PATH 1
// The VNNI instantiation of q8_lane_sums is compiled for AVX-512 VNNI whatever the translation unit's
// flags (called only after cpu_has_avx512_vnni()).
#define MIXPREC_TARGET_VNNI __attribute__((target("avx512vnni,avx512bw,avx512f,avx512vl")))
#else
#define MIXPREC_Q8_HAS_VNNI_PATH 0
#define MIXPREC_TARGET_VNNI
#endif

// Raw lane sums R[t * 16 + i] for every unit of one row: sum of (u - offset) * q, offset returned.
template <class A, bool Vnni, int Bits>
int q8_lane_sums(const q8_layout& l, const std::uint8_t* codes, const std::int8_t* qa, std::int32_t* out) noexcept;

#if MIXPREC_Q8_HAS_VNNI_PATH
// AVX-512 (with or without VNNI; Vnni only for avx512 architectures).
template <class A, bool Vnni, int Bits>
MIXPREC_TARGET_VNNI int q8_lane_sums_avx512(const q8_layout& l, const std::uint8_t* codes, const std::int8_t* qa,
                                            std::int32_t* out) noexcept {
  {
    const __m512i nib = _mm512_set1_epi8(0x0F), ones = _mm512_set1_epi16(1), bias = _mm512_set1_epi8(-128);
    for (index_t t = 0; t < l.units; ++t) {
      const index_t b0 = t * l.blocks_per_unit, b1 = std::min(l.blocks, b0 + l.blocks_per_unit);
      __m512i acc = _mm512_setzero_si512();
      for (index_t b = b0; b < b1; ++b) {
        const __m512i v = _mm512_loadu_si512(codes + b * 64);
        if constexpr (Bits == 4) {
          const __m512i lo = _mm512_and_si512(v, nib), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
          const __m512i qe = _mm512_loadu_si512(qa + b * 128), qo = _mm512_loadu_si512(qa + b * 128 + 64);
          if constexpr (Vnni) {
            acc = _mm512_dpbusd_epi32(acc, lo, qe);
            acc = _mm512_dpbusd_epi32(acc, hi, qo);
          } else {
            const __m512i p = _mm512_add_epi16(_mm512_maddubs_epi16(lo, qe), _mm512_maddubs_epi16(hi, qo));
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(p, ones));
          }
        } else {
          const __m512i qv = _mm512_loadu_si512(qa + b * 64);
          if constexpr (Vnni) {
            acc = _mm512_dpbusd_epi32(acc, v, qv);
          } else {
            const __m512i a = _mm512_xor_si512(v, bias);  // u - 128 as int8
            const __m512i qn = _mm512_mask_sub_epi8(qv, _mm512_movepi8_mask(a), _mm512_setzero_si512(), qv);
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(a), qn), ones));
          }
        }
      }
      _mm512_storeu_si512(out + t * 16, acc);
    }
    return Bits == 8 && !Vnni ? 128 : 0;
  }
}
#endif

template <class A, bool Vnni, int Bits>
int q8_lane_sums(const q8_layout& l, const std::uint8_t* codes, const std::int8_t* qa, std::int32_t* out) noexcept {
#if MIXPREC_X86
  if constexpr (is_avx512<A> && MIXPREC_Q8_HAS_VNNI_PATH) {
    return q8_lane_sums_avx512<A, Vnni, Bits>(l, codes, qa, out);
  } else if constexpr (is_avx2<A>) {
    const __m256i nib = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1), bias = _mm256_set1_epi8(-128);
    for (index_t t = 0; t < l.units; ++t) {
      const index_t b0 = t * l.blocks_per_unit, b1 = std::min(l.blocks, b0 + l.blocks_per_unit);
      __m256i acc[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
      for (index_t b = b0; b < b1; ++b)
        for (int h = 0; h < 2; ++h) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + b * 64 + h * 32));
          if constexpr (Bits == 4) {
            const __m256i lo = _mm256_and_si256(v, nib), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
            const __m256i qe = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa + b * 128 + h * 32));
            const __m256i qo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa + b * 128 + 64 + h * 32));
            const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, qe), _mm256_maddubs_epi16(hi, qo));
            acc[h] = _mm256_add_epi32(acc[h], _mm256_madd_epi16(p, ones));
          } else {
            const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa + b * 64 + h * 32));
            const __m256i a = _mm256_xor_si256(v, bias);
            const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(a), _mm256_sign_epi8(qv, a));
            acc[h] = _mm256_add_epi32(acc[h], _mm256_madd_epi16(p, ones));
          }
        }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + t * 16), acc[0]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + t * 16 + 8), acc[1]);
    }
    return Bits == 8 ? 128 : 0;
  } else
#endif
  {
    for (index_t t = 0; t < l.units; ++t) {
      const index_t b0 = t * l.blocks_per_unit, b1 = std::min(l.blocks, b0 + l.blocks_per_unit);
      for (index_t i = 0; i < 16; ++i) {
        std::int32_t d = 0;
        for (index_t b = b0; b < b1; ++b)
          for (index_t k = 0; k < l.per_lane; ++k) {
            if constexpr (Bits == 4) {
              const index_t m = 4 * i + k / 2;  // byte of column P*i + k within the block
              const int u = (codes[b * 64 + m] >> (4 * (k & 1))) & 0xF;
              d += u * qa[b * 128 + (k & 1) * 64 + m];
            } else {
              d += codes[b * 64 + 4 * i + k] * qa[b * 64 + 4 * i + k];
            }
          }
        out[t * 16 + i] = d;
      }
    }
    return 0;
  }
}

// Rows [r0, r1) of y = Q(W) x for the prepared activations.
template <class A, bool Vnni>
void q8_rows(const quantized_tensor& w, const q8_activations<A>& p, float* y, index_t r0, index_t r1) {
  const q8_layout& l = p.l;
  constexpr index_t L = static_cast<index_t>(ibatch<A>::size);
  constexpr index_t C = 16 / L;  // vectors per 16 virtual lanes
  static_assert(16 % L == 0);
  const bool int4 = w.spec().format == format_id::int4, asym = w.spec().scheme == scheme_id::asymmetric;
  const bool shared = w.spec().granularity == granularity_id::per_tensor;
  const index_t G = l.groups, cols = w.cols();
  thread_local arch_buffer<std::int32_t, A> raw_buf, zero_buf;
  thread_local arch_buffer<float, A> scale_buf;
  std::int32_t* raw = raw_buf.get(static_cast<std::size_t>(l.units * 16 + 16));
  std::int32_t* zi = zero_buf.get(static_cast<std::size_t>(G + 16));
  float* sc = scale_buf.get(static_cast<std::size_t>(G + 16));
  std::fill(sc + G, sc + G + 16, 0.0f);
  std::fill(zi, zi + G + 16, 1 << (int4 ? 3 : 7));
  // Per-lane group offsets within a unit of blocks (per_block), per chunk of L lanes.
  ibatch<A> idx[C];
  index_t base[C];
  for (index_t c = 0; c < C; ++c) {
    alignas(A::alignment()) std::int32_t ix[ibatch<A>::size];
    base[c] = l.per_block ? (l.per_lane * c * L) / l.group : 0;
    for (index_t i = 0; i < L; ++i)
      ix[i] = l.per_block ? static_cast<std::int32_t>((l.per_lane * (c * L + i)) / l.group - base[c]) : 0;
    idx[c] = ibatch<A>::load_aligned(ix);
  }
  for (index_t r = r0; r < r1; ++r) {
    const std::uint8_t* codes = w.row_codes(r);
    const std::size_t first = shared ? 0 : static_cast<std::size_t>(r * G);
    const std::uint8_t* sb = w.scale_bytes().data() + first * static_cast<std::size_t>(bytes_of(w.spec().scales));
    if (w.spec().scales == scale_type::fp32)
      std::memcpy(sc, sb, static_cast<std::size_t>(G) * 4);
    else if (w.spec().scales == scale_type::fp16)
      simd::from_fp16(A{}, reinterpret_cast<const std::uint16_t*>(sb), G, sc);
    else
      simd::from_bf16(A{}, reinterpret_cast<const std::uint16_t*>(sb), G, sc);
    if (asym)
      for (index_t g = 0; g < G; ++g) zi[g] = w.zero_point_bytes()[first + static_cast<std::size_t>(g)];
    const int offset = int4 ? q8_lane_sums<A, Vnni, 4>(l, codes, p.qa, raw) : q8_lane_sums<A, Vnni, 8>(l, codes, p.qa, raw);
    fbatch<A> acc[C];
    for (index_t c = 0; c < C; ++c) acc[c] = fbatch<A>(0.0f);
    for (index_t t = 0; t < l.units; ++t)
      for (index_t c = 0; c < C; ++c) {
        fbatch<A> s;
        ibatch<A> z;
        if (l.per_block) {
          const index_t g0 = t * (l.block / l.group) + base[c];
          s = permute_lanes<A>(sc + g0, idx[c]);
          z = permute_lanes_i32<A>(zi + g0, idx[c]);
        } else {
          const index_t g = G == 1 ? 0 : t;
          s = fbatch<A>(sc[g]);
          z = ibatch<A>(zi[g]);
        }
        const ibatch<A> d = ibatch<A>::load_unaligned(raw + t * 16 + c * L) -
                            (z - ibatch<A>(offset)) * ibatch<A>::load_unaligned(p.qs + t * 16 + c * L);
        acc[c] = acc[c] + s * xsimd::to_float(d);
      }
    alignas(A::alignment()) float a[16];
    for (index_t c = 0; c < C; ++c) acc[c].store_aligned(a + c * L);
    for (index_t g = l.main / l.group; g < G; ++g) {
      const index_t c0 = std::max(l.main, g * l.group), c1 = std::min(cols, (g + 1) * l.group);
      if (c0 >= c1) continue;
      std::int32_t d = 0;
      for (index_t j = c0; j < c1; ++j) {
        const int u = int4 ? (codes[j / 2] >> (4 * (j & 1))) & 0xF : codes[j];
        d += (u - zi[g]) * p.q[j];
      }
      a[0] = a[0] + sc[g] * static_cast<float>(d);
    }
    for (index_t h = 8; h >= 1; h /= 2)
      for (index_t i = 0; i < h; ++i) a[i] = a[i] + a[i + h];
    y[r] = a[0] * p.sx;
  }
}

// The whole product: quantizes x, rearranges it, runs the rows (threads as gemv_options says).
template <class A, bool Vnni>
void q8_product(const quantized_tensor& w, const float* x, float* y, unsigned threads) {
  q8_activations<A> p;
  p.l = make_q8_layout(w);
  const q8_layout& l = p.l;
  const index_t cols = w.cols();
  thread_local arch_buffer<std::int8_t, A> q_buf, qa_buf;
  thread_local arch_buffer<std::int32_t, A> qs_buf;
  std::int8_t* q = q_buf.get(static_cast<std::size_t>(cols));
  std::int8_t* qa = qa_buf.get(static_cast<std::size_t>(l.main + 1));
  std::int32_t* qs = qs_buf.get(static_cast<std::size_t>(l.units * 16 + 16));
  p.sx = quantize_activations<A>(x, cols, q);
  for (index_t b = 0; b < l.blocks; ++b) {
    if (l.per_lane == 8)
      for (index_t m = 0; m < 64; ++m) {
        qa[b * 128 + m] = q[b * 128 + 2 * m];
        qa[b * 128 + 64 + m] = q[b * 128 + 2 * m + 1];
      }
    else
      std::copy(q + b * 64, q + b * 64 + 64, qa + b * 64);
  }
  for (index_t t = 0; t < l.units; ++t) {
    const index_t b0 = t * l.blocks_per_unit, b1 = std::min(l.blocks, b0 + l.blocks_per_unit);
    for (index_t i = 0; i < 16; ++i) {
      std::int32_t s = 0;
      for (index_t b = b0; b < b1; ++b)
        for (index_t k = 0; k < l.per_lane; ++k) s += q[b * l.block + l.per_lane * i + k];
      qs[t * 16 + i] = s;
    }
  }
  p.q = q;
  p.qa = qa;
  p.qs = qs;
  for_row_chunks(w.rows(), threads, [&](index_t r0, index_t r1) { q8_rows<A, Vnni>(w, p, y, r0, r1); });
}

}  // namespace mixprec::detail
