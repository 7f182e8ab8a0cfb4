// The entry points of one target's kernels (included last by kernels/simd/targets.hpp, inside the
// target's namespace MIXPREC_SIMD_NS). kernels<A> is a kernel set (kernels/kernel_set.hpp): the
// quantize drivers, the products and the metric sums reach a target only through it.
//
// The members are defined out of the class, so they are not inline: with MIXPREC_COMPILED_KERNELS a
// translation unit declares kernels<A> an explicit instantiation (`extern template`, targets.hpp) and
// compiles none of a target's kernel bodies, which one library translation unit instantiates once
// (src/compiled_kernels.cpp).

template <class A>
struct kernels {
  using arch = A;

  static ref::range_stats min_max(const float* x, index_t n) noexcept;
  static void quantize_codes(const float* x, index_t n, float inv, int z, int m, std::uint8_t* u) noexcept;
  static void dequantize_codes(const std::uint8_t* u, index_t n, float d, int z, float* y) noexcept;
  template <int Bits>
  static void pack(const std::uint8_t* u, index_t n, std::uint8_t* out) noexcept;
  template <int Bits>
  static void unpack(const std::uint8_t* p, index_t n, std::uint8_t* u) noexcept;
  static void to_fp16(const float* x, index_t n, std::uint16_t* h) noexcept;
  static void from_fp16(const std::uint16_t* h, index_t n, float* x) noexcept;
  static void to_bf16(const float* x, index_t n, std::uint16_t* h) noexcept;
  static void from_bf16(const std::uint16_t* h, index_t n, float* x) noexcept;

  static void gemv(const quantized_tensor& w, const float* x, float* y, const gemv_options& o);
  static void gemm(const quantized_tensor& w, const float* x, index_t ldx, index_t batch, float* y, index_t ldy,
                   const gemv_options& o);
  static void gemm_int8(const quantized_tensor& w, const float* x, index_t ldx, index_t batch, float* y,
                        index_t ldy, const gemv_options& o, bool vnni);
  static void ggml_product(const quantized_tensor& w, const ggml::ref::quantized_activations& act, float* y, index_t ldy,
                           unsigned threads);
  static void accumulate_error(const float* a, const float* b, index_t n, error_stats& s) noexcept;
};

template <class A>
ref::range_stats kernels<A>::min_max(const float* x, index_t n) noexcept {
  return simd::min_max(A{}, x, n);
}
template <class A>
void kernels<A>::quantize_codes(const float* x, index_t n, float inv, int z, int m, std::uint8_t* u) noexcept {
  simd::quantize_codes(A{}, x, n, inv, z, m, u);
}
template <class A>
void kernels<A>::dequantize_codes(const std::uint8_t* u, index_t n, float d, int z, float* y) noexcept {
  simd::dequantize_codes(A{}, u, n, d, z, y);
}
template <class A>
template <int Bits>
void kernels<A>::pack(const std::uint8_t* u, index_t n, std::uint8_t* out) noexcept {
  simd::pack<Bits>(A{}, u, n, out);
}
template <class A>
template <int Bits>
void kernels<A>::unpack(const std::uint8_t* p, index_t n, std::uint8_t* u) noexcept {
  simd::unpack<Bits>(A{}, p, n, u);
}
template <class A>
void kernels<A>::to_fp16(const float* x, index_t n, std::uint16_t* h) noexcept {
  simd::to_fp16(A{}, x, n, h);
}
template <class A>
void kernels<A>::from_fp16(const std::uint16_t* h, index_t n, float* x) noexcept {
  simd::from_fp16(A{}, h, n, x);
}
template <class A>
void kernels<A>::to_bf16(const float* x, index_t n, std::uint16_t* h) noexcept {
  simd::to_bf16(A{}, x, n, h);
}
template <class A>
void kernels<A>::from_bf16(const std::uint16_t* h, index_t n, float* x) noexcept {
  simd::from_bf16(A{}, h, n, x);
}
template <class A>
void kernels<A>::gemv(const quantized_tensor& w, const float* x, float* y, const gemv_options& o) {
  ::mixprec::detail::MIXPREC_SIMD_NS::gemv<A>(w, x, y, o);
}
template <class A>
void kernels<A>::gemm(const quantized_tensor& w, const float* x, index_t ldx, index_t batch, float* y, index_t ldy,
                      const gemv_options& o) {
  ::mixprec::detail::MIXPREC_SIMD_NS::gemm<A>(w, x, ldx, batch, y, ldy, o);
}
template <class A>
void kernels<A>::gemm_int8(const quantized_tensor& w, const float* x, index_t ldx, index_t batch, float* y,
                           index_t ldy, const gemv_options& o, bool vnni) {
  ::mixprec::detail::MIXPREC_SIMD_NS::gemm_int8<A>(w, x, ldx, batch, y, ldy, o, vnni);
}
template <class A>
void kernels<A>::ggml_product(const quantized_tensor& w, const ggml::ref::quantized_activations& act, float* y, index_t ldy,
                              unsigned threads) {
  ::mixprec::detail::MIXPREC_SIMD_NS::ggml_product<A>(w, act, y, ldy, threads);
}
template <class A>
void kernels<A>::accumulate_error(const float* a, const float* b, index_t n, error_stats& s) noexcept {
  ::mixprec::detail::MIXPREC_SIMD_NS::accumulate_error<A>(a, b, n, s);
}

// The one explicit instantiation of this target's set, declared (MIXPREC_KERNELS_INSTANTIATE_ is
// `extern template`) in every translation unit of a MIXPREC_COMPILED_KERNELS build and defined (it is
// `template`) in src/compiled_kernels.cpp. pack/unpack are member templates: their two code widths
// (int2, int4) are instantiated by name.
#ifdef MIXPREC_KERNELS_INSTANTIATE_
#define MIXPREC_KERNELS_INSTANTIATE_SET_(ARCH)                                                            \
  MIXPREC_KERNELS_INSTANTIATE_ struct kernels<ARCH>;                                                      \
  MIXPREC_KERNELS_INSTANTIATE_ void kernels<ARCH>::pack<2>(const std::uint8_t*, index_t, std::uint8_t*) noexcept;   \
  MIXPREC_KERNELS_INSTANTIATE_ void kernels<ARCH>::pack<4>(const std::uint8_t*, index_t, std::uint8_t*) noexcept;   \
  MIXPREC_KERNELS_INSTANTIATE_ void kernels<ARCH>::unpack<2>(const std::uint8_t*, index_t, std::uint8_t*) noexcept; \
  MIXPREC_KERNELS_INSTANTIATE_ void kernels<ARCH>::unpack<4>(const std::uint8_t*, index_t, std::uint8_t*) noexcept;
MIXPREC_KERNELS_INSTANTIATE_SET_(MIXPREC_KERNELS_ARCH_)
#undef MIXPREC_KERNELS_INSTANTIATE_SET_
#endif
