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
import json
import sys
from pathlib import Path

import torch

from pet_mtl.core.errors import DataError, PetMtlError
from pet_mtl.core.tasks import TASKS, get_task
from pet_mtl.inference.submission import (
    SCORES_META,
    ZIP_NAME,
    claimed,
    score_lines,
    scores_name,
    write_folder,
)


def read_scores(path: Path, task: str) -> tuple[list[str], torch.Tensor]:
    """(ids, [N, labels] log-probabilities) of one member's score file, checked line by line."""
    labels = get_task(task).labels
    ids, rows = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, None, f"unreadable: {e}") from None
    for lineno, line in enumerate(lines, start=1):
        try:
            obj = json.loads(line)
            ids.append(obj["id"])
            rows.append([float(obj["log_probs"][code]) for code in labels])
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(path, lineno, f"expected {{\"id\", \"log_probs\": {{code: number}}}} for every {task} "
                            f"label ({type(e).__name__}: {e})") from None
    if not rows:
        raise DataError(path, None, "file holds no rows")
    return ids, torch.tensor(rows)


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
    if len(weights) != len(folders) or not all(w > 0 for w in weights):
        raise PetMtlError(f"--weights: expected {len(folders)} positive numbers, got {weights}")
    tasks = [t for t in TASKS if all((f / scores_name(t)).is_file() for f in folders)]
    if not tasks:
        raise PetMtlError(f"no task has a {scores_name('<task>')} in every folder (run predict with save_scores=true)")
    with claimed(out):
        predictions, extra = {}, {}
        for task in tasks:
            members = [read_scores(f / scores_name(task), task) for f in folders]
            ids = members[0][0]
            for f, (other, _) in zip(folders, members):
                if other != ids:
                    raise DataError(f / scores_name(task), None, f"ids differ from {folders[0] / scores_name(task)}: "
                                    "the members must have predicted the same input file")
            mean = average([lp for _, lp in members], weights)
            labels = get_task(task).labels
            predictions[task] = [(i, labels[p]) for i, p in zip(ids, mean.argmax(-1).tolist())]
            extra[scores_name(task)] = score_lines(task, ids, mean)
        extra[SCORES_META] = json.dumps({"members": [str(f) for f in folders], "weights": weights}, indent=1)
        complete = write_folder(out, predictions, extra, set(TASKS))
    return out / ZIP_NAME if complete else out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pet_mtl.ensemble", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="folders written by predict with save_scores=true")
    ap.add_argument("--out", type=Path, required=True, help="the ensemble's submission folder (replaced as a whole)")
    ap.add_argument("--weights", help="comma-separated member weights (default: equal)")
    ap.add_argument("--weight-by", choices=["equal", "validation"], default="equal",
                    help="weight each member by its checkpoint's validation score")
    args = ap.parse_args(argv)
    try:
        weights = [float(w) for w in args.weights.split(",")] if args.weights else None
        result = ensemble(args.folders, args.out, weights, args.weight_by)
    except (PetMtlError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"ensemble of {len(args.folders)}: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
