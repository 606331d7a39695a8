"""Competition submissions: {task}_predict.json (one {"id", "label"} object per line, input order) + submit.zip.

All test files are read and validated, and every prediction made, before anything is written; files are then
written under temporary names and renamed, the zip last, so a failure leaves no partial submission behind.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path

import torch

from .checkpoint import load_scorer
from .data import read_examples
from .errors import ConfigError
from .inference import Predictor, pad_multiple, score_predictions
from .metrics import competition_score
from .tasks import get_task, test_file

log = logging.getLogger("pet_mtl")

ZIP_NAME = "submit.zip"
EVAL_NAME = "eval.json"


def submission_name(task: str) -> str:
    return f"{task}_predict.json"


def write_submission(checkpoint: str | Path, data_dir: str | Path | None, split: str, out_dir: str | Path,
                     batch_size: int = 128, precision: str = "fp32", device: str = "cpu",
                     trust_pickle: bool = False, files: dict[str, str | Path] | None = None,
                     labelled: bool = False) -> Path:
    """Predict every task of the checkpoint on its competition test file `split` (a or b) in `data_dir`, or, with `files`, on the given
    files (TSV or CLUE JSON lines; only those tasks); with `labelled`, the files' labels are also scored and the
    per-task macro-F1 written to eval.json beside the predictions."""
    ckpt, meta, featurizer, model = load_scorer(checkpoint, trust_pickle)
    if files:
        unknown = sorted(set(files) - set(meta["tasks"]))
        if unknown:
            raise ConfigError(f"files names {', '.join(unknown)}, not tasks of {ckpt} ({', '.join(meta['tasks'])})")
        paths = {name: Path(files[name]) for name in meta["tasks"] if name in files}
    else:
        directory = Path(data_dir if data_dir is not None else meta["data_dir"])
        paths = {name: test_file(directory, name, split) for name in meta["tasks"]}
    tests = {name: read_examples(path, get_task(name), labelled=labelled) for name, path in paths.items()}
    dev = torch.device(device)
    predictor = Predictor(featurizer, model.to(dev), batch_size, precision, dev, pad_multiple(None, precision, dev))
    lines, scores = {}, {}
    for name, examples in tests.items():
        labels = get_task(name).labels
        preds = predictor.predict(examples)
        lines[name] = "".join(json.dumps({"id": ex.id, "label": labels[p]}, ensure_ascii=False) + "\n"
                              for ex, p in zip(examples, preds))
        if labelled:
            scores[name] = score_predictions(examples, preds)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".submission-", dir=out))
    try:
        for name, text in lines.items():
            (staging / submission_name(name)).write_text(text, encoding="utf-8")
        if labelled:
            result = {"checkpoint": str(ckpt), "files": {t: str(p) for t, p in paths.items()}, "tasks": scores,
                      "score": competition_score(scores)}
            (staging / EVAL_NAME).write_text(json.dumps(result, indent=1), encoding="utf-8")
        with zipfile.ZipFile(staging / ZIP_NAME, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in lines:
                zf.write(staging / submission_name(name), submission_name(name))
        (out / ZIP_NAME).unlink(missing_ok=True)  # an old zip must not outlive new, different JSON files
        for name in lines:
            os.replace(staging / submission_name(name), out / submission_name(name))
        if labelled:
            os.replace(staging / EVAL_NAME, out / EVAL_NAME)
        os.replace(staging / ZIP_NAME, out / ZIP_NAME)
    finally:
        for p in staging.iterdir():
            p.unlink()
        staging.rmdir()
    if labelled:
        log.info("%s | mean macro-F1 %.4f", " | ".join(f"{t} F1 {s['macro_f1']:.4f} acc {s['accuracy']:.4f}"
                                                       for t, s in scores.items()), competition_score(scores))
    log.info("wrote %s (%s) from %s", out / ZIP_NAME, ", ".join(f"{t}: {len(v)} rows" for t, v in tests.items()), ckpt)
    return out / ZIP_NAME
