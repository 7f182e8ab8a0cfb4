// Quantized GEMV/GEMM for avx512 (this file is compiled for that ISA; see cmake/warnings.cmake).
#include <xsimd/xsimd.hpp>
#define MIXPREC_TEST_ARCH xsimd::avx512bw
#define MIXPREC_TEST_ARCH_NAME avx512
#include "gemv_kernels.inl"
