// y = Q(W) x with dynamically INT8-quantized activations and integer dot products: the SIMD side of
// kernels/ref/gemv_q8_ref.hpp (numerics and layout are defined there; results match it bit for bit).
//
// Integer stage, per row and unit, the 16 lane sums R[i] of u * q:
// - AVX-512 with VNNI (checked at run time): vpdpbusd, 64 products per instruction; INT4 nibbles
//   are masked into bytes (low nibbles against the even activations, high nibbles against the odd
//   ones, both rearranged once per call);
// - AVX-512BW without VNNI, and AVX2: vpmaddubsw + vpmaddwd; INT8 weights go through u - 128 with
//   the sign moved onto q (|u - 128| <= 128, so the 16-bit pair sums cannot saturate);
// - SSE2..SSE4.2: bytes widened to 16 bits and pmaddwd;
// - other architectures: scalar loops (the same integers).
// Then, vectorised over the 16 lanes: D = R - (z - offset) * qs (qs: per-lane sums of q, once per
// call), acc = acc + s * float(D) (no FMA), a fixed reduction tree, y = acc[0] * sx.

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

// sx and q exactly as ref::quantize_activations (scalar: the same operations in the same order).
template <class A>
float quantize_activations(const float* x, index_t n, std::int8_t* q) {
  float amax = 0.0f;
  bool finite = true;
  for (index_t j = 0; j < n; ++j) {
    finite = finite && std::isfinite(x[j]);
    amax = std::max(amax, std::fabs(x[j]));
  }
  if (!finite) throw error(errc::non_finite, "INT8 activations: non-finite activation");
  const float sx = amax / 127.0f, inv = sx > 0.0f ? 1.0f / sx : 0.0f;
  for (index_t j = 0; j < n; ++j) q[j] = static_cast<std::int8_t>(std::nearbyint(x[j] * inv));
  return sx;
}


// The quantized activations of a batch of tokens (each quantized on its own), rearranged for the
// integer stage. Token k's data start at k * ld{q,qa,qs}.
struct q8_activations {
  q8_layout l;
  index_t tokens = 0;
  index_t ldq = 0, ldqa = 0, ldqs = 0;
  const float* sx = nullptr;         // per-token scales
  const std::int8_t* q = nullptr;    // cols, natural order (tail columns)
  const std::int8_t* qa = nullptr;   // main columns; INT4: per block the even then the odd columns
  const std::int32_t* qs = nullptr;  // units x 16 lane sums of q
};

// The float stage of one row: scales and zero points of the row, per-unit parameters, accumulation
// and the final reduction, vectorised over the 16 virtual lanes (C vectors of L lanes).
template <class A>
class q8_float_stage {
 public:
  static constexpr index_t L = static_cast<index_t>(ibatch<A>::size);
  static constexpr index_t C = 16 / L;
  static_assert(16 % L == 0);

  // sc and zi: scratch of at least l.groups + 16 elements.
  q8_float_stage(const quantized_tensor& w, const q8_layout& l, float* sc, std::int32_t* zi)
      : w_(w), l_(l), sc_(sc), zi_(zi) {
    int4_ = w.spec().format == format_id::int4;
    asym_ = w.spec().scheme == scheme_id::asymmetric;
    groups_per_block_ = l.per_block ? l.block / l.group : 0;
    unit_step_ = l.groups == 1 ? 0 : 1;
    const index_t G = l.groups;
    std::fill(sc_ + G, sc_ + G + 16, 0.0f);
    std::fill(zi_, zi_ + G + 16, 1 << (int4_ ? 3 : 7));
    for (index_t c = 0; c < C; ++c) {  // per-lane group offsets within a unit of blocks (per_block)
      alignas(A::alignment()) std::int32_t ix[ibatch<A>::size];
      base_[c] = l.per_block ? (l.per_lane * c * L) / l.group : 0;
      for (index_t i = 0; i < L; ++i)
        ix[i] = l.per_block ? static_cast<std::int32_t>((l.per_lane * (c * L + i)) / l.group - base_[c]) : 0;
      idx_[c] = ibatch<A>::load_aligned(ix);
    }
  }

  // Scales and zero points of row r.
  void load_row(index_t r) {
    const std::size_t first = decode_scales<A>(w_, r, sc_);
    if (asym_)
      for (index_t g = 0; g < l_.groups; ++g) zi_[g] = w_.zero_point_bytes()[first + static_cast<std::size_t>(g)];
  }

  // Unit t's lane scales s and zero points less the integer stage's offset (PerBlock: l.per_block).
  template <bool PerBlock>
  void unit(index_t t, int offset, fbatch<A>* s, ibatch<A>* zo) const noexcept {
    for (index_t c = 0; c < C; ++c) {
      if constexpr (PerBlock) {
        const index_t g0 = t * groups_per_block_ + base_[c];
        s[c] = permute_lanes<A>(sc_ + g0, idx_[c]);
        zo[c] = permute_lanes_i32<A>(zi_ + g0, idx_[c]) - ibatch<A>(offset);
      } else {
        const index_t g = t * unit_step_;
        s[c] = fbatch<A>(sc_[g]);
        zo[c] = ibatch<A>(zi_[g] - offset);
      }
    }
  }

  // acc = acc + s * float(R - zo * qs) for one token's raw lane sums R and its lane sums qs of unit t.
  static void accumulate(const ibatch<A>* R, const fbatch<A>* s, const ibatch<A>* zo, const std::int32_t* qs,
                         fbatch<A>* acc) noexcept {
    for (index_t c = 0; c < C; ++c)
      acc[c] = acc[c] + s[c] * sx::to_float(R[c] - zo[c] * ibatch<A>::load_unaligned(qs + c * L));
  }

  // One token's output: the tail columns, the reduction tree, times sx.
  [[nodiscard]] float finish(const std::uint8_t* codes, const std::int8_t* q, float sx, const fbatch<A>* acc) const {
    alignas(A::alignment()) float a[16];
    for (index_t c = 0; c < C; ++c) acc[c].store_aligned(a + c * L);
    const index_t cols = w_.cols();
    for (index_t g = l_.main / l_.group; g < l_.groups; ++g) {
      const index_t c0 = std::max(l_.main, g * l_.group), c1 = std::min(cols, (g + 1) * l_.group);
      if (c0 >= c1) continue;
      std::int32_t d = 0;
      for (index_t j = c0; j < c1; ++j) {
        const int u = int4_ ? (codes[j / 2] >> (4 * (j & 1))) & 0xF : codes[j];
        d += (u - zi_[g]) * q[j];
      }
      a[0] = a[0] + sc_[g] * static_cast<float>(d);
    }
    for (index_t h = 8; h >= 1; h /= 2)
      for (index_t i = 0; i < h; ++i) a[i] = a[i] + a[i + h];
    return a[0] * sx;
  }

 private:
  const quantized_tensor& w_;
  const q8_layout& l_;
  float* sc_;
  std::int32_t* zi_;
  bool int4_ = false, asym_ = false;
  index_t groups_per_block_ = 0, unit_step_ = 0;  // groups per block (per_block); group step per unit
  ibatch<A> idx_[C];
  index_t base_[C] = {};
};

// The integer stage's offset: INT8 weights without VNNI go through u - 128.
template <class A, bool Vnni, int Bits>
inline constexpr int q8_offset = Bits == 8 && !Vnni && (is_avx512<A> || is_avx2<A>) ? 128 : 0;

#if MIXPREC_X86_TARGETS
// Row r for T tokens from tok0 (AVX-512, with or without VNNI; Vnni only after the CPU check). The
// integer and float stages are fused per unit, and each 64-byte load of codes serves all T tokens.
template <class A, bool Vnni, int Bits, int T, bool PerBlock>
MIXPREC_TARGET_VNNI void q8_tile_avx512(const q8_float_stage<A>& fs, const q8_activations& p,
                                        const std::uint8_t* codes, index_t tok0, float* y, index_t ldy) {
  static_assert(q8_float_stage<A>::C == 1);
  const q8_layout& l = p.l;
  constexpr int offset = q8_offset<A, Vnni, Bits>;
  const __m512i nib = _mm512_set1_epi8(0x0F), ones = _mm512_set1_epi16(1), bias = _mm512_set1_epi8(-128);
  const std::int8_t* qa[T];
  fbatch<A> acc[T];
  for (int k = 0; k < T; ++k) {
    qa[k] = p.qa + (tok0 + k) * p.ldqa;
    acc[k] = fbatch<A>(0.0f);
  }
  for (index_t t = 0; t < l.units; ++t) {
    const index_t b0 = t * l.blocks_per_unit, b1 = std::min(l.blocks, b0 + l.blocks_per_unit);
    __m512i sum[T];
    for (int k = 0; k < T; ++k) sum[k] = _mm512_setzero_si512();
    for (index_t b = b0; b < b1; ++b) {
      const __m512i v = _mm512_loadu_si512(codes + b * 64);
      if constexpr (Bits == 4) {
        const __m512i lo = _mm512_and_si512(v, nib), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
        for (int k = 0; k < T; ++k) {
          const __m512i qe = _mm512_loadu_si512(qa[k] + b * 128), qo = _mm512_loadu_si512(qa[k] + b * 128 + 64);
          if constexpr (Vnni) {
            sum[k] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(sum[k], lo, qe), hi, qo);
          } else {
            const __m512i pr = _mm512_add_epi16(_mm512_maddubs_epi16(lo, qe), _mm512_maddubs_epi16(hi, qo));
            sum[k] = _mm512_add_epi32(sum[k], _mm512_madd_epi16(pr, ones));
          }
        }
      } else if constexpr (Vnni) {
        for (int k = 0; k < T; ++k) sum[k] = _mm512_dpbusd_epi32(sum[k], v, _mm512_loadu_si512(qa[k] + b * 64));
      } else {
        const __m512i a = _mm512_xor_si512(v, bias);  // u - 128 as int8
        const __m512i mag = _mm512_abs_epi8(a);
        const __mmask64 neg = _mm512_movepi8_mask(a);
        for (int k = 0; k < T; ++k) {
          const __m512i qv = _mm512_loadu_si512(qa[k] + b * 64);
          const __m512i qn = _mm512_mask_sub_epi8(qv, neg, _mm512_setzero_si512(), qv);
          sum[k] = _mm512_add_epi32(sum[k], _mm512_madd_epi16(_mm512_maddubs_epi16(mag, qn), ones));
        }
      }
    }
    fbatch<A> s;
    ibatch<A> zo;
    fs.template unit<PerBlock>(t, offset, &s, &zo);
    for (int k = 0; k < T; ++k) {
      const ibatch<A> R(sum[k]);
      q8_float_stage<A>::accumulate(&R, &s, &zo, p.qs + (tok0 + k) * p.ldqs + t * 16, &acc[k]);
    }
  }
  for (int k = 0; k < T; ++k) y[(tok0 + k) * ldy] = fs.finish(codes, p.q + (tok0 + k) * p.ldq, p.sx[tok0 + k], &acc[k]);
}
#endif

// The same for every other architecture: AVX2 (vpmaddubsw + vpmaddwd), SSE2 (pmaddwd) or scalar loops.
template <class A, bool Vnni, int Bits, int T, bool PerBlock>
void q8_tile(const q8_float_stage<A>& fs, const q8_activations& p, const std::uint8_t* codes, index_t tok0, float* y,
             index_t ldy) {
#if MIXPREC_X86_TARGETS
  if constexpr (is_avx512<A>) {
    q8_tile_avx512<A, Vnni, Bits, T, PerBlock>(fs, p, codes, tok0, y, ldy);
    return;
  } else
#endif
  {
    constexpr index_t C = q8_float_stage<A>::C, L = q8_float_stage<A>::L;
    constexpr int offset = q8_offset<A, Vnni, Bits>;
    const q8_layout& l = p.l;
    const std::int8_t* qa[T];
    fbatch<A> acc[T][C];
    for (int k = 0; k < T; ++k) {
      qa[k] = p.qa + (tok0 + k) * p.ldqa;
      for (index_t c = 0; c < C; ++c) acc[k][c] = fbatch<A>(0.0f);
    }
    for (index_t t = 0; t < l.units; ++t) {
      const index_t b0 = t * l.blocks_per_unit, b1 = std::min(l.blocks, b0 + l.blocks_per_unit);
      ibatch<A> R[T][C];
#if MIXPREC_X86
      if constexpr (is_avx2<A>) {
        static_assert(C == 2);
        const __m256i nib = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1), bias = _mm256_set1_epi8(-128);
        __m256i sum[T][2];
        for (int k = 0; k < T; ++k) sum[k][0] = sum[k][1] = _mm256_setzero_si256();
        for (index_t b = b0; b < b1; ++b)
          for (int h = 0; h < 2; ++h) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + b * 64 + h * 32));
            if constexpr (Bits == 4) {
              const __m256i lo = _mm256_and_si256(v, nib), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
              for (int k = 0; k < T; ++k) {
                const auto* e = reinterpret_cast<const __m256i*>(qa[k] + b * 128 + h * 32);
                const auto* o = reinterpret_cast<const __m256i*>(qa[k] + b * 128 + 64 + h * 32);
                const __m256i pr = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256(e)),
                                                    _mm256_maddubs_epi16(hi, _mm256_loadu_si256(o)));
                sum[k][h] = _mm256_add_epi32(sum[k][h], _mm256_madd_epi16(pr, ones));
              }
            } else {
              const __m256i a = _mm256_xor_si256(v, bias), mag = _mm256_abs_epi8(a);
              for (int k = 0; k < T; ++k) {
                const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa[k] + b * 64 + h * 32));
                const __m256i pr = _mm256_maddubs_epi16(mag, _mm256_sign_epi8(qv, a));
                sum[k][h] = _mm256_add_epi32(sum[k][h], _mm256_madd_epi16(pr, ones));
              }
            }
          }
        for (int k = 0; k < T; ++k) {
          R[k][0] = sum[k][0];
          R[k][1] = sum[k][1];
        }
      } else if constexpr (is_sse2<A>) {
        // SSE2 (the x86-64 baseline, no vpmaddubsw): bytes widened to 16 bits, pmaddwd sums byte pairs,
        // and the pair sums of each 4-byte lane are added once per unit.
        static_assert(C == 4);
        const __m128i nib = _mm_set1_epi8(0x0F), zero = _mm_setzero_si128();
        const auto widen_lo = [](__m128i q) { return _mm_srai_epi16(_mm_unpacklo_epi8(q, q), 8); };  // sign-extend
        const auto widen_hi = [](__m128i q) { return _mm_srai_epi16(_mm_unpackhi_epi8(q, q), 8); };
        __m128i pa[T][4], pb[T][4];  // pair sums of bytes 0-7 and 8-15 of each 16-byte chunk h
        for (int k = 0; k < T; ++k)
          for (int h = 0; h < 4; ++h) pa[k][h] = pb[k][h] = zero;
        for (index_t b = b0; b < b1; ++b)
          for (int h = 0; h < 4; ++h) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + b * 64 + h * 16));
            if constexpr (Bits == 4) {
              const __m128i lo = _mm_and_si128(v, nib), hi = _mm_and_si128(_mm_srli_epi16(v, 4), nib);
              const __m128i lo0 = _mm_unpacklo_epi8(lo, zero), lo1 = _mm_unpackhi_epi8(lo, zero);
              const __m128i hi0 = _mm_unpacklo_epi8(hi, zero), hi1 = _mm_unpackhi_epi8(hi, zero);
              for (int k = 0; k < T; ++k) {
                const __m128i qe = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qa[k] + b * 128 + h * 16));
                const __m128i qo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qa[k] + b * 128 + 64 + h * 16));
                pa[k][h] = _mm_add_epi32(pa[k][h], _mm_add_epi32(_mm_madd_epi16(lo0, widen_lo(qe)),
                                                                 _mm_madd_epi16(hi0, widen_lo(qo))));
                pb[k][h] = _mm_add_epi32(pb[k][h], _mm_add_epi32(_mm_madd_epi16(lo1, widen_hi(qe)),
                                                                 _mm_madd_epi16(hi1, widen_hi(qo))));
              }
            } else {
              const __m128i u0 = _mm_unpacklo_epi8(v, zero), u1 = _mm_unpackhi_epi8(v, zero);
              for (int k = 0; k < T; ++k) {
                const __m128i qv = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qa[k] + b * 64 + h * 16));
                pa[k][h] = _mm_add_epi32(pa[k][h], _mm_madd_epi16(u0, widen_lo(qv)));
                pb[k][h] = _mm_add_epi32(pb[k][h], _mm_madd_epi16(u1, widen_hi(qv)));
              }
            }
          }
        for (int k = 0; k < T; ++k)
          for (int h = 0; h < 4; ++h) {  // lane i of the chunk = pair 2i + pair 2i+1
            const __m128 a = _mm_castsi128_ps(pa[k][h]), c = _mm_castsi128_ps(pb[k][h]);
            R[k][h] = _mm_add_epi32(_mm_castps_si128(_mm_shuffle_ps(a, c, _MM_SHUFFLE(2, 0, 2, 0))),
                                    _mm_castps_si128(_mm_shuffle_ps(a, c, _MM_SHUFFLE(3, 1, 3, 1))));
          }
      } else
#endif
      {
        for (int k = 0; k < T; ++k) {
          alignas(A::alignment()) std::int32_t lane[16];
          for (index_t i = 0; i < 16; ++i) {
            std::int32_t d = 0;
            for (index_t b = b0; b < b1; ++b)
              for (index_t m = 0; m < l.per_lane; ++m) {
                if constexpr (Bits == 4) {
                  const index_t j = 4 * i + m / 2;  // byte of column P*i + m within the block
                  const int u = (codes[b * 64 + j] >> (4 * (m & 1))) & 0xF;
                  d += u * qa[k][b * 128 + (m & 1) * 64 + j];
                } else {
                  d += codes[b * 64 + 4 * i + m] * qa[k][b * 64 + 4 * i + m];
                }
              }
            lane[i] = d;
          }
          for (index_t c = 0; c < C; ++c) R[k][c] = ibatch<A>::load_aligned(lane + c * L);
        }
      }
      fbatch<A> s[C];
      ibatch<A> zo[C];
      fs.template unit<PerBlock>(t, offset, s, zo);
      for (int k = 0; k < T; ++k)
        q8_float_stage<A>::accumulate(R[k], s, zo, p.qs + (tok0 + k) * p.ldqs + t * 16, acc[k]);
    }
    for (int k = 0; k < T; ++k)
      y[(tok0 + k) * ldy] = fs.finish(codes, p.q + (tok0 + k) * p.ldq, p.sx[tok0 + k], acc[k]);
  }
}

// Rows [r0, r1) of every token: y[k * ldy + r]. Tokens go four at a time over each row's codes.
template <class A, bool Vnni, int Bits, bool PerBlock>
void q8_rows(const quantized_tensor& w, const q8_activations& p, float* y, index_t ldy, index_t r0, index_t r1) {
  thread_local arch_buffer<std::int32_t, A> zero_buf;
  thread_local arch_buffer<float, A> scale_buf;
  const auto scratch = static_cast<std::size_t>(p.l.groups + 16);
  q8_float_stage<A> fs(w, p.l, scale_buf.get(scratch), zero_buf.get(scratch));
  for (index_t r = r0; r < r1; ++r) {
    fs.load_row(r);
    const std::uint8_t* codes = w.row_codes(r);
    index_t k = 0;
    for (; k + 4 <= p.tokens; k += 4) q8_tile<A, Vnni, Bits, 4, PerBlock>(fs, p, codes, k, y + r, ldy);
    switch (p.tokens - k) {
      case 3: q8_tile<A, Vnni, Bits, 3, PerBlock>(fs, p, codes, k, y + r, ldy); break;
      case 2: q8_tile<A, Vnni, Bits, 2, PerBlock>(fs, p, codes, k, y + r, ldy); break;
      case 1: q8_tile<A, Vnni, Bits, 1, PerBlock>(fs, p, codes, k, y + r, ldy); break;
      default: break;
    }
  }
}

// The whole product for n tokens (x: n rows of w.cols() floats, stride ldx; y: n rows of w.rows(),
// stride ldy): quantizes each token, rearranges it, runs the rows (threads as gemv_options says).
template <class A, bool Vnni>
void q8_product(const quantized_tensor& w, const float* x, index_t ldx, index_t n, float* y, index_t ldy,
                unsigned threads) {
  q8_activations p;
  p.l = make_q8_layout(w);
  const q8_layout& l = p.l;
  const index_t cols = w.cols();
  p.tokens = n;
  p.ldq = (cols + 63) / 64 * 64;
  p.ldqa = (l.main + 64) / 64 * 64;
  p.ldqs = l.units * 16 + 16;
  thread_local arch_buffer<std::int8_t, A> q_buf, qa_buf;
  thread_local arch_buffer<std::int32_t, A> qs_buf;
  thread_local arch_buffer<float, A> sx_buf;
  std::int8_t* q = q_buf.get(static_cast<std::size_t>(n * p.ldq));
  std::int8_t* qa = qa_buf.get(static_cast<std::size_t>(n * p.ldqa));
  std::int32_t* qs = qs_buf.get(static_cast<std::size_t>(n * p.ldqs));
  float* sx = sx_buf.get(static_cast<std::size_t>(n));
  for (index_t k = 0; k < n; ++k) {
    std::int8_t* qk = q + k * p.ldq;
    std::int8_t* qak = qa + k * p.ldqa;
    std::int32_t* qsk = qs + k * p.ldqs;
    sx[k] = quantize_activations<A>(x + k * ldx, cols, qk);
    for (index_t b = 0; b < l.blocks; ++b) {
      if (l.per_lane == 8)
        for (index_t m = 0; m < 64; ++m) {
          qak[b * 128 + m] = qk[b * 128 + 2 * m];
          qak[b * 128 + 64 + m] = qk[b * 128 + 2 * m + 1];
        }
      else
        std::copy(qk + b * 64, qk + b * 64 + 64, qak + b * 64);
    }
    for (index_t t = 0; t < l.units; ++t) {
      const index_t b0 = t * l.blocks_per_unit, b1 = std::min(l.blocks, b0 + l.blocks_per_unit);
      for (index_t i = 0; i < 16; ++i) {
        std::int32_t s = 0;
        for (index_t b = b0; b < b1; ++b)
          for (index_t m = 0; m < l.per_lane; ++m) s += qk[b * l.block + l.per_lane * i + m];
        qsk[t * 16 + i] = s;
      }
    }
  }
  p.sx = sx;
  p.q = q;
  p.qa = qa;
  p.qs = qs;
  const bool int4 = w.spec().format == format_id::int4;
  for_row_chunks(w.rows(), threads, [&](index_t r0, index_t r1) {
    if (int4 && l.per_block)
      q8_rows<A, Vnni, 4, true>(w, p, y, ldy, r0, r1);
    else if (int4)
      q8_rows<A, Vnni, 4, false>(w, p, y, ldy, r0, r1);
    else if (l.per_block)
      q8_rows<A, Vnni, 8, true>(w, p, y, ldy, r0, r1);
    else
      q8_rows<A, Vnni, 8, false>(w, p, y, ldy, r0, r1);
  });
}

