#!/usr/bin/env bash
# One full multi-task PET run on the shared competition data with zh-mini-mlm, then its summary row.
# Usage: bash benchmarks/full_data.sh [extra hydra overrides]   (from the repository root; about 30 min on 2 cores)
set -euo pipefail
run_dir="outputs/bench-full-$(date +%Y%m%d-%H%M%S)"
python -m pet_mtl.train model.path=../shared/models/zh-mini-mlm data.dir=../shared/data/tianchi \
  train.epochs=1 train.lr=3e-4 train.eval_every=1000 "train.predict_splits=[a,b]" train.progress=false \
  hydra.run.dir="$run_dir" "$@"
python benchmarks/summarize.py "$run_dir"
for s in a b; do wc -l "$run_dir/submission-$s/"*_predict.json; done
