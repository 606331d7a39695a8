#!/usr/bin/env bash
# Issue 10, item 1: the plain reference classifier and pet_mtl's heads and pet side by side, on the same rows
# (pet_mtl's validation carve-out, data.val_size 0.1, split_seed 42), one epoch, zh-mini-mlm, validation macro-F1.
#   bash benchmarks/parity.sh OUT_DIR [extra overrides for every pet_mtl run, e.g. data.max_train_per_task=4000]
# Systems (each skipped when its result already exists, so a killed script reruns to the end):
#   ref            benchmarks/plain_classifier.py: single-task batches, segment ids, no [CLS] dropout (the issue's)
#   heads-before   method=heads as it was before the parity fixes: model.segment_ids=false model.head_dropout=0.1,
#                  mixed-task batches
#   heads-mixed    method=heads with today's defaults but mixed-task batches (the default until issue 10's last round)
#   heads          method=heads with today's defaults (segment ids, no extra dropout, single-task batches)
#   pet-before     method=pet as it was before: OCNLI's pattern one segment (patterns=single_segment), mixed batches
#   pet            method=pet with today's defaults (lr 3e-4, as the issue's table; OCNLI's pattern a sentence pair)
#   pet-rdrop      pet with R-Drop (train.rdrop=1.0: every batch twice, about 2x the training time)
#   heads-rdrop    heads with R-Drop
#   heads-seed2    method=heads, seed SEED+1: a second teacher
#   student        python -m pet_mtl.distill: a pet student of teachers pet, heads and heads-seed2 on the competition's
#                  test files A and B (PET's final step: one model)
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
common=(model.path="$MODEL" data.dir="$DATA" train.epochs=1 train.eval_every=0 "train.predict_splits=[]"
        train.progress=false train.num_threads="$THREADS" "$@")
run() {  # [ENTRY=pet_mtl.distill] run NAME SEED OVERRIDES...
  local name=$1 seed=$2; shift 2
  grep -qs '"finished": true' "$OUT/$name/metrics.json" ||
    python -m "${ENTRY:-pet_mtl.train}" seed="$seed" "$@" "${common[@]}" hydra.run.dir="$OUT/$name"
}
run heads-before "$SEED" method=heads train.lr=2e-4 model.segment_ids=false model.head_dropout=0.1 train.batch_tasks=mixed \
  train.calibrate=false
run heads-mixed "$SEED" method=heads train.lr=2e-4 train.batch_tasks=mixed
run heads "$SEED" method=heads train.lr=2e-4
run pet-before "$SEED" method=pet train.lr=3e-4 patterns=single_segment train.batch_tasks=mixed
run pet "$SEED" method=pet train.lr=3e-4
run pet-rdrop "$SEED" method=pet train.lr=3e-4 train.rdrop=1.0
run heads-rdrop "$SEED" method=heads train.lr=2e-4 train.rdrop=1.0
run heads-seed2 $((SEED + 1)) method=heads train.lr=2e-4
ENTRY=pet_mtl.distill run student "$SEED" "teachers=[$OUT/pet,$OUT/heads,$OUT/heads-seed2]" method=pet train.lr=3e-4 \
  "data.unlabelled.ocnli=[a,b]" "data.unlabelled.ocemotion=[a,b]" "data.unlabelled.tnews=[a,b]"
python benchmarks/parity_table.py "$OUT/ref.json" "$OUT/heads-before" "$OUT/heads-mixed" "$OUT/heads" "$OUT/pet-before" \
  "$OUT/pet" "$OUT/pet-rdrop" "$OUT/heads-rdrop" "$OUT/student" \
  | tee "$OUT/table.md"
for r in heads pet; do
  [ -s "$OUT/calibration-$r.md" ] || python benchmarks/calibration.py "$OUT/$r" > "$OUT/calibration-$r.md"
done
