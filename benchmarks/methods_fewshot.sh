#!/usr/bin/env bash
# Issue 3, evidence 2: pet and heads in the few-shot regime, FewCLUE splits 0..2 x 3 seeds, on zh-mini-mlm.
# Train on FewCLUE train_k (TNEWS 240, OCNLI 32) and 16 per class sampled from OCEMOTION's training file (112),
# pick checkpoint-best on dev_k every 50 steps, report it once on the fixed held-out set: 1,000 rows per task carved
# from the competition training files, no text shared with any FewCLUE file (conf/data/fewclue.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${1:-outputs/methods_fewshot}
python -m pet_mtl.train -m method=pet,heads data=fewclue data.fewclue_split=0,1,2 seed=1,2,3 \
  model.path=../shared/models/zh-mini-mlm \
  train.max_steps=200 train.batch_size=16 train.lr=3e-4 train.eval_every=50 \
  "train.predict_splits=[]" train.progress=false train.num_threads="${THREADS:-1}" hydra.sweep.dir="$SWEEP"
python -m pet_mtl.report "$SWEEP"                              # a row per method and split, over 3 seeds
python -m pet_mtl.report "$SWEEP" --over seed,data.fewclue_split --out "$SWEEP/by_method"  # a row per method, 9 runs
