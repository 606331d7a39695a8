"""Competition submissions: {task}_predict.json (one {"id", "label"} object per line, input order) + submit.zip.

A submission folder is all of one run or nothing. Before any model is loaded the folder is claimed: a lock beside
it refuses a second predict into the same folder, and a folder that holds files other than a submission's is
refused rather than replaced. The files are written into a fresh temporary sibling folder, each input streamed
through the model chunk by chunk (memory does not grow with the file), and the folder is swapped in for the old one
as a whole once everything is written, so no stale file of an earlier run survives beside the new ones and a
failure (a bad row, a duplicate id found at the end of a file) leaves the old folder as it was.
"""
from __future__ import annotations

import collections
import fcntl
import json
import logging
import os
import tempfile
import zipfile
from array import array
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch

from pet_mtl.core.errors import ConfigError
from pet_mtl.core.io import atomic_dir, json_line, remove_leftovers
from pet_mtl.core.tasks import TASKS, get_task, test_file
from pet_mtl.data.readers import iter_examples
from pet_mtl.inference import calibration
from pet_mtl.inference.checkpoint import resolve
from pet_mtl.inference.classifier import Classifier
from pet_mtl.metrics import classification_scores, competition_score

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
def claimed(out: str | Path) -> Iterator[Path]:
    """Hold `out` for this process: fail now, before any work, if it cannot be written or is another's. Yields the
    folder to write: a symlink is followed (the folder it names is replaced, the link stays). The lock file goes
    when the work is done."""
    out = Path(out).expanduser().resolve()
    if out == Path.cwd().resolve() or out == Path(out.anchor) or out in Path.cwd().resolve().parents:
        raise ConfigError(f"output_dir {out} is the current folder or one above it; a submission folder is replaced "
                          "as a whole: name a new folder")
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
        try:
            remove_leftovers(out)  # of a predict killed while swapping its folder in
            yield out
        finally:
            Path(lock.name).unlink(missing_ok=True)  # while still held: no other predict holds this file


def write_submission(checkpoint: str | Path, data_dir: str | Path | None, split: str, out_dir: str | Path,
                     batch_size: int = 128, precision: str = "auto", device: str = "auto",
                     trust_pickle: bool = False, files: dict[str, str | Path] | None = None,
                     labelled: bool = False, strict: bool = True, progress: bool = False,
                     save_scores: bool = False, calibrate: bool = True, base_model: str | None = None) -> Path:
    """Predict every task of the checkpoint on its competition test file `split` (a or b) in `data_dir`, or, with
    `files`, on the given files (TSV or CLUE JSON lines; only those tasks); with `labelled`, the files' labels are
    also scored and the per-task macro-F1 written to eval.json beside the predictions. The zip is written only when
    every task of the checkpoint was predicted (a partial zip is no submission). With `save_scores`, each task's
    label log-probabilities go to <task>_scores.jsonl (`{"id", "log_probs": {code: value}}` per line, normalised
    over the task's labels, before calibration) for `python -m pet_mtl.ensemble`. A checkpoint's calibration biases
    (calibration.json) decide the labels unless `calibrate` is false."""
    with claimed(out_dir) as out:
        clf = Classifier.from_pretrained(checkpoint, device, batch_size, precision, trust_pickle, strict, progress,
                                         base_model)
        ckpt, meta = clf.checkpoint, clf.meta
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
        for name, path in paths.items():  # every row of every file checked before any is scored (a cheap pass)
            collections.deque(iter_examples(path, get_task(name), labelled), maxlen=0)
        calibrated = [t for t in paths if clf.calibrated(t)] if calibrate else []
        if calibrated:
            log.info("calibrated decisions: label biases from %s for %s", ckpt / calibration.CALIBRATION,
                     ", ".join(calibrated))
        rows, scores = {}, {}

        def write(tmp: Path) -> None:
            """Each task's file streamed through the model chunk by chunk into the temporary folder: memory does
            not grow with the file (ids are checked for duplicates as they stream: iter_examples)."""
            for name, path in paths.items():
                task = get_task(name)
                preds, gold = array("h"), array("h")
                with ExitStack() as files:
                    out_fh = files.enter_context(open(tmp / submission_name(name), "w", encoding="utf-8"))
                    scores_fh = (files.enter_context(open(tmp / scores_name(name), "w", encoding="utf-8"))
                                 if save_scores else None)
                    for chunk, log_probs in clf.stream(iter_examples(path, task, labelled)):
                        decided = clf.predictor.calibrated(name, log_probs, calibrate).argmax(-1).tolist()
                        out_fh.write("".join(json_line({"id": ex.id, "label": task.labels[p]})
                                             for ex, p in zip(chunk, decided)))
                        if scores_fh is not None:
                            scores_fh.write(score_lines(name, [ex.id for ex in chunk], log_probs))
                        rows[name] = rows.get(name, 0) + len(chunk)
                        if labelled:  # 2 bytes a row, for the scores
                            preds.extend(decided)
                            gold.extend(task.label_index(ex.label) for ex in chunk)
                if labelled:
                    scores[name] = classification_scores(preds, gold, task.labels)
            if labelled:
                (tmp / EVAL_NAME).write_text(json.dumps({"checkpoint": str(ckpt), "files": {t: str(p) for t, p in
                                                         paths.items()}, "tasks": scores,
                                                         "score": competition_score(scores)}, indent=1),
                                             encoding="utf-8")
            if save_scores:
                (tmp / SCORES_META).write_text(json.dumps({"checkpoint": str(ckpt), "validation_score":
                                                           (meta.get("metrics") or {}).get("score")}, indent=1),
                                               encoding="utf-8")
            finish_folder(tmp, list(paths), complete=set(paths) == set(meta["tasks"]))

        atomic_dir(out, write)
        complete = set(paths) == set(meta["tasks"])
    if labelled:
        log.info("%s | mean macro-F1 %.4f", " | ".join(f"{t} F1 {s['macro_f1']:.4f} acc {s['accuracy']:.4f}"
                                                       for t, s in scores.items()), competition_score(scores))
    log.info("wrote %s (%s) from %s", out, ", ".join(f"{t}: {n} rows" for t, n in rows.items()), ckpt)
    return out / ZIP_NAME if complete else out


def score_lines(task: str, ids: list[str], log_probs: torch.Tensor) -> str:
    labels = get_task(task).labels
    return "".join(json_line({"id": i, "log_probs": dict(zip(labels, map(float, row)))})
                   for i, row in zip(ids, log_probs.tolist()))


def finish_folder(tmp: Path, tasks: list[str], complete: bool) -> None:
    """The zip of the tasks' prediction files (a complete submission only), then every file synced to disk before
    the folder is swapped in."""
    if complete:
        with zipfile.ZipFile(tmp / ZIP_NAME, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in tasks:
                zf.write(tmp / submission_name(name), submission_name(name))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
