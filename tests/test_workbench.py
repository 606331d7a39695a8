"""Label words of any length and number, and the pattern workbench (`python -m pet_mtl.patterns`)."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import KEYS
from helpers import make_cfg

from pet_mtl.core.tasks import TASKS
from pet_mtl.methods.features import ClozeFeaturizer
from pet_mtl.prompts import (
    PATTERNS_ROOT,
    Pattern,
    PatternSpec,
    load_pattern,
    load_pattern_set,
)
from pet_mtl.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"


def workbench(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "pet_mtl.patterns", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


@pytest.mark.parametrize("verbalizer,rule,warns", [("mixed", "padded", True), ("mixed", "word_mean", False),
                                                   ("mixed", "word", False), ("default", "padded", False)])
def test_mixed_token_counts_under_the_padded_rule_warn(tiny, caplog, verbalizer, rule, warns):
    tok, _ = tiny
    p = load_pattern("tnews", PatternSpec("tnews/topic.j2", verbalizer), scoring=rule)
    with caplog.at_level(logging.WARNING, logger="pet_mtl"):
        featurizer = ClozeFeaturizer(tok, {"tnews": [p]}, 64)
    assert bool(featurizer.warnings()) == warns and ("different token counts" in caplog.text) == warns
    if warns:
        assert "4: 民间故事, 电竞游戏" in caplog.text and "use scoring: word (the default)" in caplog.text


def test_several_words_per_label_are_described_and_may_not_repeat(tiny):
    tok, _ = tiny
    p = load_pattern("tnews", PatternSpec("tnews/topic.j2", "synonyms"))
    line = ClozeFeaturizer(tok, {"tnews": [p]}, 64).describe()[0]
    assert "104=财经[财 经]|经济[经 济]" in line
    words = yaml.safe_load((PATTERNS_ROOT / "tnews" / "verbalizers.yaml").read_text())["synonyms"]
    from pet_mtl.core.errors import PatternError

    with pytest.raises(PatternError, match="labels 100 and 101 share the word '故事'"):
        Pattern("tnews", "t", "{{ mask }}{{ title }}", {**words, "101": ["文化", "故事"]}, origin="t.j2")
    with pytest.raises(PatternError, match="label 101 lists the word '文化' twice"):
        Pattern("tnews", "t", "{{ mask }}{{ title }}", {**words, "101": ["文化", "文化"]}, origin="t.j2")


@pytest.fixture
def user_root(tmp_path):
    """A user's pattern library: its own tnews/topic.j2 (shadowing the shipped one) and a set file."""
    root = tmp_path / "my_patterns"
    (root / "tnews").mkdir(parents=True)
    (root / "tnews" / "topic.j2").write_text("{{ title }}。这条新闻说的是{{ mask }}。", encoding="utf-8")
    shutil.copy(PATTERNS_ROOT / "tnews" / "verbalizers.yaml", root / "tnews")
    (root / "sets").mkdir()
    (root / "sets" / "mine.yaml").write_text(
        "ocnli:\n  - ocnli/question.j2\nocemotion:\n  - ocemotion/feel.j2\ntnews:\n"
        "  - {template: tnews/topic.j2, verbalizer: mixed, scoring: word_mean}\n", encoding="utf-8")
    return root


def test_layered_roots_find_the_users_patterns_first_and_the_shipped_ones_still(user_root):
    loaded = load_pattern_set(yaml.safe_load((user_root / "sets" / "mine.yaml").read_text()), list(TASKS),
                              [user_root])
    assert loaded["tnews"][0].origin == str(user_root / "tnews" / "topic.j2") and "说的是" in loaded["tnews"][0].source
    assert loaded["tnews"][0].scoring == "word_mean"
    assert loaded["ocnli"][0].origin == str(PATTERNS_ROOT / "ocnli" / "question.j2")


def test_a_training_run_uses_a_set_from_the_users_root(user_root, tiny_dir, synthetic_dir, tmp_path):
    p = subprocess.run([sys.executable, "-m", "pet_mtl.train", f"pattern_roots=[{user_root}]", "patterns=mine",
                        f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.max_steps=1",
                        "train.progress=false", "train.predict_splits=[]", f"hydra.run.dir={tmp_path / 'run'}"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "pattern tnews/topic@mixed: slot of 4 token(s), scoring word_mean" in log


def test_the_old_pattern_root_spelling_still_works(user_root, tiny_dir, synthetic_dir, tmp_path, caplog):
    cfg = make_cfg(f"pattern_root={user_root}", f"model.path={tiny_dir}", f"data.dir={synthetic_dir}",
                   "train.predict_splits=[]")
    with caplog.at_level(logging.WARNING, logger="pet_mtl"):
        trainer = Trainer(cfg, tmp_path)
    assert "pattern_root is deprecated" in caplog.text
    assert trainer.patterns["tnews"][0].origin == str(user_root / "tnews" / "topic.j2")


def test_check_passes_the_shipped_library_and_fails_on_a_broken_file_anywhere(user_root, tiny_dir):
    ok = workbench("check", "default", "ensemble", "--model", str(tiny_dir))
    assert ok.returncode == 0 and "all patterns valid" in ok.stdout, ok.stdout + ok.stderr
    assert "different token counts" not in ok.stderr  # the default rule, word, ignores the padding
    (user_root / "tnews" / "loop.j2").write_text("{{ mask }}\n{% for c in title %}{{ c }}{% endfor %}", encoding="utf-8")
    (user_root / "ocemotion").mkdir()
    (user_root / "ocemotion" / "feel.j2").write_text("{{ text }}{{ mask }}", encoding="utf-8")
    (user_root / "ocemotion" / "verbalizers.yaml").write_text(
        "default:\n" + "".join(f"  {c}: 开心\n" for c in TASKS["ocemotion"].labels), encoding="utf-8")
    bad = workbench("check", "--roots", str(user_root))
    assert bad.returncode == 1
    assert f"error: {user_root / 'tnews' / 'loop.j2'}:2: loops are refused" in bad.stdout
    assert "labels like and happiness share the word '开心'" in bad.stdout
    assert "problem(s)" in bad.stdout.splitlines()[-1]


def test_preview_shows_what_the_model_sees(tiny_dir):
    p = workbench("preview", "--task", "ocnli", "-n", "2", "--model", str(tiny_dir), "--max-length", "24",
                  "--data-dir", str(DEMO))
    assert p.returncode == 0, p.stderr
    first = (DEMO / "OCNLI_train.csv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert "pattern ocnli/question_pair: slot of 2 token(s)" in p.stdout
    assert "model sees: [CLS] " in p.stdout and "[MASK] [MASK]" in p.stdout
    assert "[MASK] [MASK] ， [SEP] " in p.stdout  # the default OCNLI pattern is a sentence pair
    assert f"ocnli {first[0]} (label {first[3]})" in p.stdout
    assert " ".join(first[2][:2]) in p.stdout or "(cut from" in p.stdout


def test_zero_shot_reports_every_rule_and_the_predicted_labels(tiny_dir):
    p = workbench("zero-shot", "--model", str(tiny_dir), "--data-dir", str(DEMO), "--tasks", "tnews",
                  "--template", "tnews/topic.j2", "--verbalizer", "mixed", "--rows", "30")
    assert p.returncode == 0, p.stderr
    rows = [line for line in p.stdout.splitlines() if line.startswith("| tnews |")]
    assert [r.split(" | ")[2] for r in rows] == ["padded", "word", "word_mean"]
    assert all(":" in r.split(" | ")[5] for r in rows)  # the predicted-label distribution


def test_zero_shot_reports_the_score_of_the_models_own_predictions(tiny_dir, tmp_path):
    """The table's macro-F1 and accuracy against an oracle that shares no code with pet_mtl: the model's own
    AutoModelForMaskedLM forward on the literal text `title[MASK]`, the label word's probability at the mask, and
    scikit-learn's macro-F1 (the mean F1 over the labels in gold or predicted) written out here."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    root = tmp_path / "root"
    (root / "tnews").mkdir(parents=True)
    (root / "tnews" / "slot.j2").write_text("{{ title }}{{ mask }}", encoding="utf-8")
    words = dict(zip(TASKS["tnews"].labels, KEYS))  # one token each: every scoring rule gives the same scores
    (root / "tnews" / "verbalizers.yaml").write_text(yaml.safe_dump({"default": words}, allow_unicode=True),
                                                     encoding="utf-8")
    titles = ["今天的比赛很精彩", "股市大涨", "新车发布会", "学校开学了", "军队演习", "游戏上线", "房价下跌",
              "农民丰收", "科技新品", "旅游旺季", "国际会议", "文化节开幕"]
    gold = [TASKS["tnews"].labels[i % 15] for i in range(len(titles))]
    data = tmp_path / "tnews.tsv"
    data.write_text("".join(f"{i}\t{t}\t{g}\n" for i, (t, g) in enumerate(zip(titles, gold))), encoding="utf-8")
    p = workbench("zero-shot", "--model", str(tiny_dir), "--tasks", "tnews", "--file", str(data), "--roots",
                  str(root), "--template", "tnews/slot.j2", "--rules", "word", "--rows", "100")
    assert p.returncode == 0, p.stderr
    row = next(line for line in p.stdout.splitlines() if line.startswith("| tnews |")).split(" | ")

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    mlm = AutoModelForMaskedLM.from_pretrained(tiny_dir).eval()
    ids = [tok.convert_tokens_to_ids(w) for w in words.values()]
    predicted = []
    for title in titles:
        enc = tok(title + tok.mask_token, return_tensors="pt")
        with torch.no_grad():
            logits = mlm(**enc).logits[0, enc["input_ids"][0].tolist().index(tok.mask_token_id)]
        predicted.append(list(words)[int(logits[ids].argmax())])
    f1s = []
    for label in set(gold) | set(predicted):
        tp = sum(g == q == label for g, q in zip(gold, predicted))
        fp, fn = predicted.count(label) - tp, gold.count(label) - tp
        f1s.append(2 * tp / (2 * tp + fp + fn))
    assert float(row[3]) == pytest.approx(sum(f1s) / len(f1s), abs=1e-4)
    assert float(row[4]) == pytest.approx(sum(g == q for g, q in zip(gold, predicted)) / len(gold), abs=1e-4)


def test_search_verbalizers_finds_the_words_a_model_was_taught(tiny_dir, synthetic_dir, tmp_path):
    """Teach a tiny model to answer each TNEWS label with a keyword, then search among the keywords and
    distractors: the search must give every label its own keyword back."""
    root = tmp_path / "root"
    (root / "tnews").mkdir(parents=True)
    (root / "tnews" / "slot.j2").write_text("{{ title }}{{ mask }}", encoding="utf-8")
    taught = dict(zip(TASKS["tnews"].labels, KEYS))
    (root / "tnews" / "verbalizers.yaml").write_text(yaml.safe_dump({"default": taught}, allow_unicode=True),
                                                     encoding="utf-8")
    cfg = make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "tasks=[tnews]", f"pattern_roots=[{root}]",
                   "patterns.tnews=[tnews/slot.j2]", "train.lr=3e-3", "train.max_steps=150", "train.batch_size=16",
                   "train.eval_every=0", "train.progress=false", "train.predict_splits=[]", "data.val_size=0.25",
                   "train.checkpoint_last=none")
    Trainer(cfg, tmp_path / "run").fit()
    model = tmp_path / "run" / "checkpoint-best" / "model"
    for f in (tmp_path / "run" / "checkpoint-best" / "tokenizer").iterdir():
        shutil.copy(f, model)
    (tmp_path / "words.txt").write_text("\n".join([*KEYS, *"的一是在不了有和人这中大为上个"]), encoding="utf-8")
    out = root / "tnews" / "verbalizers.yaml"  # the file already holds the taught words, as `default`
    search = ["search-verbalizers", "--task", "tnews", "--model", str(model), "--data-dir", str(synthetic_dir),
              "--roots", str(root), "--template", "tnews/slot.j2", "--tokens", "1", "--words",
              str(tmp_path / "words.txt"), "--out", str(out)]
    p = workbench(*search)
    assert p.returncode == 0, p.stderr
    kept = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert kept["default"] == taught  # added beside the file's verbalizer, never over it
    found = kept["searched"]
    assert sum(found[c] == taught[c] for c in taught) >= 13, (found, p.stdout)  # of 15 labels
    assert "zero-shot on" in p.stdout and "found verbalizer (this search): macro-F1" in p.stdout
    assert (f"use it: {{template: tnews/slot.j2, verbalizer: searched}} under tnews: in a pattern set, with "
            f"pattern_roots=[{root}]") in p.stdout
    # the name is taken now: refused (before any search) unless --replace
    again = workbench(*search)
    assert again.returncode == 2 and "has a verbalizer named 'searched' already; pass --replace" in again.stderr
    # a found verbalizer of a user's file is used by name from the shipped template too: the library layers
    from pet_mtl.prompts import load_pattern
    from pet_mtl.prompts.pattern import PatternSpec

    shipped = load_pattern("tnews", PatternSpec("tnews/topic.j2", "searched"), [root])
    assert shipped.verbalizer == found and shipped.origin.endswith("pattern_library/tnews/topic.j2")
