"""`python -m pet_mtl.export <run or checkpoint> --out <dir>`: a LoRA checkpoint with its adapters merged into the
base model's weights, written as a whole checkpoint.

A LoRA run's checkpoints hold the adapters alone and name their base; the export folds each adapter into the weight
it adapts and writes what a run without adapters writes: `model/` a plain Hugging Face model that any tool loads
(`AutoModelForMaskedLM` or `AutoModelForCausalLM`), beside the method's parameters, the tokenizer, the patterns and
the calibration biases, so predict, the Python API and distillation take it without the base. Its scores are the
adapted model's (checked before anything is written, on a probe batch).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from pet_mtl.backbones.adapters import merge_lora
from pet_mtl.cli import key_value_flags, report_outcome
from pet_mtl.core.errors import ConfigError
from pet_mtl.core.tasks import get_task
from pet_mtl.data.readers import Example
from pet_mtl.inference.checkpoint import META, load_scorer, save_checkpoint
from pet_mtl.inference.predictor import Predictor

#: files of a checkpoint that the export carries over unchanged
CARRIED = ("calibration.json", "README.md")


def probe_scores(featurizer, model, tasks) -> list[torch.Tensor]:
    """Each task's label scores for two probe rows of ordinary text: what the export must not change."""
    predictor = Predictor(featurizer, model)
    texts = ["他们在讨论今天的新闻和比赛结果", "我很开心，这是一个好消息"]
    return [predictor.scores([Example(task, str(i), {f: text for f in get_task(task).fields}, None)
                              for i, text in enumerate(texts)]) for task in tasks]


def export(path: str | Path, out: Path, base_model: str | None = None) -> Path:
    if out.exists():
        raise ConfigError(f"--out {out} exists: the export writes a new folder (choose another, or remove it)")
    ckpt, meta, featurizer, model = load_scorer(path, base_model=base_model)
    if model.adapter is None:
        raise ConfigError(f"{ckpt} holds a whole model (no LoRA adapters, no base named): it is already what an "
                          "export writes")
    tasks = list(meta["tasks"])
    before = probe_scores(featurizer, model, tasks)
    merge_lora(model.mlm)
    model.adapter = None  # the merged backbone is written whole
    after = probe_scores(featurizer, model, tasks)
    for task, a, b in zip(tasks, before, after):
        if not torch.allclose(a, b, atol=1e-4, rtol=1e-4):
            raise ConfigError(f"merging the adapters changed {task}'s scores by {float((a - b).abs().max()):.2e}: "
                              "not exported")
    kept = {k: v for k, v in meta.items() if k not in ("format_version", "special_tokens", "adapter")}
    kept["exported_from"] = {"checkpoint": str(ckpt), "adapter": meta["adapter"]}

    def carry(tmp: Path) -> None:
        for name in CARRIED:
            if (ckpt / name).is_file():
                shutil.copy2(ckpt / name, tmp / name)

    config_yaml = (ckpt / "config.yaml").read_text(encoding="utf-8")
    return save_checkpoint(out, model, featurizer.tokenizer, kept, config_yaml, carry)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pet_mtl.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a LoRA run directory (its checkpoint-best) or checkpoint")
    ap.add_argument("--out", type=Path, required=True, help="the new checkpoint folder (must not exist)")
    ap.add_argument("--base-model", help="the base model's folder, when it is no longer where it was trained")
    args = ap.parse_args(key_value_flags(argv, {"output_dir": "--out", "base_model": "--base-model"}))

    def run() -> str:
        out = export(args.checkpoint, args.out, args.base_model)
        return f"exported: {out} (adapters merged; {out / 'model'} is a plain Hugging Face model, {out / META} the rest)"

    return report_outcome(run)


if __name__ == "__main__":
    sys.exit(main())
