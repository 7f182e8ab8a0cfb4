// The kernels of every instruction-set level, instantiated once (CMake target mixprec::compiled_kernels,
// option MIXPREC_COMPILED_KERNELS): a program that links this library and compiles its own translation
// units with MIXPREC_COMPILED_KERNELS defined (the target's usage requirement) and the same -m flags
// declares these instantiations `extern template` (kernels/simd/targets.hpp) instead of compiling the
// kernel bodies in each of them, as {fmt}'s compiled mode does for its formatting functions.
#define MIXPREC_COMPILED_KERNELS_DEFINE
#include "mixprec/kernels/simd/targets.hpp"
