"""A real (tiny) multi-task training run: it learns, its checkpoints round-trip, and it predicts submissions."""
from __future__ import annotations

import json
import shutil
import zipfile

import pytest
import torch
from conftest import synthetic_rows, write_tsv
from helpers import make_cfg

from pet_mtl.backbones.contract import Backbone
from pet_mtl.core.errors import CheckpointError, ConfigError, DataError
from pet_mtl.core.tasks import TASKS
from pet_mtl.inference.checkpoint import load_checkpoint
from pet_mtl.inference.predictor import score_features
from pet_mtl.inference.submission import write_submission
from pet_mtl.methods.cloze import ClozeModel
from pet_mtl.methods.features import ClozeFeaturizer
from pet_mtl.training.trainer import Trainer


@pytest.fixture(scope="module")
def trained(tiny_dir, synthetic_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    # 16 epochs: TNEWS's 15 labels on 135 rows are the last to be learnt; at 12 a random init can still be climbing
    # (the tiny vocabulary, and so the init, changes whenever the shipped pattern library gains characters)
    cfg = make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.lr=3e-3", "train.epochs=16",
                   "train.batch_size=16", "train.eval_every=40", "train.progress=false", "data.val_size=0.25",
                   "train.predict_splits=[]", "train.warmup_ratio=0.1")
    trainer = Trainer(cfg, run)
    trainer.fit()
    return trainer


def test_training_lowers_the_loss_and_learns_every_task(trained):
    h = trained.state.history
    assert h[0]["train_loss"] > 3 * h[-1]["train_loss"]
    chance = {t: 1 / TASKS[t].num_labels for t in TASKS}
    for task, s in h[-1]["tasks"].items():
        assert s["accuracy"] >= max(0.7, 3 * chance[task]), (task, s)
    assert h[-1]["score"] == pytest.approx(sum(s["macro_f1"] for s in h[-1]["tasks"].values()) / 3)
    saved = json.loads((trained.run_dir / "metrics.json").read_text())["history"]
    assert [e["step"] for e in saved] == [e["step"] for e in h] and saved[-1]["step"] == trained.total_steps


def test_checkpoint_is_self_contained_and_round_trips(trained):
    last = trained.run_dir / "checkpoint-last"
    ckpt, tok, mlm, meta, patterns = load_checkpoint(last)
    assert meta["tasks"] == {t: {"labels": list(TASKS[t].labels)} for t in TASKS}
    assert [p.name for ps in patterns.values() for p in ps] == [p.name for p in trained.featurizer.patterns]
    assert (last / "config.yaml").is_file() and (last / "model" / "model.safetensors").is_file()
    assert not [p for p in last.rglob("*") if p.suffix in (".bin", ".pt", ".pkl")]
    enc = ClozeFeaturizer(tok, patterns, meta["max_length"])
    val = trained.data["tnews"].val
    feats = enc.encode(val)
    assert feats == trained.featurizer.encode(val)
    args = dict(batch_size=8, pad_id=tok.pad_token_id, pad_to_multiple_of=8, precision="fp32", device=torch.device("cpu"))
    reloaded = score_features(ClozeModel(Backbone(mlm, tok), enc.label_tensors()), feats, **args)
    assert torch.allclose(reloaded, score_features(trained.model, feats, **args), atol=1e-5)
    best = json.loads((trained.run_dir / "checkpoint-best" / "pet_mtl.json").read_text())
    assert best["metrics"]["score"] == max(e["score"] for e in trained.state.history)


def test_submission_from_the_trained_checkpoint_keeps_ids_and_recovers_the_labels(trained, synthetic_dir, tmp_path):
    out = tmp_path / "sub"
    zip_path = write_submission(trained.run_dir, synthetic_dir, "a", out)
    assert zip_path == out / "submit.zip"
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == ["ocemotion_predict.json", "ocnli_predict.json", "tnews_predict.json"]
        for name in zf.namelist():
            assert zf.read(name).decode() == (out / name).read_text()
    for task, t in TASKS.items():
        rows = [json.loads(line) for line in (out / f"{task}_predict.json").read_text().splitlines()]
        truth = [r[-1] for r in synthetic_rows(task, 2, 1)][:12]
        assert [r["id"] for r in rows] == [str(100 + i) for i in range(len(truth))]  # every id once, input order
        assert all(r["label"] in t.labels for r in rows)
        assert sum(r["label"] == y for r, y in zip(rows, truth)) >= 0.6 * len(truth)  # codes map back correctly


def test_a_bad_test_file_leaves_no_partial_submission(trained, synthetic_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    write_tsv(data / TASKS["tnews"].files["b"], [("好",), ("坏", "102")])
    out = tmp_path / "sub"
    with pytest.raises(DataError, match=r"tnews_test_B.csv:2: expected 2 tab-separated columns"):
        write_submission(trained.run_dir, data, "b", out)
    assert not out.exists() or not list(out.iterdir())


def test_pickle_files_are_refused_unless_trusted(trained, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained.run_dir / "checkpoint-best", ckpt)
    (ckpt / "model" / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(CheckpointError, match="pytorch_model.bin: pickle file found"):
        load_checkpoint(ckpt)
    assert load_checkpoint(ckpt, trust_pickle=True)[3]["method"] == "pet"


def test_model_path_with_a_pickle_is_refused(tiny_dir, tmp_path):
    from pet_mtl.backbones.loading import load_pretrained

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_dir, model_dir)
    (model_dir / "training_args.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(CheckpointError, match="training_args.bin: pickle file found.*model.trust_pickle=true"):
        load_pretrained(model_dir)


def test_predict_files_must_name_tasks_of_the_checkpoint_and_labelled_files_need_labels(trained, synthetic_dir,
                                                                                      tmp_path):
    with pytest.raises(ConfigError, match="files names nli, not tasks of"):
        write_submission(trained.run_dir, None, "a", tmp_path / "x", files={"nli": synthetic_dir / "x.csv"})
    test_file = synthetic_dir / TASKS["tnews"].files["a"]  # no label column
    with pytest.raises(DataError, match=r"TNEWS_a.csv:1: expected 3 tab-separated columns.*label column is missing"):
        write_submission(trained.run_dir, None, "a", tmp_path / "y", files={"tnews": test_file}, labelled=True)
    assert not (tmp_path / "y").exists() or not list((tmp_path / "y").iterdir())


def test_a_checkpoint_naming_an_unknown_method_is_refused(trained, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained.run_dir / "checkpoint-best", ckpt)
    meta = json.loads((ckpt / "pet_mtl.json").read_text())
    (ckpt / "pet_mtl.json").write_text(json.dumps({**meta, "method": "prompt_tuning"}))
    with pytest.raises(CheckpointError, match="pet_mtl.json: method='prompt_tuning': expected one of pet, heads"):
        load_checkpoint(ckpt)
