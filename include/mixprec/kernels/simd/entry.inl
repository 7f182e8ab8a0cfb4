// The entry points of one target's kernels (included last by kernels/simd/targets.hpp, inside the
// target's namespace MIXPREC_SIMD_NS). kernels<A> is a kernel set (kernels/kernel_set.hpp): the
// quantize drivers, the products and the metric sums reach a target only through it.

template <class A>
struct kernels {
  using arch = A;

  static ref::range_stats min_max(const float* x, index_t n) noexcept { return simd::min_max(A{}, x, n); }
  static void quantize_codes(const float* x, index_t n, float inv, int z, int m, std::uint8_t* u) noexcept {
    simd::quantize_codes(A{}, x, n, inv, z, m, u);
  }
  static void dequantize_codes(const std::uint8_t* u, index_t n, float d, int z, float* y) noexcept {
    simd::dequantize_codes(A{}, u, n, d, z, y);
  }
  template <int Bits>
  static void pack(const std::uint8_t* u, index_t n, std::uint8_t* out) noexcept {
    simd::pack<Bits>(A{}, u, n, out);
  }
  template <int Bits>
  static void unpack(const std::uint8_t* p, index_t n, std::uint8_t* u) noexcept {
    simd::unpack<Bits>(A{}, p, n, u);
  }
  static void to_fp16(const float* x, index_t n, std::uint16_t* h) noexcept { simd::to_fp16(A{}, x, n, h); }
  static void from_fp16(const std::uint16_t* h, index_t n, float* x) noexcept { simd::from_fp16(A{}, h, n, x); }
  static void to_bf16(const float* x, index_t n, std::uint16_t* h) noexcept { simd::to_bf16(A{}, x, n, h); }
  static void from_bf16(const std::uint16_t* h, index_t n, float* x) noexcept { simd::from_bf16(A{}, h, n, x); }

  static void gemv(const quantized_tensor& w, const float* x, float* y, const gemv_options& o) {
    ::mixprec::detail::MIXPREC_SIMD_NS::gemv<A>(w, x, y, o);
  }
  static void gemm(const quantized_tensor& w, const float* x, index_t ldx, index_t batch, float* y, index_t ldy,
                   const gemv_options& o) {
    ::mixprec::detail::MIXPREC_SIMD_NS::gemm<A>(w, x, ldx, batch, y, ldy, o);
  }
  static void gemm_int8(const quantized_tensor& w, const float* x, index_t ldx, index_t batch, float* y,
                        index_t ldy, const gemv_options& o, bool vnni) {
    ::mixprec::detail::MIXPREC_SIMD_NS::gemm_int8<A>(w, x, ldx, batch, y, ldy, o, vnni);
  }
  static void accumulate_error(const float* a, const float* b, index_t n, error_stats& s) noexcept {
    ::mixprec::detail::MIXPREC_SIMD_NS::accumulate_error<A>(a, b, n, s);
  }
};
