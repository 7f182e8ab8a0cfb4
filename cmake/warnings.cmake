# Flags for mixprec's own targets (tests, benchmarks, examples); never for consumers.
function(mixprec_set_project_flags target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror
    # GCC 12 reports false maybe-uninitialized warnings inside its own AVX-512 headers and Eigen's.
    $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>
    # GCC 12 also reports false -Wrestrict on std::string concatenation at -O3 (GCC bug 105329).
    $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>
    # One test binary mixes translation units compiled for different ISAs, and the linker keeps one copy
    # of each shared inline function: without this, a copy compiled with FMA contraction and one
    # without could disagree in the last bit (e.g. MSE calibration's error sums).
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

# Per-ISA translation units: a source named *.avx2.cpp or *.avx512.cpp is compiled for that ISA,
# so one test binary checks every SIMD path the machine can run (each test skips itself when the
# CPU lacks the ISA), even in a plain x86-64 build.
function(mixprec_set_isa_flags)
  foreach(src IN LISTS ARGN)
    if(src MATCHES "\\.avx512\\.cpp$")
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS
        "-mavx512f;-mavx512bw;-mavx512dq;-mavx512cd;-mavx512vl;-mavx2;-mfma;-mf16c")
    elseif(src MATCHES "\\.avx2\\.cpp$")
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
    elseif(src MATCHES "\\.sse41\\.cpp$")
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS "-msse4.1")
    endif()
  endforeach()
endfunction()
