"""`python -m pet_mtl.report` on a real (tiny) Hydra multirun: table, CSV and bar chart, mean ± std over seeds."""
from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def sweep(tiny_dir, synthetic_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("multirun") / "sweep"
    out = subprocess.run([sys.executable, "-m", "pet_mtl.train", "-m", "method=pet,heads", "seed=1,2",
                          f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.max_steps=3",
                          "train.eval_every=0", "train.batch_size=8", "train.predict_splits=[]", "train.plots=false",
                          "train.progress=false", f"hydra.sweep.dir={d}"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return d


def report(*args):
    return subprocess.run([sys.executable, "-m", "pet_mtl.report", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_report_aggregates_seeds_into_one_row_per_method(sweep, tmp_path):
    out = report(sweep, "--out", tmp_path)
    assert out.returncode == 0, out.stderr
    table = out.stdout.splitlines()
    assert table[0].startswith("| method | ocnli F1 | ocemotion F1 | tnews F1 | mean F1 | calibrated (val) | n (seed)")
    assert [line.split(" | ")[0] for line in table[2:4]] == ["| pet", "| heads"]
    assert (tmp_path / "report.md").read_text() == "\n".join(table[:4]) + "\n"
    png = (tmp_path / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    runs = {}
    for job in sweep.iterdir():
        if (job / "metrics.json").is_file():
            doc = json.loads((job / "metrics.json").read_text())
            runs.setdefault(doc["method"], []).append(doc)
    rows = list(csv.DictReader((tmp_path / "report.csv").read_text(encoding="utf-8").splitlines()))
    assert [r["method"] for r in rows] == ["pet", "heads"]
    for row in rows:
        docs = runs[row["method"]]
        assert int(row["n"]) == len(docs) == 2 and row["scored_on"] == "val"
        scores = [d["best"]["score"] for d in docs]
        assert float(row["mean_f1_mean"]) == pytest.approx(statistics.fmean(scores), abs=1e-6)
        assert float(row["mean_f1_std"]) == pytest.approx(statistics.stdev(scores), abs=1e-6)
        # the calibrated column: what predict's decisions score, each task's cross-fitted F1 where biases applied
        calibrated = [statistics.fmean(r["cross_fitted"] if r["applied"] else r["before"]
                                       for r in d["calibration"].values()) for d in docs]
        assert float(row["calibrated_mean"]) == pytest.approx(statistics.fmean(calibrated), abs=1e-6)
        tnews = [d["best"]["tasks"]["tnews"]["macro_f1"] for d in docs]
        assert float(row["tnews_f1_mean"]) == pytest.approx(statistics.fmean(tnews), abs=1e-6)
        assert float(row["wall_seconds_mean"]) == pytest.approx(statistics.fmean(d["wall_seconds"] for d in docs),
                                                                abs=0.1)


def test_report_can_average_over_more_keys_and_refuses_what_is_not_a_sweep(sweep, tmp_path):
    out = report(sweep, "--over", "seed,method", "--out", tmp_path)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader((tmp_path / "report.csv").read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 1 and rows[0]["n"] == "4"
    bad = report(tmp_path / "nothing-here")
    assert bad.returncode == 2 and "not a directory" in bad.stderr
    (tmp_path / "empty").mkdir()
    assert "no metrics.json" in report(tmp_path / "empty").stderr


def test_unfinished_runs_are_left_out_with_a_note(sweep, tmp_path):
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    metrics = copy / "0" / "metrics.json"
    assert json.loads(metrics.read_text())["finished"] is True
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "finished": False}))
    out = report(copy, "--out", tmp_path)
    assert out.returncode == 0 and "left out 1 unfinished run(s)" in out.stderr and str(copy / "0") in out.stderr
    rows = list(csv.DictReader((tmp_path / "report.csv").read_text(encoding="utf-8").splitlines()))
    assert [(r["method"], r["n"]) for r in rows] == [("pet", "1"), ("heads", "2")]
