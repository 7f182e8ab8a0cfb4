// Small SIMD helpers that xsimd 8.1 lacks, for the kernels of one target (included by
// kernels/simd/targets.hpp inside each target's namespace, which defines fbatch<A>, ibatch<A> and the
// operations namespace sx): horizontal min/max, fused multiply-add, and widening loads / narrowing
// stores between 8/16-bit integers in memory and 32-bit lanes. Each has an intrinsic path for the x86
// families (SSE2, SSE4.1, AVX2, AVX-512) and a portable store-and-loop fallback (NEON...).

// select() on 32-bit integer lanes. xsimd 8.1's integer select for AVX-512BW does not compile
// without optimisation (GCC's blend intrinsics are macros at -O0), so go through the float select.
template <class A>
inline ibatch<A> select_i32(ibatch_bool<A> cond, ibatch<A> a, ibatch<A> b) noexcept {
  return sx::bitwise_cast<ibatch<A>>(
      sx::select(sx::bool_cast(cond), sx::bitwise_cast<fbatch<A>>(a), sx::bitwise_cast<fbatch<A>>(b)));
}

// a * b + c with one rounding where the ISA has FMA. xsimd 8.1's fma for AVX-512 is written as
// a * b + c and so becomes two instructions under -ffp-contract=off; this one is always fused there.
template <class A>
inline fbatch<A> madd(fbatch<A> a, fbatch<A> b, fbatch<A> c) noexcept {
#if MIXPREC_X86
  if constexpr (is_avx512<A>) {
    return _mm512_fmadd_ps(a, b, c);
  } else
#endif
  {
    return sx::fma(a, b, c);
  }
}

// Horizontal max / min of a batch (xsimd 8.1 has no reduce_max): log-step shuffles on x86, a
// store-and-loop elsewhere. Exact, so the order does not matter.
template <class A, bool Max>
inline float reduce_minmax(fbatch<A> v) noexcept {
#if MIXPREC_X86
  auto op = [](__m128 a, __m128 b) { return Max ? _mm_max_ps(a, b) : _mm_min_ps(a, b); };
  if constexpr (is_avx512<A> || is_avx2<A> || is_sse2<A>) {
    __m128 x;
    if constexpr (is_avx512<A>) {
      const __m512 r = v;
      const __m256 h = Max ? _mm256_max_ps(_mm512_castps512_ps256(r), _mm512_extractf32x8_ps(r, 1))
                           : _mm256_min_ps(_mm512_castps512_ps256(r), _mm512_extractf32x8_ps(r, 1));
      x = op(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    } else if constexpr (is_avx2<A>) {
      const __m256 r = v;
      x = op(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
    } else {
      x = v;
    }
    x = op(x, _mm_movehl_ps(x, x));
    x = op(x, _mm_shuffle_ps(x, x, 0x55));
    return _mm_cvtss_f32(x);
  } else
#endif
  {
    alignas(A::alignment()) float lanes[fbatch<A>::size];
    v.store_aligned(lanes);
    float m = lanes[0];
    for (std::size_t i = 1; i < fbatch<A>::size; ++i) m = (Max ? lanes[i] > m : lanes[i] < m) ? lanes[i] : m;
    return m;
  }
}
template <class A>
inline float reduce_max(fbatch<A> v) noexcept {
  return reduce_minmax<A, true>(v);
}
template <class A>
inline float reduce_min(fbatch<A> v) noexcept {
  return reduce_minmax<A, false>(v);
}

// Loads ibatch<A>::size bytes and zero-extends each to a 32-bit lane.
template <class A>
inline ibatch<A> load_u8_as_i32(const std::uint8_t* p) noexcept {
#if MIXPREC_X86
  if constexpr (is_avx512<A>) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (is_avx2<A>) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (is_sse41<A>) {
    std::int32_t w;
    std::memcpy(&w, p, 4);
    return _mm_cvtepu8_epi32(_mm_cvtsi32_si128(w));
  } else if constexpr (is_sse2<A>) {
    std::int32_t w;
    std::memcpy(&w, p, 4);
    const __m128i zero = _mm_setzero_si128();
    return _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(w), zero), zero);
  } else
#endif
  {
    alignas(A::alignment()) std::int32_t lanes[ibatch<A>::size];
    for (std::size_t i = 0; i < ibatch<A>::size; ++i) lanes[i] = p[i];
    return ibatch<A>::load_aligned(lanes);
  }
}

// Loads ibatch<A>::size little-endian uint16 values and zero-extends each to a 32-bit lane.
template <class A>
inline ibatch<A> load_u16_as_i32(const std::uint16_t* p) noexcept {
#if MIXPREC_X86
  if constexpr (is_avx512<A>) {
    return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  } else if constexpr (is_avx2<A>) {
    return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (is_sse41<A>) {
    return _mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (is_sse2<A>) {
    return _mm_unpacklo_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)), _mm_setzero_si128());
  } else
#endif
  {
    alignas(A::alignment()) std::int32_t lanes[ibatch<A>::size];
    for (std::size_t i = 0; i < ibatch<A>::size; ++i) lanes[i] = p[i];
    return ibatch<A>::load_aligned(lanes);
  }
}

// Stores each 32-bit lane (which must hold 0..255) as one byte.
template <class A>
inline void store_i32_as_u8(ibatch<A> v, std::uint8_t* p) noexcept {
#if MIXPREC_X86
  if constexpr (is_avx512<A>) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(v));
  } else if constexpr (is_avx2<A>) {
    const __m256i r = v;
    const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(w16, w16));
  } else if constexpr (is_sse2<A>) {
    const __m128i w16 = _mm_packs_epi32(v, v);
    const std::int32_t w = _mm_cvtsi128_si32(_mm_packus_epi16(w16, w16));
    std::memcpy(p, &w, 4);
  } else
#endif
  {
    alignas(A::alignment()) std::int32_t lanes[ibatch<A>::size];
    v.store_aligned(lanes);
    for (std::size_t i = 0; i < ibatch<A>::size; ++i) p[i] = static_cast<std::uint8_t>(lanes[i]);
  }
}

// Stores each 32-bit lane (which must hold 0..65535) as one little-endian uint16.
template <class A>
inline void store_i32_as_u16(ibatch<A> v, std::uint16_t* p) noexcept {
#if MIXPREC_X86
  if constexpr (is_avx512<A>) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(v));
  } else if constexpr (is_avx2<A>) {
    const __m256i r = v;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                     _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1)));
  } else if constexpr (is_sse41<A>) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi32(v, v));
  } else if constexpr (is_sse2<A>) {
    // No unsigned saturating pack before SSE4.1: bias into int16 range, pack, unbias.
    const __m128i bias32 = _mm_set1_epi32(0x8000);
    const __m128i w16 = _mm_packs_epi32(_mm_sub_epi32(v, bias32), _mm_sub_epi32(v, bias32));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_xor_si128(w16, _mm_set1_epi16(static_cast<short>(0x8000))));
  } else
#endif
  {
    alignas(A::alignment()) std::int32_t lanes[ibatch<A>::size];
    v.store_aligned(lanes);
    for (std::size_t i = 0; i < ibatch<A>::size; ++i) p[i] = static_cast<std::uint16_t>(lanes[i]);
  }
}

