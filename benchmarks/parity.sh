#!/usr/bin/env bash
# Issue 10, item 1: the plain reference classifier and pet_mtl's heads and pet side by side, on the same rows
# (pet_mtl's validation carve-out, data.val_size 0.1, split_seed 42), one epoch, zh-mini-mlm, validation macro-F1.
#   bash benchmarks/parity.sh OUT_DIR [extra overrides for every pet_mtl run, e.g. data.max_train_per_task=4000]
# Systems (each skipped when its result already exists, so a killed script reruns to the end):
#   ref            benchmarks/plain_classifier.py: single-task batches, segment ids, no [CLS] dropout (the issue's)
#   heads-before   method=heads as it was before the parity fix: model.segment_ids=false model.head_dropout=0.1
#   heads          method=heads with today's defaults (segment ids, no extra dropout, mixed-task batches)
#   pet-single-segment  method=pet as it was before OCNLI's pattern became a sentence pair (patterns=single_segment)
#   pet            method=pet with today's defaults (lr 3e-4, as the issue's table; OCNLI's pattern a sentence pair)
# then the table (benchmarks/parity_table.py) and the calibration rules on heads and pet (benchmarks/calibration.py).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: parity.sh OUT_DIR [overrides...]}; shift
SEED=${SEED:-1}; THREADS=${THREADS:-2}
MODEL=${MODEL:-../shared/models/zh-mini-mlm}; DATA=${DATA:-../shared/data/tianchi}
mkdir -p "$OUT"
rows=""; for o in "$@"; do case $o in data.max_train_per_task=*) rows="--max-train-per-task ${o#*=}";; esac; done
[ -s "$OUT/ref.json" ] || python benchmarks/plain_classifier.py --model "$MODEL" --data "$DATA" $rows \
  --max-val-per-task 100000 --seed "$SEED" --threads "$THREADS" --out "$OUT/ref.json"
common=(seed="$SEED" model.path="$MODEL" data.dir="$DATA" train.epochs=1 train.eval_every=0 "train.predict_splits=[]"
        train.progress=false train.num_threads="$THREADS" "$@")
run() {  # run NAME OVERRIDES...
  local name=$1; shift
  grep -qs '"finished": true' "$OUT/$name/metrics.json" || python -m pet_mtl.train "$@" "${common[@]}" hydra.run.dir="$OUT/$name"
}
run heads-before method=heads train.lr=2e-4 model.segment_ids=false model.head_dropout=0.1 train.calibrate=false
run heads method=heads train.lr=2e-4
run pet-single-segment method=pet train.lr=3e-4 patterns=single_segment
run pet method=pet train.lr=3e-4
python benchmarks/parity_table.py "$OUT/ref.json" "$OUT/heads-before" "$OUT/heads" "$OUT/pet-single-segment" "$OUT/pet" \
  | tee "$OUT/table.md"
for r in heads pet; do
  [ -s "$OUT/calibration-$r.md" ] || python benchmarks/calibration.py "$OUT/$r" > "$OUT/calibration-$r.md"
done
