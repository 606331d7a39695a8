#!/usr/bin/env bash
# Issue 11 evidence: label-word scoring rules and verbalizer search on zh-mini-mlm, zero-shot and after a short
# fixed-budget run (4,000 training rows per task, one epoch, 2,000 validation rows per task, seed 42).
# Usage: bash benchmarks/label_words.sh [out dir]   (from anywhere; about 25 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-outputs/label_words}
MODEL=../shared/models/zh-mini-mlm
DATA=../shared/data/tianchi
mkdir -p "$OUT"
# 1. zero-shot, every scoring rule: the shipped patterns, and TNEWS with the mixed-length verbalizer
python -m pet_mtl.patterns zero-shot --model $MODEL --data-dir $DATA --rows 2000 | tee "$OUT/zero_shot_default.md"
python -m pet_mtl.patterns zero-shot --model $MODEL --data-dir $DATA --rows 2000 --tasks tnews \
  --template tnews/topic.j2 --verbalizer mixed | tee "$OUT/zero_shot_mixed.md"
# 2. verbalizer search for TNEWS and OCEMOTION (2-token words from the tasks' own text), into a user pattern root
ROOT="$OUT/searched_patterns"
for task in tnews ocemotion; do
  mkdir -p "$ROOT/$task"
  template=$([ $task = tnews ] && echo topic.j2 || echo feel.j2)
  cp patterns/$task/$template "$ROOT/$task/"
  python -m pet_mtl.patterns search-verbalizers --model $MODEL --data-dir $DATA --task $task --rows 4000 \
    --out "$ROOT/$task/verbalizers.yaml" --name default | tee "$OUT/search_$task.txt"
done
# 3. the same short training run per rule, the mixed verbalizer per rule, and the searched verbalizers
COMMON="model.path=$MODEL data.dir=$DATA data.max_train_per_task=4000 data.max_val_per_task=2000 train.epochs=1
  train.lr=3e-4 train.eval_every=0 train.predict_splits=[] train.progress=false"
python -m pet_mtl.train -m $COMMON label_scoring=padded,word_mean hydra.sweep.dir="$OUT/trained_default"
python -m pet_mtl.train -m $COMMON "patterns.tnews=[{template: tnews/topic.j2, verbalizer: mixed}]" \
  label_scoring=padded,word,word_mean hydra.sweep.dir="$OUT/trained_mixed"
python -m pet_mtl.train $COMMON "pattern_roots=[$ROOT]" hydra.run.dir="$OUT/trained_searched"
python -m pet_mtl.report "$OUT/trained_default" "$OUT/trained_mixed" "$OUT/trained_searched" --per-class --out "$OUT"
