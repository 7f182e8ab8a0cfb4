// Every kernel source, in dependency order: included once per target by kernels/simd/targets.hpp,
// inside the target's namespace (MIXPREC_SIMD_NS) and region.
#include "mixprec/kernels/simd/helpers.inl"
#include "mixprec/kernels/simd/quantize.inl"
#include "mixprec/kernels/simd/gemv_int.inl"
#include "mixprec/kernels/simd/gemv_q8.inl"
#include "mixprec/kernels/simd/gemv_ggml.inl"
#include "mixprec/kernels/simd/gemv.inl"
#include "mixprec/kernels/simd/metrics.inl"
#include "mixprec/kernels/simd/entry.inl"
