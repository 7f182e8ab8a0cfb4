// Products on llama.cpp's block types with quantized activations (ggml's vec_dot): the SIMD side of
// kernels/ref/ggml_dot_ref.hpp, which states the numerics; the results are its bits on every level.
//
// On the AVX2 and AVX-512 levels (their target regions; 256-bit integer ops, the AVX-512 level runs the
// same code):
// - a block's integers are exact: codes c against the activation codes q (|q| <= 127) through
//   vpmaddubsw on |c| and q with c's sign (pairs <= 2 * 128 * 127: no saturation, even for a Q8_0
//   code of -128), or on unsigned codes directly; vpmaddwd with ones or with the sub-block scales;
//   32-bit sums (every type's bound is below 2^28, see the reference);
// - 32-element blocks: eight blocks at once, their eight partial vectors reduced to one vector of
//   eight exact block sums (hadd tree), then the FP32 stage vectorised, block k in lane k mod 8,
//   each operation the reference's (mul, mul, add; this region never contracts to FMA);
// - K-quants and IQ4_XS: a super-block's sums in a vector, one exact horizontal sum, then the
//   reference's scalar FP32 terms (ref::q8_k_terms);
// - every type on other levels: the reference itself.

// Only the target regions' tags: they compile without FMA contraction whatever the user's flags, which
// the bits depend on (the baseline copy takes the translation unit's flags, and a GNU-mode
// -march=native build would fuse its mul + add; it runs the reference, a strict region, instead).
#if MIXPREC_X86_TARGETS
template <class A>
inline constexpr bool ggml_dot_simd = std::is_same_v<A, x86::avx2> || std::is_same_v<A, x86::avx512>;
#else
template <class A>
inline constexpr bool ggml_dot_simd = false;
#endif

#if MIXPREC_X86
// The eight 32-bit partial sums of 32 signed codes w times 32 activation codes q (|q| <= 127).
template <class A>
inline __m256i ggml_dot_i8(__m256i w, __m256i q) noexcept {
  const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(q, w));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
// The same for unsigned codes u <= 127.
template <class A>
inline __m256i ggml_dot_u8(__m256i u, __m256i q) noexcept {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), _mm256_set1_epi16(1));
}
// Lane j: the sum of the eight lanes of p[j] (exact).
template <class A>
inline __m256i ggml_sum8(const __m256i* p) noexcept {
  const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
  const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
  // a: sums of p0..p3 over the low 128 bits, then over the high; b likewise for p4..p7.
  return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}
template <class A>
inline std::int32_t ggml_hsum_i32(__m256i v) noexcept {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}
// ref::reduce8 on a vector.
template <class A>
inline float ggml_reduce8(__m256 acc) noexcept {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));  // a0+a4, a1+a5, a2+a6, a3+a7
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                             // (a0+a4)+(a2+a6), (a1+a5)+(a3+a7)
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}
// 16 nibbles -> 32 bytes: the low nibbles (elements 0..15), then the high ones (16..31).
template <class A>
inline __m256i ggml_nibbles32(const std::uint8_t* p) noexcept {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0F));
}
// Bit j of the 32-bit h as byte j: 0x10 where set, else 0 (Q5_0 / Q5_1's fifth bits).
template <class A>
inline __m256i ggml_bits32(const std::uint8_t* qh) noexcept {
  std::uint32_t h = 0;
  std::memcpy(&h, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(h)),
                                             _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10));
}

// The eight partial sums of one 32-element weight block against the activation codes q.
template <class A, class Block>
inline __m256i ggml_block32(const std::byte* wb, const std::int8_t* q) noexcept {
  const auto* b = reinterpret_cast<const Block*>(wb);
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
  if constexpr (std::is_same_v<Block, ggml::block_q8_0>) {
    return ggml_dot_i8<A>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs)), x);
  } else if constexpr (std::is_same_v<Block, ggml::block_q4_0>) {
    return ggml_dot_i8<A>(_mm256_sub_epi8(ggml_nibbles32<A>(b->qs), _mm256_set1_epi8(8)), x);
  } else if constexpr (std::is_same_v<Block, ggml::block_q4_1>) {
    return ggml_dot_u8<A>(ggml_nibbles32<A>(b->qs), x);
  } else if constexpr (std::is_same_v<Block, ggml::block_q5_0>) {
    const __m256i c = _mm256_or_si256(ggml_nibbles32<A>(b->qs), ggml_bits32<A>(b->qh));
    return ggml_dot_i8<A>(_mm256_sub_epi8(c, _mm256_set1_epi8(16)), x);
  } else if constexpr (std::is_same_v<Block, ggml::block_q5_1>) {
    return ggml_dot_u8<A>(_mm256_or_si256(ggml_nibbles32<A>(b->qs), ggml_bits32<A>(b->qh)), x);
  } else {
    static_assert(std::is_same_v<Block, ggml::block_iq4_nl>);
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ggml::ref::kvalues_iq4nl)));
    return ggml_dot_i8<A>(_mm256_shuffle_epi8(table, ggml_nibbles32<A>(b->qs)), x);
  }
}

// Eight FP16 fields at byte offset `off` of consecutive blocks (stride bytes apart), as FP32: eight
// 16-bit loads into one vector (as fast as a gather here, and QEMU 7.2's AVX2 gets gathers wrong).
template <class A>
inline __m256 ggml_halves8(const std::byte* blocks, std::size_t stride, std::size_t off) noexcept {
  std::uint16_t h[8];
  for (std::size_t j = 0; j < 8; ++j) std::memcpy(h + j, blocks + j * stride + off, 2);
  return _mm256_cvtph_ps(_mm_setr_epi16(static_cast<short>(h[0]), static_cast<short>(h[1]), static_cast<short>(h[2]),
                                        static_cast<short>(h[3]), static_cast<short>(h[4]), static_cast<short>(h[5]),
                                        static_cast<short>(h[6]), static_cast<short>(h[7])));
}
// The same for the first `count` < 8 blocks (the others 0).
template <class A>
inline __m256 ggml_halves_tail(const std::byte* blocks, std::size_t stride, std::size_t off, std::size_t count) noexcept {
  std::uint16_t h[8] = {};
  for (std::size_t j = 0; j < 8 && j < count; ++j) std::memcpy(h + j, blocks + j * stride + off, 2);
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
}

// Blocks k..k+count of a row (count <= 8) into acc, lane j for block k + j.
template <class A, class Block, class XBlock, bool Full>
inline __m256 ggml_group32(__m256 acc, const std::byte* w, const std::byte* x, const float* dx, const float* sx, std::size_t k,
                           std::size_t count) noexcept {
  __m256i p[8];
  for (std::size_t j = 0; j < 8; ++j)
    p[j] = Full || j < count ? ggml_block32<A, Block>(w + (k + j) * sizeof(Block),
                                                      reinterpret_cast<const XBlock*>(x + (k + j) * sizeof(XBlock))->qs)
                             : _mm256_setzero_si256();
  const __m256i sums = ggml_sum8<A>(p);
  const std::byte* wk = w + k * sizeof(Block);
  const __m256 dw = Full ? ggml_halves8<A>(wk, sizeof(Block), offsetof(Block, d))
                         : ggml_halves_tail<A>(wk, sizeof(Block), offsetof(Block, d), count);
  acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(dw, _mm256_loadu_ps(dx + k)), _mm256_cvtepi32_ps(sums)));
  if constexpr (std::is_same_v<XBlock, ggml::block_q8_1>) {
    const __m256 mw = Full ? ggml_halves8<A>(wk, sizeof(Block), offsetof(Block, m))
                           : ggml_halves_tail<A>(wk, sizeof(Block), offsetof(Block, m), count);
    acc = _mm256_add_ps(acc, _mm256_mul_ps(mw, _mm256_loadu_ps(sx + k)));
  }
  return acc;
}

// One row of nb 32-element blocks against Q8_0 / Q8_1 activations.
template <class A, class Block>
float ggml_row32(const std::byte* w, const ggml::ref::quantized_activations& act, index_t token, std::size_t nb) noexcept {
  using XBlock = std::conditional_t<ggml::vec_dot_type(ggml::block_type<Block>) == ggml::dot_type::q8_1, ggml::block_q8_1,
                                    ggml::block_q8_0>;
  const std::byte* x = act.row(token);
  const float* dx = act.scales(token);
  const float* sx = act.sums(token);
  __m256 acc = _mm256_setzero_ps();
  std::size_t k = 0;
  for (; k + 8 <= nb; k += 8) acc = ggml_group32<A, Block, XBlock, true>(acc, w, x, dx, sx, k, 8);
  if (k < nb) acc = ggml_group32<A, Block, XBlock, false>(acc, w, x, dx, sx, k, nb - k);
  return ggml_reduce8<A>(acc);
}

// Q4_K / Q5_K's eight 6-bit scales and eight minimums from the 12 packed bytes, as 16-bit lanes of one
// vector each (ref::get_scale_min_k4 for all eight at once, on 32-bit words kept in registers).
template <class A>
inline void ggml_scales_k4(const std::uint8_t* packed, __m128i& scales, __m128i& mins) noexcept {
  std::uint32_t u[3];
  std::memcpy(u, packed, 12);
  constexpr std::uint32_t six = 0x3f3f3f3f, four = 0x0f0f0f0f, two = 0x03030303;
  const std::uint32_t s03 = u[0] & six, s47 = (u[2] & four) | (((u[0] >> 6) & two) << 4);
  const std::uint32_t m03 = u[1] & six, m47 = ((u[2] >> 4) & four) | (((u[1] >> 6) & two) << 4);
  scales = _mm_cvtepu8_epi16(_mm_setr_epi32(static_cast<int>(s03), static_cast<int>(s47), 0, 0));
  mins = _mm_cvtepu8_epi16(_mm_setr_epi32(static_cast<int>(m03), static_cast<int>(m47), 0, 0));
}
// J = sum_s M_s (bsums[2s] + bsums[2s + 1]) for eight minimums (exact: pair sums fit 16 bits).
template <class A>
inline std::int32_t ggml_mins_k4(__m128i mins, const std::int16_t* bsums) noexcept {
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bsums));
  const __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
  const __m128i p = _mm_madd_epi16(mins, pairs);
  __m128i s = _mm_add_epi32(p, _mm_unpackhi_epi64(p, p));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}
// A super-block's I and J against a Q8_K block (Q4_K; with the fifth bits, Q5_K).
template <class A, class Block>
inline ggml::ref::block_ints ggml_ints_k4(const Block& b, const ggml::block_q8_k& x) noexcept {
  constexpr bool five = std::is_same_v<Block, ggml::block_q5_k>;
  __m128i scales, mins;
  ggml_scales_k4<A>(b.scales, scales, mins);
  const __m256i scale_source = _mm256_broadcastsi128_si256(scales);  // S0..S7 in both halves
  const auto scale = [&](int w) {  // S_w in every 16-bit lane
    return _mm256_shuffle_epi8(scale_source, _mm256_set1_epi16(static_cast<short>(0x0100 + 0x0202 * w)));
  };
  __m256i acc = _mm256_setzero_si256();
  const __m256i low = _mm256_set1_epi8(0x0F);
  [[maybe_unused]] __m256i qh = _mm256_setzero_si256();
  if constexpr (five) qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh));
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * j));
    __m256i c0 = _mm256_and_si256(q, low), c1 = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
    if constexpr (five) {
      const __m256i one = _mm256_set1_epi8(1);
      c0 = _mm256_or_si256(c0, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), one), 4));
      c1 = _mm256_or_si256(c1, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j + 1), one), 4));
    }
    const __m256i p0 = _mm256_maddubs_epi16(c0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 64 * j)));
    const __m256i p1 = _mm256_maddubs_epi16(c1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 64 * j + 32)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p0, scale(2 * j)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, scale(2 * j + 1)));
  }
  return {ggml_hsum_i32<A>(acc), ggml_mins_k4<A>(mins, x.bsums)};
}
// Sixteen 16-bit sub-block scales S0..S15 as two sources: S0..S7 in both 128-bit halves, and S8..S15.
template <class A>
inline void ggml_scale_sources(__m256i scales16, __m256i& low, __m256i& high) noexcept {
  low = _mm256_permute4x64_epi64(scales16, 0x44);
  high = _mm256_permute4x64_epi64(scales16, 0xEE);
}
// From one source: scale w (0..6, even) across the low 128 bits and w + 1 across the high ones, the
// scales of the two sub-blocks of 16 one vector of codes holds.
template <class A>
inline __m256i ggml_pair_scale(__m256i source, int w) noexcept {
  const auto word = [](int i) { return static_cast<short>(0x0100 + 0x0202 * i); };  // bytes 2i, 2i + 1
  return _mm256_shuffle_epi8(source, _mm256_set_m128i(_mm_set1_epi16(word(w + 1)), _mm_set1_epi16(word(w))));
}
// Q3_K's sixteen 6-bit scales minus 32, from the 12 packed bytes (ref::scale_q3_k for all at once).
template <class A>
inline __m256i ggml_scales_q3k(const std::uint8_t* packed) noexcept {
  std::uint32_t a[3], out[4];
  std::memcpy(a, packed, 12);
  constexpr std::uint32_t low4 = 0x0F0F0F0F, two = 0x03030303;
  out[0] = (a[0] & low4) | ((a[2] & two) << 4);
  out[1] = (a[1] & low4) | (((a[2] >> 2) & two) << 4);
  out[2] = ((a[0] >> 4) & low4) | (((a[2] >> 4) & two) << 4);
  out[3] = ((a[1] >> 4) & low4) | (((a[2] >> 6) & two) << 4);
  // Built in registers: a 16-byte load of the four words just stored would stall on store forwarding.
  const __m128i bytes = _mm_setr_epi32(static_cast<int>(out[0]), static_cast<int>(out[1]), static_cast<int>(out[2]),
                                       static_cast<int>(out[3]));
  return _mm256_sub_epi16(_mm256_cvtepu8_epi16(bytes), _mm256_set1_epi16(32));
}

// Q6_K: the codes u = c + 32 in [0, 63] through vpmaddubsw, then I = sum S u q - 32 sum S bsum.
template <class A>
inline ggml::ref::block_ints ggml_ints(const ggml::block_q6_k& b, const ggml::block_q8_k& x) noexcept {
  const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
  __m256i source[2];
  ggml_scale_sources<A>(scales16, source[0], source[1]);
  __m256i acc = _mm256_setzero_si256();
  const __m256i low = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(3);
#pragma GCC unroll 2
  for (int half = 0; half < 2; ++half) {
    const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * half));
    const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * half + 32));
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * half));
    const __m256i u[4] = {
        _mm256_or_si256(_mm256_and_si256(l0, low), _mm256_slli_epi16(_mm256_and_si256(h, two), 4)),
        _mm256_or_si256(_mm256_and_si256(l1, low), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), two), 4)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), two), 4)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), two), 4))};
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const int s = 8 * half + 2 * k;  // the sub-blocks of 16 in this vector's low and high halves
      const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 128 * half + 32 * k));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u[k], xq), ggml_pair_scale<A>(source[half], s % 8)));
    }
  }
  // 32 * sum_s S_s bsums_s.
  const __m256i bias = _mm256_madd_epi16(scales16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.bsums)));
  return {ggml_hsum_i32<A>(acc) - 32 * ggml_hsum_i32<A>(bias), 0};
}
// Q2_K / Q3_K: sixteen sub-blocks of 16; element 128 n + 32 j + k holds bits 2j of qs[32 n + k]
// (Q3_K: and its third bit at bit 4n + j of hmask[k]). Codes u in [0, 7] through vpmaddubsw (Q3_K:
// u = c + 4, so I = sum S u q - 4 sum S bsum), scales on 16-bit halves of each vector.
template <class A, class Block>
inline ggml::ref::block_ints ggml_ints_k16(const Block& b, const ggml::block_q8_k& x) noexcept {
  constexpr bool three = std::is_same_v<Block, ggml::block_q3_k>;
  __m256i scales16, hm = _mm256_setzero_si256();
  if constexpr (three) {
    scales16 = ggml_scales_q3k<A>(b.scales);
    hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.hmask));
  } else {
    scales16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)), _mm_set1_epi8(0x0F)));
  }
  __m256i source[2];
  ggml_scale_sources<A>(scales16, source[0], source[1]);
  const __m256i three_bits = _mm256_set1_epi8(3);
  __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 2
  for (int n = 0; n < 2; ++n) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * n));
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      __m256i u = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), three_bits);
      if constexpr (three)
        u = _mm256_or_si256(u, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * n + j), _mm256_set1_epi8(1)), 2));
      const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 128 * n + 32 * j));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, xq), ggml_pair_scale<A>(source[n], 2 * j)));
    }
  }
  const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.bsums));
  if constexpr (three) {
    return {ggml_hsum_i32<A>(acc) - 4 * ggml_hsum_i32<A>(_mm256_madd_epi16(scales16, bsums)), 0};
  } else {
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_srli_epi16(_mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)),
                                                                           _mm_set1_epi8(static_cast<char>(0xF0))),
                                                             4));
    return {ggml_hsum_i32<A>(acc), ggml_hsum_i32<A>(_mm256_madd_epi16(mins, bsums))};
  }
}
// IQ4_XS: grid values by table lookup, eight sub-blocks of 32 with scales ls - 32.
template <class A>
inline ggml::ref::block_ints ggml_ints(const ggml::block_iq4_xs& b, const ggml::block_q8_k& x) noexcept {
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ggml::ref::kvalues_iq4nl)));
  __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
  for (int s = 0; s < 8; ++s) {
    const int ls = (((b.scales_l[s / 2] >> 4 * (s % 2)) & 0xF) | (((b.scales_h >> 2 * s) & 3) << 4)) - 32;
    const __m256i c = _mm256_shuffle_epi8(table, ggml_nibbles32<A>(b.qs + 16 * s));
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * s));
    const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(c), _mm256_sign_epi8(xq, c));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(static_cast<short>(ls))));
  }
  return {ggml_hsum_i32<A>(acc), 0};
}

// One row of nb super-blocks against Q8_K activations: eight super-blocks' integers, then their FP32
// terms as one vector, lane j for block k + j (ref::q8_k_terms lane by lane).
template <class A, class Block>
float ggml_row_k(const std::byte* w, const ggml::ref::quantized_activations& act, index_t token, std::size_t nb) noexcept {
  constexpr bool has_min =
      std::is_same_v<Block, ggml::block_q2_k> || std::is_same_v<Block, ggml::block_q4_k> || std::is_same_v<Block, ggml::block_q5_k>;
  const std::byte* xr = act.row(token);
  __m256 acc = _mm256_setzero_ps();
  for (std::size_t k = 0; k < nb; k += 8) {
    const std::size_t count = std::min<std::size_t>(8, nb - k);
    alignas(32) std::int32_t I[8] = {}, J[8] = {};
    alignas(32) float dx[8] = {};
    for (std::size_t j = 0; j < 8 && j < count; ++j) {
      const auto& b = *reinterpret_cast<const Block*>(w + (k + j) * sizeof(Block));
      const auto& x = *reinterpret_cast<const ggml::block_q8_k*>(xr + (k + j) * sizeof(ggml::block_q8_k));
      ggml::ref::block_ints n;
      if constexpr (std::is_same_v<Block, ggml::block_q4_k> || std::is_same_v<Block, ggml::block_q5_k>)
        n = ggml_ints_k4<A>(b, x);
      else if constexpr (std::is_same_v<Block, ggml::block_q2_k> || std::is_same_v<Block, ggml::block_q3_k>)
        n = ggml_ints_k16<A>(b, x);
      else
        n = ggml_ints<A>(b, x);
      I[j] = n.I;
      J[j] = n.J;
      dx[j] = x.d;
    }
    const std::byte* wk = w + k * sizeof(Block);
    const __m256 d = count == 8 ? ggml_halves8<A>(wk, sizeof(Block), offsetof(Block, d))
                                : ggml_halves_tail<A>(wk, sizeof(Block), offsetof(Block, d), count);
    const __m256 vdx = _mm256_load_ps(dx);
    acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(d, vdx), _mm256_cvtepi32_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(I)))));
    if constexpr (has_min) {
      const __m256 dmin = count == 8 ? ggml_halves8<A>(wk, sizeof(Block), offsetof(Block, dmin))
                                     : ggml_halves_tail<A>(wk, sizeof(Block), offsetof(Block, dmin), count);
      // acc + -(...): the reference's operations, also for a NaN's sign bit.
      const __m256 b = _mm256_mul_ps(_mm256_mul_ps(dmin, vdx), _mm256_cvtepi32_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(J))));
      acc = _mm256_add_ps(acc, _mm256_xor_ps(b, _mm256_set1_ps(-0.0f)));
    }
  }
  return ggml_reduce8<A>(acc);
}
#endif

// Row r of w (a ggml block type) against token `token` of act.
template <class A, class Block>
inline float ggml_row_dot(const std::byte* w, const ggml::ref::quantized_activations& act, index_t token, std::size_t nb) noexcept {
#if MIXPREC_X86
  if constexpr (ggml_dot_simd<A>) {
    constexpr ggml::dot_type d = ggml::vec_dot_type(ggml::block_type<Block>);
    if constexpr (d == ggml::dot_type::q8_0 || d == ggml::dot_type::q8_1)
      return ggml_row32<A, Block>(w, act, token, nb);
    else
      return ggml_row_k<A, Block>(w, act, token, nb);
  }
#endif
  return ggml::ref::vec_dot(ggml::block_type<Block>, w, act.row(token), nb);
}

template <class A, class Block>
void ggml_rows(const quantized_tensor& w, const ggml::ref::quantized_activations& act, float* y, index_t ldy, unsigned threads) {
  const std::size_t row_bytes = w.row_bytes(), nb = row_bytes / sizeof(Block);
  const auto* codes = reinterpret_cast<const std::byte*>(w.codes().data());
  for_row_chunks(w.rows(), threads, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      const std::byte* row = codes + static_cast<std::size_t>(r) * row_bytes;
      for (index_t t = 0; t < act.tokens; ++t) y[t * ldy + r] = ggml_row_dot<A, Block>(row, act, t, nb);
    }
  });
}

// Y = X Q(W)^T for a ggml block-type weight with activations quantized to its vec_dot_type
// (act: quantized by the caller, ggml::ref::quantize_activations).
template <class A>
void ggml_product(const quantized_tensor& w, const ggml::ref::quantized_activations& act, float* y, index_t ldy, unsigned threads) {
  switch (w.spec().ggml) {
    case ggml_type::q8_0: return ggml_rows<A, ggml::block_q8_0>(w, act, y, ldy, threads);
    case ggml_type::q4_0: return ggml_rows<A, ggml::block_q4_0>(w, act, y, ldy, threads);
    case ggml_type::q4_1: return ggml_rows<A, ggml::block_q4_1>(w, act, y, ldy, threads);
    case ggml_type::q5_0: return ggml_rows<A, ggml::block_q5_0>(w, act, y, ldy, threads);
    case ggml_type::q5_1: return ggml_rows<A, ggml::block_q5_1>(w, act, y, ldy, threads);
    case ggml_type::iq4_nl: return ggml_rows<A, ggml::block_iq4_nl>(w, act, y, ldy, threads);
    case ggml_type::q2_k: return ggml_rows<A, ggml::block_q2_k>(w, act, y, ldy, threads);
    case ggml_type::q3_k: return ggml_rows<A, ggml::block_q3_k>(w, act, y, ldy, threads);
    case ggml_type::q4_k: return ggml_rows<A, ggml::block_q4_k>(w, act, y, ldy, threads);
    case ggml_type::q5_k: return ggml_rows<A, ggml::block_q5_k>(w, act, y, ldy, threads);
    case ggml_type::q6_k: return ggml_rows<A, ggml::block_q6_k>(w, act, y, ldy, threads);
    case ggml_type::iq4_xs: return ggml_rows<A, ggml::block_iq4_xs>(w, act, y, ldy, threads);
    default: throw error(errc::unsupported, "ggml product: " + std::string(to_string(w.spec().ggml)) + " is not a block type");
  }
}
