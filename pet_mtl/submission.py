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
from .engine import predict_labels, split_file
from .tasks import get_task

log = logging.getLogger("pet_mtl")

ZIP_NAME = "submit.zip"


def submission_name(task: str) -> str:
    return f"{task}_predict.json"


def write_submission(checkpoint: str | Path, data_dir: str | Path | None, split: str, out_dir: str | Path,
                     batch_size: int = 128, precision: str = "fp32", device: str = "cpu",
                     trust_pickle: bool = False) -> Path:
    ckpt, meta, encoder, model = load_scorer(checkpoint, trust_pickle)
    directory = Path(data_dir if data_dir is not None else meta["data_dir"])
    tests = {}
    for name in meta["tasks"]:
        tests[name] = read_examples(split_file(directory, name, split), get_task(name), labelled=False)
    dev = torch.device(device)
    model = model.to(dev)
    lines = {}
    for name, examples in tests.items():
        labels = get_task(name).labels
        preds = predict_labels(model, encoder, examples, batch_size, precision, dev)
        lines[name] = "".join(json.dumps({"id": ex.id, "label": labels[p]}, ensure_ascii=False) + "\n"
                              for ex, p in zip(examples, preds))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".submission-", dir=out))
    try:
        for name, text in lines.items():
            (staging / submission_name(name)).write_text(text, encoding="utf-8")
        with zipfile.ZipFile(staging / ZIP_NAME, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in lines:
                zf.write(staging / submission_name(name), submission_name(name))
        (out / ZIP_NAME).unlink(missing_ok=True)  # an old zip must not outlive new, different JSON files
        for name in lines:
            os.replace(staging / submission_name(name), out / submission_name(name))
        os.replace(staging / ZIP_NAME, out / ZIP_NAME)
    finally:
        for p in staging.iterdir():
            p.unlink()
        staging.rmdir()
    log.info("wrote %s (%s) from %s", out / ZIP_NAME, ", ".join(f"{t}: {len(v)} rows" for t, v in tests.items()), ckpt)
    return out / ZIP_NAME
