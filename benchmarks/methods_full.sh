#!/usr/bin/env bash
# Issue 3, evidence 1: the four methods x 3 seeds in the full-data regime, on zh-mini-mlm, one Hydra sweep.
# Scaled to this 2-core CPU (a true full epoch is ~20 min a run): 4,000 training rows per task (a stratified sample
# of each training file, the same rows for every run), one epoch (375 steps of 32), scored at the end on 2,000
# validation rows per task carved from the training files with split_seed 42 (the same rows for every run).
# THREADS=1 (default) because the few-shot sweep ran beside it on the other core.
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${1:-outputs/methods_full}
python -m pet_mtl.train -m method=pet,heads,cln,pet_cln seed=1,2,3 \
  model.path=../shared/models/zh-mini-mlm data.dir=../shared/data/tianchi \
  data.max_train_per_task=4000 data.max_val_per_task=2000 \
  train.epochs=1 train.lr=3e-4 train.eval_every=0 "train.predict_splits=[]" train.progress=false \
  train.num_threads="${THREADS:-1}" hydra.sweep.dir="$SWEEP"
python -m pet_mtl.report "$SWEEP"
