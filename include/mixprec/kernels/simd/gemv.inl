// Quantized matrix products for one target (included by kernels/simd/targets.hpp in each target's
// namespace; the public entry points and the paths they take are described in kernels/gemv.hpp).

template <class A>
struct kernels;  // this target's kernel set (entry.inl), which the row codec decodes with

template <class A>
inline float hsum(fbatch<A> v) noexcept {
  return sx::hadd(v);
}

// FP32 dot product of n floats.
template <class A>
inline float dot(const float* a, const float* b, index_t n) noexcept {
  constexpr index_t w = fbatch<A>::size;
  fbatch<A> acc0(0.0f), acc1(0.0f);
  index_t j = 0;
  for (; j + 2 * w <= n; j += 2 * w) {
    acc0 = madd<A>(fbatch<A>::load_unaligned(a + j), fbatch<A>::load_unaligned(b + j), acc0);
    acc1 = madd<A>(fbatch<A>::load_unaligned(a + j + w), fbatch<A>::load_unaligned(b + j + w), acc1);
  }
  for (; j + w <= n; j += w) acc0 = madd<A>(fbatch<A>::load_unaligned(a + j), fbatch<A>::load_unaligned(b + j), acc0);
  float s = hsum<A>(acc0 + acc1);
  for (; j < n; ++j) s += a[j] * b[j];
  return s;
}

// Four dot products of a against b, b + stride, b + 2 stride, b + 3 stride (n floats each).
template <class A>
inline void dot4(const float* a, const float* b, index_t stride, index_t n, float* out) noexcept {
  constexpr index_t w = fbatch<A>::size;
  fbatch<A> acc0(0.0f), acc1(0.0f), acc2(0.0f), acc3(0.0f);
  index_t j = 0;
  for (; j + w <= n; j += w) {
    const fbatch<A> av = fbatch<A>::load_unaligned(a + j);
    acc0 = madd<A>(av, fbatch<A>::load_unaligned(b + j), acc0);
    acc1 = madd<A>(av, fbatch<A>::load_unaligned(b + stride + j), acc1);
    acc2 = madd<A>(av, fbatch<A>::load_unaligned(b + 2 * stride + j), acc2);
    acc3 = madd<A>(av, fbatch<A>::load_unaligned(b + 3 * stride + j), acc3);
  }
  out[0] = hsum<A>(acc0);
  out[1] = hsum<A>(acc1);
  out[2] = hsum<A>(acc2);
  out[3] = hsum<A>(acc3);
  for (; j < n; ++j)
    for (int k = 0; k < 4; ++k) out[k] += a[j] * b[k * stride + j];
}

// Calls fn(r, row) for every row of w, the row dequantized into an L1-resident buffer (row-decode path).
template <class A, class Fn>
void decoded_rows(const quantized_tensor& w, const gemv_options& o, Fn&& fn) {
  for_row_chunks(w.rows(), o.threads, [&](index_t r0, index_t r1) {
    thread_local std::vector<float> row;
    thread_local std::vector<std::uint8_t> codes;
    row.resize(static_cast<std::size_t>(w.cols()));
    codes.resize(static_cast<std::size_t>(w.cols()));
    for (index_t r = r0; r < r1; ++r) {
      decode_row<kernels<A>>(w, r, row.data(), codes.data());  // the row codec (kernels/ref/row_codec.hpp)
      fn(r, row.data());
    }
  });
}

// y[c * ldy + r] = (Q(W) X)[r, c] for the n activation columns X[c] = x + c * ldx, by the fused
// integer kernels (kernels/simd/gemv_int.inl); returns false, doing nothing, when they do not apply.
template <class A>
bool fused_int_product(const quantized_tensor& w, const float* x, index_t ldx, index_t n, float* y, index_t ldy,
                       const gemv_options& o) {
  int_product<A> p;
  p.l = make_int_layout<A>(w);
  if (p.l.blocks < 0) return false;
  const auto un = static_cast<std::size_t>(n);
  thread_local arch_buffer<float, A> xp_buf, xs_buf;
  float* xp = xp_buf.get(un * static_cast<std::size_t>(p.l.main));
  float* xs = xs_buf.get(un * static_cast<std::size_t>(p.l.groups + p.l.lanes));
  prepare_activations<A>(p.l, x, ldx, n, xp, xs);
  p.x = x;
  p.ldx = ldx;
  p.xp = xp;
  p.xs = xs;
  if (p.l.per_block) {
    alignas(A::alignment()) std::int32_t idx[ibatch<A>::size];
    for (std::size_t i = 0; i < ibatch<A>::size; ++i)
      idx[i] = static_cast<std::int32_t>(static_cast<index_t>(i) * (32 / p.l.bits) / p.l.group);
    p.lane_group = ibatch<A>::load_aligned(idx);
  }
  for_row_chunks(w.rows(), o.threads, [&](index_t r0, index_t r1) {
    if (p.l.bits == 4)
      int_rows<A, 4>(w, p, n, y, ldy, r0, r1);
    else
      int_rows<A, 8>(w, p, n, y, ldy, r0, r1);
  });
  return true;
}

// FP16/BF16 rows [r0, r1), converted in registers.
template <class A>
void half_rows(const quantized_tensor& w, const float* x, float* y, index_t r0, index_t r1) {
  constexpr index_t lanes = fbatch<A>::size;
  const bool is_fp16 = w.spec().format == format_id::fp16;
  const index_t cols = w.cols();
  for (index_t r = r0; r < r1; ++r) {
    const auto* h = reinterpret_cast<const std::uint16_t*>(w.row_codes(r));
    fbatch<A> acc0(0.0f), acc1(0.0f);
    index_t j = 0;
    for (; j + lanes <= cols; j += lanes) {
      fbatch<A> f;
      constexpr bool f16c = has_f16c<A>;
#if MIXPREC_X86
      if constexpr (is_avx512<A>) {  // F16C: one exact conversion instead of the bit-level decode
        if (is_fp16) f = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + j)));
      } else if constexpr (f16c && is_avx2<A>) {
        if (is_fp16) f = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + j)));
      }
#endif
      if (!is_fp16 || !f16c) {
        const ibatch<A> v = load_u16_as_i32<A>(h + j);
        f = is_fp16 ? simd::fp16_lanes_to_float<A>(v) : sx::bitwise_cast<fbatch<A>>(v << 16);
      }
      if ((j / lanes) % 2 == 0)
        acc0 = madd<A>(f, fbatch<A>::load_unaligned(x + j), acc0);
      else
        acc1 = madd<A>(f, fbatch<A>::load_unaligned(x + j), acc1);
    }
    float s = hsum<A>(acc0 + acc1);
    for (; j < cols; ++j) s += (is_fp16 ? fp16_to_fp32(h[j]) : bf16_to_fp32(h[j])) * x[j];
    y[r] = s;
  }
}

// y = Q(W) x: x has w.cols() floats, y w.rows().
template <class A>
void gemv(const quantized_tensor& w, const float* x, float* y, const gemv_options& o) {
  const quant_spec& s = w.spec();
  if (fused_int_product<A>(w, x, w.cols(), 1, y, w.rows(), o)) return;
  if (s.format == format_id::fp16 || s.format == format_id::bf16) {
    for_row_chunks(w.rows(), o.threads, [&](index_t r0, index_t r1) { half_rows<A>(w, x, y, r0, r1); });
    return;
  }
  decoded_rows<A>(w, o, [&](index_t r, const float* row) { y[r] = dot<A>(row, x, w.cols()); });
}

// Y = X Q(W)^T: X is batch x w.cols() (stride ldx), Y batch x w.rows() (stride ldy); shapes checked by
// the caller.
template <class A>
void gemm(const quantized_tensor& w, const float* x, index_t ldx, index_t batch, float* y, index_t ldy,
          const gemv_options& o) {
  if (fused_int_product<A>(w, x, ldx, batch, y, ldy, o)) return;
  if (batch == 1) {
    gemv<A>(w, x, y, o);
    return;
  }
  decoded_rows<A>(w, o, [&](index_t r, const float* row) {
    index_t b = 0;
    for (; b + 4 <= batch; b += 4) {  // four tokens per pass: each decoded vector is loaded once
      float out[4];
      dot4<A>(row, x + b * ldx, ldx, w.cols(), out);
      for (int k = 0; k < 4; ++k) y[(b + k) * ldy + r] = out[k];
    }
    for (; b < batch; ++b) y[b * ldy + r] = dot<A>(row, x + b * ldx, w.cols());
  });
}

// The INT8-activation product for `batch` tokens (gemv / gemm with activation_type::int8); vnni only after the CPU check.
template <class A>
void gemm_int8(const quantized_tensor& w, const float* x, index_t ldx, index_t batch, float* y, index_t ldy,
               const gemv_options& o, bool vnni) {
  if (vnni && is_avx512<A>)
    q8_product<A, true>(w, x, ldx, batch, y, ldy, o.threads);
  else
    q8_product<A, false>(w, x, ldx, batch, y, ldy, o.threads);
}
