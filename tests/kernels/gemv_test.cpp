// Quantized GEMV/GEMM for sse2 (this file is compiled for that ISA; see cmake/warnings.cmake).
#include <xsimd/xsimd.hpp>
#define MIXPREC_TEST_ARCH xsimd::sse2
#define MIXPREC_TEST_ARCH_NAME sse2
#include "gemv_kernels.inl"
