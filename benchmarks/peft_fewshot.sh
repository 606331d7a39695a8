#!/usr/bin/env bash
# Issue 27: parameter-efficient settings in the few-shot regime, the protocol of methods_fewshot.sh (FewCLUE splits
# 0..2 x 3 seeds, 200 steps of 16, checkpoint-best on dev_k every 50 steps, scored once on the fixed held-out set),
# pet on zh-mini-mlm. One sweep per setting (peft_settings.sh), each a subfolder of <out dir>.
#   bash benchmarks/peft_fewshot.sh <out dir> [setting ...]   (default: all five; THREADS=1)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?out dir}
shift
source benchmarks/peft_settings.sh
SETTINGS=("$@")
[ ${#SETTINGS[@]} -gt 0 ] || SETTINGS=("${PEFT_SETTINGS[@]}")
for s in "${SETTINGS[@]}"; do
  # shellcheck disable=SC2086
  python -m pet_mtl.train -m data=fewclue data.fewclue_split=0,1,2 seed=1,2,3 model.path=../shared/models/zh-mini-mlm \
    train.max_steps=200 train.batch_size=16 train.lr=3e-4 train.eval_every=50 train.plots=false \
    "train.predict_splits=[]" train.progress=false train.num_threads="${THREADS:-1}" ${EXTRA[$s]} \
    hydra.sweep.dir="$OUT/$s"
  python -m pet_mtl.report "$OUT/$s" --over seed,data.fewclue_split --out "$OUT/$s/by_setting"
done
