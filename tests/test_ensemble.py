"""Saved scores and ensembles: predict save_scores=true writes normalised label log-probabilities, and
`python -m pet_mtl.ensemble` averages several folders' into one submission."""
from __future__ import annotations

import json
import math

import pytest
import torch

from pet_mtl.core.errors import DataError
from pet_mtl.core.tasks import TASKS
from pet_mtl.ensemble import ensemble, main
from pet_mtl.inference.submission import write_submission

OCNLI = TASKS["ocnli"].labels  # 0 1 2


def member(folder, rows: dict[str, list[float]], validation: float = 0.5):
    folder.mkdir(parents=True)
    (folder / "ocnli_scores.jsonl").write_text("".join(
        json.dumps({"id": i, "log_probs": dict(zip(OCNLI, map(math.log, p)))}) + "\n" for i, p in rows.items()))
    (folder / "scores.json").write_text(json.dumps({"checkpoint": "x", "validation_score": validation}))
    return folder


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_ensemble_is_the_weighted_mean_of_the_members_log_probabilities(tmp_path):
    a = member(tmp_path / "a", {"r1": [0.7, 0.2, 0.1], "r2": [0.1, 0.5, 0.4]}, validation=0.6)
    b = member(tmp_path / "b", {"r1": [0.05, 0.3, 0.65], "r2": [0.1, 0.3, 0.6]}, validation=0.2)
    out = tmp_path / "ens"
    assert ensemble([a, b], out) == out  # ocnli only: no zip
    mean = {"r1": [(math.log(x) + math.log(y)) / 2 for x, y in zip([0.7, 0.2, 0.1], [0.05, 0.3, 0.65])],
            "r2": [(math.log(x) + math.log(y)) / 2 for x, y in zip([0.1, 0.5, 0.4], [0.1, 0.3, 0.6])]}
    saved = {r["id"]: [r["log_probs"][c] for c in OCNLI] for r in read(out / "ocnli_scores.jsonl")}
    for i in mean:
        assert saved[i] == pytest.approx(mean[i], abs=1e-6)
    # by hand (products of the members' probabilities): r1 .035 / .06 / .065 -> 2; r2 .01 / .15 / .24 -> 2
    assert read(out / "ocnli_predict.json") == [{"id": "r1", "label": "2"}, {"id": "r2", "label": "2"}]
    # weighted 3:1 towards a (a^3 b): r1 .01715 / .0024 / .00065 -> 0; r2 .0001 / .0375 / .0384 -> 2. Weighting by
    # the validation scores (0.6 and 0.2) is the same 3:1
    for kwargs in ({"weights": [3.0, 1.0]}, {"by": "validation"}):
        ensemble([a, b], tmp_path / "w", **kwargs)
        assert [r["label"] for r in read(tmp_path / "w" / "ocnli_predict.json")] == ["0", "2"]


def test_members_must_have_predicted_the_same_rows(tmp_path):
    a = member(tmp_path / "a", {"r1": [0.7, 0.2, 0.1]})
    b = member(tmp_path / "b", {"r9": [0.7, 0.2, 0.1]})
    with pytest.raises(DataError, match="ids differ"):
        ensemble([a, b], tmp_path / "out")
    assert main([str(a), str(b), "--out", str(tmp_path / "out2")]) == 2


@pytest.fixture
def trained(trained_run):
    return trained_run


def test_saved_scores_are_normalised_and_agree_with_the_labels(trained, synthetic_dir, tmp_path):
    out = tmp_path / "a"
    write_submission(trained, synthetic_dir, "a", out, save_scores=True, calibrate=False)
    for task, t in TASKS.items():
        scores, labels = read(out / f"{task}_scores.jsonl"), read(out / f"{task}_predict.json")
        assert [s["id"] for s in scores] == [r["id"] for r in labels]
        for s, r in zip(scores, labels):
            lp = torch.tensor([s["log_probs"][c] for c in t.labels])
            assert torch.logsumexp(lp, 0).item() == pytest.approx(0.0, abs=1e-5)
            assert t.labels[int(lp.argmax())] == r["label"]
    meta = json.loads((out / "scores.json").read_text())
    assert meta["validation_score"] == json.loads((trained / "metrics.json").read_text())["best"]["score"]
    # an ensemble of a folder with itself is that folder's submission, zip included (every task is there)
    write_submission(trained, synthetic_dir, "a", tmp_path / "b", save_scores=True, calibrate=False)
    assert ensemble([out, tmp_path / "b"], tmp_path / "ens") == tmp_path / "ens" / "submit.zip"
    for task in TASKS:
        assert read(tmp_path / "ens" / f"{task}_predict.json") == read(out / f"{task}_predict.json")
