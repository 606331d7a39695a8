# Issue 27's settings, the overrides each adds to pet on zh-mini-mlm; sourced by peft_fewshot.sh and peft_full.sh so
# the few-shot and whole-file runs of a setting are the same setting:
#   hard          the default set, everything trains (the reference)
#   ptuning       the soft set (the default patterns' text as learned tokens + two task tokens), everything trains,
#                 the tokens at prompt_lr
#   ptuning-lstm  the same through P-tuning's LSTM prompt encoder
#   prompts       the soft set, the tokens alone (prompt tuning)
#   lora          the default set, LoRA r=8 on query/value
# shellcheck disable=SC2034
PEFT_SETTINGS=(hard ptuning ptuning-lstm prompts lora)
declare -A EXTRA=(
  [hard]=""
  [ptuning]="patterns=soft train.prompt_lr=3e-2"
  [ptuning-lstm]="patterns=soft train.prompt_lr=3e-2 model.prompt_encoder=lstm"
  [prompts]="patterns=soft train.train_only=prompts train.prompt_lr=3e-2"
  [lora]="model.lora.r=8 train.lr=1e-3"
)
