#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for SECONDS (default 60) over its seed corpus
# in tests/fuzz/corpus/<target> (copied, so the repository's corpus is not modified). The seed is fixed
# (MIXPREC_FUZZ_SEED, default 1) so that CI explores the same inputs each time; run with other seeds and
# longer times by hand to look for new findings, and add each finding to the corpus.
#   bash tests/fuzz/run.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-build-fuzz}"
seconds="${2:-60}"
CC=clang CXX=clang++ cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$build" -j "${MIXPREC_JOBS:-2}"
for target in idx llama2c safetensors safetensors_index gguf imatrix plan_json; do
  work="$build/corpus-$target"
  rm -rf "$work" && mkdir -p "$work" && cp "$here/corpus/$target/"* "$work/"
  echo "fuzz: $target for ${seconds}s"
  "$build/${target}_fuzz" -max_total_time="$seconds" -seed="${MIXPREC_FUZZ_SEED:-1}" -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$build/" "$work" > "$build/$target.log" 2>&1 || { tail -40 "$build/$target.log"; exit 1; }
  tail -4 "$build/$target.log"
done
