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
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import ConfigError


@dataclass
class Run:
    path: Path
    params: dict[str, str]
    scored_on: str
    tasks: dict[str, float]  # macro-F1 per task
    score: float
    wall_seconds: float


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
        for item in yaml.safe_load(overrides.read_text(encoding="utf-8")) or []:
            key, _, value = str(item).lstrip("+~").partition("=")
            params[key] = value
    params.setdefault("method", doc.get("method", "pet"))
    params.setdefault("seed", str(doc.get("seed", "")))
    held_out = doc.get("held_out") or doc.get("test")  # "test": runs written before the rename to held_out
    result, scored_on = (held_out, "held-out") if held_out else (doc["best"], "val")
    return Run(metrics.parent, params, scored_on, {t: s["macro_f1"] for t, s in result["tasks"].items()},
               result["score"], doc.get("wall_seconds", float("nan")))


def _job_order(path: Path):
    return tuple(int(p) if p.isdigit() else p for p in path.parts)


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


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(runs: list[Run], over: list[str]) -> tuple[list[str], list[dict]]:
    """(the swept keys that form rows, one dict per row in the order rows first appear)."""
    keys = sorted({k for r in runs for k in r.params})
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
        row["wall_min"] = statistics.fmean(m.wall_seconds for m in members) / 60
        rows.append(row)
    return varying, rows


def _tasks_of(rows: list[dict], varying: list[str]) -> list[str]:
    return [k for k in rows[0] if k not in varying and k not in ("n", "scored_on", "mean", "wall_min")]


def markdown(varying: list[str], rows: list[dict], over: list[str]) -> str:
    tasks = _tasks_of(rows, varying)
    head = [*varying, *(f"{t} F1" for t in tasks), "mean F1", f"n ({', '.join(over)})", "scored on", "wall min/run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row[k]) for k in varying]
        cells += [f"{row[t][0]:.4f} ± {row[t][1]:.4f}" for t in tasks]
        cells += [f"**{row['mean'][0]:.4f}** ± {row['mean'][1]:.4f}", str(row["n"]), row["scored_on"],
                  f"{row['wall_min']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, varying: list[str], rows: list[dict]) -> None:
    tasks = _tasks_of(rows, varying)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*varying, "n", "scored_on", *(f"{t}_f1_{s}" for t in tasks for s in ("mean", "std")),
                    "mean_f1_mean", "mean_f1_std", "wall_seconds_mean"])
        for row in rows:
            w.writerow([*(row[k] for k in varying), row["n"], row["scored_on"],
                        *(f"{v:.6f}" for t in tasks for v in row[t]), f"{row['mean'][0]:.6f}",
                        f"{row['mean'][1]:.6f}", f"{row['wall_min'] * 60:.1f}"])


def write_png(path: Path, varying: list[str], rows: list[dict], title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("the bar chart needs matplotlib: pip install -e '.[report]'") from None
    labels = [", ".join(f"{row[k]}" for k in varying) or "all runs" for row in rows]
    means = [row["mean"][0] for row in rows]
    stds = [row["mean"][1] for row in rows]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.4))
    y = list(range(len(rows)))[::-1]
    ax.barh(y, means, xerr=stds, color="#4c72b0", capsize=3)
    ax.set_yticks(y, labels)
    ax.set_xlabel("mean macro-F1 over tasks (± std over replicates)")
    ax.set_title(title, fontsize=10)
    for yi, m, s in zip(y, means, stds):
        ax.text(m + s, yi, f"  {m:.3f}", va="center", ha="left", fontsize=8)
    ax.set_xlim(0, max(1e-3, max(m + s for m, s in zip(means, stds))) * 1.18)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(dirs: list[Path], over: list[str], out: Path) -> str:
    runs = collect(dirs)
    varying, rows = aggregate(runs, over)
    table = markdown(varying, rows, over)
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
    args = ap.parse_args(argv)
    try:
        table = report(args.dirs, [k for k in args.over.split(",") if k], args.out or args.dirs[0])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table, end="")
    print(f"\nwritten: {(args.out or args.dirs[0]) / 'report.md'}, report.csv, report.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
