"""Decisions tuned for macro-F1: label biases fitted on validation rows, saved with checkpoint-best, applied by
predict unless calibrate=false."""
from __future__ import annotations

import json

import pytest
import torch

from pet_mtl.core.tasks import TASKS
from pet_mtl.inference import calibration
from pet_mtl.inference.submission import write_submission


def skewed(n_major=300, n_rare=30, seed=0):
    """A rare class (2) whose rows rank it second: the plain argmax never predicts it."""
    g = torch.Generator().manual_seed(seed)
    gold = torch.tensor([0] * n_major + [1] * n_major + [2] * n_rare)
    scores = torch.randn(len(gold), 3, generator=g) * 0.1
    scores[gold == 0, 0] += 2.0
    scores[gold == 1, 1] += 2.0
    scores[gold == 2, 2] += 1.0
    scores[gold == 2, 0] += 1.5  # the rare class's rows look like class 0 first
    return scores.log_softmax(-1), gold


def test_fitted_biases_raise_macro_f1_on_a_skewed_set_and_generalise():
    log_probs, gold = skewed()
    before = calibration.macro_f1(log_probs.argmax(-1), gold, 3)
    assert (log_probs.argmax(-1) == 2).sum() <= 2  # the rare class is (almost) never predicted
    bias = calibration.fit_biases(log_probs, gold)
    after = calibration.macro_f1((log_probs + bias).argmax(-1), gold, 3)
    assert after > before + 0.2
    fresh, fresh_gold = skewed(seed=1)  # new rows of the same distribution: the biases carry over
    assert calibration.macro_f1((fresh + bias).argmax(-1), fresh_gold, 3) > \
        calibration.macro_f1(fresh.argmax(-1), fresh_gold, 3) + 0.2


def test_logit_adjustment_and_contextual_biases():
    # add-one smoothed prior: (99 + 1, 0 + 1) / 101
    assert torch.allclose(calibration.logit_adjustment([99, 0], tau=1.0), -torch.tensor([100 / 101, 1 / 101]).log())
    cf = torch.tensor([[0.5, 0.25, 0.25], [0.7, 0.2, 0.1]]).log()
    assert torch.allclose(calibration.contextual(cf), -torch.tensor([0.6, 0.225, 0.175]).log())


@pytest.fixture
def trained(trained_run):
    return trained_run


def test_a_run_saves_biases_with_checkpoint_best_and_reports_them_cross_fitted(trained):
    saved = json.loads((trained / "checkpoint-best" / "calibration.json").read_text())
    assert {t: list(b) for t, b in saved["biases"].items()} == {t: list(TASKS[t].labels) for t in TASKS}
    report = json.loads((trained / "metrics.json").read_text())["calibration"]
    for t in TASKS:
        assert set(report[t]) == {"before", "cross_fitted", "applied", "biases"}
        assert report[t]["biases"] == saved["biases"][t]
        assert report[t]["applied"] == (report[t]["cross_fitted"] > report[t]["before"])
        assert report[t]["applied"] or set(report[t]["biases"].values()) == {0.0}


def test_predict_applies_the_biases_unless_told_not_to(trained, synthetic_dir, tmp_path):
    path = trained / "checkpoint-best" / "calibration.json"
    original = path.read_text()
    try:
        doc = json.loads(original)
        doc["biases"]["tnews"] = {c: (50.0 if c == "107" else 0.0) for c in TASKS["tnews"].labels}
        path.write_text(json.dumps(doc))
        write_submission(trained, synthetic_dir, "a", tmp_path / "on")
        write_submission(trained, synthetic_dir, "a", tmp_path / "off", calibrate=False)
    finally:
        path.write_text(original)
    on = [json.loads(line)["label"] for line in (tmp_path / "on" / "tnews_predict.json").read_text().splitlines()]
    off = [json.loads(line)["label"] for line in (tmp_path / "off" / "tnews_predict.json").read_text().splitlines()]
    assert set(on) == {"107"} and set(off) != {"107"}


def test_the_fast_macro_f1_equals_the_metric_module():
    from pet_mtl.metrics import classification_scores

    g = torch.Generator().manual_seed(3)
    for n in (3, 7, 15):
        gold = torch.randint(0, n, (500,), generator=g)
        preds = torch.randint(0, n, (500,), generator=g)
        preds[preds == 1] = 0  # a class never predicted
        gold[gold == n - 1] = 0  # a class never gold
        assert calibration.macro_f1(preds, gold, n) == pytest.approx(
            classification_scores(preds.tolist(), gold.tolist())["macro_f1"], abs=1e-12)
