"""What a run shows its user: per-class metrics and confusion matrices, pictures, an honest log and bar, TensorBoard,
a config surface that catches typos, and checkpoints of a chosen size."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from helpers import make_cfg

from pet_mtl.backbones.loading import load_pretrained
from pet_mtl.core.errors import ConfigError
from pet_mtl.core.tasks import TASKS
from pet_mtl.metrics import classification_scores
from pet_mtl.report import main as report_main
from pet_mtl.training.trainer import Trainer


def run(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_per_class_scores_and_the_confusion_matrix_match_a_hand_count():
    # gold: 0 0 0 1 1 2; predicted: 0 0 1 1 0 0 -> class 2 (one gold row) is never predicted
    s = classification_scores([0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 2], ["a", "b", "c", "d"])
    assert s["confusion"] == [[2, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert s["per_class"]["a"] == {"precision": 0.5, "recall": pytest.approx(2 / 3, abs=1e-6),
                                   "f1": pytest.approx(4 / 7, abs=1e-6), "support": 3}
    assert s["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert s["per_class"]["d"]["support"] == 0
    # macro-F1 keeps its definition: the classes seen in gold or predictions (a, b, c), not the absent d
    assert s["macro_f1"] == pytest.approx((4 / 7 + 0.5 + 0.0) / 3)


@pytest.fixture(scope="module")
def logged_run(tiny_dir, synthetic_dir, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("insight")
    run_dir = cwd / "run"
    p = run("pet_mtl.train", f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.max_steps=6",
            "train.eval_every=3", "train.log_every=2", "train.progress=true", "train.batch_size=8",
            "train.predict_splits=[]", "train.tensorboard=true", "data.val_size=0.25", f"hydra.run.dir={run_dir}",
            cwd=cwd)
    assert p.returncode == 0, p.stderr[-3000:]
    return run_dir, p


def test_a_run_records_per_class_metrics_and_draws_its_pictures(logged_run):
    run_dir, _ = logged_run
    doc = json.loads((run_dir / "metrics.json").read_text())
    for entry in doc["history"]:
        for task, s in entry["tasks"].items():
            codes = list(TASKS[task].labels)
            assert list(s["per_class"]) == codes and len(s["confusion"]) == len(codes)
            rows = sum(map(sum, s["confusion"]))
            assert rows == sum(c["support"] for c in s["per_class"].values()) > 0
            assert s["accuracy"] == pytest.approx(sum(s["confusion"][i][i] for i in range(len(codes))) / rows)
    for name in ["learning_curve.png", *(f"confusion_{t}.png" for t in TASKS)]:
        png = (run_dir / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name


def test_the_log_says_what_the_run_will_do_and_keeps_loss_lines_under_the_bar(logged_run):
    run_dir, p = logged_run
    log = (run_dir / "train.log").read_text()
    assert f"run directory: {run_dir}" in log and "plan: 6 steps of 8 examples" in log
    for t in TASKS:
        assert f"{t}: " in log and " validation rows" in log
    assert ("pattern ocnli/question_pair: slot of 2 token(s), scoring word; words 0=是的[是 的] 1=可能[可 能] 2=不是[不 是]"
            in log)
    assert [line.split("loss ")[1].split()[0] for line in log.splitlines() if "(mean of the last 2 steps)" in line]
    assert sum("(mean of the last 2 steps)" in line for line in log.splitlines()) == 3  # steps 2, 4, 6
    assert "train: " not in p.stderr and "\r" not in p.stderr  # piped: no bar frames (tests/test_console.py: a terminal)


def test_tensorboard_gets_the_scalars(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = logged_run
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "val/score", "val/tnews/macro_f1"} <= tags
    assert [e.step for e in events.Scalars("val/score")] == [3, 6]


def test_mlflow_gets_the_scalars_and_the_config_in_the_runs_own_store(tiny_dir, synthetic_dir, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from helpers import make_cfg

    from pet_mtl.training.trainer import Trainer

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path / "run"
    Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.max_steps=4", "train.eval_every=2",
                     "train.log_every=2", "train.batch_size=8", "train.progress=false", "train.predict_splits=[]",
                     "train.calibrate=false", "train.report_to=[mlflow]"), run).fit()
    client = mlflow.tracking.MlflowClient((run / "mlruns").resolve().as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("pet_mtl").experiment_id])
    metrics = json.loads((run / "metrics.json").read_text())["history"]
    assert [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, "val.score")] == [
        (e["step"], pytest.approx(e["score"])) for e in metrics]
    assert [m.step for m in client.get_metric_history(found.info.run_id, "train.loss")] == [2, 4]
    assert found.data.params["train.max_steps"] == "4" and found.info.run_name == "run"
    with pytest.raises(ConfigError, match="train.report_to=\\['wandb'\\]: wandb is not a tracker; expected some of"):
        Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.report_to=[wandb]"),
                tmp_path / "other")


@pytest.mark.parametrize("override,needle", [
    ("+train.max_step=20", "+train.max_step=20: train.max_step is not a config key; did you mean train.max_steps?"),
    ("train.max_step=20", "train.max_step=20: train.max_step is not a config key; did you mean train.max_steps?"),
    ("trian.lr=1", "did you mean train.lr?"),
])
def test_misspelt_keys_fail_with_a_suggestion(override, needle, tmp_path):
    p = run("pet_mtl.train", override, cwd=tmp_path)
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr
    assert list(tmp_path.iterdir()) == []  # refused before Hydra made a run folder


def test_open_maps_and_groups_are_not_typos(tmp_path):
    p = run("pet_mtl.train", "--cfg", "job", "patterns=alt", "train.task_weights.tnews=2", "patterns.tnews=[tnews/topic.j2]",
            "+files.x=1", cwd=tmp_path)
    assert p.returncode == 2 and "files.x is not a config key" in p.stderr  # files= is predict's, not train's
    p = run("pet_mtl.train", "--cfg", "job", "patterns=alt", "train.task_weights.tnews=2", cwd=tmp_path)
    assert p.returncode == 0, p.stderr


def test_a_hub_id_gets_the_download_command_and_a_folder_that_is_no_model_one_line(tmp_path):
    with pytest.raises(ConfigError, match="hfl/chinese-roberta-wwm-ext looks like a Hugging Face hub id.*"
                                          "hf download hfl/chinese-roberta-wwm-ext --local-dir chinese-roberta-wwm-ext"):
        load_pretrained("hfl/chinese-roberta-wwm-ext")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ConfigError, match=r"has no config.json \(it holds notes.txt\); pass a Hugging Face model"):
        load_pretrained(tmp_path)


def test_the_report_rejects_unknown_over_keys_and_prints_no_std_for_one_run(logged_run, tmp_path, capsys):
    run_dir, _ = logged_run
    assert report_main([str(run_dir), "--over", "sed", "--out", str(tmp_path)]) == 2
    assert "--over sed (did you mean seed?): no run has that key" in capsys.readouterr().err
    assert report_main([str(run_dir), "--out", str(tmp_path), "--per-class"]) == 0
    out = capsys.readouterr().out
    assert "± —" in out and "± 0.0000" not in out
    assert "ocemotion: F1 per class" in out and "| like | happiness | sadness |" in out


@pytest.mark.parametrize("mode,files", [("full", {"train_state"}), ("weights", set()), ("none", None)])
def test_checkpoint_last_holds_what_was_asked(mode, files, tiny_dir, synthetic_dir, tmp_path):
    cfg = make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.max_steps=2", "train.batch_size=8",
                   "train.progress=false", "train.predict_splits=[]", f"train.checkpoint_last={mode}")
    Trainer(cfg, tmp_path).fit()
    last = tmp_path / "checkpoint-last"
    assert (tmp_path / "checkpoint-best" / "model").is_dir()
    if files is None:
        assert not last.exists()
    else:
        assert {"train_state"} & {p.name for p in last.iterdir()} == files
    if mode != "full":
        with pytest.raises(ConfigError, match="train.resume=true needs train.checkpoint_last=full"):
            Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", f"train.checkpoint_last={mode}",
                             "train.resume=true", "train.predict_splits=[]"), tmp_path)


def test_the_training_bar_leaves_evaluation_time_out_of_its_clock(tmp_path, monkeypatch):
    from pet_mtl.training import runlog as runlog_module
    from pet_mtl.training.runlog import RunLog

    monkeypatch.setattr(runlog_module, "console_is_terminal", lambda: True)  # the bar is drawn for a terminal only

    runlog = RunLog(tmp_path, is_main=True, progress=True, log_every=2)
    with runlog.training(total=10, done=0):
        runlog.step(1, 10, 2.0, 1e-3, 10.0)
        started = runlog.bar.start_t
        with runlog.evaluating() as show_eval_bar:
            assert show_eval_bar
            time.sleep(0.3)
        # the bar's clock moved forward by the whole pause (at least the sleep, however loaded the machine), so
        # the ETA is computed from training time alone
        assert runlog.bar.start_t - started >= 0.3
        runlog.step(2, 10, 4.0, 1e-3, 10.0)
        assert "loss=3.0000" in runlog.bar.postfix  # the mean of the window, not a moving average


def test_the_report_puts_one_value_spelt_two_ways_in_one_row():
    from pet_mtl.report import canonical

    assert canonical("3e-4") == canonical("0.0003") and canonical("False") == canonical("false") == "false"
    assert canonical("1") == canonical("1.0") == "1" and canonical("few_all") == "few_all"
    assert canonical("[tnews/topic.j2]") == "[tnews/topic.j2]"
