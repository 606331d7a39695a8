"""`python -m pet_mtl.ensemble <score folder> <score folder> ... --out <dir>`: one submission from several models.

Each score folder is what `python -m pet_mtl.predict ... save_scores=true` wrote: per task `<task>_scores.jsonl`
(the ids and label log-probabilities of one checkpoint on the same input files) and `scores.json` (the checkpoint
and its validation score). The ensemble averages the members' label log-probabilities per row, weighted equally,
by `--weights`, or by each member's validation score (`--weight-by validation`, as PET weights its pattern models),
and writes the same files predict writes: `<task>_predict.json`, `submit.zip` when every task is there, and the
ensemble's own `<task>_scores.jsonl`. (An ensemble of several models is not a single-model submission: for the
competition's rule, distil it into one model.)
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from pet_mtl.cli import key_value_flags, report_outcome
from pet_mtl.core.errors import DataError, PetMtlError
from pet_mtl.core.io import atomic_dir, json_line
from pet_mtl.core.tasks import TASKS, get_task
from pet_mtl.data.readers import json_object
from pet_mtl.inference.submission import (
    SCORES_META,
    ZIP_NAME,
    claimed,
    finish_folder,
    score_lines,
    scores_name,
    submission_name,
)

#: rows averaged at a time
CHUNK_ROWS = 8192


def score_rows(path: Path, task: str) -> Iterator[tuple[int, str, list[float]]]:
    """(line, id, label log-probabilities) of one member's score file, streamed and checked line by line. Lines end
    at "\\n" only (as predict writes them): an id may hold any other separator, U+2028 included."""
    labels = get_task(task).labels
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise DataError(path, None, f"unreadable: {e}") from None
    with fh:
        n = 0
        for lineno, raw in enumerate(fh, start=1):
            try:
                obj = json_object(raw.decode("utf-8"))  # the readers' rules: an object, each key once
                row = [float(obj["log_probs"][code]) for code in labels]
                if any(math.isnan(v) or v == math.inf for v in row):
                    raise ValueError(f"a log-probability that is not a number or +infinity: {row}"[:200])
                if not isinstance(obj["id"], str):
                    raise TypeError(f"id {obj['id']!r} is not a string")
            except (ValueError, KeyError, TypeError) as e:  # LineError is a ValueError
                raise DataError(path, lineno, f"expected {{\"id\", \"log_probs\": {{code: number}}}} for every {task} "
                                f"label ({type(e).__name__}: {e})") from None
            n += 1
            yield lineno, obj["id"], row
    if not n:
        raise DataError(path, None, "file holds no rows")


def member_weight(folder: Path, by: str) -> float:
    if by == "equal":
        return 1.0
    try:
        value = json.loads((folder / SCORES_META).read_text(encoding="utf-8"))["validation_score"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(folder / SCORES_META, None, f"no validation score to weight by ({e})") from None
    if not isinstance(value, (int, float)) or value <= 0:
        raise DataError(folder / SCORES_META, None, f"validation_score {value!r} cannot weight a member")
    return float(value)


def average(log_probs: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """The ensemble's rule: the members' label log-probabilities averaged per row with the given weights."""
    return sum(w * lp for w, lp in zip(weights, log_probs)) / sum(weights)


def ensemble(folders: list[Path], out: Path, weights: list[float] | None = None, by: str = "equal") -> Path:
    if len(folders) < 2:
        raise PetMtlError("an ensemble needs two or more score folders")
    weights = weights or [member_weight(f, by) for f in folders]
    if len(weights) != len(folders) or not all(math.isfinite(w) and w > 0 for w in weights):
        raise PetMtlError(f"--weights: expected {len(folders)} positive finite numbers, got {weights}")
    tasks = [t for t in TASKS if all((f / scores_name(t)).is_file() for f in folders)]
    if not tasks:
        raise PetMtlError(f"no task has a {scores_name('<task>')} in every folder (run predict with save_scores=true)")
    with claimed(out) as out:
        def write(tmp: Path) -> None:
            for task in tasks:
                labels = get_task(task).labels
                members = [score_rows(f / scores_name(task), task) for f in folders]
                with open(tmp / submission_name(task), "w", encoding="utf-8") as preds, \
                        open(tmp / scores_name(task), "w", encoding="utf-8") as scores:
                    rows = itertools.zip_longest(*members)
                    while chunk := list(itertools.islice(rows, CHUNK_ROWS)):  # memory does not grow with the file
                        ids = [_same_row(folders, task, row) for row in chunk]
                        mean = average([torch.tensor([row[m][2] for row in chunk]) for m in range(len(folders))],
                                       weights)
                        preds.write("".join(json_line({"id": i, "label": labels[p]})
                                            for i, p in zip(ids, mean.argmax(-1).tolist())))
                        scores.write(score_lines(task, ids, mean))
            (tmp / SCORES_META).write_text(json.dumps({"members": [str(f) for f in folders], "weights": weights},
                                                      indent=1), encoding="utf-8")
            finish_folder(tmp, tasks, complete=set(tasks) == set(TASKS))

        atomic_dir(out, write)
    return out / ZIP_NAME if set(tasks) == set(TASKS) else out


def _same_row(folders: list[Path], task: str, row: tuple) -> str:
    """The id of one row of every member's file, which must be the same row of the same input file."""
    first = row[0]
    for f, member in zip(folders, row):
        if member is None or first is None or member[1] != first[1]:
            where = (member or first)[0]
            raise DataError(f / scores_name(task), where, f"ids differ from {folders[0] / scores_name(task)} (line "
                            f"{where}): the members must have predicted the same input file")
    return first[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pet_mtl.ensemble", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="folders written by predict with save_scores=true")
    ap.add_argument("--out", type=Path, required=True, help="the ensemble's submission folder (replaced as a whole)")
    ap.add_argument("--weights", help="comma-separated member weights (default: equal)")
    ap.add_argument("--weight-by", choices=["equal", "validation"], default="equal",
                    help="weight each member by its checkpoint's validation score")
    args = ap.parse_args(key_value_flags(argv, {"output_dir": "--out"}))

    def run() -> str:
        weights = [float(w) for w in args.weights.split(",")] if args.weights else None
        return f"ensemble of {len(args.folders)}: {ensemble(args.folders, args.out, weights, args.weight_by)}"

    return report_outcome(run, (ValueError,))


if __name__ == "__main__":
    sys.exit(main())
