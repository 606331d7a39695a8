"""Unlabelled data (data.unlabelled) and PET's auxiliary MLM loss (train.mlm_weight)."""
from __future__ import annotations

import gzip
import json
import logging
import shutil

import pytest
import test_scoring
from helpers import make_cfg
from test_pretrain import corpus_lines

from pet_mtl.backbones.loading import load_pretrained
from pet_mtl.core.errors import ConfigError
from pet_mtl.data.corpus import Corpus
from pet_mtl.data.regimes import load_task_data
from pet_mtl.data.unlabelled import never_read, sources
from pet_mtl.training.trainer import Trainer


def test_sources_resolve_test_files_and_never_read_validation_rows(synthetic_dir, tmp_path):
    train_file = synthetic_dir / "OCEMOTION_train.csv"
    cfg = make_cfg(f"data.dir={synthetic_dir}", f"data.unlabelled.ocemotion=[a,{train_file}]",
                   "data.unlabelled.tnews=[b]")
    data = load_task_data(cfg)
    files = sources(cfg, data)
    assert [(f.path.name, f.kind, f.task.name) for f in files] == [
        ("OCEMOTION_a.csv", "competition", "ocemotion"), ("OCEMOTION_train.csv", "competition", "ocemotion"),
        ("tnews_test_B.csv", "competition", "tnews")]
    corpus = Corpus(files, 0, 0.0, 0.0)
    read = {corpus.next_doc().segments for _ in range(2000)}  # every file several times over
    val = never_read(data)["ocemotion"]
    train = {(ex.fields["text"].strip(),) for ex in data["ocemotion"].train}
    assert val and not read & val  # the validation rows of the training file are never read
    assert train <= read  # its other rows are
    with pytest.raises(ConfigError, match="plain text, but a ocnli row has 2 texts"):
        text = tmp_path / "x.txt"
        text.write_text("甲乙\n", encoding="utf-8")
        sources(make_cfg(f"data.dir={synthetic_dir}", f"data.unlabelled.ocnli=[{text}]"), data)
    with pytest.raises(ConfigError, match="train.mlm_weight > 0 needs unlabelled text"):
        Trainer(make_cfg(f"data.dir={synthetic_dir}", "train.mlm_weight=0.1", "train.progress=false"), tmp_path / "r")


def test_auxiliary_mlm_loss_falls_and_label_scores_still_match_the_oracle(tiny_dir, synthetic_dir, tmp_path, caplog):
    text = tmp_path / "tnews_unlabelled.txt.gz"
    with gzip.open(text, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(corpus_lines(2000)) + "\n")
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="pet_mtl"):
        Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.mlm_weight=1.0",
                         f"data.unlabelled.tnews=[{text},a]", "train.mlm_batch_size=8", "train.max_steps=60",
                         "train.eval_every=20", "train.batch_size=8", "train.lr=3e-3", "train.progress=false",
                         "train.predict_splits=[]", "train.calibrate=false"), run).fit()
    history = json.loads((run / "metrics.json").read_text())["history"]
    mlm = [e["mlm_loss"] for e in history]
    assert len(mlm) == 3 and mlm[-1] < 0.8 * mlm[0]
    assert f"auxiliary MLM: {text} (text, tnews" in caplog.text
    # the masked LM that learned from unlabelled text still scores labels exactly as a plain forward does
    plain = tmp_path / "plain"
    shutil.copytree(run / "checkpoint-best" / "model", plain)
    for f in (run / "checkpoint-best" / "tokenizer").iterdir():
        shutil.copy(f, plain / f.name)
    test_scoring.test_scores_equal_a_plain_masked_lm_forward(plain, load_pretrained(plain), "word", "logsumexp")


def test_each_kind_of_source_is_read_for_its_task_and_weighted_by_its_size(synthetic_dir, tmp_path):
    """CLUE JSON lines keep a pair a pair, plain text is one row a line, and a file's share of the draws follows
    its size (so rows are drawn about uniformly over all files)."""
    pairs = tmp_path / "ocnli.json"
    pairs.write_text("".join(json.dumps({"sentence1": f"前提{i}", "sentence2": f"假设{i}", "label": "neutral"},
                                        ensure_ascii=False) + "\n" for i in range(40)), encoding="utf-8")
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    small.write_text("".join(f"短{i}\n" for i in range(10)), encoding="utf-8")
    big.write_text("".join(f"长{i}\n" for i in range(90)), encoding="utf-8")
    cfg = make_cfg(f"data.dir={synthetic_dir}", f"data.unlabelled.ocnli=[{pairs}]",
                   f"data.unlabelled.tnews=[{small},{big}]")
    files = sources(cfg, load_task_data(cfg))
    assert [(f.path.name, f.kind, f.task.name) for f in files] == [
        ("ocnli.json", "clue", "ocnli"), ("small.txt", "text", "tnews"), ("big.txt", "text", "tnews")]
    assert [f.weight for f in files] == [float(p.stat().st_size) for p in (pairs, small, big)]
    corpus = Corpus(files, 0, 0.0, 0.0)
    docs = [corpus.next_doc().segments for _ in range(3000)]
    assert all(len(d) == 2 for d in docs if d[0].startswith("前提"))
    drawn = {name: sum(d[0].startswith(name) for d in docs) for name in ("前提", "短", "长")}
    share = {n: files[i].weight / sum(f.weight for f in files) for i, n in enumerate(("前提", "短", "长"))}
    for name in drawn:
        assert abs(drawn[name] / len(docs) - share[name]) < 0.05, (drawn, share)


def test_a_test_split_that_is_not_there_is_named(synthetic_dir, tmp_path):
    empty = tmp_path / "data"
    shutil.copytree(synthetic_dir, empty)
    (empty / "TNEWS_a.csv").unlink()
    cfg = make_cfg(f"data.dir={empty}", "data.unlabelled.tnews=[a]")
    with pytest.raises(ConfigError, match=r"data.unlabelled.tnews: a is .*TNEWS_a.csv, which does not exist"):
        sources(cfg, load_task_data(cfg))
