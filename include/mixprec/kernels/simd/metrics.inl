// The sums behind every error metric (sensitivity/metrics.hpp), for one target (included by
// kernels/simd/targets.hpp in each target's namespace).

// D = batch<double, A>::size floats at p, widened to doubles: one cvtps2pd on x86, xsimd's
// element-wise conversion elsewhere.
template <class A>
inline dbatch<A> load_widened(const float* p) noexcept {
#if MIXPREC_X86
  if constexpr (is_avx512<A>) {
    return _mm512_cvtps_pd(_mm256_loadu_ps(p));
  } else if constexpr (MIXPREC_X86 && std::is_base_of_v<xsimd::avx, A>) {
    return _mm256_cvtps_pd(_mm_loadu_ps(p));
  } else if constexpr (is_sse2<A>) {
    return _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  } else
#endif
  {
    return dbatch<A>::load_unaligned(p);
  }
}

// Accumulates n elements of a and b into s, in double, with architecture A's double batches (a
// serial double sum cannot be vectorised by the compiler without -ffast-math). Two sets of
// accumulators hide the add latency.
template <class A>
void accumulate_error(const float* a, const float* b, index_t n, error_stats& s) noexcept {
  using db = dbatch<A>;
  constexpr index_t D = static_cast<index_t>(db::size);
  db sa0(0.0), sb0(0.0), se0(0.0), sd0(0.0), mx0(0.0);
  db sa1(0.0), sb1(0.0), se1(0.0), sd1(0.0), mx1(0.0);
  auto step = [&](const float* pa, const float* pb) {
    const db x0 = load_widened<A>(pa), y0 = load_widened<A>(pb), e0 = x0 - y0;
    const db x1 = load_widened<A>(pa + D), y1 = load_widened<A>(pb + D), e1 = x1 - y1;
    sa0 = sx::fma(x0, x0, sa0);
    sb0 = sx::fma(y0, y0, sb0);
    se0 = sx::fma(e0, e0, se0);
    sd0 = sx::fma(x0, y0, sd0);
    mx0 = sx::max(mx0, sx::abs(e0));
    sa1 = sx::fma(x1, x1, sa1);
    sb1 = sx::fma(y1, y1, sb1);
    se1 = sx::fma(e1, e1, se1);
    sd1 = sx::fma(x1, y1, sd1);
    mx1 = sx::max(mx1, sx::abs(e1));
  };
  index_t i = 0;
  for (; i + 2 * D <= n; i += 2 * D) step(a + i, b + i);
  if (i < n) {  // the tail, zero-padded: zeros add nothing to any sum
    float ta[2 * D] = {}, tb[2 * D] = {};
    std::copy(a + i, a + n, ta);
    std::copy(b + i, b + n, tb);
    step(ta, tb);
  }
  s.signal += sx::hadd(sa0 + sa1);
  s.test_energy += sx::hadd(sb0 + sb1);
  s.noise += sx::hadd(se0 + se1);
  s.dot += sx::hadd(sd0 + sd1);
  alignas(A::alignment()) double lanes[db::size];
  sx::max(mx0, mx1).store_aligned(lanes);
  for (double m : lanes) s.max_abs = std::max(s.max_abs, m);
  s.count += n;
}

