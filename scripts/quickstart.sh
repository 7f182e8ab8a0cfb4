#!/usr/bin/env bash
# One-command set-up for a fresh Debian 12 machine: installs what is missing (as root, via apt-get),
# configures and builds, then runs the main job (`run`, apps/fashion_mnist) or the whole test suite (`test`).
#   bash scripts/quickstart.sh run     # the main job end to end: Fashion-MNIST sensitivity, plans, QAT
#   bash scripts/quickstart.sh test    # every test (ctest)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake ninja-build g++ libeigen3-dev libxsimd-dev catch2 libbenchmark-dev nlohmann-json3-dev
          libcli11-dev zlib1g-dev dataset-fashion-mnist gnuplot-nox clang libclang-rt-14-dev curl ca-certificates unicode-data
          openmpi-bin libopenmpi-dev)

install_missing() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "quickstart: installing ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build_dir=${MIXPREC_BUILD_DIR:-build}
jobs=${MIXPREC_JOBS:-$(nproc)}

configure() {
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
}

case "${1:-}" in
  run)
    install_missing
    configure
    cmake --build "$build_dir" -j "$jobs" --target fashion_mnist
    # Fashion-MNIST end to end (Debian's dataset-fashion-mnist): trains the CNN once (cached in
    # fashion_out/), then sensitivity, plans, Pareto frontier, QAT; tables on stdout, files in fashion_out/.
    "$build_dir/apps/fashion_mnist/fashion_mnist" --out fashion_out --json fashion_out/report.json "${@:2}"
    ;;
  test)
    install_missing
    configure
    cmake --build "$build_dir" -j "$jobs"
    ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
    ;;
  *)
    echo "usage: bash scripts/quickstart.sh run|test" >&2
    exit 2
    ;;
esac
