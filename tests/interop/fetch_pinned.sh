# shellcheck shell=bash
# Sourced by run.sh and llama_quantize.sh: an npm tarball fetched as the registry serves it (curl, else
# python3; no npm or node needed) and checked against its pinned sha512.
#   fetch_pinned NAME URL SHA512 FILE
# FILE ends up holding URL's bytes with that sha512 (a FILE that already has them is kept, not fetched
# again). When the download fails (no network, or no curl or python3) it says so, as NAME, and exits 77,
# which ctest reports as skipped; a download whose sha512 differs exits 1: a failure, never a skip.
fetch_pinned() {
  local name="$1" url="$2" sha512="$3" file="$4"
  if [ -f "$file" ] && echo "$sha512  $file" | sha512sum -c --status; then
    return 0
  fi
  local ok=0
  if command -v curl >/dev/null; then
    curl -fsSL --retry 2 --connect-timeout 20 --max-time 600 -o "$file.part" "$url" && ok=1
  elif command -v python3 >/dev/null; then
    python3 -c 'import sys, urllib.request; open(sys.argv[2], "wb").write(urllib.request.urlopen(sys.argv[1], timeout=600).read())' \
      "$url" "$file.part" && ok=1
  fi
  if [ "$ok" -ne 1 ]; then
    rm -f "$file.part"
    echo "$name: SKIPPED: cannot download $url (no network, or no curl or python3?)" >&2
    exit 77
  fi
  mv "$file.part" "$file"
  if ! echo "$sha512  $file" | sha512sum -c --status; then
    echo "$name: FAILED: $file does not have the pinned sha512 (got $(sha512sum "$file" | cut -c1-32)...)" >&2
    exit 1
  fi
}
