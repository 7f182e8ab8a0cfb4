// Runtime dispatch of the quantized kernels over architectures compiled in separate translation units,
// so that one binary runs on SSE2/SSE4.2, AVX2 and AVX-512 machines and uses the best of them.
//
// xsimd::dispatch only chooses among architectures the calling translation unit was compiled for, so
// the per-ISA code lives in translation units of its own:
//
//   // kernels_avx512.cpp, compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mf16c
//   #include <mixprec/kernels/dispatch.hpp>
//   MIXPREC_KERNELS_INSTANTIATE(xsimd::avx512bw)
//   // kernels_avx2.cpp, compiled with -mavx2 -mfma -mf16c
//   MIXPREC_KERNELS_INSTANTIATE(xsimd::fma3<xsimd::avx2>)
//   // everywhere else (baseline flags): declare them, instantiate the baseline, and dispatch
//   MIXPREC_KERNELS_DECLARE(xsimd::avx512bw)
//   MIXPREC_KERNELS_DECLARE(xsimd::fma3<xsimd::avx2>)
//   MIXPREC_KERNELS_INSTANTIATE(xsimd::sse2)            // in one baseline .cpp only
//   const mixprec::kernel_dispatch<xsimd::avx512bw, xsimd::fma3<xsimd::avx2>, xsimd::sse2> kernels;
//   kernels.gemv(w, x, y);   // kernels.name() == "avx512bw+vnni" on a CPU with AVX-512 VNNI
//
// Why this is safe from the one-definition rule: every function whose code depends on the ISA is a
// template on the architecture (gemv<A>, its detail:: helpers, their scratch buffers arch_buffer<T, A>),
// so the instantiations of different translation units are different symbols and the linker cannot
// merge a body compiled with -mavx512f into a baseline caller. The VNNI code is a template compiled with
// a target attribute and entered only after a run-time CPU check. Keep ISA flags off translation units
// that define other inline code used elsewhere (the standard library's templates included), as for any
// per-ISA build: the declare/instantiate split above keeps those files down to one macro each.
#pragma once

#include <cstddef>
#include <string>

#include <xsimd/xsimd.hpp>

#include "mixprec/kernels/gemv.hpp"

// The kernel entry points for architecture A (explicit instantiation declarations or definitions).
#define MIXPREC_KERNELS_SIGNATURES_(PREFIX, A)                                                                 \
  PREFIX template void mixprec::gemv<A>(const mixprec::quantized_tensor&, const float*, float*,                \
                                        const mixprec::gemv_options&);                                        \
  PREFIX template void mixprec::gemm<A>(const mixprec::quantized_tensor&,                                     \
                                        const Eigen::Ref<const mixprec::row_matrix>&,                         \
                                        Eigen::Ref<mixprec::row_matrix>, const mixprec::gemv_options&);       \
  PREFIX template void mixprec::gemv_int8<A>(const mixprec::quantized_tensor&, const float*, float*,           \
                                             const mixprec::gemv_options&);                                   \
  PREFIX template void mixprec::gemm_int8<A>(const mixprec::quantized_tensor&,                                \
                                             const Eigen::Ref<const mixprec::row_matrix>&,                    \
                                             Eigen::Ref<mixprec::row_matrix>, const mixprec::gemv_options&);  \
  PREFIX template bool mixprec::gemv_int8_uses_vnni<A>() noexcept;

// In the one translation unit compiled for A's ISA.
#define MIXPREC_KERNELS_INSTANTIATE(A) MIXPREC_KERNELS_SIGNATURES_(, A)
// In every other translation unit that names A's kernels (no code for A is generated there).
#define MIXPREC_KERNELS_DECLARE(A) MIXPREC_KERNELS_SIGNATURES_(extern, A)

namespace mixprec {

// Chooses, once, the best of Archs that this CPU supports (xsimd's version order; the list need not be
// sorted) and forwards every call to that architecture's instantiation. Throws mixprec::error if none is
// supported.
template <class... Archs>
class kernel_dispatch {
 public:
  kernel_dispatch() {
    unsigned best = 0;
    std::size_t i = 0;
    ((Archs::available() && Archs::version() > best ? (best = Archs::version(), chosen_ = i, ++i) : ++i), ...);
    if (best == 0) throw error(errc::unsupported, "kernel_dispatch: no compiled-in architecture runs on this CPU");
  }

  // The chosen architecture's name, with "+vnni" when gemv_int8 uses AVX-512 VNNI.
  [[nodiscard]] std::string name() const {
    std::string out;
    visit([&]<class A>() { out = std::string(A::name()) + (gemv_int8_uses_vnni<A>() ? "+vnni" : ""); });
    return out;
  }
  [[nodiscard]] std::size_t index() const noexcept { return chosen_; }

  void gemv(const quantized_tensor& w, const float* x, float* y, const gemv_options& o = {}) const {
    visit([&]<class A>() { mixprec::gemv<A>(w, x, y, o); });
  }
  void gemm(const quantized_tensor& w, const Eigen::Ref<const row_matrix>& x, Eigen::Ref<row_matrix> y,
            const gemv_options& o = {}) const {
    visit([&]<class A>() { mixprec::gemm<A>(w, x, y, o); });
  }
  void gemv_int8(const quantized_tensor& w, const float* x, float* y, const gemv_options& o = {}) const {
    visit([&]<class A>() { mixprec::gemv_int8<A>(w, x, y, o); });
  }
  void gemm_int8(const quantized_tensor& w, const Eigen::Ref<const row_matrix>& x, Eigen::Ref<row_matrix> y,
                 const gemv_options& o = {}) const {
    visit([&]<class A>() { mixprec::gemm_int8<A>(w, x, y, o); });
  }

 private:
  template <class Fn>
  void visit(Fn&& fn) const {
    std::size_t i = 0;
    ((i++ == chosen_ ? (fn.template operator()<Archs>(), true) : false) || ...);
  }
  std::size_t chosen_ = 0;
};

}  // namespace mixprec
