"""What a user sees in a terminal: a mistake on the command line is one line naming the key, the value and what is
expected, printed once, before anything is written."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pet_mtl.cli import check_training_command_line


@pytest.mark.parametrize("argv, expected", [
    (["train.lr=abc"], "error: train.lr=abc: train.lr takes a number, not 'abc'"),
    (["seed=null"], "error: seed=null: seed takes an integer, not null"),
    (["-m", "seed=1,x"], "error: seed=1,x: seed takes an integer, not 'x'"),
    (["train.rdrop=yes please"], "error: train.rdrop=yes please: train.rdrop takes a number, not 'yes please'"),
    (["train.calibrate=maybe"], "error: train.calibrate=maybe: train.calibrate takes true or false, not 'maybe'"),
    (["pattern_roots=/path"], "error: pattern_roots=/path: pattern_roots takes a list, not '/path'; write "
                              "pattern_roots=[/path]"),
    (["train.predict_splits=a"], "train.predict_splits takes a list, not 'a'; write train.predict_splits=[a]"),
    (["patterns=nosuch"], "error: patterns=nosuch: no patterns option 'nosuch'; the options are alt, causal, "
                          "causal_noprefix, default, ensemble, single_segment, soft (a set of your own: "
                          "<root>/sets/<name>.yaml, with pattern_roots=[<root>] on the command line)"),
    (["data=fewclu"], "error: data=fewclu: no data option 'fewclu'; the options are fewclue, full"),
    (["-m", "patterns=default,nosuch"], "no patterns option 'nosuch'"),
    (["pattern_roots=[/nonexistent/roots]", "patterns=myset"],
     "error: pattern_roots: /nonexistent/roots is not a folder (a pattern root holds"),
    (["train.max_step=3"], "error: train.max_step=3: train.max_step is not a config key; did you mean train.max_steps?"),
])
def test_a_command_line_mistake_is_one_line_naming_key_value_and_what_is_expected(argv, expected, capsys):
    with pytest.raises(SystemExit) as e:
        check_training_command_line(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and expected in err and err.count("\n") == 1, err


def test_a_users_pattern_set_is_an_option_and_good_values_pass(tmp_path, capsys):
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "mine.yaml").write_text("tnews: [tnews/topic.j2]\n", encoding="utf-8")
    check_training_command_line([f"pattern_roots=[{tmp_path}]", "patterns=mine", "train.lr=3e-4", "seed=2",
                                 "train.predict_splits=[a,b]", "train.calibrate=false", "model.path=null"])
    assert capsys.readouterr().err == ""


def test_the_error_is_printed_once_and_the_run_directory_is_never_made(tmp_path):
    run = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "pet_mtl.train", "train.lr=abc", f"hydra.run.dir={run}"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 2 and p.stderr == "error: train.lr=abc: train.lr takes a number, not 'abc'\n", p.stderr
    assert not run.exists()
    # an error found inside the run: one `error:` line on the console, the same in train.log
    p = subprocess.run([sys.executable, "-m", "pet_mtl.train", "train.max_steps=0", f"hydra.run.dir={run}"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    problem = "train.max_steps=0: expected null or a number >= 1"
    assert p.returncode == 2 and (p.stdout + p.stderr).count(problem) == 1, p.stdout + p.stderr
    assert f"ConfigError: {problem}" in (run / "train.log").read_text(encoding="utf-8")
    assert not (run / ".pet_mtl.lock").exists()  # a run that failed before training leaves no lock behind


def _train_demo(run, stdout, stderr):
    """The demo job, its bar on (the default), a loss line every step, two evaluations."""
    return subprocess.Popen([sys.executable, "-m", "pet_mtl.train", "train.max_steps=4", "train.eval_every=2",
                             "train.log_every=1", "train.predict_splits=[]", "train.plots=false",
                             f"hydra.run.dir={run}"], stdout=stdout, stderr=stderr,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120"})


def _each_record_once(text: str) -> None:
    for step in (2, 4):
        assert text.count(f"step {step} | ocnli F1") == 1, text
    for step in (1, 2, 3, 4):
        assert text.count(f"step {step}/4 loss") == 1, text


def test_piped_output_has_no_bar_frames_and_each_record_once(tmp_path):
    p = _train_demo(tmp_path / "run", subprocess.PIPE, subprocess.STDOUT)
    out = p.communicate(timeout=300)[0].decode()
    assert p.returncode == 0, out[-3000:]
    assert "\r" not in out
    _each_record_once(out)
    # the log names the backbone and the data first, and where and how the run computes (device and precision: auto)
    demo = Path(__file__).resolve().parents[1] / "examples" / "demo"
    assert "backbone: a tiny random BERT built for the demo (model.path=null)" in out and f"data: {demo}" in out
    assert ("on cuda in " if torch.cuda.is_available() else "on cpu in fp32") in out
    assert "model.path is not set" not in out  # the demo's own data: no warning


def test_the_tiny_model_on_real_data_is_warned_about(tiny_dir, synthetic_dir, tmp_path, caplog):
    from helpers import make_cfg

    from pet_mtl.training.trainer import Trainer

    trainer = Trainer(make_cfg(f"data.dir={synthetic_dir}", "train.max_steps=1", "train.progress=false"), tmp_path)
    lines = trainer.plan()
    trainer.held.release()
    assert f"data: {synthetic_dir} (regime full)" in lines
    assert f"model.path is not set: this run trains the tiny random model built for the demo, which learns next to " \
           f"nothing on {synthetic_dir}" in caplog.text


def test_in_a_terminal_the_bar_shows_and_each_record_prints_once_above_it(tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a new pty is 0 columns wide
    p = _train_demo(tmp_path / "run", slave, slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert p.wait(timeout=300) == 0
    out = b"".join(chunks).decode(errors="replace")
    out = out.replace("\r\n", "\n")  # the terminal's line endings
    assert "\rtrain:" in out and "4/4" in out  # the bar's frames
    _each_record_once(out)


def test_the_workbench_report_and_ensemble_take_the_training_spelling_of_a_key(tmp_path):
    from pet_mtl.cli import key_value_flags

    flags = {"data.dir": "--data-dir", "pattern_roots": "--roots", "output_dir": "--out"}
    assert key_value_flags(["check", "pattern_roots=[a, b]", "data.dir=d", "--rows", "5", "output_dir=o"], flags) == [
        "check", "--roots", "a", "b", "--data-dir", "d", "--rows", "5", "--out", "o"]
    p = subprocess.run([sys.executable, "-m", "pet_mtl.patterns", "check", f"pattern_roots=[{tmp_path}]"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip().endswith("all patterns valid"), p.stderr
