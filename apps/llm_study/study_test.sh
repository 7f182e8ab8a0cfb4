#!/usr/bin/env bash
# llm_study end to end on the seeded synthetic model of tests/support/tiny_llama.hpp (written by the
# make_tiny_llama binary; small settings; tests/interop/run.sh supplies llama.cpp's library, or the test
# is skipped without the network): every recipe and plan is written, loads and is scored in llama.cpp,
# and the plans keep their budgets.
#   bash apps/llm_study/study_test.sh BUILD_DIR MAKE_TINY_LLAMA_BINARY
set -euo pipefail
build=$(cd "$1" && pwd)
make_tiny_llama=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$build/apps/llm_study/study_test
rm -rf "$work"
mkdir -p "$work"
"$make_tiny_llama" "$work/model" >/dev/null
"$build/tools/mixprec/mixprec" convert "$work/model/tiny_llama.bin" "$work/model/tiny_tok.bin" -o "$work/a.gguf" >/dev/null
bash "$root/tests/interop/run.sh" "$build/apps/llm_study/llama.cpp" "$build/apps/llm_study/llm_study" "$work/a.gguf" "$work/study" \
  --calibration 4:32 --eval 4:64 --types q4_0,q5_0,q8_0 --budgets 4.0,8.0,q4_K_M --tune 4:32 --threads 1 \
  --eval-text "$root/apps/llm_study/heldout_stories.txt" >"$work/out.txt" 2>"$work/err.txt" || {
  rc=$?
  cat "$work/err.txt"
  exit "$rc"
}
python3 - "$work/study" <<'PY'
import json, os, sys
d = sys.argv[1]
j = json.load(open(os.path.join(d, "results.json")))
rows = {(r["method"], r["budget"]): r for r in j["results"]}
fail = []
def check(ok, what):
    if not ok: fail.append(what)
for recipe in ["Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"]:
    for m in ["llama.cpp", "llama.cpp + imatrix"]:
        r = rows.get((m, recipe))
        check(r is not None and r["kl"] >= 0 and 0 < r["top1"] <= 100 and r["ppl"] > 1, f"{m} {recipe} scored")
# The streams are worth scoring on (varied, not one token over and over), and the scores see quantization.
streams = [line.split() for line in open(os.path.join(d, "eval_tokens.txt")) if line.strip()]
check(len({t for s in streams for t in s}) >= 32, "eval streams of varied tokens")
check(rows[("llama.cpp", "Q4_0")]["top1"] < 100, "Q4_0 changes some of the F32 model's picks")
check(rows[("llama.cpp", "Q8_0")]["kl"] < rows[("llama.cpp", "Q4_0")]["kl"], "Q8_0 closer to F32 than Q4_0")
weights = None
for metric in ["kl", "fisher", "gram_proxy", "imatrix_error", "weight_error"]:
    check("note" in rows[(metric, "4.0")], f"{metric} 4.0: refused (no type under 4.5 bits)")
    r = rows[(metric, "8.0")]
    check(r.get("matrix_bpw", 99) <= 8.0 + 1e-9, f"{metric} 8.0 within its budget ({r.get('matrix_bpw')})")
    q = rows[(metric, "q4_K_M")]
    check(q.get("matrix_bpw", 99) <= rows[("llama.cpp + imatrix", "Q4_K_M")]["matrix_bpw"] + 1e-9, f"{metric} at Q4_K_M's matrix bytes")
    check(q["kl"] >= 0 and q["ppl"] > 1, f"{metric} q4_K_M scored")
# The tuned files: the kl plan's bytes exactly, scored (no file where the kl plan had none).
check(("kl_tuned", "4.0") not in rows, "kl_tuned 4.0: no plan, no file")
for b in ["8.0", "q4_K_M"]:
    t, k = rows[("kl_tuned", b)], rows[("kl", b)]
    check(t["bytes"] == k["bytes"] and t["kl"] >= 0 and t["ppl"] > 1, f"kl_tuned {b}: the kl plan's bytes, scored")
# The held-out text: 4 streams of 64 tokens cut from it (BOS first), every file scored on them too.
text = [line.split() for line in open(os.path.join(d, "eval_text_tokens.txt")) if line.strip()]
check(len(text) == 4 and all(len(s) == 64 and s[0] == "1" for s in text), "eval text: 4 streams of 64 tokens, BOS first")
check(len({t for s in text for t in s}) >= 32 and text != streams, "eval text: varied tokens, not the sampled streams")
check(j["eval_text"]["streams"] == 4, "results.json names the text's streams")
for r in j["results"]:
    if "file" in r:
        check(r["text"]["kl"] >= 0 and r["text"]["ppl"] > 1 and r["text"]["ref_ppl"] > 1, f"{r['method']} {r['budget']}: scored on the text")
check(rows[("llama.cpp", "Q8_0")]["text"]["kl"] < rows[("llama.cpp", "Q4_0")]["text"]["kl"], "text: Q8_0 closer to F32 than Q4_0")
for f in ["results.md", "pareto.svg"]:
    check(os.path.getsize(os.path.join(d, f)) > 0, f)
if fail:
    print("FAILED:", *fail, sep="\n  ")
    sys.exit(1)
print(open(os.path.join(d, "results.md")).read())
PY
