#!/usr/bin/env bash
# Runs test binaries of a build made without -march flags on emulated CPUs that lack AVX-512 (Debian's
# qemu-user: TCG emulates SSE4.2 and AVX2, no AVX-512, so any stray AVX-512 instruction traps):
#   Nehalem  SSE4.2, no AVX: only the baseline kernels may run
#   Haswell  AVX2 + FMA + F16C: the baseline and avx2 kernels (tests loop over every level the CPU runs)
#   bash tests/isa/run_emulated.sh BUILD_DIR [TEST_BINARY_NAME...]
# Default binaries: test_kernels test_quantize test_formats test_sensitivity (test_kernels holds the
# ggml row passes and grid searches, which are compiled per level too). Exits 0 with a message if
# qemu-x86_64 is missing or the machine is not x86-64; non-zero if any run fails.
set -uo pipefail
build=$(cd "${1:?usage: run_emulated.sh BUILD_DIR [TEST...]}" && pwd)
shift
tests=("$@")
[ ${#tests[@]} -eq 0 ] && tests=(test_kernels test_quantize test_formats test_sensitivity)
if [ "$(uname -m)" != "x86_64" ]; then echo "run_emulated: not an x86-64 machine, skipped"; exit 0; fi
if ! command -v qemu-x86_64 >/dev/null; then echo "run_emulated: qemu-x86_64 missing (apt-get install qemu-user), skipped"; exit 0; fi
status=0
for cpu in Nehalem Haswell; do
  for t in "${tests[@]}"; do
    bin="$build/tests/$t"
    [ -x "$bin" ] || { echo "run_emulated: $bin missing"; status=1; continue; }
    start=$(date +%s)
    # TCG warns about host-only CPUID bits it cannot emulate (pcid, x2apic...): not ours, filtered.
    # Test cases tagged [sqnr] measure accuracy; a level's results equal the scalar reference's bit for
    # bit (what the other cases check here), so on another CPU they would only measure the same numbers
    # again, 10-20x slower: left out.
    out=$(cd "$build/tests" && MIXPREC_EMULATED=1 qemu-x86_64 -cpu "$cpu" "$bin" '~[sqnr]' 2>&1)
    rc=$?
    out=$(printf '%s\n' "$out" | grep -v "TCG doesn't support requested feature")
    summary=$(printf '%s\n' "$out" | grep -E "^(All tests passed|test cases:)" | tail -1)
    echo "run_emulated: -cpu $cpu $t: exit $rc in $(( $(date +%s) - start )) s; $summary"
    if [ $rc -ne 0 ]; then printf '%s\n' "$out" | tail -40; status=1; fi
  done
done
exit $status
