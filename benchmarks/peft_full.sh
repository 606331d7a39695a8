#!/usr/bin/env bash
# Issue 27: one parameter-efficient setting on the whole training files, one epoch, the protocol of causal_full.sh
# and the parity sections (125,540 training rows, all 13,951 validation rows scored at the end, training's own
# cross-fitted calibration), pet on zh-mini-mlm, seed 1. The settings: peft_settings.sh.
#   bash benchmarks/peft_full.sh <run dir> <hard | ptuning | ptuning-lstm | prompts | lora> [overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:?run directory}
source benchmarks/peft_settings.sh
# shellcheck disable=SC2086
python -m pet_mtl.train seed=1 model.path=../shared/models/zh-mini-mlm data.dir=../shared/data/tianchi \
  train.epochs=1 train.lr=3e-4 train.eval_every=0 "train.predict_splits=[]" train.progress=false train.plots=false \
  train.num_threads="${THREADS:-1}" ${EXTRA[${2:?setting}]} hydra.run.dir="$RUN" "${@:3}"
