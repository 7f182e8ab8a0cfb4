// The AVX-512 instantiation of the dispatched kernels (this file is compiled with -mavx512f/bw/dq/cd/vl).
#include "mixprec/kernels/dispatch.hpp"

MIXPREC_KERNELS_INSTANTIATE(xsimd::avx512bw)
