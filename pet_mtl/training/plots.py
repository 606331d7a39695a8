"""Pictures of a run, written into its directory at every evaluation: why it scores what it scores.

- `learning_curve.png`: each task's macro-F1, the mean (the competition score) and the training loss against steps;
- `confusion_<task>.png`: the latest evaluation's confusion matrix, rows normalised (each gold class sums to 1), the
  counts written in the cells, and each class's F1 beside its row: a class the model never predicts is a column
  of zeros, which is where macro-F1 is lost.
They need matplotlib (`pip install "pet_mtl[report]"`); without it the run logs that once and writes none.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("pet_mtl")
_warned = False


def _pyplot():
    global _warned
    try:
        import matplotlib
    except ImportError:
        if not _warned:
            log.info("matplotlib is not installed: no learning-curve or confusion-matrix pictures "
                     "(pip install \"pet_mtl[report]\")")
            _warned = True
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve(history: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    plt = _pyplot()
    if plt is None or not history:
        return None
    steps = [e["step"] for e in history]
    fig, (ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for task in history[-1]["tasks"]:
        ax.plot(steps, [e["tasks"][task]["macro_f1"] for e in history], marker="o", label=task)
    ax.plot(steps, [e["score"] for e in history], marker="s", color="black", linewidth=2, label="mean")
    ax.set(xlabel="optimizer step", ylabel="validation macro-F1", title="macro-F1 per task")
    ax.grid(alpha=0.3)
    ax.legend()
    losses = [(e["step"], e["train_loss"]) for e in history if e.get("train_loss") is not None]
    loss_ax.plot([s for s, _ in losses], [v for _, v in losses], marker="o", color="tab:red")
    loss_ax.set(xlabel="optimizer step", ylabel="mean training loss since the last evaluation", title="training loss")
    loss_ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def confusion_matrix(task: str, scores: Mapping[str, Any], path: Path, label_names: Mapping[str, str]) -> Path | None:
    plt = _pyplot()
    if plt is None or "confusion" not in scores:
        return None
    codes = list(scores["per_class"])
    counts = scores["confusion"]
    rates = [[c / max(1, sum(row)) for c in row] for row in counts]
    n = len(codes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n + 2.0, 1.0 + 0.5 * n))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for r in range(n):
        for c in range(n):
            if counts[r][c]:
                ax.text(c, r, str(counts[r][c]), ha="center", va="center", fontsize=7,
                        color="white" if rates[r][c] > 0.6 else "black")
    names = [f"{code} {label_names.get(code, '')}".strip() if label_names.get(code) != code else code for code in codes]
    ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), [f"{name} (F1 {scores['per_class'][code]['f1']:.2f}, n={scores['per_class'][code]['support']})"
                             for name, code in zip(names, codes)], fontsize=8)
    ax.set(xlabel="predicted", ylabel="gold", title=f"{task}: macro-F1 {scores['macro_f1']:.3f}, "
                                                    f"accuracy {scores['accuracy']:.3f}")
    fig.colorbar(im, ax=ax, fraction=0.04, label="share of the gold class")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
