#!/usr/bin/env bash
# A change to the shipped patterns, scored before and after on the same rows: zero-shot (the untrained zh-mini-mlm)
# on the whole validation split (13,951 rows, split_seed 42), and the short protocol of methods_full.sh (pet, the
# default set, 4,000 training rows per task, one epoch, 2,000 validation rows per task) for seeds 1-3; the checkout
# at a git revision (a worktree in <out dir>/before-src) against this one, side by side at one thread each.
#   bash benchmarks/pattern_change.sh <before revision> <out dir> [train overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:?a git revision}
OUT=$(realpath -m "${2:?out dir}")
SHARED=$(realpath ../shared)
mkdir -p "$OUT"
[ -d "$OUT/before-src" ] || git worktree add --detach "$OUT/before-src" "$BEFORE" >/dev/null
run() {  # <checkout> <name> [overrides]: python -m imports the checkout it runs in
  (cd "$1" && python -m pet_mtl.patterns zero-shot --model "$SHARED/models/zh-mini-mlm" \
     --data-dir "$SHARED/data/tianchi" --rows 100000 --rules word > "$OUT/$2-zero-shot.txt" &&
   python -m pet_mtl.train -m seed=1,2,3 model.path="$SHARED/models/zh-mini-mlm" data.dir="$SHARED/data/tianchi" \
     data.max_train_per_task=4000 data.max_val_per_task=2000 train.epochs=1 train.lr=3e-4 train.eval_every=0 \
     "train.predict_splits=[]" train.progress=false train.plots=false train.num_threads=1 \
     hydra.sweep.dir="$OUT/$2" "${@:3}" > "$OUT/$2.log" 2>&1)
}
run "$OUT/before-src" before "${@:3}" &
run "$PWD" after "${@:3}"
wait
for side in before after; do echo "## $side"; cat "$OUT/$side-zero-shot.txt"; python -m pet_mtl.report "$OUT/$side"; done
