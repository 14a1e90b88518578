#!/usr/bin/env bash
# The built-in multi-seed study (`make study`): the demo's two recipes, 3 training seeds each (per seed one
# stage 1 on captions, recipes/tiny_stage1.yaml, that both arms start from), every run evaluated on
# shapes-shift, then `vittle eval compare --arm` reports per variant and group the mean and spread over
# seeds and a paired bootstrap interval of Vittle - baseline over questions.
# CPU only, nothing is downloaded; two runs at a time (one per core). About 3x the demo's time.
set -euo pipefail
cd "$(dirname "$0")/.."
VITTLE=${VITTLE:-.venv/bin/vittle}
OUT=${STUDY_OUT:-study-out}
LIMIT=${STUDY_LIMIT:-40}       # questions per POPE split and shift, as in the demo
SEEDS=${STUDY_SEEDS:-"1 2 3"}
EXTRA=${STUDY_TRAIN_ARGS:-}    # extra recipe overrides for both arms, e.g. "train.max_steps=600"
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT/logs"

pair() {  # pair "<command A>" "<command B>" LOG: both at once, fail if either fails
    $1 >"$OUT/logs/$3.a.log" 2>&1 & local a=$!
    $2 >"$OUT/logs/$3.b.log" 2>&1 & local b=$!
    local rc=0
    wait "$a" || rc=1
    wait "$b" || rc=1
    if [ "$rc" != 0 ]; then echo "failed; see $OUT/logs/$3.*.log" >&2; return 1; fi
}

vittle_evals=() baseline_evals=()
for s in $SEEDS; do
    echo "== seed $s: stage 1 (captions)"
    $VITTLE train recipes/tiny_stage1.yaml output.dir=$OUT/runs output.run_name=stage1-s$s train.seed=$s --overwrite \
        >"$OUT/logs/stage1-s$s.log" 2>&1 || { echo "failed; see $OUT/logs/stage1-s$s.log" >&2; exit 1; }
    echo "== seed $s: train Vittle (F) and the baseline from it"
    from="model.name=$OUT/runs/stage1-s$s"
    pair "$VITTLE train recipes/tiny.yaml $from output.dir=$OUT/runs output.run_name=vittle-s$s train.seed=$s $EXTRA --overwrite" \
         "$VITTLE train recipes/tiny_baseline.yaml $from output.dir=$OUT/runs output.run_name=baseline-s$s train.seed=$s $EXTRA --overwrite" \
         "train-s$s"
    echo "== seed $s: eval shapes-shift, $LIMIT questions per split"
    pair "$VITTLE eval --suite shapes-shift --model $OUT/runs/vittle-s$s --out $OUT/eval/vittle-s$s --limit $LIMIT --overwrite" \
         "$VITTLE eval --suite shapes-shift --model $OUT/runs/baseline-s$s --out $OUT/eval/baseline-s$s --limit $LIMIT --overwrite" \
         "eval-s$s"
    vittle_evals+=("$OUT/eval/vittle-s$s") baseline_evals+=("$OUT/eval/baseline-s$s")
done

echo "== compare: Vittle (F) vs baseline over seeds $SEEDS"
$VITTLE eval compare --arm baseline "${baseline_evals[@]}" --arm vittle "${vittle_evals[@]}" --out "$OUT/compare"
$VITTLE eval compare --arm baseline "${baseline_evals[@]}" --arm vittle "${vittle_evals[@]}" --metric accuracy >"$OUT/compare/accuracy.txt"
echo "Outputs in $OUT/: runs/, eval/*/results.json, compare/compare.{json,png} (F1), compare/accuracy.txt"
