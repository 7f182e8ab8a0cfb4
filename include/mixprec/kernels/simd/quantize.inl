// xsimd kernels for quantize / pack / unpack / dequantize and the FP16/BF16 conversions. Each
// function takes the architecture tag first and matches its scalar twin in kernels/ref/ bit for bit
// (the numerics are written down there); tails shorter than a batch go through the scalar twin.
// FP8 and stochastic rounding have no SIMD path yet: callers use the reference for them.

namespace simd {

template <class A>
inline constexpr index_t width = static_cast<index_t>(fbatch<A>::size);

// See ref::min_max.
template <class A>
inline ref::range_stats min_max(A, const float* x, index_t n) noexcept {
  constexpr index_t w = width<A>;
  if (n < w) return ref::min_max(x, n);
  fbatch<A> lo = fbatch<A>::load_unaligned(x);
  fbatch<A> hi = lo;
  auto finite = sx::isfinite(lo);
  index_t i = w;
  for (; i + w <= n; i += w) {
    const auto v = fbatch<A>::load_unaligned(x + i);
    lo = sx::min(lo, v);
    hi = sx::max(hi, v);
    finite = finite & sx::isfinite(v);
  }
  ref::range_stats s{reduce_min(lo), reduce_max(hi), sx::all(finite)};
  if (i < n) {
    const auto t = ref::min_max(x + i, n - i);
    s.lo = t.lo < s.lo ? t.lo : s.lo;
    s.hi = t.hi > s.hi ? t.hi : s.hi;
    s.finite = s.finite && t.finite;
  }
  return s;
}

// See ref::quantize_codes.
template <class A>
inline void quantize_codes(A, const float* x, index_t n, float inv, int z, int max_code, std::uint8_t* u) noexcept {
  constexpr index_t w = width<A>;
  const auto zf = static_cast<float>(z);
  const fbatch<A> vinv(inv), vz(zf), vlo(-zf), vhi(static_cast<float>(max_code) - zf);
  index_t i = 0;
  for (; i + w <= n; i += w) {
    fbatch<A> t = fbatch<A>::load_unaligned(x + i) * vinv;
    t = sx::min(sx::max(t, vlo), vhi);
    store_i32_as_u8<A>(sx::to_int(sx::nearbyint(t) + vz), u + i);
  }
  ref::quantize_codes(x + i, n - i, inv, z, max_code, u + i);
}

// See ref::dequantize_codes.
template <class A>
inline void dequantize_codes(A, const std::uint8_t* u, index_t n, float d, int z, float* y) noexcept {
  constexpr index_t w = width<A>;
  const ibatch<A> vz(z);
  const fbatch<A> vd(d);
  index_t i = 0;
  for (; i + w <= n; i += w) {
    const ibatch<A> q = load_u8_as_i32<A>(u + i) - vz;
    (vd * sx::to_float(q)).store_unaligned(y + i);
  }
  ref::dequantize_codes(u + i, n - i, d, z, y + i);
}

// See ref::pack. Each 32-bit lane gathers 32/8 codes: for INT4 four codes -> two bytes, for INT2 four
// codes -> one byte; INT8 is a copy.
template <int Bits, class A>
inline void pack(A, const std::uint8_t* u, index_t n, std::uint8_t* out) noexcept {
  constexpr index_t w = width<A>;
  index_t i = 0;  // codes done
  if constexpr (Bits == 8) {
    std::copy(u, u + n, out);
    return;
  } else if constexpr (Bits == 4) {
    for (; i + 4 * w <= n; i += 4 * w) {
      const auto v = ibatch<A>::load_unaligned(reinterpret_cast<const std::int32_t*>(u + i));
      const auto m = ibatch<A>(0xF);
      const auto p = (v & m) | ((v >> 4) & (m << 4)) | ((v >> 8) & (m << 8)) | ((v >> 12) & (m << 12));
      store_i32_as_u16<A>(p, reinterpret_cast<std::uint16_t*>(out + i / 2));
    }
  } else {
    static_assert(Bits == 2);
    for (; i + 4 * w <= n; i += 4 * w) {
      const auto v = ibatch<A>::load_unaligned(reinterpret_cast<const std::int32_t*>(u + i));
      const auto m = ibatch<A>(0x3);
      const auto p = (v & m) | ((v >> 6) & (m << 2)) | ((v >> 12) & (m << 4)) | ((v >> 18) & (m << 6));
      store_i32_as_u8<A>(p, out + i / 4);
    }
  }
  ref::pack<Bits>(u + i, n - i, out + i * Bits / 8);
}

// See ref::unpack.
template <int Bits, class A>
inline void unpack(A, const std::uint8_t* packed, index_t n, std::uint8_t* u) noexcept {
  constexpr index_t w = width<A>;
  index_t i = 0;
  if constexpr (Bits == 8) {
    std::copy(packed, packed + n, u);
    return;
  } else if constexpr (Bits == 4) {
    for (; i + 4 * w <= n; i += 4 * w) {
      const auto v = load_u16_as_i32<A>(reinterpret_cast<const std::uint16_t*>(packed + i / 2));
      const auto m = ibatch<A>(0xF);
      const auto c = (v & m) | ((v & (m << 4)) << 4) | ((v & (m << 8)) << 8) | ((v & (m << 12)) << 12);
      c.store_unaligned(reinterpret_cast<std::int32_t*>(u + i));
    }
  } else {
    static_assert(Bits == 2);
    for (; i + 4 * w <= n; i += 4 * w) {
      const auto v = load_u8_as_i32<A>(packed + i / 4);
      const auto m = ibatch<A>(0x3);
      const auto c = (v & m) | ((v & (m << 2)) << 6) | ((v & (m << 4)) << 12) | ((v & (m << 6)) << 18);
      c.store_unaligned(reinterpret_cast<std::int32_t*>(u + i));
    }
  }
  ref::unpack<Bits>(packed + i / (8 / Bits), n - i, u + i);
}

// See fp32_to_fp16: the same float operations, with the integer steps rewritten for signed lanes.
template <class A>
inline void to_fp16(A, const float* x, index_t n, std::uint16_t* h) noexcept {
  constexpr index_t w = width<A>;
  index_t i = 0;
  for (; i + w <= n; i += w) {
    const fbatch<A> f = fbatch<A>::load_unaligned(x + i);
    fbatch<A> base = (sx::abs(f) * fbatch<A>(0x1.0p+112f)) * fbatch<A>(0x1.0p-110f);
    const ibatch<A> bits = sx::bitwise_cast<ibatch<A>>(f);
    const ibatch<A> mag = bits & ibatch<A>(0x7FFFFFFF);
    const ibatch<A> exponent = (bits >> 23) & ibatch<A>(0xFF);
    const ibatch<A> bias_half = sx::max(exponent, ibatch<A>(0x71)) << 23;  // == max(bias, 0x71<<24) >> 1
    base = sx::bitwise_cast<fbatch<A>>(bias_half + ibatch<A>(0x07800000)) + base;
    const ibatch<A> b = sx::bitwise_cast<ibatch<A>>(base);
    const ibatch<A> nonsign = ((b >> 13) & ibatch<A>(0x7C00)) + (b & ibatch<A>(0x0FFF));
    const ibatch<A> sign = (bits >> 16) & ibatch<A>(0x8000);
    const ibatch<A> r = sign | select_i32<A>(mag > ibatch<A>(0x7F800000), ibatch<A>(0x7E00), nonsign);
    store_i32_as_u16<A>(r, h + i);
  }
  ref::to_fp16(x + i, n - i, h + i);
}

// FP16 bit patterns (one per 32-bit lane) to FP32, exactly: fp16_to_fp32 with signed-lane integer steps.
template <class A>
inline fbatch<A> fp16_lanes_to_float(ibatch<A> v) noexcept {
  const ibatch<A> mag = v & ibatch<A>(0x7FFF);
  const ibatch<A> sign = (v & ibatch<A>(0x8000)) << 16;
  const fbatch<A> normalized =
      sx::bitwise_cast<fbatch<A>>((mag << 13) + ibatch<A>(static_cast<std::int32_t>(0xE0u << 23))) *
      fbatch<A>(0x1.0p-112f);
  const fbatch<A> denormalized = sx::bitwise_cast<fbatch<A>>(mag | ibatch<A>(126 << 23)) - fbatch<A>(0.5f);
  return sx::bitwise_cast<fbatch<A>>(
      sign | select_i32<A>(mag < ibatch<A>(0x400), sx::bitwise_cast<ibatch<A>>(denormalized),
                                   sx::bitwise_cast<ibatch<A>>(normalized)));
}

// See fp16_to_fp32.
template <class A>
inline void from_fp16(A, const std::uint16_t* h, index_t n, float* x) noexcept {
  constexpr index_t w = width<A>;
  index_t i = 0;
  for (; i + w <= n; i += w) fp16_lanes_to_float<A>(load_u16_as_i32<A>(h + i)).store_unaligned(x + i);
  ref::from_fp16(h + i, n - i, x + i);
}

// See fp32_to_bf16.
template <class A>
inline void to_bf16(A, const float* x, index_t n, std::uint16_t* h) noexcept {
  constexpr index_t w = width<A>;
  index_t i = 0;
  for (; i + w <= n; i += w) {
    const ibatch<A> u = sx::bitwise_cast<ibatch<A>>(fbatch<A>::load_unaligned(x + i));
    const ibatch<A> rounded = ((u + ibatch<A>(0x7FFF) + ((u >> 16) & ibatch<A>(1))) >> 16) & ibatch<A>(0xFFFF);
    const ibatch<A> nan = ((u >> 16) & ibatch<A>(0xFFFF)) | ibatch<A>(0x40);
    const ibatch<A> r = select_i32<A>((u & ibatch<A>(0x7FFFFFFF)) > ibatch<A>(0x7F800000), nan, rounded);
    store_i32_as_u16<A>(r, h + i);
  }
  ref::to_bf16(x + i, n - i, h + i);
}

// See bf16_to_fp32.
template <class A>
inline void from_bf16(A, const std::uint16_t* h, index_t n, float* x) noexcept {
  constexpr index_t w = width<A>;
  index_t i = 0;
  for (; i + w <= n; i += w)
    sx::bitwise_cast<fbatch<A>>(load_u16_as_i32<A>(h + i) << 16).store_unaligned(x + i);
  ref::from_bf16(h + i, n - i, x + i);
}

}  // namespace simd
