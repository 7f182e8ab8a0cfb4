// Quantized GEMV/GEMM for avx2 (this file is compiled for that ISA; see cmake/warnings.cmake).
#include <xsimd/xsimd.hpp>
#define MIXPREC_TEST_ARCH xsimd::fma3<xsimd::avx2>
#define MIXPREC_TEST_ARCH_NAME avx2
#include "gemv_kernels.inl"
