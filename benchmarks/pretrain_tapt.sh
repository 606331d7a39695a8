#!/usr/bin/env bash
# Issue 13, evidence 2: task-adaptive pretraining of zh-mini-mlm, then pet and heads on the original and the adapted
# backbone. Budget per pretraining run: 1,200 steps of 32 packed sequences x 128 tokens (4.9M tokens, ~20 min on an
# idle 2-core machine). Text: the three tasks' training files (minus the validation rows train scores on,
# data.val_size 0.1 and split_seed 42, and the few-shot held-out rows) and test files A and B; the second run adds
# the plain-text corpus in ../shared/data/corpus at the same document weight as the task text (pseudo-perplexity
# only: the downstream runs compare the original with the task-adapted backbone).
# Downstream: 16,000 training rows per task, one epoch, scored on 2,000 validation rows per task (as
# benchmarks/RESULTS.md's 16k runs), and the few-shot regime on FewCLUE splits 0-2 (seed 1).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/work/runs/tapt}
ORIG=../shared/models/zh-mini-mlm
done_() { grep -qs '"finished": true' "$1/metrics.json"; }
common=(model.path=$ORIG train.max_steps=1200 train.lr=1e-4 train.eval_every=300 train.save_every=300
        data.fewclue_dir=../shared/data/fewclue train.progress=false train.num_threads="${THREADS:-2}")
resume() { [ -d "$1/checkpoint-last" ] && echo train.resume=true || true; }
done_ "$OUT/tapt" || python -m pet_mtl.pretrain "${common[@]}" out_dir="$OUT/tapt" \
  'text=[../shared/data/tianchi]' $(resume "$OUT/tapt")
done_ "$OUT/tapt_corpus" || python -m pet_mtl.pretrain "${common[@]}" out_dir="$OUT/tapt_corpus" \
  'text=[../shared/data/tianchi,../shared/data/corpus/*.txt.gz]' $(resume "$OUT/tapt_corpus")
python -m pet_mtl.train -m method=pet,heads seed=1 model.path=$ORIG,$OUT/tapt \
  data.dir=../shared/data/tianchi data.max_train_per_task=16000 data.max_val_per_task=2000 train.epochs=1 \
  train.lr=3e-4 train.eval_every=0 "train.predict_splits=[]" train.progress=false train.num_threads="${THREADS:-2}" \
  hydra.sweep.dir="$OUT/full_16k"
python -m pet_mtl.report "$OUT/full_16k"
python -m pet_mtl.train -m method=pet,heads data=fewclue data.fewclue_split=0,1,2 seed=1 model.path=$ORIG,$OUT/tapt \
  train.max_steps=200 train.batch_size=16 train.lr=3e-4 train.eval_every=50 \
  "train.predict_splits=[]" train.progress=false train.num_threads="${THREADS:-2}" hydra.sweep.dir="$OUT/fewshot"
python -m pet_mtl.report "$OUT/fewshot" --over seed,data.fewclue_split --out "$OUT/fewshot/by_backbone"
