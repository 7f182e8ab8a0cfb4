// The AVX2 instantiation of the dispatched kernels (this file is compiled with -mavx2 -mfma -mf16c).
#include "mixprec/kernels/dispatch.hpp"

MIXPREC_KERNELS_INSTANTIATE(xsimd::fma3<xsimd::avx2>)
