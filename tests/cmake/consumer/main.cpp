// A consumer of the installed (or add_subdirectory'd) mixprec package.
#include <cstdio>

#include <mixprec/mixprec.hpp>

int main() {
  mixprec::row_matrix w = mixprec::row_matrix::Random(8, 64);
  const auto q = mixprec::quantizer<mixprec::int4, mixprec::per_group<32>>{}(w);
  const double err = (mixprec::dequantize(q) - w).cwiseAbs().maxCoeff();
  std::printf("mixprec %s: %zu bytes, max error %g\n", mixprec::version_string, q.bytes(), err);
  return q.bytes() == mixprec::quantized_bytes(q.spec(), 8, 64) && err < 0.2 ? 0 : 1;
}
