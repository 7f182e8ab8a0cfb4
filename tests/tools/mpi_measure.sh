#!/usr/bin/env bash
# mixprec-mpi against mixprec: `mpirun -np 2 mixprec-mpi measure` (one shard per rank, merged on rank 0)
# writes byte for byte the file one `mixprec measure` process writes, prints the same table, and a bad
# request makes every rank exit 2, a failure on one rank alone every rank exit 3 (no rank left waiting).
# The model is the seeded synthetic llama2.c model of tests/support/tiny_llama.hpp, written by the
# make_tiny_llama binary into this run's own folder under BUILD_DIR/tests (removed when every check
# passes, kept for a look when one fails).
#   bash tests/tools/mpi_measure.sh BUILD_DIR MAKE_TINY_LLAMA [MPIRUN]
set -euo pipefail
if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: bash tests/tools/mpi_measure.sh BUILD_DIR MAKE_TINY_LLAMA [MPIRUN]" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
make_tiny_llama=$2
mpirun=${3:-mpirun}
if [[ ! -x $make_tiny_llama ]]; then
  echo "FAIL: make_tiny_llama '$make_tiny_llama' is not an executable (build the make_tiny_llama target)" >&2
  exit 1
fi
mixprec=$build/tools/mixprec/mixprec
mixprec_mpi=$build/tools/mixprec/mixprec-mpi
# CI runs as root, which Open MPI refuses unless told.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI never frees some of its own allocations: LeakSanitizer (an ASan build) would report them.
if [[ -n ${ASAN_OPTIONS:-} ]]; then export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"; fi
oversubscribe=()  # more ranks than cores (Open MPI's option; MPICH's mpiexec does not need it)
if "$mpirun" --version 2>&1 | grep -q "Open MPI"; then oversubscribe=(--oversubscribe); fi

mkdir -p "$build/tests"
work=$(mktemp -d "$build/tests/mpi_measure.XXXXXX")
trap 'rc=$?; if [[ $rc -eq 0 ]]; then rm -rf "$work"; else echo "(files kept in $work)"; fi' EXIT
cd "$work"
"$make_tiny_llama" model >/dev/null
"$mixprec" convert model/tiny_llama.bin model/tiny_tok.bin -o a.gguf >/dev/null
opts=(--types q4_0,q8_0 --sample 4:32 --seed 7)

start=$SECONDS
"$mixprec" measure a.gguf "${opts[@]}" -o single.json >single.txt 2>/dev/null
echo "mixprec measure: $((SECONDS - start)) s"
start=$SECONDS
timeout 300 "$mpirun" "${oversubscribe[@]}" -np 2 "$mixprec_mpi" measure a.gguf "${opts[@]}" -o mpi.json >mpi.txt 2>mpi.err || {
  echo "FAIL: mpirun -np 2 mixprec-mpi measure exited $?"
  cat mpi.err
  exit 1
}
echo "mpirun -np 2 mixprec-mpi measure: $((SECONDS - start)) s"
if ! cmp single.json mpi.json; then
  python3 -c 'import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:]); print("as JSON:", "equal" if a == b else "different")' \
    single.json mpi.json
  echo "FAIL: mpi.json differs from single.json"
  exit 1
fi
diff single.txt mpi.txt || { echo "FAIL: the tables differ"; exit 1; }
echo "ok: mpi.json == single.json ($(wc -c <mpi.json) bytes, $(grep -c '^| blk\|^| token\|^| output' mpi.txt) rows)"

# A bad request: every rank exits 2, within the timeout, and nothing is written.
rc=0
timeout 60 "$mpirun" "${oversubscribe[@]}" -np 2 "$mixprec_mpi" measure a.gguf --types q4_0,nonsense --sample 4:32 -o bad.json \
  >/dev/null 2>bad.err || rc=$?
if [[ $rc -ne 2 || -e bad.json ]]; then
  echo "FAIL: --types nonsense: exit $rc (expected 2), bad.json $([[ -e bad.json ]] && echo written || echo absent)"
  cat bad.err
  exit 1
fi
echo "ok: --types nonsense: exit 2 ($(grep -m1 '^mixprec:' bad.err))"

# A failure on one rank only (MPMD: rank 1 is given a model that does not exist) while rank 0 measures:
# both exit 3 (unreadable input), rank 1's message is printed, and nothing is written.
rc=0
timeout 60 "$mpirun" "${oversubscribe[@]}" -np 1 "$mixprec_mpi" measure a.gguf "${opts[@]}" -o one.json \
  : -np 1 "$mixprec_mpi" measure missing.gguf "${opts[@]}" -o one.json >/dev/null 2>one.err || rc=$?
if [[ $rc -ne 3 || -e one.json ]] || ! grep -q "^mixprec: .*missing.gguf.*(rank 1 of 2)" one.err; then
  echo "FAIL: rank 1 failing alone: exit $rc (expected 3), one.json $([[ -e one.json ]] && echo written || echo absent)"
  cat one.err
  exit 1
fi
echo "ok: rank 1 failing alone: exit 3 ($(grep -m1 '^mixprec:' one.err))"
