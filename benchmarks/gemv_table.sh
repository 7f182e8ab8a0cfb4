#!/usr/bin/env bash
# The GEMV table of README.md: the default build's dispatched kernels at each instruction-set level this
# CPU runs (MIXPREC_ISA caps the level; the binary is the same), against Eigen FP32 from the same source
# built for that level's CPU: -march=x86-64-v3 (gemv_bench_x86_64_v3) for sse2 and avx2, as an AVX2 CPU's
# native build would be; -march=native (gemv_bench_native) for the AVX-512 levels. One thread, medians
# of 3 repetitions. Each level's run
# also measures memcpy, the roofline. Needs python3 to print the table.
#   bash benchmarks/gemv_table.sh [BUILD_DIR] [FILTER]
set -euo pipefail
build=${1:-build}
filter=${2:-'BM_memcpy|/4096x4096/1$|/11008x4096/1$|BM_gemv_direct'}
out=$(mktemp -d)
run() {  # NAME BINARY [ENV...]
  local name=$1 bin=$2
  shift 2
  env "$@" "$bin" --benchmark_filter="$filter" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
    --benchmark_format=json >"$out/$name.json" 2>/dev/null
}
run native "$build/benchmarks/gemv_bench_native"
run v3 "$build/benchmarks/gemv_bench_x86_64_v3"
for level in sse2 avx2 avx512 avx512_vnni; do
  run "$level" "$build/benchmarks/gemv_bench" MIXPREC_ISA=$level
done
python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
def medians(name):
    d = json.load(open(os.path.join(out, name + ".json")))
    r = {}
    for b in d["benchmarks"]:
        if b.get("aggregate_name") == "median":
            r[b["run_name"]] = b
    return r, d["context"].get("mixprec_isa", "?")
eigen = {"native": medians("native")[0], "v3": medians("v3")[0]}
def us(b): return b["real_time"] * {"us": 1, "ms": 1000, "ns": 1e-3}[b["time_unit"]]
print(f"CPU: {json.load(open(os.path.join(out, 'native.json')))['context'].get('mhz_per_cpu')} MHz; "
      f"Eigen FP32 from the -march=x86-64-v3 build (sse2, avx2 rows) or the -march=native build")
print("| level | shape, batch | Eigen FP32 | INT4 g128 | INT4 g128, INT8 act | INT8 pc | INT8 pc, INT8 act | roofline INT4 g128 | dispatch cost |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for level in ["sse2", "avx2", "avx512", "avx512_vnni"]:
    r, isa = medians(level)
    if isa != level and not (level == "sse2" and isa in ("sse2",)):
        continue  # this CPU does not run the level (MIXPREC_ISA only caps)
    for shape in ["4096x4096/1", "11008x4096/1"]:
        e = us(eigen["v3" if level in ("sse2", "avx2") else "native"][f"BM_gemv/fp32_eigen/{shape}"])
        def cell(name):
            b = r.get(name)
            return f"{us(b):.0f} us ({e / us(b):.2f}x)" if b else ""
        q = r.get(f"BM_gemv/int4_g128/{shape}")
        roof = f"{us(q) / q['roofline_us']:.2f}x" if q and "roofline_us" in q else ""
        cost = ""
        d = r.get("BM_gemv_direct/int4_g128/4096x4096/1")
        if shape == "4096x4096/1" and d and q:
            cost = f"{(us(q) - us(d)) / us(d) * 100:+.1f} %"
        print(f"| {level} | {shape.replace('/', ', ')} | {e:.0f} us | {cell(f'BM_gemv/int4_g128/{shape}')} | "
              f"{cell(f'BM_gemv_a8/int4_g128/{shape}')} | {cell(f'BM_gemv/int8_pc/{shape}')} | "
              f"{cell(f'BM_gemv_a8/int8_pc/{shape}')} | {roof} | {cost} |")
PY
rm -rf "$out"
