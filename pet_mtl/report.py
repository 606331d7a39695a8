"""`python -m pet_mtl.report <multirun dir> [more dirs] [--over seed] [--out DIR]`: one table for a sweep.

Each run's metrics.json is the source of truth; its `.hydra/overrides.yaml` says which config values it was run
with. The values that differ between runs (method, pattern set, data regime, split...) form the rows; the keys
named by --over (default: seed) are the replicates averaged within a row, reported as mean ± sample std.
A run is scored on its regime's held-out set where it has one (few-shot), else on the validation result of its
best evaluation. Runs still in progress (or killed) are left out, with a note. Writes report.md, report.csv and report.png (mean score per row, with std error bars).
"""
from __future__ import annotations

import argparse
import csv
import difflib
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from pet_mtl.cli import key_value_flags
from pet_mtl.core.errors import ConfigError
from pet_mtl.core.io import read_yaml
from pet_mtl.core.tasks import get_task
from pet_mtl.metrics import calibrated_score


@dataclass
class Run:
    path: Path
    params: dict[str, str]
    scored_on: str
    tasks: dict[str, float]  # macro-F1 per task
    score: float
    wall_seconds: float
    per_class: dict[str, dict[str, float]]  # task -> label code -> F1 (runs from before per-class metrics: empty)
    #: the validation mean macro-F1 of predict's decisions (the calibration biases applied, 2-fold cross-fitted);
    #: None for a run without calibration (train.calibrate=false, or written before it existed)
    calibrated: float | None = None


def read_run(metrics: Path) -> Run | None:
    """The run's result, or None while it is still running (or was killed before its end)."""
    try:
        doc = json.loads(metrics.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{metrics}: unreadable metrics.json ({e})") from None
    if not isinstance(doc, dict) or "best" not in doc:
        raise ConfigError(f"{metrics}: not a pet_mtl metrics.json (no 'best'); written by an older version?")
    if not doc.get("finished", True):
        return None
    overrides = metrics.parent / ".hydra" / "overrides.yaml"
    params = {}
    if overrides.is_file():
        items = read_yaml(overrides) or []
        if not isinstance(items, list):
            raise ConfigError(f"{overrides}: not a Hydra overrides file (expected a list of key=value)")
        for item in items:
            key, _, value = str(item).lstrip("+~").partition("=")
            params[key] = canonical(value)
    params.setdefault("method", doc.get("method", "pet"))
    params.setdefault("seed", str(doc.get("seed", "")))
    held_out = doc.get("held_out") or doc.get("test")  # "test": runs written before the rename to held_out
    result, scored_on = (held_out, "held-out") if held_out else (doc["best"], "val")
    try:
        run = Run(metrics.parent, params, scored_on, {t: float(s["macro_f1"]) for t, s in result["tasks"].items()},
                  float(result["score"]), float(doc.get("wall_seconds", float("nan"))),
                  {t: {code: float(c["f1"]) for code, c in s.get("per_class", {}).items()}
                   for t, s in result["tasks"].items()}, calibrated_score(doc.get("calibration")))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{metrics}: not a pet_mtl metrics.json ({scored_on} result: {type(e).__name__}: "
                          f"{str(e)[:100]})") from None
    return run


def canonical(value: str) -> str:
    """One spelling per value, so runs given `train.lr=3e-4` and `train.lr=0.0003` (as a multirun writes it), or
    `false` and `False`, fall in the same row."""
    if value.strip().lower() in ("true", "false"):
        return value.strip().lower()
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)


def _job_order(path: Path):
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts)


def collect(dirs: list[Path]) -> list[Run]:
    runs = []
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(f"{d} is not a directory")
        found = sorted(d.rglob("metrics.json"), key=lambda p: _job_order(p.relative_to(d)))
        if not found:
            raise ConfigError(f"{d}: no metrics.json below it (is it a multirun directory?)")
        read = [read_run(p) for p in found]
        unfinished = [str(p.parent) for p, r in zip(found, read) if r is None]
        if unfinished:
            print(f"note: left out {len(unfinished)} unfinished run(s): {', '.join(unfinished)}", file=sys.stderr)
        runs += [r for r in read if r is not None]
    if not runs:
        raise ConfigError(f"no finished run below {', '.join(map(str, dirs))}")
    return runs


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample std; no std (None) for a single value, which has none."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _pm(mean: float, std: float | None, bold: bool = False) -> str:
    m = f"**{mean:.4f}**" if bold else f"{mean:.4f}"
    return f"{m} ± {'—' if std is None else f'{std:.4f}'}"


def aggregate(runs: list[Run], over: list[str]) -> tuple[list[str], list[dict]]:
    """(the swept keys that form rows, one dict per row in the order rows first appear)."""
    keys = sorted({k for r in runs for k in r.params})
    unknown = [k for k in over if k not in keys]
    if unknown:
        hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, keys, n=1)) else k for k in unknown]
        raise ConfigError(f"--over {', '.join(hints)}: no run has that key; the runs' keys: {', '.join(keys)}")
    varying = [k for k in keys if k not in over and len({r.params.get(k, "") for r in runs}) > 1]
    if "method" in varying:
        varying.remove("method")
    if "method" in keys and "method" not in over:
        varying.insert(0, "method")  # first, and always: say which method a table is about
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        groups.setdefault(tuple(r.params.get(k, "") for k in varying), []).append(r)
    tasks = list(dict.fromkeys(t for r in runs for t in r.tasks))
    rows = []
    for key, members in groups.items():
        row = dict(zip(varying, key))
        row["n"] = len(members)
        row["scored_on"] = "/".join(sorted({m.scored_on for m in members}))
        for t in tasks:
            row[t] = mean_std([m.tasks[t] for m in members if t in m.tasks])
        row["mean"] = mean_std([m.score for m in members])
        calibrated = [m.calibrated for m in members if m.calibrated is not None]
        row["calibrated"] = mean_std(calibrated) if len(calibrated) == len(members) else None
        row["wall_min"] = statistics.fmean(m.wall_seconds for m in members) / 60
        row["per_class"] = {t: {code: statistics.fmean(m.per_class[t][code] for m in members
                                                       if code in m.per_class.get(t, {}))
                                for code in dict.fromkeys(c for m in members for c in m.per_class.get(t, {}))}
                            for t in tasks}
        rows.append(row)
    return varying, rows


def _tasks_of(rows: list[dict], varying: list[str]) -> list[str]:
    return [k for k in rows[0] if k not in varying and k not in ("n", "scored_on", "mean", "calibrated", "wall_min",
                                                                   "per_class")]


def markdown(varying: list[str], rows: list[dict], over: list[str]) -> str:
    tasks = _tasks_of(rows, varying)
    head = [*varying, *(f"{t} F1" for t in tasks), "mean F1", "calibrated (val)", f"n ({', '.join(over)})",
            "scored on", "wall min/run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row[k]) for k in varying]
        cells += [_pm(*row[t]) for t in tasks]
        cells += [_pm(*row["mean"], bold=True), "—" if row["calibrated"] is None else _pm(*row["calibrated"]),
                  str(row["n"]), row["scored_on"], f"{row['wall_min']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def per_class_markdown(varying: list[str], rows: list[dict]) -> str:
    """One table per task: each row's F1 per class (mean over its replicates), the rare classes included."""
    out = []
    for t in _tasks_of(rows, varying):
        codes = list(dict.fromkeys(c for row in rows for c in row["per_class"].get(t, {})))
        if not codes:
            continue
        names = get_task(t).label_names
        head = [*varying, *(f"{c} {names[c]}" if names.get(c, c) != c else c for c in codes)]
        out += [f"\n{t}: F1 per class\n", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in rows:
            f1 = row["per_class"].get(t, {})
            out.append("| " + " | ".join([*(str(row[k]) for k in varying),
                                          *(f"{f1[c]:.3f}" if c in f1 else "" for c in codes)]) + " |")
    return "\n".join(out) + "\n" if out else ""


def write_csv(path: Path, varying: list[str], rows: list[dict]) -> None:
    tasks = _tasks_of(rows, varying)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*varying, "n", "scored_on", *(f"{t}_f1_{s}" for t in tasks for s in ("mean", "std")),
                    "mean_f1_mean", "mean_f1_std", "calibrated_mean", "calibrated_std", "wall_seconds_mean"])
        for row in rows:
            w.writerow([*(row[k] for k in varying), row["n"], row["scored_on"],
                        *("" if v is None else f"{v:.6f}" for t in tasks for v in row[t]), f"{row['mean'][0]:.6f}",
                        "" if row["mean"][1] is None else f"{row['mean'][1]:.6f}",
                        *("" if v is None else f"{v:.6f}" for v in (row["calibrated"] or (None, None))),
                        f"{row['wall_min'] * 60:.1f}"])


def write_png(path: Path, varying: list[str], rows: list[dict], title: str) -> None:
    """Grouped bars: each task's macro-F1 and the mean, per row, with std error bars; a change in one task shows."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("the bar chart needs matplotlib: pip install -e '.[report]'") from None
    labels = [", ".join(f"{row[k]}" for k in varying) or "all runs" for row in rows]
    series = [*_tasks_of(rows, varying), "mean"]
    height = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(8 + 0.06 * max(map(len, labels)), len(rows) * (0.35 + 0.22 * len(series)) + 1.6))
    top = 0.0
    for i, name in enumerate(series):
        y = [len(rows) - 1 - r + 0.4 - (i + 0.5) * height for r in range(len(rows))]
        means = [row[name][0] for row in rows]
        stds = [row[name][1] or 0.0 for row in rows]
        ax.barh(y, means, height=height * 0.95, xerr=stds, capsize=2, label=name,
                color="black" if name == "mean" else None, alpha=0.85)
        for yi, m, sd in zip(y, means, stds):
            ax.text(m + sd, yi, f" {m:.3f}", va="center", ha="left", fontsize=7)
        top = max(top, max(m + sd for m, sd in zip(means, stds)))
    ax.set_yticks(range(len(rows))[::-1], labels)
    ax.set_xlabel("macro-F1 (± std over replicates)")
    ax.set_xlim(0, max(1e-3, top) * 1.2)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def report(dirs: list[Path], over: list[str], out: Path, per_class: bool = False) -> str:
    runs = collect(dirs)
    varying, rows = aggregate(runs, over)
    table = markdown(varying, rows, over) + (per_class_markdown(varying, rows) if per_class else "")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(table, encoding="utf-8")
    write_csv(out / "report.csv", varying, rows)
    write_png(out / "report.png", varying, rows, f"{len(runs)} runs from {', '.join(d.name for d in dirs)}")
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pet_mtl.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="multirun directories (any folder holding runs' metrics.json)")
    ap.add_argument("--over", default="seed", help="comma-separated keys averaged within a row (default: seed)")
    ap.add_argument("--out", type=Path, help="where report.md/.csv/.png go (default: the first directory)")
    ap.add_argument("--per-class", action="store_true", help="also a table of F1 per class for each task")
    args = ap.parse_args(key_value_flags(argv, {"output_dir": "--out"}))
    try:
        table = report(args.dirs, [k for k in args.over.split(",") if k], args.out or args.dirs[0], args.per_class)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table, end="")
    print(f"\nwritten: {(args.out or args.dirs[0]) / 'report.md'}, report.csv, report.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
