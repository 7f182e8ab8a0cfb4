// kernel_dispatch: the quantized products of one chosen instruction-set level (kernels/isa.hpp), for
// programs and tests that want a level other than the automatic one, and a name to report.
//
//   mixprec::kernel_dispatch k;            // the level every dispatched call uses (active_isa())
//   std::cout << k.name();                 // "avx512_vnni" on a CPU with AVX-512 VNNI
//   mixprec::kernel_dispatch{mixprec::isa::avx2}.gemv(w, x, y);
//
// No per-ISA source file or compiler flag is involved: every level's kernels are in every program
// that includes the headers (kernels/simd/targets.hpp says how that stays safe to link).
#pragma once

#include <span>
#include <string>

#include "mixprec/kernels/gemv.hpp"
#include "mixprec/kernels/isa.hpp"

namespace mixprec {

class kernel_dispatch {
 public:
  // The level in use (active_isa()).
  kernel_dispatch() : isa_(active_isa()) {}
  // Level i; throws mixprec::error (unsupported) if this CPU cannot run it.
  explicit kernel_dispatch(isa i) : isa_(i) {
    if (!detail::cpu_runs(i)) throw error(errc::unsupported, "kernel_dispatch: this CPU cannot run " + isa_name(i));
  }

  [[nodiscard]] isa level() const noexcept { return isa_; }
  [[nodiscard]] std::string name() const { return isa_name(isa_); }

  void gemv(const quantized_tensor& w, std::span<const float> x, std::span<float> y, const gemv_options& o = {}) const {
    mixprec::gemv(isa_, w, x, y, o);
  }
  void gemm(const quantized_tensor& w, const Eigen::Ref<const row_matrix>& x, Eigen::Ref<row_matrix> y,
            const gemv_options& o = {}) const {
    mixprec::gemm(isa_, w, x, y, o);
  }

 private:
  isa isa_;
};

}  // namespace mixprec
