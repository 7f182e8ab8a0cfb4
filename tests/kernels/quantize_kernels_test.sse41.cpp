// SIMD vs reference kernels for sse41 (this file is compiled for that ISA; see cmake/warnings.cmake).
#include <xsimd/xsimd.hpp>
#define MIXPREC_TEST_ARCH xsimd::sse4_1
#define MIXPREC_TEST_ARCH_NAME sse41
#include "quantize_kernels.inl"
