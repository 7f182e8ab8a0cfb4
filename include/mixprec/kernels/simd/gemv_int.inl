// Fused INT4 / INT8 weight kernels with FP32 activations, for one or several activation columns
// (internals of gemv()/gemm() in kernels/gemv.hpp; users call those).
//
// Layout. With L 32-bit lanes per vector and P codes per lane (P = 8 for INT4, 4 for INT8), one
// vector load of codes covers a block of B = P * L columns: lane i holds columns P*i .. P*i + P-1 of
// the block, field k (bits [k*Bits, (k+1)*Bits)) holding column P*i + k. The upper half of each lane
// is shifted down once (hi = v >> 16); then field k is only masked in place in lo or hi, its value
// u * 2^(Bits * (k mod P/2)) exact in FP32 (field_as_float). The activations are rearranged once per
// call so that vector k of a block holds x[P*i + k] * 2^-(Bits * (k mod P/2)), hence
// float(field) * x' == float(u) * x exactly. Per lane and group, U = sum u * x is accumulated in FP32;
// the scale is applied once per group (or, for groups shorter than a block, once per block with
// per-lane scales), and the zero points enter once per row:
//   y = sum_g s_g * U_g - sum_g s_g * z_g * X_g,  X_g = sum of x over group g.
// Why: decode costs about two cheap operations per vector of weights, no shuffles and no zero-point
// subtraction per weight, so the loop runs close to one FMA per L weights.
// Several rows (batch 1) or several activation columns (batches) share each load.
//
// Accuracy: exact products, FP32 sums in an order different from the double reference; per output
// |y - Q(W)x| <= cols * 2^-23 * sum_j |s_g| (u_j + z_g) |x_j| (ref::gemv_magnitude), the (u + z)
// because the zero point is subtracted after summing. Activations below 2^-114 in magnitude are
// rounded when pre-scaled (an absolute error below 2^-137 |s_g| u per element).
// Columns past the last whole block are computed by a scalar loop, exactly as dequantize() forms
// the weight.

// 64-byte aligned scratch, one class per architecture. Kernels use it instead of std::vector so that
// no code compiled for one ISA is shared (by the linker's choice) with translation units built for
// another: every member is a distinct symbol per Arch.
template <class T, class A>
class arch_buffer {
 public:
  arch_buffer() = default;
  arch_buffer(const arch_buffer&) = delete;
  arch_buffer& operator=(const arch_buffer&) = delete;
  ~arch_buffer() { release(); }
  // At least n elements (contents unspecified).
  T* get(std::size_t n) {
    if (n > cap_) {
      release();
      p_ = static_cast<T*>(::operator new[](std::max<std::size_t>(n, 1) * sizeof(T), std::align_val_t{64}));
      cap_ = n;
    }
    return p_;
  }

 private:
  void release() noexcept {
    if (p_) ::operator delete[](p_, std::align_val_t{64});
    p_ = nullptr;
    cap_ = 0;
  }
  T* p_ = nullptr;
  std::size_t cap_ = 0;
};

// Logical right shift of 32-bit lanes by N.
template <class A, int N>
inline ibatch<A> srli(ibatch<A> v) noexcept {
#if MIXPREC_X86
  if constexpr (is_avx512<A>) {
    return _mm512_srli_epi32(v, N);
  } else if constexpr (is_avx2<A>) {
    return _mm256_srli_epi32(v, N);
  } else if constexpr (is_sse2<A>) {
    return _mm_srli_epi32(v, N);
  } else
#endif
  {
    return (v >> N) & ibatch<A>(static_cast<std::int32_t>((std::uint32_t{1} << (32 - N)) - 1));
  }
}

// 4 * lanes bytes as 32-bit lanes (little-endian).
template <class A>
inline ibatch<A> load_bytes_as_i32(const std::uint8_t* p) noexcept {
#if MIXPREC_X86
  if constexpr (is_avx512<A>) {
    return _mm512_loadu_si512(p);
  } else if constexpr (is_avx2<A>) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  } else if constexpr (is_sse2<A>) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  } else
#endif
  {
    alignas(A::alignment()) std::int32_t lanes[ibatch<A>::size];
    std::memcpy(lanes, p, sizeof lanes);
    return ibatch<A>::load_aligned(lanes);
  }
}

// Lane i = s[idx[i]] (idx lanes in [0, lanes)); s must have `lanes` readable floats.
template <class A>
inline fbatch<A> permute_lanes(const float* s, ibatch<A> idx) noexcept {
#if MIXPREC_X86
  if constexpr (is_avx512<A>) {
    return _mm512_permutexvar_ps(idx, _mm512_loadu_ps(s));
  } else if constexpr (is_avx2<A>) {
    return _mm256_permutevar8x32_ps(_mm256_loadu_ps(s), idx);
  } else
#endif
  {
    alignas(A::alignment()) std::int32_t ix[ibatch<A>::size];
    alignas(A::alignment()) float lanes[fbatch<A>::size];
    idx.store_aligned(ix);
    for (std::size_t i = 0; i < fbatch<A>::size; ++i) lanes[i] = s[ix[i]];
    return fbatch<A>::load_aligned(lanes);
  }
}

// Field K of each 32-bit lane (P = 32 / Bits fields; fields below P/2 come from lo = v, the others from
// hi = v >> 16) as FP32, scaled by 2^(Bits * (K mod P/2)): exact, the field is only masked in place.
// AVX-512: OR-ing 2^23's exponent onto the masked field (one ternary-logic op) and subtracting 2^23
// avoids the integer conversion, whose 512-bit form is the slowest step on some cores (Zen 4).
template <class A, int Bits, int K>
inline fbatch<A> field_as_float(ibatch<A> lo, ibatch<A> hi) noexcept {
  constexpr int half = 16 / Bits;
  constexpr std::int32_t mask = static_cast<std::int32_t>(((1u << Bits) - 1) << ((K % half) * Bits));
  const ibatch<A> src = K < half ? lo : hi;
#if MIXPREC_X86
  if constexpr (is_avx512<A>) {
    constexpr std::int32_t magic = 0x4B000000;  // 2^23: a field in bits 0..22 becomes 2^23 + field
    const __m512i t = _mm512_ternarylogic_epi32(src, _mm512_set1_epi32(mask), _mm512_set1_epi32(magic), 0xEA);
    return _mm512_sub_ps(_mm512_castsi512_ps(t), _mm512_set1_ps(8388608.0f));
  } else
#endif
  {
    return sx::to_float(src & ibatch<A>(mask));
  }
}

// How a fused integer kernel walks a row of w (see the top of this file).
struct int_layout {
  int bits = 4;             // 4 or 8
  index_t lanes = 0;        // 32-bit lanes per vector
  index_t block = 0;        // columns per block: (32 / bits) * lanes
  index_t blocks = 0;       // whole blocks per row
  index_t main = 0;         // blocks * block: columns done by the vector loop
  index_t cols = 0;
  index_t group = 0;        // group length (cols for per-channel / per-tensor)
  index_t groups = 0;       // groups per row
  bool shared_scale = false;  // per-tensor: one scale and zero point for every row
  bool per_block = false;   // groups shorter than a block: per-lane scales, applied once per block
  index_t groups_per_block = 0;
  index_t blocks_per_group = 0;
};

// The layout for architecture A, or blocks == -1 when the fused kernels do not apply (formats other
// than INT4/INT8, rows shorter than one block, or groups that neither divide nor are divided by the
// block).
template <class A>
int_layout make_int_layout(const quantized_tensor& w) noexcept {
  int_layout l;
  const quant_spec& s = w.spec();
  l.blocks = -1;
  if (s.format != format_id::int4 && s.format != format_id::int8) return l;
  l.bits = bits_of(s.format);
  const index_t per_lane = 32 / l.bits;
  l.lanes = static_cast<index_t>(ibatch<A>::size);
  l.block = per_lane * l.lanes;
  l.cols = w.cols();
  l.group = w.group_length();
  l.groups = w.groups_per_row();
  l.shared_scale = s.granularity == granularity_id::per_tensor;
  const index_t blocks = l.cols / l.block;
  // A row shorter than one block would go entirely through the scalar tail (AVX-512's blocks of 128
  // INT4 columns against rows of 64: 7x slower than the row-decode path); leave it to row-decode.
  if (blocks == 0) return l;
  l.main = blocks * l.block;
  if (l.groups == 1) {
    l.blocks_per_group = blocks;
  } else if (l.group % l.block == 0) {
    l.blocks_per_group = l.group / l.block;
  } else if (l.block % l.group == 0 && l.group % per_lane == 0) {
    l.per_block = true;
    l.groups_per_block = l.block / l.group;
  } else {
    return l;
  }
  l.blocks = blocks;
  return l;
}

// Rearranges n activation columns for the layout: xp[c] gets `main` floats (vector k of block b holds
// x[b*B + P*i + k] * 2^-(bits * (k mod P/2))), xs[c] the sums of x over the main columns of each group
// (groups + lanes entries, zero padded).
template <class A>
void prepare_activations(const int_layout& l, const float* x, index_t ldx, index_t n, float* xp, float* xs) {
  const index_t per_lane = 32 / l.bits, stride_s = l.groups + l.lanes;
  for (index_t c = 0; c < n; ++c) {
    const float* xc = x + c * ldx;
    float* pc = xp + c * l.main;
    for (index_t b = 0; b < l.blocks; ++b)
      for (index_t k = 0; k < per_lane; ++k) {
        const float f = 1.0f / static_cast<float>(std::uint32_t{1} << ((k % (per_lane / 2)) * l.bits));
        for (index_t i = 0; i < l.lanes; ++i)
          pc[b * l.block + k * l.lanes + i] = xc[b * l.block + per_lane * i + k] * f;
      }
    float* sc = xs + c * stride_s;
    std::fill(sc, sc + stride_s, 0.0f);
    for (index_t g = 0, j0 = 0; j0 < l.main; ++g, j0 += l.group) {
      float acc = 0.0f;
      for (index_t j = j0; j < std::min(l.main, j0 + l.group); ++j) acc += xc[j];
      sc[g] = acc;
    }
  }
}

// The n = groups_per_row() scales of row r as FP32 into s (the one shared row for per-tensor weights);
// returns the index of the row's first scale, which is also that of its first zero point.
template <class A>
std::size_t decode_scales(const quantized_tensor& w, index_t r, float* s) {
  const quant_spec& spec = w.spec();
  const index_t n = w.groups_per_row();
  const std::size_t first = spec.granularity == granularity_id::per_tensor ? 0 : static_cast<std::size_t>(r * n);
  const std::uint8_t* sb = w.scale_bytes().data() + first * static_cast<std::size_t>(bytes_of(spec.scales));
  if (spec.scales == scale_type::fp32)
    std::memcpy(s, sb, static_cast<std::size_t>(n) * 4);
  else if (spec.scales == scale_type::fp16)
    simd::from_fp16(A{}, reinterpret_cast<const std::uint16_t*>(sb), n, s);
  else
    simd::from_bf16(A{}, reinterpret_cast<const std::uint16_t*>(sb), n, s);
  return first;
}

// Scales of row r as FP32 into s (groups + lanes entries, zero padded), and s_g * z_g into sz.
template <class A>
void decode_row_scales(const quantized_tensor& w, const int_layout& l, index_t r, float* s, float* sz) {
  const quant_spec& spec = w.spec();
  const std::size_t first = decode_scales<A>(w, r, s);
  const index_t n = l.groups;
  std::fill(s + n, s + n + l.lanes, 0.0f);
  if (spec.scheme == scheme_id::asymmetric) {
    const std::uint8_t* z = w.zero_point_bytes().data() + first;
    for (index_t g = 0; g < n; ++g) sz[g] = s[g] * static_cast<float>(z[g]);
  } else {
    const float z = static_cast<float>(1 << (l.bits - 1));
    for (index_t g = 0; g < n; ++g) sz[g] = s[g] * z;
  }
  std::fill(sz + n, sz + n + l.lanes, 0.0f);
}

// sum_g a[g] * b[g] over n entries.
template <class A>
float dot_groups(const float* a, const float* b, index_t n) noexcept {
  constexpr index_t w = fbatch<A>::size;
  fbatch<A> acc(0.0f);
  index_t g = 0;
  for (; g + w <= n; g += w) acc = madd<A>(fbatch<A>::load_unaligned(a + g), fbatch<A>::load_unaligned(b + g), acc);
  float s = sx::hadd(acc);
  for (; g < n; ++g) s += a[g] * b[g];
  return s;
}

// Main loop over R rows x NC activation columns: out[r][c] = sum_g s_g * U_g over the whole blocks.
template <class A, int Bits, int R, int NC>
void int_main_loop(const int_layout& l, const std::uint8_t* const* codes, const float* const* scales,
                   const float* const* xp, ibatch<A> lane_group, float (*out)[NC]) noexcept {
  constexpr int P = 32 / Bits;
  constexpr index_t L = static_cast<index_t>(ibatch<A>::size);
  constexpr index_t B = P * L;
  constexpr index_t block_bytes = 4 * L;
  fbatch<A> total[R][NC];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NC; ++c) total[r][c] = fbatch<A>(0.0f);

  // u = sum over blocks [b0, b1) of float(field) * x', accumulated in locals (kept in registers).
  auto accumulate = [&](index_t b0, index_t b1, fbatch<A>(&out_u)[R][NC]) {
    fbatch<A> u[R][NC];
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < NC; ++c) u[r][c] = fbatch<A>(0.0f);
    for (index_t b = b0; b < b1; ++b) {
      ibatch<A> v[R];
      ibatch<A> hi[R];
      for (int r = 0; r < R; ++r) {
        v[r] = load_bytes_as_i32<A>(codes[r] + b * block_bytes);
        hi[r] = srli<A, 16>(v[r]);
      }
      [&]<int... K>(std::integer_sequence<int, K...>) {
        (
            [&] {
              fbatch<A> f[R];
              for (int r = 0; r < R; ++r) f[r] = field_as_float<A, Bits, K>(v[r], hi[r]);
              for (int c = 0; c < NC; ++c) {
                const fbatch<A> xk = fbatch<A>::load_unaligned(xp[c] + b * B + K * L);
                for (int r = 0; r < R; ++r) u[r][c] = madd<A>(f[r], xk, u[r][c]);
              }
            }(),
            ...);
      }(std::make_integer_sequence<int, P>{});
    }
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < NC; ++c) out_u[r][c] = u[r][c];
  };

  fbatch<A> u[R][NC];
  if (!l.per_block) {
    for (index_t g = 0, b0 = 0; b0 < l.blocks; ++g, b0 += l.blocks_per_group) {
      accumulate(b0, std::min(l.blocks, b0 + l.blocks_per_group), u);
      for (int r = 0; r < R; ++r) {
        const fbatch<A> s(scales[r][g]);
        for (int c = 0; c < NC; ++c) total[r][c] = madd<A>(u[r][c], s, total[r][c]);
      }
    }
  } else {
    for (index_t b = 0; b < l.blocks; ++b) {
      accumulate(b, b + 1, u);
      for (int r = 0; r < R; ++r) {
        const fbatch<A> s = permute_lanes<A>(scales[r] + b * l.groups_per_block, lane_group);
        for (int c = 0; c < NC; ++c) total[r][c] = madd<A>(u[r][c], s, total[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NC; ++c) out[r][c] = sx::hadd(total[r][c]);
}

// Per-call state of a fused integer product: the layout and the rearranged activations.
template <class A>
struct int_product {
  int_layout l;
  const float* x = nullptr;  // original activations (for the scalar tail)
  index_t ldx = 0;
  const float* xp = nullptr;
  const float* xs = nullptr;
  ibatch<A> lane_group = ibatch<A>(0);  // per_block: lane -> group within the block
};

// Rows [r0, r1) of y = Q(W) X for activation columns [0, n): y[c * ldy + r].
template <class A, int Bits>
void int_rows(const quantized_tensor& w, const int_product<A>& p, index_t n, float* y, index_t ldy, index_t r0,
              index_t r1) {
  const int_layout& l = p.l;
  constexpr int RB = is_avx512<A> ? 4 : 2;         // rows per pass at batch 1
  constexpr int CB = is_avx512<A> ? 8 : 4;         // columns per pass for batches
  const index_t stride_s = l.groups + l.lanes;
  thread_local arch_buffer<float, A> scale_buf, sz_buf;
  float* sbuf = scale_buf.get(static_cast<std::size_t>(RB * stride_s));
  float* szbuf = sz_buf.get(static_cast<std::size_t>(RB * stride_s));

  // Adds the scalar tail and subtracts the zero-point term for rows rr (count nr), columns [c0, c0+nc).
  auto finish = [&](index_t rr, int nr, index_t c0, index_t nc, const float* partial, index_t pstride) {
    for (int i = 0; i < nr; ++i) {
      const index_t r = rr + i;
      const float* s = sbuf + i * stride_s;
      const float* sz = szbuf + i * stride_s;
      const std::uint8_t* codes = w.row_codes(r);
      for (index_t c = c0; c < c0 + nc; ++c) {
        float v = partial[i * pstride + (c - c0)] - dot_groups<A>(sz, p.xs + c * stride_s, l.groups);
        const float* xc = p.x + c * p.ldx;
        for (index_t j = l.main; j < l.cols; ++j) {
          const index_t g = l.groups == 1 ? 0 : j / l.group;
          const int u = Bits == 4 ? (codes[j / 2] >> (4 * (j & 1))) & 0xF : codes[j];
          v += (s[g] * static_cast<float>(u - w.zero_point(r, g))) * xc[j];
        }
        y[c * ldy + r] = v;
      }
    }
  };

  auto run = [&]<int R, int NC>(index_t r, index_t c0) {
    const std::uint8_t* codes[R];
    const float* scales[R];
    for (int i = 0; i < R; ++i) {
      codes[i] = w.row_codes(r + i);
      scales[i] = sbuf + i * stride_s;
    }
    const float* xp[NC];
    for (int c = 0; c < NC; ++c) xp[c] = p.xp + (c0 + c) * l.main;
    float out[R][NC];
    int_main_loop<A, Bits, R, NC>(l, codes, scales, xp, p.lane_group, out);
    finish(r, R, c0, NC, &out[0][0], NC);
  };

  index_t r = r0;
  if (n == 1) {
    for (; r + RB <= r1; r += RB) {
      for (int i = 0; i < RB; ++i) decode_row_scales<A>(w, l, r + i, sbuf + i * stride_s, szbuf + i * stride_s);
      run.template operator()<RB, 1>(r, 0);
    }
  }
  for (; r < r1; ++r) {
    decode_row_scales<A>(w, l, r, sbuf, szbuf);
    index_t c = 0;
    for (; c + CB <= n; c += CB) run.template operator()<1, CB>(r, c);
    if (c + 4 <= n) {
      run.template operator()<1, 4>(r, c);
      c += 4;
    }
    if (c + 2 <= n) {
      run.template operator()<1, 2>(r, c);
      c += 2;
    }
    if (c < n) run.template operator()<1, 1>(r, c);
  }
}

