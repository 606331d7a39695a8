#!/usr/bin/env bash
# Issue 26: method=causal (zh-mini-clm) on the whole training files, one epoch, the protocol of the parity sections
# (data.val_size 0.1, split_seed 42: 125,540 training rows, all 13,951 validation rows scored at the end, training's
# own cross-fitted calibration beside argmax), pet's learning rate. Run once per pattern set, side by side at one
# thread each: `bash benchmarks/causal_full.sh <run dir> <pattern set: causal | causal_noprefix> [overrides...]`
# (e.g. train.eval_every=654 for resumable checkpoints along the way: evaluations change nothing the run computes)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:?run directory}
SET=${2:-causal}
python -m pet_mtl.train method=causal patterns="$SET" seed=1 \
  model.path=../shared/models/zh-mini-clm data.dir=../shared/data/tianchi \
  train.epochs=1 train.lr=3e-4 train.eval_every=0 "train.predict_splits=[]" train.progress=false train.plots=false \
  train.num_threads="${THREADS:-1}" hydra.run.dir="$RUN" "${@:3}"
