// Instruction-set levels of mixprec's kernels, chosen at run time.
//
// Every program that includes mixprec's headers carries the kernels for each level below (compiled
// for that level inside its own namespace, see detail/simd/target.hpp) and runs the best one the CPU
// has; no compiler flag and no per-ISA source file is needed. Levels, lowest first:
//   baseline     what the translation unit's flags give xsimd (SSE2 on x86-64 with default flags;
//                NEON on AArch64; AVX2 if the whole program is built with -mavx2)
//   avx2         AVX2 + FMA + F16C                                   (x86-64, GCC or Clang)
//   avx512       AVX-512 F/BW/DQ/VL on top of avx2                   (x86-64, GCC or Clang)
//   avx512_vnni  avx512 plus VNNI (vpdpbusd) for the INT8-activation products
// The environment variable MIXPREC_ISA (baseline, sse2, avx2, avx512, avx512_vnni) caps the level
// for a whole process, to test or compare lower paths; set_isa / isa_scope do it from code.
#pragma once

#include <array>
#include <atomic>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "mixprec/detail/simd/target.hpp"
#if MIXPREC_X86_TARGETS
#include <cpuid.h>
#endif
#include "mixprec/error.hpp"

namespace mixprec {

enum class isa : unsigned char { baseline, avx2, avx512, avx512_vnni };

inline constexpr std::array<isa, 4> all_isas = {isa::baseline, isa::avx2, isa::avx512, isa::avx512_vnni};

// "sse2" (or xsimd's name of the baseline architecture), "avx2", "avx512", "avx512_vnni".
[[nodiscard]] inline std::string isa_name(isa i) {
  switch (i) {
    case isa::baseline: return xsimd::default_arch::name();
    case isa::avx2: return "avx2";
    case isa::avx512: return "avx512";
    case isa::avx512_vnni: return "avx512_vnni";
  }
  return "unknown";
}

namespace detail {

#if MIXPREC_X86_TARGETS
// F16C (CPUID.1:ECX bit 29): Clang's __builtin_cpu_supports does not know it.
[[nodiscard]] inline bool cpu_has_f16c() noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
}
#endif

// Whether this binary holds kernels for level i and this CPU (and its OS) can run them; ignores the
// MIXPREC_ISA cap. GCC's and Clang's CPU model checks the OS-enabled register state (XGETBV) too.
[[nodiscard]] inline bool cpu_runs(isa i) noexcept {
  if (i == isa::baseline) return true;
#if MIXPREC_X86_TARGETS
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  switch (i) {
    case isa::avx2: return avx2;
    case isa::avx512: return avx512;
    case isa::avx512_vnni: return avx512 && __builtin_cpu_supports("avx512vnni");
    default: return false;
  }
#else
  return false;
#endif
}

// The level named by text (as MIXPREC_ISA takes it); throws mixprec::error (invalid_argument) otherwise.
[[nodiscard]] inline isa parse_isa(std::string_view text) {
  if (text == "baseline" || text == "sse2" || text == "scalar") return isa::baseline;
  for (isa i : all_isas)
    if (text == isa_name(i)) return i;
  throw error(errc::invalid_argument, "MIXPREC_ISA='" + std::string(text) +
                                          "': expected one of baseline, sse2, avx2, avx512, avx512_vnni");
}

// The best level the CPU runs, capped by MIXPREC_ISA when set.
[[nodiscard]] inline isa detect_isa() {
  isa best = isa::baseline;
  for (isa i : all_isas)
    if (cpu_runs(i)) best = i;
  if (const char* env = std::getenv("MIXPREC_ISA"); env && *env) {
    const isa cap = parse_isa(env);
    if (cap < best) best = cap;
  }
  return best;
}

// The level in use; detected on first use. -1: not yet detected.
inline std::atomic<int> chosen_isa{-1};

}  // namespace detail

// The levels this binary can run on this CPU, lowest first (ignores MIXPREC_ISA).
[[nodiscard]] inline std::vector<isa> supported_isas() {
  std::vector<isa> out;
  for (isa i : all_isas)
    if (detail::cpu_runs(i)) out.push_back(i);
  return out;
}

// The level every dispatched kernel uses: the best this CPU runs, capped by MIXPREC_ISA (a value other
// than the names above throws mixprec::error, invalid_argument, on first use).
[[nodiscard]] inline isa active_isa() {
  int v = detail::chosen_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(detail::detect_isa());
    detail::chosen_isa.store(v, std::memory_order_relaxed);
  }
  return static_cast<isa>(v);
}

// Makes every dispatched kernel use level i from now on, process-wide, and returns the previous level.
// Throws mixprec::error (unsupported) if this CPU cannot run i. For tests and benchmarks: do not call
// it while kernels run on other threads.
inline isa set_isa(isa i) {
  if (!detail::cpu_runs(i)) throw error(errc::unsupported, "set_isa: this CPU cannot run " + isa_name(i) + " kernels");
  const isa previous = active_isa();
  detail::chosen_isa.store(static_cast<int>(i), std::memory_order_relaxed);
  return previous;
}

// set_isa for a scope: the previous level comes back at the end.
class isa_scope {
 public:
  explicit isa_scope(isa i) : previous_(set_isa(i)) {}
  isa_scope(const isa_scope&) = delete;
  isa_scope& operator=(const isa_scope&) = delete;
  ~isa_scope() { detail::chosen_isa.store(static_cast<int>(previous_), std::memory_order_relaxed); }

 private:
  isa previous_;
};

}  // namespace mixprec
