"""The few-shot regime: FewCLUE files where a task has them, a seeded k-per-class sample where it has not, and a
fixed held-out set that shares no text with any few-shot file."""
from __future__ import annotations

import json

import pytest
from helpers import make_cfg

from pet_mtl.core.errors import ConfigError, DataError
from pet_mtl.core.tasks import TASKS
from pet_mtl.core.validate import apply_renames
from pet_mtl.data.readers import read_tsv
from pet_mtl.data.regimes import load_task_data, text_key
from pet_mtl.inference.checkpoint import load_scorer
from pet_mtl.inference.predictor import Predictor
from pet_mtl.training.checks import check
from pet_mtl.training.trainer import Trainer


def fewshot_cfg(synthetic_dir, fewclue_dir, *extra):
    return make_cfg("data=fewclue", f"data.dir={synthetic_dir}", f"data.fewclue_dir={fewclue_dir}",
                    "data.held_out_per_task=30", "data.k_per_class=3", *extra)


def keys(examples):
    return {text_key(e, TASKS[e.task]) for e in examples}


def test_fewshot_reads_fewclue_samples_the_rest_and_keeps_the_held_out_set_apart(synthetic_dir, fewclue_dir):
    data = load_task_data(fewshot_cfg(synthetic_dir, fewclue_dir, "data.fewclue_split=0"))
    pool = {t: read_tsv(synthetic_dir / TASKS[t].files["train"], TASKS[t], True) for t in TASKS}
    for name in ("ocnli", "tnews"):
        assert keys(data[name].train) == keys(pool[name][0:6]) and keys(data[name].val) == keys(pool[name][6:12])
        assert [e.label for e in data[name].train] == [e.label for e in pool[name][0:6]]
        assert not keys(data[name].held_out) & keys(pool[name][:30])  # no text of any FewCLUE file, unlabeled included
    emo = data["ocemotion"]
    for part in (emo.train, emo.val):
        assert sorted(e.label for e in part) == sorted(TASKS["ocemotion"].labels * 3)
    assert not keys(emo.train) & keys(emo.val) and not (keys(emo.train) | keys(emo.val)) & keys(emo.held_out)
    assert all(20 <= len(d.held_out) <= 40 for d in data.values())  # 30, stratified (rounded per label)

    # the held-out set is fixed: the same rows for another split and another seed; the sample follows the split
    other = load_task_data(fewshot_cfg(synthetic_dir, fewclue_dir, "data.fewclue_split=1", "seed=7"))
    for name in TASKS:
        assert [e.id for e in other[name].held_out] == [e.id for e in data[name].held_out]
    assert keys(other["tnews"].train) == keys(pool["tnews"][12:18])
    assert keys(other["ocemotion"].train) != keys(emo.train)


def test_fewshot_config_errors_name_the_fix(synthetic_dir, fewclue_dir, tmp_path):
    with pytest.raises(ConfigError, match="data.fewclue_dir"):
        load_task_data(fewshot_cfg(synthetic_dir, tmp_path / "absent"))
    with pytest.raises(DataError, match="train_3.json.*file not found"):
        load_task_data(fewshot_cfg(synthetic_dir, fewclue_dir, "data.fewclue_split=3"))
    with pytest.raises(ConfigError, match="data.regime='tiny'"):
        load_task_data(make_cfg("data.regime=tiny"))


def test_the_old_spellings_still_work_with_a_deprecation_message(synthetic_dir, fewclue_dir, caplog):
    """Renamed where the config enters (the training checks, iPET's entry point), once, before any data is read."""
    new = load_task_data(fewshot_cfg(synthetic_dir, fewclue_dir, "data.fewclue_split=1", "data.held_out_per_task=20"))
    caplog.set_level("WARNING", logger="pet_mtl")
    old_cfg = make_cfg("data=fewclue", f"data.dir={synthetic_dir}", f"data.fewclue_dir={fewclue_dir}",
                       "data.k_per_class=3", "data.split=1", "data.eval_per_task=20", "train.temperature=3.0")
    check(old_cfg)
    old = load_task_data(old_cfg)
    for name in TASKS:
        assert [e.id for e in old[name].train] == [e.id for e in new[name].train]
        assert [e.id for e in old[name].held_out] == [e.id for e in new[name].held_out]
    assert "data.split is deprecated" in caplog.text and "use data.fewclue_split=1" in caplog.text
    assert "data.eval_per_task is deprecated" in caplog.text
    assert old_cfg.train.sampling_temperature == 3.0 and "use train.sampling_temperature=3.0" in caplog.text
    with pytest.raises(ConfigError, match="data.split=1 .deprecated. and data.fewclue_split=2 disagree"):
        apply_renames(fewshot_cfg(synthetic_dir, fewclue_dir, "data.split=1", "data.fewclue_split=2"))


def test_a_fewshot_run_reports_checkpoint_best_loaded_from_disk_on_the_held_out_set(tiny_dir, synthetic_dir,
                                                                                    fewclue_dir, tmp_path):
    # six rows per task: the dev score peaks early, so checkpoint-best is not the last model, and the held-out
    # score tells the two apart
    cfg = fewshot_cfg(synthetic_dir, fewclue_dir, f"model.path={tiny_dir}", "train.max_steps=12", "train.eval_every=2",
                      "train.batch_size=8", "train.lr=3e-3", "train.warmup_ratio=0", "train.progress=false",
                      "train.predict_splits=[]")
    trainer = Trainer(cfg, tmp_path)
    summary = trainer.fit()
    doc = json.loads((tmp_path / "metrics.json").read_text())
    best = max(doc["history"], key=lambda e: e["score"])
    assert best["step"] != doc["history"][-1]["step"], "precondition: checkpoint-best must differ from the last model"
    assert doc["regime"] == "fewshot" and doc["held_out"]["step"] == best["step"] == summary["best"]["step"]
    assert set(doc["held_out"]["tasks"]) == set(TASKS) and doc["wall_seconds"] > 0

    held_out = {t: d.held_out for t, d in trainer.data.items()}
    _, meta, featurizer, model = load_scorer(tmp_path / "checkpoint-best")
    assert meta["step"] == best["step"]
    fresh = Predictor(featurizer, model).evaluate(held_out)
    assert fresh == {"tasks": doc["held_out"]["tasks"], "score": doc["held_out"]["score"]}
    # the trainer's in-memory model holds the last weights, and they score the held-out set differently
    last = Predictor(trainer.featurizer, trainer.model).evaluate(held_out)
    assert last["score"] != pytest.approx(fresh["score"], abs=1e-3)
