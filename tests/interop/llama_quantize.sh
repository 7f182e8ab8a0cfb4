#!/usr/bin/env bash
# Builds llama.cpp's own llama-quantize tool for the interop tests: tools/quantize of the llama.cpp
# source that the npm package node-llama-cpp@3.22.1 ships (llama.cpp 0.5.0, as a git bundle), compiled
# with g++ against the prebuilt libraries of @node-llama-cpp/linux-x64@3.22.1 that run.sh unpacks.
#   bash tests/interop/llama_quantize.sh DIR
# DIR is run.sh's folder: run.sh must have run first (it puts the libraries in DIR/package/bins/linux-x64);
# without them this exits 2. The tarball is fetched once as the registry serves it (no npm or node needed),
# checked against its pinned sha512, and only its git bundle is taken out and cloned into DIR/llama.cpp-src;
# the tarball and the bundle are then deleted. DIR/llama-quantize is built once (rpath to the libraries, so
# no LD_LIBRARY_PATH is needed) and rebuilt only when older than the checked source. The last line printed
# on stdout is its path.
# Needs the network once, git and g++: without any of them it says so and exits 77, which ctest reports as
# skipped. A tarball whose checksum differs is a failure, never a skip.
set -euo pipefail
dir="$(mkdir -p "$1" && cd "$1" && pwd)"
version=3.22.1
url="https://registry.npmjs.org/node-llama-cpp/-/node-llama-cpp-${version}.tgz"
# dist.integrity of the registry's entry (sha512-bltIipuW...), in hex.
sha512=6e5b488a9b9699cd76dc7eed30880318a4ac4ab866865418795502e3c5d38d55bb5c624988927209d95333343f2e25a83e4183a5c2f816f883a60c3ba9f4e20f
tgz="$dir/node-llama-cpp-${version}.tgz"
libs="$dir/package/bins/linux-x64"
src="$dir/llama.cpp-src"
marker="$dir/.verified-node-llama-cpp-$version"
bin="$dir/llama-quantize"

# shellcheck source=tests/interop/fetch_pinned.sh
source "$(dirname "$0")/fetch_pinned.sh"

if [ ! -f "$libs/libllama-common.so" ]; then
  echo "llama_quantize: no $libs/libllama-common.so: run tests/interop/run.sh $1 ... first" >&2
  exit 2
fi
for tool in git g++; do
  if ! command -v "$tool" >/dev/null; then
    echo "llama_quantize: SKIPPED: no $tool to build llama.cpp's llama-quantize" >&2
    exit 77
  fi
done
# One build at a time when ctest runs several tests that need it.
if command -v flock >/dev/null; then
  exec 9>"$dir/.llama-quantize.lock"
  flock 9
fi

if [ ! -f "$marker" ] || [ ! -f "$src/tools/quantize/quantize.cpp" ]; then
  rm -f "$marker"
  fetch_pinned llama_quantize "$url" "$sha512" "$tgz"
  tmp="$dir/node-llama-cpp-$version"
  rm -rf "$tmp" "$src"
  mkdir -p "$tmp"
  tar -xzf "$tgz" -C "$tmp" package/llama/gitRelease.bundle
  # The bundle holds one squashed commit, so a full clone is as small as a shallow one.
  git -c advice.detachedHead=false clone -q "$tmp/package/llama/gitRelease.bundle" "$src"
  rm -rf "$tmp" "$tgz"
  touch "$marker"
fi

if [ ! "$bin" -nt "$marker" ]; then
  echo "llama_quantize: building $bin" >&2
  # shellcheck disable=SC2016 # $ORIGIN is for the dynamic linker, not the shell
  g++ -std=c++17 -O2 -I"$src/include" -I"$src/ggml/include" -I"$src/common" \
    "$src/tools/quantize/main.cpp" "$src/tools/quantize/quantize.cpp" -o "$bin.part" \
    "$libs/libllama-common.so" "$libs/libllama.v0.5.0.so" "$libs/libggml-base.so" \
    -Wl,-rpath,'$ORIGIN/package/bins/linux-x64'
  mv "$bin.part" "$bin"
fi
echo "$bin"
