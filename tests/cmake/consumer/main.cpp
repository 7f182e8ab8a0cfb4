// A consumer of the installed (or add_subdirectory'd) mixprec package, built with default flags: it gets
// the best kernels this CPU runs without any per-ISA source or flag, and they agree with the reference.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <mixprec/kernels/dispatch.hpp>
#include <mixprec/kernels/ref/gemv_q8_ref.hpp>
#include <mixprec/mixprec.hpp>

int main() {
  mixprec::row_matrix w = mixprec::row_matrix::Random(8, 256);
  const auto q = mixprec::quantizer<mixprec::int4, mixprec::per_group<32>>{}(w);
  const double err = (mixprec::dequantize(q) - w).cwiseAbs().maxCoeff();
  const auto levels = mixprec::supported_isas();
  const bool best = mixprec::active_isa() == levels.back() || std::getenv("MIXPREC_ISA");
  std::vector<float> x(256, 0.5f), y(8), yr(8);
  mixprec::gemv(q, x, y, {.activations = mixprec::activation_type::int8});
  mixprec::ref::gemv_int8(q, x.data(), yr.data());
  std::printf("mixprec %s: %zu bytes, max error %g, kernels %s\n", mixprec::version_string, q.bytes(), err,
              mixprec::kernel_dispatch().name().c_str());
  return q.bytes() == mixprec::quantized_bytes(q.spec(), 8, 256) && err < 0.2 && best && y == yr ? 0 : 1;
}
