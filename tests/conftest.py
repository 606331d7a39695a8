"""Shared fixtures: a tiny random BERT built on the fly, and small synthetic competition-format data sets."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from pet_mtl.backbones.loading import build_tiny
from pet_mtl.core.tasks import TASKS
from pet_mtl.prompts import PATTERNS_ROOT

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FILLER = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理"
KEYS = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰"  # one keyword character per label: the label is recoverable from the text


def _filler(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(FILLER) for _ in range(n))


def synthetic_rows(task: str, per_label: int, seed: int, labelled: bool = True) -> list[tuple[str, ...]]:
    """Rows where the label's keyword character sits somewhere in the (last) text field."""
    rng = random.Random(f"{seed}/{task}")
    t = TASKS[task]
    rows = []
    for k, code in enumerate(t.labels):
        for _ in range(per_label):
            text = _filler(rng, rng.randint(4, 10))
            pos = rng.randint(0, len(text))
            text = text[:pos] + KEYS[k] + text[pos:]
            fields = (_filler(rng, rng.randint(6, 12)), text) if len(t.fields) == 2 else (text,)
            rows.append((*fields, code) if labelled else fields)
    rng.shuffle(rows)
    return rows


def write_tsv(path: Path, rows, start_id: int = 0, newline: str = "\n") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        for i, row in enumerate(rows):
            fh.write("\t".join([str(start_id + i), *row]) + newline)
    return path


def write_synthetic(directory: Path, per_label: dict[str, int], seed: int = 0, test_rows: int = 12) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, t in TASKS.items():
        write_tsv(directory / t.files["train"], synthetic_rows(name, per_label[name], seed))
        test = [r[:-1] for r in synthetic_rows(name, 2, seed + 1)][:test_rows]
        write_tsv(directory / t.files["a"], test, start_id=100)
        write_tsv(directory / t.files["b"], list(reversed(test)), start_id=500)
    return directory


def pattern_texts() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in PATTERNS_ROOT.rglob("*") if p.is_file()]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A random 2-layer BERT + character tokenizer that covers the synthetic data, the patterns and the demo."""
    d = tmp_path_factory.mktemp("tiny")
    demo = Path(__file__).resolve().parents[1] / "examples" / "demo"
    texts = [FILLER, KEYS, "[]{}()#@测试样例子句长短，。？！"] + pattern_texts()
    texts += [p.read_text(encoding="utf-8") for p in demo.glob("*.csv")]
    build_tiny(d, texts, hidden=32, layers=2, heads=2, seed=0)
    return d


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    from pet_mtl.backbones.loading import load_pretrained

    return load_pretrained(tiny_dir)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("synthetic"), {"ocnli": 40, "ocemotion": 20, "tnews": 12})


@pytest.fixture(scope="session")
def fewclue_dir(synthetic_dir, tmp_path_factory) -> Path:
    """FewCLUE-shaped files for ocnli and tnews whose texts are taken from the synthetic training files."""
    from helpers import write_fewclue

    return write_fewclue(tmp_path_factory.mktemp("fewclue"), synthetic_dir)


@pytest.fixture(scope="session")
def trained_run(tiny_dir, synthetic_dir, tmp_path_factory) -> Path:
    """A short real training run (6 steps, evaluated at 3 and 6) of the default method: its run directory.
    Tests that damage its files work on copies; a test that edits one in place restores it."""
    from helpers import make_cfg

    from pet_mtl.training.trainer import Trainer

    run = tmp_path_factory.mktemp("trained-run")
    Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.max_steps=6", "train.eval_every=3",
                     "train.batch_size=8", "train.progress=false", "train.predict_splits=[]"), run).fit()
    return run


def pytest_configure(config) -> None:
    """Under pytest-xdist each worker (and every process it starts) computes on one thread: the default, one thread
    per core in every worker, oversubscribes the cores and spins."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


def pytest_sessionfinish(session) -> None:
    """A worker hands its rows of the compatibility matrix to the controller, which prints the table."""
    import zoo

    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["backbone_matrix"] = json.dumps(zoo.MATRIX)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    import zoo

    for arch, row in json.loads(getattr(node, "workeroutput", {}).get("backbone_matrix", "{}")).items():
        zoo.MATRIX.setdefault(arch, {}).update(row)


def pytest_terminal_summary(terminalreporter) -> None:
    """The backbone compatibility matrix (tests/test_backbones.py), when those tests ran."""
    import zoo

    if not zoo.MATRIX:
        return
    columns = ["pet", "heads", "cln", "pet_cln", "oracle", "zero-shot", "pretrain", "aux MLM"]
    seen = [c for c in columns if any(c in row for row in zoo.MATRIX.values())]
    terminalreporter.section("backbone compatibility matrix")
    terminalreporter.write_line("| architecture | " + " | ".join(seen) + " |")
    terminalreporter.write_line("|---" * (len(seen) + 1) + "|")
    order = [*zoo.ARCHITECTURES, *zoo.CAUSAL_ARCHITECTURES]
    for arch, row in sorted(zoo.MATRIX.items(), key=lambda item: order.index(item[0]) if item[0] in order else 99):
        terminalreporter.write_line(f"| {arch} | " + " | ".join(row.get(c, "-") for c in seen) + " |")
