# Flags for mixprec's own targets (tests, benchmarks, examples); never for consumers. With
# MIXPREC_COMPILED_KERNELS they also link the kernels compiled once (top-level CMakeLists.txt), except
# targets marked HEADER_ONLY: those compiled with other -m flags than the kernel library, and the
# per-header compile check, which checks the headers as a header-only user includes them.
#   mixprec_set_project_flags(target [HEADER_ONLY])
function(mixprec_set_project_flags target)
  if(MIXPREC_COMPILED_KERNELS AND NOT "HEADER_ONLY" IN_LIST ARGN AND NOT target STREQUAL "mixprec_compiled_kernels")
    target_link_libraries(${target} PRIVATE mixprec::compiled_kernels)
  endif()
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror
    # GCC 12 reports false maybe-uninitialized warnings inside its own AVX-512 headers and Eigen's.
    $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>
    # GCC 12 also reports false -Wrestrict on std::string concatenation at -O3 (GCC bug 105329).
    $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>
    # Results must not depend on the compiler's choice to fuse a*b+c (GCC's gnu++ default): the
    # scalar references and the SIMD kernels spell out where they round.
    -ffp-contract=off)
  if(MIXPREC_NATIVE)
    # With AVX-512 enabled GCC 12 also reports a definite (false) -Wuninitialized inside its own
    # avx512fintrin.h at -O1 (the _mm512_undefined_* idiom); the plain build keeps the warning.
    target_compile_options(${target} PRIVATE -march=native $<$<CXX_COMPILER_ID:GNU>:-Wno-uninitialized>)
  endif()
  if(MIXPREC_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize-recover=all
                                             -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
endfunction()
