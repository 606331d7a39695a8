"""Hostile files and faults, round three: YAML and configs that would exhaust memory, a checkpoint swap killed at
every point, NaN and infinity on their way to a submission, ids that only one reader could read. Each case ends
in one line naming the file, or in a complete copy on disk; never a hang, a raw traceback or a wrong output."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from helpers import make_cfg

from pet_mtl.core.errors import CheckpointError, ConfigError, LocatedError, PatternError
from pet_mtl.core.io import read_yaml, remove_leftovers
from pet_mtl.core.tasks import TASKS
from pet_mtl.training.trainer import Trainer

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))


def bounded(fn):
    """Run fn under tracemalloc; its peak must stay small: refused before anything was expanded."""
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 30_000_000, f"{peak:,} bytes"


# ---------------------------------------------------------------- YAML: aliases, keys, size


def test_yaml_aliases_are_refused_with_the_file_and_line(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS, encoding="utf-8")
    with pytest.raises(LocatedError) as e:
        bounded(lambda: read_yaml(path))
    assert str(e.value).startswith(f"{path}:2: not valid YAML: alias *a refused"), str(e.value)


@pytest.mark.parametrize("text,needle", [
    ("a: 1\na: 2\n", ":2: not valid YAML: key 'a' appears twice"),
    ("? [a, b]\n: 1\n", ":1: not valid YAML: a key must be a scalar"),
    ("a: [1, 2\n", "not valid YAML"),
    ("x: " + "y" * 1_100_000 + "\n", "larger than 1,000,000 bytes"),
], ids=["key twice", "list as key", "unclosed", "too large"])
def test_yaml_that_is_not_what_we_read_is_one_line(tmp_path, text, needle):
    path = tmp_path / "f.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LocatedError, match=None) as e:
        read_yaml(path)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("text,needle", [
    (LAUGHS, "alias *a refused"),
    ("- tnews/topic.j2\n", "a pattern set is a mapping task -> [templates]"),
    ("? [tnews]\n: [tnews/topic.j2]\n", "a key must be a scalar"),
], ids=["aliases", "a list", "list as key"])
def test_a_user_pattern_set_file_is_checked_before_hydra_sees_it(tmp_path, capsys, text, needle):
    """A set under a user root is read at start-up even when another set is selected: an alias bomb there would
    hang every run; now it is one line naming the file."""
    from pet_mtl.cli import register_user_pattern_sets

    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "bomb.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        bounded(lambda: register_user_pattern_sets([f"pattern_roots=[{tmp_path}]"]))
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"{tmp_path / 'sets' / 'bomb.yaml'}" in err and needle in err, err
    assert err.count("\n") == 1


def test_a_resume_reads_the_saved_config_strictly(trained_run, tiny_dir, synthetic_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    args = [f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.max_steps=6", "train.eval_every=3",
            "train.batch_size=8", "train.progress=false", "train.predict_splits=[]", "train.resume=true"]
    saved = run / "checkpoint-last" / "config.yaml"
    saved.write_text(LAUGHS, encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"checkpoint-last/config.yaml:2: not valid YAML: alias \*a refused"):
        bounded(lambda: Trainer(make_cfg(*args), run).fit())
    for text, needle in (("{{{ not yaml", "not valid YAML"), ("- a\n- b\n", "not the run's saved config")):
        saved.write_text(text, encoding="utf-8")
        with pytest.raises(CheckpointError, match=needle):
            Trainer(make_cfg(*args), run).fit()


def test_the_report_reads_overrides_and_metrics_strictly(trained_run, tmp_path):
    from pet_mtl.report import read_run

    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("checkpoint-*"))
    (run / ".hydra").mkdir(exist_ok=True)
    (run / ".hydra" / "overrides.yaml").write_text(LAUGHS, encoding="utf-8")
    with pytest.raises(LocatedError, match=r"overrides.yaml:2: not valid YAML: alias \*a refused"):
        bounded(lambda: read_run(run / "metrics.json"))
    (run / ".hydra" / "overrides.yaml").write_text("a: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a Hydra overrides file"):
        read_run(run / "metrics.json")
    (run / ".hydra" / "overrides.yaml").unlink()
    doc = json.loads((run / "metrics.json").read_text())
    for broken in ({**doc, "best": []}, {**doc, "best": {"tasks": {"tnews": 3}, "score": 0.1}},
                   {**doc, "held_out": {"score": "x"}}):
        (run / "metrics.json").write_text(json.dumps(broken), encoding="utf-8")
        with pytest.raises(ConfigError, match=r"metrics.json: not a pet_mtl metrics.json"):
            read_run(run / "metrics.json")


# ---------------------------------------------------------------- configs checked before a model is built


@pytest.mark.parametrize("change,needle", [
    ({"num_hidden_layers": 1_000_000}, "1,000,000 layers"),
    ({"vocab_size": 10**9}, "vocabulary 1,000,000,000"),
    ({"intermediate_size": 10**9}, "describes a model of at least"),
    ({"num_hidden_layers": "many"}, "Validation error for field 'num_hidden_layers'"),
])
def test_a_config_json_larger_than_its_weights_is_refused_before_it_is_built(tiny_dir, tmp_path, change, needle):
    from pet_mtl.backbones.loading import load_pretrained

    folder = tmp_path / "model"
    shutil.copytree(tiny_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}), encoding="utf-8")
    with pytest.raises(CheckpointError) as e:
        bounded(lambda: load_pretrained(folder))
    assert str(e.value).startswith(f"{folder / 'config.json'}: ") and needle in str(e.value), str(e.value)


def test_a_verbalizer_with_80000_unknown_labels_is_a_short_line(tmp_path):
    from pet_mtl.prompts import PatternSpec, load_pattern

    (tmp_path / "tnews").mkdir()
    (tmp_path / "tnews" / "t.j2").write_text("{{ title }}{{ mask }}", encoding="utf-8")
    words = "\n".join(f" {i}: w" for i in range(80_000))  # under the 1 MB YAML limit
    (tmp_path / "tnews" / "verbalizers.yaml").write_text(f"default:\n{words}\n", encoding="utf-8")
    with pytest.raises(PatternError) as e:
        load_pattern("tnews", PatternSpec("tnews/t.j2"), tmp_path)
    assert len(str(e.value)) < 2_100 and "more characters)" in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- the checkpoint swap, killed at every point

SWAP = """
import os, sys
from pathlib import Path
from pet_mtl.core import io
calls, stop = [0], int(sys.argv[2])
real = os.replace
def replace(a, b):
    if calls[0] == stop:
        os._exit(9)  # a SIGKILL: no cleanup runs
    calls[0] += 1
    real(a, b)
io.os.replace = replace
def write(tmp):
    (tmp / "weights").write_text("new", encoding="utf-8")
    if stop == -1:
        os._exit(9)  # killed while writing
io.atomic_dir(Path(sys.argv[1]), write)
"""


@pytest.mark.parametrize("stop", [-1, 0, 1, 2, 3])
def test_a_swap_killed_anywhere_leaves_a_complete_copy_that_the_next_start_keeps(tmp_path, stop):
    """atomic_dir's three renames (new copy complete, old one aside, new one in place), a kill before each and
    after the last (stop=-1: while writing): the next start's remove_leftovers finds a complete copy in place and
    nothing else; the copy is the old one until the new one is complete, then either."""
    target = tmp_path / "checkpoint-last"
    target.mkdir()
    (target / "weights").write_text("old", encoding="utf-8")
    p = subprocess.run([sys.executable, "-c", SWAP, str(target), str(stop)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert p.returncode == (9 if stop != 3 else 0), p.stderr
    remove_leftovers(target)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["checkpoint-last"]
    content = (target / "weights").read_text()
    assert content == ("old" if stop in (-1, 0) else "new") if stop != 1 else content in ("old", "new")


# ---------------------------------------------------------------- NaN and infinity never reach a submission


def _scores(folder: Path, rows: dict[str, list[float]]) -> Path:
    folder.mkdir(parents=True)
    (folder / "ocnli_scores.jsonl").write_text("".join(
        json.dumps({"id": i, "log_probs": dict(zip("012", p))}) + "\n" for i, p in rows.items()), encoding="utf-8")
    return folder


@pytest.mark.parametrize("weights", [[math.inf, 1.0], [math.nan, 1.0], [1.0, -1.0]], ids=["inf", "nan", "negative"])
def test_ensemble_weights_must_be_finite_and_positive(tmp_path, weights):
    from pet_mtl.core.errors import PetMtlError
    from pet_mtl.ensemble import ensemble

    a = _scores(tmp_path / "a", {"r1": [-0.1, -2.0, -3.0]})
    b = _scores(tmp_path / "b", {"r1": [-3.0, -2.0, -0.1]})
    with pytest.raises(PetMtlError, match="expected 2 positive finite numbers"):
        ensemble([a, b], tmp_path / "out", weights)
    assert not (tmp_path / "out").exists()


def test_a_member_score_that_is_not_a_number_is_refused_with_its_line(tmp_path):
    from pet_mtl.core.errors import DataError
    from pet_mtl.ensemble import ensemble

    a = _scores(tmp_path / "a", {"r1": [-0.1, -2.0, -3.0], "r2": [math.nan, -1.0, -1.0]})
    b = _scores(tmp_path / "b", {"r1": [-3.0, -2.0, -0.1], "r2": [-1.0, -2.0, -0.5]})
    with pytest.raises(DataError, match=r"a/ocnli_scores.jsonl:2: .*not a number"):
        ensemble([a, b], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_nan_biases_and_nan_weights_stop_predict_before_a_submission(trained_run, synthetic_dir, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from pet_mtl.inference.submission import write_submission

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_run / "checkpoint-best", ckpt)
    (ckpt / "calibration.json").write_text(json.dumps({"rule": "x", "biases": {"tnews": {
        code: (math.nan if i == 3 else 0.0) for i, code in enumerate(TASKS["tnews"].labels)}}}), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"calibration.json: the tnews biases hold a value that is not a finite"):
        write_submission(ckpt, synthetic_dir, "a", tmp_path / "out1")
    (ckpt / "calibration.json").unlink()
    weights = load_file(ckpt / "model" / "model.safetensors")
    name = next(k for k in weights if k.endswith("attention.self.query.weight"))
    weights[name][0, 0] = torch.nan
    save_file(weights, ckpt / "model" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=rf"model: weight {name} holds 1 value\(s\) that are not finite"):
        write_submission(ckpt, synthetic_dir, "a", tmp_path / "out2")
    for out in ("out1", "out2"):
        assert not (tmp_path / out).exists() or not any((tmp_path / out).iterdir())


# ---------------------------------------------------------------- one line per row, for every reader


def test_ids_holding_line_separators_survive_predict_scores_and_the_ensemble(trained_run, tmp_path):
    """U+2028, U+2029 and U+0085 end a line for str.splitlines and for other tools' readers: every JSON-lines file
    the project writes escapes them, so each row is one line for any reader, and the ids come back unchanged."""
    from pet_mtl.ensemble import ensemble
    from pet_mtl.inference.submission import write_submission

    ids = ["a\u2028b", "c\u0085d", "e\u2029f", "plain"]
    data = tmp_path / "data"
    data.mkdir()
    (data / "ocnli_test.tsv").write_text("".join(f"{i}\t前提{n}\t假设{n}\n" for n, i in enumerate(ids)),
                                         encoding="utf-8")
    outs = []
    for name in ("s1", "s2"):
        outs.append(tmp_path / name)
        write_submission(trained_run, None, "a", outs[-1], files={"ocnli": str(data / "ocnli_test.tsv")},
                         save_scores=True, calibrate=False)
    ensemble(outs, tmp_path / "ens")
    for path in (outs[0] / "ocnli_predict.json", outs[0] / "ocnli_scores.jsonl", tmp_path / "ens" / "ocnli_predict.json",
                 tmp_path / "ens" / "ocnli_scores.jsonl"):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["id"] for line in lines] == ids, path


# ---------------------------------------------------------------- a directory belongs to one run

TRAIN = ["train.max_steps=2", "train.eval_every=0", "train.batch_size=8", "train.progress=false",
         "train.predict_splits=[]", "train.calibrate=false", "tasks=[ocemotion]"]


def test_a_second_run_into_a_held_directory_is_refused(tiny_dir, synthetic_dir, tmp_path):
    from pet_mtl.core.rundir import RunDirectory

    run = tmp_path / "run"
    held = RunDirectory(run, "train")  # a real flock, as a training in another process holds it
    try:
        with pytest.raises(ConfigError, match=rf"another pet_mtl run \(pid {os.getpid()} train\) is writing {run}"):
            Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", *TRAIN), run)
    finally:
        held.release()
    assert not (run / "metrics.json").exists() and not (run / ".pet_mtl.lock").exists()


def test_a_new_training_refuses_a_finished_runs_directory_unless_told(tiny_dir, synthetic_dir, tmp_path):
    run = tmp_path / "run"
    cfg = [f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", *TRAIN]
    Trainer(make_cfg(*cfg), run).fit()
    before = (run / "metrics.json").read_text()
    with pytest.raises(ConfigError, match=r"holds another run's results \(metrics.json, checkpoint-best, "
                                          r"checkpoint-last\); resume it with train.resume=true"):
        Trainer(make_cfg(*cfg, "seed=7"), run)
    assert (run / "metrics.json").read_text() == before
    Trainer(make_cfg(*cfg, "seed=7", "train.overwrite=true"), run).fit()
    assert json.loads((run / "metrics.json").read_text())["seed"] == 7
    assert not (run / ".pet_mtl.lock").exists()  # released at the end


def test_pretraining_refuses_its_own_base_and_a_folder_of_other_files(tiny_dir, tmp_path):
    from test_pretrain import base_overrides, corpus_lines, pretrain_cfg

    from pet_mtl.pretraining.pretrainer import Pretrainer

    text = tmp_path / "words.txt"
    text.write_text("\n".join(corpus_lines(200)) + "\n", encoding="utf-8")
    base = tmp_path / "base"
    shutil.copytree(tiny_dir, base)
    weights = (base / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="is model.path: pretraining would overwrite the model it starts from"):
        Pretrainer(pretrain_cfg(*base_overrides(base, base, text)), base)
    assert (base / "model.safetensors").read_bytes() == weights
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"holds files pretraining did not write \(README.md\)"):
        Pretrainer(pretrain_cfg(*base_overrides(base, mine, text)), mine)
    assert (mine / "README.md").read_text() == "my notes"


def test_predict_follows_a_symlinked_output_folder_and_refuses_the_current_one(trained_run, synthetic_dir, tmp_path,
                                                                               monkeypatch):
    from pet_mtl.inference.submission import write_submission

    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    write_submission(trained_run, synthetic_dir, "a", link, calibrate=False)
    assert link.is_symlink() and (real / "submit.zip").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no lock, no temporary left
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    with pytest.raises(ConfigError, match="is the current folder or one above it"):
        write_submission(trained_run, synthetic_dir, "a", ".", calibrate=False)
    assert list(here.iterdir()) == []


# ---------------------------------------------------------------- one line, before the work starts


@pytest.mark.parametrize("override,needle", [
    ("seed=18446744073709551616", "seed=18446744073709551616: expected an integer in [0, 9,223,372,036,854,775,807]"),
    ("seed=-1", "seed=-1: expected an integer in [0,"),
    ("train.sampling_temperature=1e-9", "train.sampling_temperature=1e-09: expected a number in [0.01, 100]"),
    ("model.tiny.heads=3", "model.tiny: hidden=64 is not a multiple of heads=3"),
    ("model.max_length=100000", "model.max_length=100000 is over the model's"),
], ids=["seed 2^64", "negative seed", "temperature", "tiny sizes", "max_length"])
def test_values_that_cannot_work_are_one_line_before_training(synthetic_dir, tmp_path, override, needle):
    with pytest.raises(ConfigError) as e:
        Trainer(make_cfg(f"data.dir={synthetic_dir}", *TRAIN, override), tmp_path / "run")
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_run_directory_that_is_a_file_and_a_model_path_of_root_are_one_line(synthetic_dir, tmp_path):
    import time

    from pet_mtl.backbones.loading import load_pretrained

    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="the run directory .*afile exists and is not a folder"):
        Trainer(make_cfg(f"data.dir={synthetic_dir}", *TRAIN), tmp_path / "afile")
    t = time.monotonic()
    with pytest.raises((ConfigError, CheckpointError)) as e:
        load_pretrained("/")
    assert time.monotonic() - t < 5 and str(e.value).startswith("/: ") or "model.path=/" in str(e.value), str(e.value)


@pytest.mark.parametrize("code,needle", [(28, "No space left on device (the disk is full; what was written before"),
                                         (40, "(a symbolic link loop)"), (13, "Permission denied")])
def test_file_system_errors_are_one_line(capsys, code, needle):
    from pet_mtl.cli import friendly_errors

    @friendly_errors
    def work():
        raise OSError(code, os.strerror(code), "/runs/r1/checkpoint-last")

    with pytest.raises(SystemExit) as e:
        work()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: /runs/r1/checkpoint-last: ") and needle in err, err
    assert err.count("\n") == 1


def test_a_data_directory_in_a_symlink_loop_is_one_line(tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop")
    p = subprocess.run([sys.executable, "-m", "pet_mtl.train", f"data.dir={loop}", "train.max_steps=1",
                        f"hydra.run.dir={tmp_path / 'run'}", "train.progress=false"], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert str(loop) in p.stderr.strip().splitlines()[-1], p.stderr[-500:]


# ---------------------------------------------------------------- test files checked before training


@pytest.mark.parametrize("first,needle", [
    ("id\tsentence\n", ":1: looks like a header (its id column reads 'id')"),
    ("7\t一段\t多余\n", ":1: expected 2 tab-separated columns"),
], ids=["header", "columns"])
def test_a_broken_test_file_stops_training_before_it_starts(tiny_dir, synthetic_dir, tmp_path, first, needle):
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    test = data / TASKS["ocemotion"].files["a"]
    test.write_text(first + test.read_text(encoding="utf-8"), encoding="utf-8")
    run = tmp_path / "run"
    with pytest.raises(Exception) as e:
        Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={data}", *TRAIN[:-2], "tasks=[ocemotion]",
                         "train.predict_splits=[a]"), run).fit()
    assert f"{test}{needle}" in str(e.value), str(e.value)
    assert not (run / "checkpoint-best").exists()  # nothing was trained


def test_a_predict_that_runs_out_of_room_is_one_line_and_writes_nothing(trained_run, synthetic_dir, tmp_path):
    """A real process under a file-size limit (the kernel's EFBIG, as a full disk gives ENOSPC mid-write): one
    line, exit 2, and no output folder, half or whole."""
    import resource
    import signal

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))

    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "pet_mtl.predict", f"checkpoint={trained_run / 'checkpoint-best'}",
                        f"data.dir={synthetic_dir}", f"output_dir={out}", "save_scores=true", "progress=false",
                        f"hydra.run.dir={tmp_path / 'log'}"], preexec_fn=small_files, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1].startswith("error: File too large (over this process's"), p.stderr
    assert not out.exists() and not [q for q in tmp_path.iterdir() if q.name.startswith(".out")]


def test_a_new_run_into_a_finished_one_is_refused_before_hydra_rewrites_its_record(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("checkpoint-*"))
    (run / ".hydra").mkdir(exist_ok=True)
    (run / ".hydra" / "overrides.yaml").write_text("- seed=3\n", encoding="utf-8")
    p = subprocess.run([sys.executable, "-m", "pet_mtl.train", f"hydra.run.dir={run}", "train.max_steps=1"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        f"error: {run} holds another run's results (metrics.json); resume it with train.resume=true, choose a new "
        "hydra.run.dir, or pass train.overwrite=true to replace them"], p.stderr
    assert (run / ".hydra" / "overrides.yaml").read_text() == "- seed=3\n"
    assert sorted(q.name for q in (run / ".hydra").iterdir()) == ["overrides.yaml"]


def test_overwrite_changes_nothing_a_resume_compares(trained_run, tiny_dir, synthetic_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    summary = Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.max_steps=6",
                               "train.eval_every=3", "train.batch_size=8", "train.progress=false",
                               "train.predict_splits=[]", "train.resume=true", "train.overwrite=true"), run).fit()
    assert summary["last"]["step"] == 6
