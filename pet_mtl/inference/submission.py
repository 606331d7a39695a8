"""Competition submissions: {task}_predict.json (one {"id", "label"} object per line, input order) + submit.zip.

A submission folder is all of one run or nothing. Before any model is loaded the folder is claimed: a lock beside
it refuses a second predict into the same folder, and a folder that holds files other than a submission's is
refused rather than replaced. All inputs are read and every prediction made before anything is written; the files
are then written into a fresh temporary sibling folder that is swapped in for the old one as a whole, so no stale
file of an earlier run survives beside the new ones and a failure leaves the old folder as it was.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from pet_mtl.core.errors import ConfigError
from pet_mtl.core.io import atomic_dir, remove_leftovers
from pet_mtl.core.precision import pad_multiple
from pet_mtl.core.tasks import TASKS, get_task, test_file
from pet_mtl.data.readers import read_examples
from pet_mtl.inference import calibration
from pet_mtl.inference.checkpoint import load_scorer, resolve
from pet_mtl.inference.predictor import Predictor, score_predictions
from pet_mtl.metrics import competition_score

log = logging.getLogger("pet_mtl")

ZIP_NAME = "submit.zip"
EVAL_NAME = "eval.json"
#: save_scores: the checkpoint and its validation score, for weighting an ensemble
SCORES_META = "scores.json"


def submission_name(task: str) -> str:
    return f"{task}_predict.json"


def scores_name(task: str) -> str:
    return f"{task}_scores.jsonl"


#: the only files a submission folder holds; a folder with anything else is not replaced
OWN_FILES = ({submission_name(t) for t in TASKS} | {scores_name(t) for t in TASKS}
             | {ZIP_NAME, EVAL_NAME, SCORES_META})


def default_output_dir(checkpoint: str | Path, split: str, files: bool) -> Path:
    """Beside the checkpoint: <run dir>/predict-a for a run's checkpoint-best, predict-files for given files."""
    ckpt = resolve(checkpoint)
    name = "predict-files" if files else f"predict-{split}"
    return ckpt.parent / name if ckpt.name.startswith("checkpoint-") else ckpt.parent / f"{ckpt.name}-{name}"


@contextmanager
def claimed(out: Path) -> Iterator[None]:
    """Hold `out` for this process: fail now, before any work, if it cannot be written or is another's."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir {out} exists and is not a folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OWN_FILES)
        if foreign:
            raise ConfigError(f"output_dir {out} holds files that are not a submission's ({', '.join(foreign[:5])}); "
                              "pick a new or empty folder: a submission folder is replaced as a whole")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = open(out.parent / f".{out.name}.lock", "w")
        tempfile.TemporaryDirectory(dir=out.parent).cleanup()  # the folder is writable
    except OSError as e:
        raise ConfigError(f"output_dir {out} cannot be written: {e.strerror or e}") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another predict is writing {out}; wait for it or choose another output_dir") from None
        remove_leftovers(out)  # of a predict killed while swapping its folder in
        yield


def write_submission(checkpoint: str | Path, data_dir: str | Path | None, split: str, out_dir: str | Path,
                     batch_size: int = 128, precision: str = "fp32", device: str = "cpu",
                     trust_pickle: bool = False, files: dict[str, str | Path] | None = None,
                     labelled: bool = False, strict: bool = True, progress: bool = False,
                     save_scores: bool = False, calibrate: bool = True) -> Path:
    """Predict every task of the checkpoint on its competition test file `split` (a or b) in `data_dir`, or, with
    `files`, on the given files (TSV or CLUE JSON lines; only those tasks); with `labelled`, the files' labels are
    also scored and the per-task macro-F1 written to eval.json beside the predictions. The zip is written only when
    every task of the checkpoint was predicted (a partial zip is no submission). With `save_scores`, each task's
    label log-probabilities go to <task>_scores.jsonl (`{"id", "log_probs": {code: value}}` per line, normalised
    over the task's labels, before calibration) for `python -m pet_mtl.ensemble`. A checkpoint's calibration biases
    (calibration.json) decide the labels unless `calibrate` is false."""
    out = Path(out_dir)
    with claimed(out):
        ckpt, meta, featurizer, model = load_scorer(checkpoint, trust_pickle, strict)
        if files:
            unknown = sorted(set(files) - set(meta["tasks"]))
            if unknown:
                raise ConfigError(f"files names {', '.join(unknown)}, not tasks of {ckpt} ({', '.join(meta['tasks'])})")
            paths = {name: Path(files[name]) for name in meta["tasks"] if name in files}
        else:
            directory = Path(data_dir if data_dir is not None else meta["data_dir"])
            paths = {name: test_file(directory, name, split) for name in meta["tasks"]}
        log.info("predicting %s%s with %s", "" if files else f"test split {split}: ",
                 ", ".join(f"{t}: {p}" for t, p in paths.items()), ckpt)
        inputs = {name: read_examples(path, get_task(name), labelled=labelled) for name, path in paths.items()}
        dev = torch.device(device)
        biases = calibration.load(ckpt, {t: get_task(t).labels for t in meta["tasks"]}) if calibrate else {}
        if any(bool(b.any()) for b in biases.values()):
            log.info("calibrated decisions: label biases from %s for %s", ckpt / calibration.CALIBRATION,
                     ", ".join(t for t, b in biases.items() if b.any()))
        predictor = Predictor(featurizer, model.to(dev), batch_size, precision, dev, pad_multiple(None, precision, dev),
                              progress=progress, biases=biases)
        predictions, extra, scores = {}, {}, {}
        for name, examples in inputs.items():
            log_probs = predictor.scores(examples).log_softmax(-1)
            preds = predictor.decide(name, log_probs)
            predictions[name] = [(ex.id, get_task(name).labels[p]) for ex, p in zip(examples, preds)]
            if save_scores:
                extra[scores_name(name)] = score_lines(name, [ex.id for ex in examples], log_probs)
            if labelled:
                scores[name] = score_predictions(examples, preds)
        if labelled:
            extra[EVAL_NAME] = json.dumps({"checkpoint": str(ckpt), "files": {t: str(p) for t, p in paths.items()},
                                           "tasks": scores, "score": competition_score(scores)}, indent=1)
        if save_scores:
            extra[SCORES_META] = json.dumps({"checkpoint": str(ckpt), "validation_score":
                                             (meta.get("metrics") or {}).get("score")}, indent=1)
        complete = write_folder(out, predictions, extra, set(meta["tasks"]))
    if labelled:
        log.info("%s | mean macro-F1 %.4f", " | ".join(f"{t} F1 {s['macro_f1']:.4f} acc {s['accuracy']:.4f}"
                                                       for t, s in scores.items()), competition_score(scores))
    log.info("wrote %s (%s) from %s", out, ", ".join(f"{t}: {len(v)} rows" for t, v in inputs.items()), ckpt)
    return out / ZIP_NAME if complete else out


def score_lines(task: str, ids: list[str], log_probs: torch.Tensor) -> str:
    labels = get_task(task).labels
    return "".join(json.dumps({"id": i, "log_probs": dict(zip(labels, map(float, row)))}, ensure_ascii=False) + "\n"
                   for i, row in zip(ids, log_probs.tolist()))


def write_folder(out: Path, predictions: dict[str, list[tuple[str, str]]], extra: dict[str, str],
                 tasks: set[str]) -> bool:
    """Write a claimed folder whole (see claimed): each task's (id, label) predictions as <task>_predict.json, the
    `extra` files by name, and submit.zip when `predictions` covers all of `tasks`. Returns whether it did."""
    complete = set(predictions) == tasks

    def write(tmp: Path) -> None:
        for name, rows in predictions.items():
            (tmp / submission_name(name)).write_text(
                "".join(json.dumps({"id": i, "label": label}, ensure_ascii=False) + "\n" for i, label in rows),
                encoding="utf-8")
        for name, text in extra.items():
            (tmp / name).write_text(text, encoding="utf-8")
        if complete:
            with zipfile.ZipFile(tmp / ZIP_NAME, "w", zipfile.ZIP_DEFLATED) as zf:
                for name in predictions:
                    zf.write(tmp / submission_name(name), submission_name(name))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())

    atomic_dir(out, write)
    return complete
