"""What a run tells its user (training/runlog.py): loss lines with the window's mean and the run's speed unit,
evaluations with the classes never got right, metrics.json from the main process only, pictures at the end."""
from __future__ import annotations

import json
import logging

from pet_mtl.training.runlog import RunLog


def entry(step: int, score: float) -> dict:
    per_class = {"like": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 4},
                 "fear": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2},
                 "anger": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}}
    task = {"macro_f1": score, "accuracy": 0.5, "per_class": per_class, "confusion": [[2, 0, 2], [0, 0, 0], [2, 0, 0]]}
    return {"step": step, "tasks": {"ocemotion": task}, "score": score, "train_loss": 1.0}


def test_loss_lines_carry_the_window_mean_and_the_unit(tmp_path, caplog):
    log = RunLog(tmp_path, is_main=True, progress=False, log_every=2, name="pretrain",
                 unit="tokens/s")
    with caplog.at_level(logging.INFO, logger="pet_mtl"), log.training(total=4, done=0):
        for step, loss in enumerate([4.0, 2.0, 1.0, 3.0], start=1):
            log.step(step, 4, loss, 1e-3, 1234.0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step")]
    assert lines == ["step 2/4 loss 3.0000 (mean of the last 2 steps) lr 1.00e-03 1234 tokens/s",
                     "step 4/4 loss 2.0000 (mean of the last 2 steps) lr 1.00e-03 1234 tokens/s"]


def test_an_evaluation_names_the_classes_never_right_on_and_only_those_with_rows(tmp_path, caplog):
    log = RunLog(tmp_path, is_main=True, progress=False, log_every=0)
    with caplog.at_level(logging.INFO, logger="pet_mtl"):
        log.evaluation(entry(10, 0.25), [entry(10, 0.25)], ["ocemotion"])
    text = caplog.text
    assert "step 10 | ocemotion F1 0.2500 acc 0.5000 | mean macro-F1 0.2500" in text
    assert "ocemotion: never right on fear" in text and "anger" not in text  # anger had no rows


def test_only_the_main_process_writes_and_the_pictures_come_at_the_end(tmp_path):
    other = RunLog(tmp_path / "rank1", is_main=False, progress=False, log_every=0)
    (tmp_path / "rank1").mkdir()
    other.write_metrics({"history": []})
    other.evaluation(entry(1, 0.1), [entry(1, 0.1)], ["ocemotion"])
    other.close()
    assert list((tmp_path / "rank1").iterdir()) == []

    main = RunLog(tmp_path, is_main=True, progress=False, log_every=0)
    history = [entry(1, 0.1), entry(2, 0.3)]
    main.evaluation(history[0], history[:1], ["ocemotion"])
    main.evaluation(history[1], history, ["ocemotion"])
    main.write_metrics({"history": history, "best": history[1]})
    assert json.loads((tmp_path / "metrics.json").read_text())["best"]["step"] == 2
    main.close()  # the pictures of the last evaluation, whatever the redraw interval skipped
    assert (tmp_path / "learning_curve.png").stat().st_size > 0
    assert (tmp_path / "confusion_ocemotion.png").stat().st_size > 0
    assert not list(tmp_path.glob(".metrics.json.tmp-*"))  # the atomic write left nothing beside it


def test_plots_false_draws_nothing_and_keeps_the_numbers(tmp_path):
    log = RunLog(tmp_path, is_main=True, progress=False, log_every=0, plots=False)
    log.evaluation(entry(1, 0.1), [entry(1, 0.1)], ["ocemotion"])
    log.write_metrics({"history": [entry(1, 0.1)]})
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
