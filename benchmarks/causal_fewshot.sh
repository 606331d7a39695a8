#!/usr/bin/env bash
# Issue 26: method=causal (zh-mini-clm) with and without the task prefix in the few-shot regime, the protocol of
# methods_fewshot.sh (FewCLUE splits 0..2 x 3 seeds, 200 steps, checkpoint-best on dev_k, scored once on the fixed
# held-out set). `bash benchmarks/causal_fewshot.sh <sweep dir> <pattern set: causal | causal_noprefix>`
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${1:-outputs/causal_fewshot}
SET=${2:-causal}
python -m pet_mtl.train -m method=causal patterns="$SET" data=fewclue data.fewclue_split=0,1,2 seed=1,2,3 \
  model.path=../shared/models/zh-mini-clm \
  train.max_steps=200 train.batch_size=16 train.lr=3e-4 train.eval_every=50 train.plots=false \
  "train.predict_splits=[]" train.progress=false train.num_threads="${THREADS:-1}" hydra.sweep.dir="$SWEEP"
python -m pet_mtl.report "$SWEEP" --over seed,data.fewclue_split --out "$SWEEP/by_method"
