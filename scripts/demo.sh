#!/usr/bin/env bash
# The built-in demo (`make demo`): a stage 1 (builtin:tiny-llava learns to caption builtin:shapes images),
# then from it train on builtin:shapes with Vittle (F) and as the plain baseline, evaluate both on the shapes-shift suite (clean + 9 visual + 9 text + 9 joint shifts) and
# print them side by side. CPU only, nothing is downloaded. The two runs share the 2 cores: the baseline
# runs in the background (its log: demo-out/baseline.log) while Vittle's progress shows here.
set -euo pipefail
cd "$(dirname "$0")/.."
VITTLE=${VITTLE:-.venv/bin/vittle}
OUT=${DEMO_OUT:-demo-out}
LIMIT=${DEMO_LIMIT:-40}  # questions per POPE split and shift (the full set has 98 per split)
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"

run_pair() {  # run_pair "<vittle command>" "<baseline command>": baseline in the background
    $2 >"$OUT/baseline.log" 2>&1 &
    local bg=$!
    if ! $1; then kill "$bg" 2>/dev/null || true; wait "$bg" 2>/dev/null || true; return 1; fi
    if ! wait "$bg"; then echo "baseline failed; see $OUT/baseline.log" >&2; tail -5 "$OUT/baseline.log" >&2; return 1; fi
}

echo "== 1/4 stage 1: captions (builtin:shapes-captions), shared by both arms"
$VITTLE train recipes/tiny_stage1.yaml output.dir=$OUT/runs --overwrite

echo "== 2/4 train: Vittle (F) and the baseline from stage 1, on builtin:shapes"
run_pair "$VITTLE train recipes/tiny.yaml model.name=$OUT/runs/tiny_stage1 output.dir=$OUT/runs --overwrite" \
         "$VITTLE train recipes/tiny_baseline.yaml model.name=$OUT/runs/tiny_stage1 output.dir=$OUT/runs --overwrite"

echo "== 3/4 eval: shapes-shift (clean + 27 shifts), $LIMIT questions per split"
run_pair "$VITTLE eval --suite shapes-shift --model $OUT/runs/tiny --out $OUT/eval/vittle --limit $LIMIT --overwrite" \
         "$VITTLE eval --suite shapes-shift --model $OUT/runs/tiny_baseline --out $OUT/eval/baseline --limit $LIMIT --overwrite"

echo "== 4/4 compare: Vittle (F) vs baseline"
$VITTLE eval compare "$OUT/eval/baseline" "$OUT/eval/vittle" --out "$OUT/compare"
echo "Outputs in $OUT/: runs (checkpoints, loss.png), eval/*/results.{json,png}, compare/compare.png"
