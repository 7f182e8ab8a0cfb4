// Runs a test body once per instruction-set level this CPU runs (kernels/isa.hpp), with that level
// active for every dispatched kernel, and names the level in any failure. Levels the CPU lacks are
// reported once per test run.
#pragma once

#include <catch2/catch.hpp>

#include <cstdlib>

#include "mixprec/kernels/isa.hpp"

namespace mixprec::test {

// True under CPU emulation (tests/isa/run_emulated.sh sets MIXPREC_EMULATED; qemu runs AVX2 code 10-50x
// slower): the slowest per-level tests then run reduced sizes that still reach every code path.
inline bool emulated() noexcept { return std::getenv("MIXPREC_EMULATED") != nullptr; }

template <class Fn>
void for_each_isa(Fn&& fn) {
  static const bool reported = [] {
    for (isa i : all_isas)
      if (!detail::cpu_runs(i)) WARN("this CPU lacks " << isa_name(i) << ": its kernels are not run here");
    return true;
  }();
  (void)reported;
  for (isa i : supported_isas()) {
    isa_scope scope(i);
    INFO("isa " << isa_name(i));
    fn(i);
  }
}

}  // namespace mixprec::test
