#!/usr/bin/env bash
# Fails if a binary built with baseline flags holds a higher-ISA instruction (VEX/EVEX: ymm/zmm/mask
# registers or a v-prefixed mnemonic) in any function that is not region code, i.e. whose own name is
# in a namespace named isa_avx2 / isa_avx512 (mixprec::detail::isa_avx2..., or one a test defines) or in
# mixprec::detail::x86 (detail/simd/target.hpp). Such an instruction is
# what the one-definition rule would make a baseline caller run on a CPU without the ISA (SIGILL).
#   bash tests/isa/scan_baseline.sh BINARY...
set -euo pipefail
status=0
for bin in "$@"; do
  report=$(objdump -d --no-show-raw-insn -C "$bin" | awk '
    /^[0-9a-f]+ <.*>:$/ {
      fn = substr($0, index($0, "<") + 1); sub(/>:$/, "", fn)
      own = fn; gsub(/__vector\([0-9]+\)/, "__vector", own)  # a vector return type ("float __vector(8) ...") kept whole
      sub(/[<(].*/, "", own)                  # the function'"'"'s own name, without template or call arguments
      region = (own ~ /(^|[ :])isa_avx(2|512)::/ || own ~ /mixprec::detail::x86::/)
      next
    }
    /^ +[0-9a-f]+:\t/ {
      if (region) next
      split($0, f, "\t"); insn = f[2]
      if (insn ~ /%[yz]mm|%k[0-7]|^v[a-z]/) { n[fn]++; if (!(fn in first)) first[fn] = insn }
    }
    END { for (k in n) printf "  %s: %d instruction(s), e.g. %s\n", k, n[k], first[k] }')
  if [ -n "$report" ]; then
    echo "scan_baseline: $bin has higher-ISA instructions outside the target regions:"
    echo "$report" | head -40
    status=1
  else
    echo "scan_baseline: $bin: no higher-ISA instruction outside the target regions"
  fi
done
exit $status
