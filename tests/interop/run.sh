#!/usr/bin/env bash
# Runs the interop test binary against llama.cpp's own prebuilt CPU libraries: the npm package
# @node-llama-cpp/linux-x64@3.22.1 (llama.cpp 0.5.0, ggml 0.25.1), fetched once into DIR as the
# registry serves it (a tarball; no npm or node needed), checked against its pinned sha512, unpacked.
#   bash tests/interop/run.sh DIR TEST_BINARY [catch2 args]
# Needs the network once: when registry.npmjs.org cannot be reached it says so and exits 77, which
# ctest reports as skipped. A tarball whose checksum differs is a failure, never a skip.
# The binary also gets MIXPREC_LLAMA_QUANTIZE (llama.cpp's llama-quantize, see below),
# MIXPREC_INTEROP_CACHE (DIR, which outlives a run) and MIXPREC_FETCH_STORIES15M (scripts/fetch_stories15m.sh): the interop test fetches karpathy's stories15M into DIR/stories15M
# with it when its stories15M test case runs, so that nothing else run through here downloads it.
set -euo pipefail
dir="$1"
shift
binary="$1"
shift
version=3.22.1
url="https://registry.npmjs.org/@node-llama-cpp/linux-x64/-/linux-x64-${version}.tgz"
# dist.integrity of the registry's entry (sha512-5uCCDNqW...), in hex.
sha512=e6e0820cda9608d7da026f1a47f533c5ba381c1a4a80d17dd640873dea4a86032057638099ab6879f6ce94c8a1b2a0a21f639ddf913f7941d00856df44126e3a
tgz="$dir/linux-x64-${version}.tgz"
lib="$dir/package/bins/linux-x64/libggml-base.so"

# shellcheck source=tests/interop/fetch_pinned.sh
source "$(dirname "$0")/fetch_pinned.sh"

mkdir -p "$dir"
if [ ! -f "$lib" ] || [ ! -f "$dir/.verified-$version" ]; then
  fetch_pinned interop "$url" "$sha512" "$tgz"
  rm -rf "$dir/package"
  tar -xzf "$tgz" -C "$dir"
  touch "$dir/.verified-$version"
fi
root="$(cd "$(dirname "$0")/../.." && pwd)"
# llama.cpp's own llama-quantize, built from the matching source (llama_quantize.sh) into DIR, for the
# tests that give it mixprec's tensor-type files: MIXPREC_LLAMA_QUANTIZE, empty where it cannot be built
# here (exit 77: no git or g++, or no network; it says why), and those tests then skip.
quantize_bin=""
if out="$(bash "$root/tests/interop/llama_quantize.sh" "$dir")"; then
  quantize_bin="$(printf '%s\n' "$out" | tail -n 1)"
else
  rc=$?
  [ "$rc" -eq 77 ] || exit "$rc"
fi
# libllama of the same package, for the tests that run llama.cpp itself (it finds its libggml*.so beside it).
MIXPREC_LLAMA_QUANTIZE="$quantize_bin" MIXPREC_GGML_BASE="$lib" MIXPREC_LLAMA_LIB="$(dirname "$lib")/libllama.v0.5.0.so" MIXPREC_INTEROP_CACHE="$(cd "$dir" && pwd)" \
  MIXPREC_FETCH_STORIES15M="$root/scripts/fetch_stories15m.sh" exec "$binary" "$@"
