"""python -m pet_mtl.pretrain: packing, masking, the corpus stream, a real tiny pretraining run, its output
loaded by train and by a plain AutoModelForMaskedLM, bad lines, and SIGKILL + resume."""
from __future__ import annotations

import gzip
import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FILLER
from helpers import run_and_interrupt
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM

from pet_mtl.cli import CONF_DIR
from pet_mtl.core.errors import DataError
from pet_mtl.core.tasks import TASKS
from pet_mtl.data.corpus import Corpus, Doc, build_sources, competition_rows_to_skip
from pet_mtl.data.packing import (
    MaskedStream,
    Masking,
    Packer,
    Segmenter,
    encode_doc,
    mask_sequence,
)
from pet_mtl.data.readers import read_tsv, stratified_split

#: 30 three-character "words": a corpus of them is learnable in a few dozen steps by a tiny model
WORDS = [FILLER[i:i + 3] for i in range(0, 90, 3)]


def corpus_lines(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]


def pretrain_cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="pretrain", overrides=list(overrides))


def base_overrides(model: Path, out: Path, text: Path) -> list[str]:
    return [f"model.path={model}", f"out_dir={out}", f"text=[{text}]", "data.max_length=32", "data.eval_docs=60",
            "data.held_out_fraction=0.05", "train.batch_size=8", "train.lr=3e-3", "train.warmup_ratio=0",
            "train.progress=false", "train.log_every=0"]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "words.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(corpus_lines(1500)) + "\n")
    return path


# -- packing and masking ---------------------------------------------------------------------------------------


def test_packing_never_crosses_max_length_and_loses_no_text(tiny):
    tokenizer, _ = tiny
    rng = random.Random(3)
    docs = [Doc((FILLER[:rng.randint(1, 150)],) if i % 3 else (FILLER[:rng.randint(1, 20)], FILLER[5:rng.randint(6, 40)]),
                f"x:{i}") for i in range(200)]
    packer = Packer(24, tokenizer.cls_token_id)
    encoded = [encode_doc(d, tokenizer, None) for d in docs]
    sequences = [s for e in encoded for s in packer.add(e)]
    assert sequences and all(len(ids) == len(types) == len(starts) == 24 for ids, types, starts in sequences)
    assert all(ids[0] == tokenizer.cls_token_id for ids, _, _ in sequences)
    emitted = [t for ids, _, _ in sequences for t in ids[1:]] + packer.state.ids
    assert emitted == [t for e in encoded for t in e.ids]  # nothing lost, nothing reordered
    emitted_types = [t for _, types, _ in sequences for t in types[1:]] + packer.state.types
    assert emitted_types == [t for e in encoded for t in e.types]
    pair = encode_doc(Doc(("甲乙", "丙丁戊"), "x"), tokenizer, None)
    assert pair.types == [0, 0, 0, 1, 1, 1, 1] and pair.ids.count(tokenizer.sep_token_id) == 2


def masked_runs(labels: list[int]) -> list[int]:
    runs, n = [], 0
    for label in labels + [-100]:
        if label != -100:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


def test_ngram_masking_masks_spans_at_the_configured_rate(tiny):
    tokenizer, _ = tiny
    special = frozenset(tokenizer.all_special_ids)
    ids = [tokenizer.cls_token_id] + tokenizer.convert_tokens_to_ids(list(FILLER[:127]))
    stats = {}
    for max_ngram in (1, 3):
        masking = Masking(max_ngram=max_ngram)
        masked = total = mask_tokens = 0
        runs: list[int] = []
        for k in range(400):
            inputs, labels = mask_sequence(ids, [True] * len(ids), special, len(tokenizer), masking,
                                           random.Random(f"t/{k}"))
            assert labels[0] == -100 and inputs[0] == ids[0]  # [CLS] is never masked
            assert all(lab in (-100, orig) for lab, orig in zip(labels, ids))
            masked += sum(lab != -100 for lab in labels)
            mask_tokens += sum(i == -1 for i in inputs)  # MASK_PLACEHOLDER
            total += len(ids) - 1
            runs += masked_runs(labels)
        stats[max_ngram] = (masked / total, sum(runs) / len(runs), mask_tokens / masked)
    for rate, _, as_mask in stats.values():
        assert abs(rate - 0.15) < 0.005
        assert abs(as_mask - 0.8) < 0.03
    assert stats[1][1] < 1.25 < 1.5 < stats[3][1]  # single tokens (adjacent ones merge now and then) vs spans


def test_whole_word_masking_masks_every_word_whole(tiny):
    tokenizer, _ = tiny
    seg = Segmenter()
    special = frozenset(tokenizer.all_special_ids)
    rng = random.Random(5)
    texts = ["".join(rng.choice(FILLER[:200]) for _ in range(rng.randint(20, 60))) for _ in range(300)]
    masking = Masking(unit="word")
    masked = total = words_seen = 0
    for k, text in enumerate(texts):
        enc = encode_doc(Doc((text,), "x"), tokenizer, seg)
        ids, starts = [tokenizer.cls_token_id] + enc.ids, [True] + enc.starts
        _, labels = mask_sequence(ids, starts, special, len(tokenizer), masking, random.Random(k))
        pos = 1  # the tiny tokenizer has one token per character: character i is token i + 1
        for word in seg._cut(text):
            chosen = {labels[pos + i] != -100 for i in range(len(word))}
            assert len(chosen) == 1, f"{word!r} partly masked in {text!r}"
            words_seen += len(word) > 1
            pos += len(word)
        masked += sum(lab != -100 for lab in labels)
        total += len(ids) - 2
    assert words_seen > 1000  # jieba did find words to keep whole
    assert abs(masked / total - 0.15) < 0.01


def test_masking_is_a_function_of_seed_and_sequence_index(tiny):
    tokenizer, _ = tiny
    docs = [Doc((line,), f"x:{i}") for i, line in enumerate(corpus_lines(60))]
    a = MaskedStream(iter(docs), tokenizer, 32, Masking(), seed=1).batch(8)
    b = MaskedStream(iter(docs), tokenizer, 32, Masking(), seed=1).batch(8)
    c = MaskedStream(iter(docs), tokenizer, 32, Masking(), seed=2).batch(8)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["labels"], c["labels"])
    assert a["input_ids"].shape == (8, 32) and bool(a["attention_mask"].all())


# -- the corpus ------------------------------------------------------------------------------------------------


def test_held_out_and_validation_rows_are_never_trained_on(synthetic_dir, tmp_path):
    text = [str(synthetic_dir)]
    skip = competition_rows_to_skip(text, 0.1, 42, None, 1000)
    corpus = Corpus(build_sources(text, skip), seed=0, eval_fraction=0.1, max_bad_fraction=0.0)
    held = {d.where for docs in corpus.eval_slice_docs(10_000).values() for d in docs}
    trained = {corpus.next_doc().where for _ in range(3000)}  # several passes over every file
    assert held and trained and not held & trained
    assert all(f["passes"] >= 1 for f in corpus.report())
    task = TASKS["ocnli"]
    path = synthetic_dir / task.files["train"]
    val = stratified_split(read_tsv(path, task, labelled=True), 0.1, 42)[1]
    val_lines = {ex.source for ex in val}
    assert val_lines and not val_lines & (held | trained)
    rows = {ex.source for ex in read_tsv(path, task, labelled=True)}
    assert rows - val_lines <= held | trained  # every other row is read (trained on or held out)


def test_resumed_corpus_continues_exactly(corpus_file):
    sources = build_sources([str(corpus_file), {"path": str(corpus_file.parent / "*.gz"), "weight": 2}])
    a = Corpus(sources, 7, 0.05, 0.0)
    first = [a.next_doc() for _ in range(700)]
    b = Corpus(sources, 7, 0.05, 0.0)
    b.restore(type(a.state).from_json(json.loads(json.dumps(a.state.to_json()))))
    assert [a.next_doc() for _ in range(2500)] == [b.next_doc() for _ in range(2500)]
    assert len(first) == 700 and max(f.passes for f in a.state.files) >= 1  # across the end of a pass


def test_a_line_that_is_not_utf8_is_counted_and_named(tmp_path, caplog):
    path = tmp_path / "mixed.txt"
    lines = [line.encode() for line in corpus_lines(50)]
    lines[2] = b"\xff\xfe broken"
    path.write_bytes(b"\n".join(lines) + b"\n")
    corpus = Corpus(build_sources([str(path)]), 0, 0.01, 0.05)
    with caplog.at_level(logging.WARNING, logger="pet_mtl"):
        for _ in range(120):
            corpus.next_doc()
    assert f"{path}:3: not valid UTF-8" in caplog.text
    assert corpus.report()[0]["bad_lines"] == 1  # counted once, though the file was read twice
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\n".join(b"\xff" if i % 50 == 7 else line.encode()
                               for i, line in enumerate(corpus_lines(2000))) + b"\n")
    corpus = Corpus(build_sources([str(bad)]), 0, 0.01, 0.01)
    with pytest.raises(DataError, match=rf"{bad}:\d+: .* bad, over data.max_bad_fraction=0.01"):
        for _ in range(3000):
            corpus.next_doc()


# -- a real run ------------------------------------------------------------------------------------------------


def test_tiny_model_pretrains_and_its_output_loads_everywhere(tiny_dir, corpus_file, synthetic_dir, tmp_path):
    from helpers import make_cfg

    from pet_mtl.pretraining.pretrainer import Pretrainer
    from pet_mtl.training.trainer import Trainer

    out = tmp_path / "adapted"
    cfg = pretrain_cfg(*base_overrides(tiny_dir, out, corpus_file), "train.max_steps=60", "train.eval_every=30",
                       "train.save_every=30")
    summary = Pretrainer(cfg, out).fit()
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [e["step"] for e in history] == [0, 30, 60]
    assert history[-1]["loss"] < 0.75 * history[0]["loss"]  # held-out masked-token loss falls (6.7 -> 4.8)
    assert summary["last"]["pseudo_perplexity"] == history[-1]["pseudo_perplexity"]
    assert not (out / "checkpoint-last").exists()  # removed once finished (train.keep_checkpoint=false)
    card = (out / "README.md").read_text()
    assert "finished, step 60 of 60" in card and str(corpus_file) in card
    plain = AutoModelForMaskedLM.from_pretrained(out)  # a standard Hugging Face directory
    saved = load_file(out / "model.safetensors")
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in saved.items())
    run = tmp_path / "train-run"
    Trainer(make_cfg(f"model.path={out}", f"data.dir={synthetic_dir}", "train.max_steps=2", "train.eval_every=0",
                     "train.batch_size=8", "train.progress=false", "train.predict_splits=[]"), run).fit()
    assert json.loads((run / "metrics.json").read_text())["finished"]


def test_random_init_from_a_tokenizer(tiny_dir, corpus_file, tmp_path):
    from pet_mtl.pretraining.pretrainer import Pretrainer

    out = tmp_path / "scratch"
    overrides = [o for o in base_overrides(tiny_dir, out, corpus_file) if not o.startswith("model.path")]
    cfg = pretrain_cfg(*overrides, f"model.tokenizer={tiny_dir}", "model.init.layers=1", "model.init.hidden=16",
                       "train.max_steps=3", "train.eval_every=0")
    Pretrainer(cfg, out).fit()
    config = json.loads((out / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"]) == (1, 16)
    assert "random weights" in (out / "README.md").read_text()


def run_cmd(model: Path, out: Path, text: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pet_mtl.pretrain", *base_overrides(model, out, text), "train.max_steps=40",
            "train.eval_every=10", "train.save_every=4", *extra]


def test_ctrl_c_then_the_out_dir_alone_resumes_to_the_weights_of_an_uninterrupted_run(tiny_dir, corpus_file,
                                                                                      tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    subprocess.run(run_cmd(tiny_dir, full, corpus_file), check=True, env=env, capture_output=True, timeout=300)
    code, err = run_and_interrupt(run_cmd(tiny_dir, stopped, corpus_file, "train.log_every=1"), env,
                                  stopped / "pretrain.log", "step 6/40")
    stopped_at = json.loads((stopped / "checkpoint-last" / "train_state" / "state.json").read_text())["progress"]["step"]
    resume = f"python -m pet_mtl.pretrain out_dir={stopped} train.resume=true"
    assert code == 130 and err.splitlines()[-1] == (
        f"error: interrupted at step {stopped_at} of 40: checkpoint-last (and the model in {stopped}) hold step "
        f"{stopped_at}; go on with: {resume}"), err[-2000:]
    assert 6 <= stopped_at < 40
    p = subprocess.run([sys.executable, *resume.split()[1:]], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"resumed from {stopped / 'checkpoint-last'} at step {stopped_at}" in (stopped / "pretrain.log").read_text()
    a = load_file(full / "model.safetensors")
    b = load_file(stopped / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("train_seconds", "tokens_per_s")} for e in h]
    ha = json.loads((full / "metrics.json").read_text())
    hb = json.loads((stopped / "metrics.json").read_text())
    assert strip(ha["history"]) == strip(hb["history"]) and ha["files"] == hb["files"]


def test_resume_refuses_a_changed_config(tiny_dir, corpus_file, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run(run_cmd(tiny_dir, out, corpus_file, "train.max_steps=4", "train.keep_checkpoint=true"), check=True,
                   env=env, capture_output=True, timeout=300)
    record = (out / ".hydra" / "config.yaml").read_text(), (out / ".hydra" / "overrides.yaml").read_text()
    p = subprocess.run(run_cmd(tiny_dir, out, corpus_file, "train.max_steps=4", "train.keep_checkpoint=true",
                               "train.resume=true", "masking.prob=0.3"), env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2 and "masking.prob: 0.15 -> 0.3" in p.stderr and "cannot change on resume" in p.stderr
    # the refused command wrote nothing into the run: its record is the one that made it
    assert ((out / ".hydra" / "config.yaml").read_text(), (out / ".hydra" / "overrides.yaml").read_text()) == record


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_double_accumulation(tiny_dir, corpus_file, tmp_path):
    from test_distributed import free_port

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    common = [o for o in base_overrides(tiny_dir, tmp_path, corpus_file) if not o.startswith(("model.path", "out_dir"))]
    common += [f"model.tokenizer={tiny_dir}", "model.init.layers=1", "model.init.hidden=32", "model.init.dropout=0",
               "train.max_steps=6", "train.eval_every=3", "train.save_every=3"]
    one, two = tmp_path / "one", tmp_path / "two"
    p = subprocess.run([sys.executable, "-m", "pet_mtl.pretrain", *common, "train.grad_accum=2", f"out_dir={one}"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                        "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "pet_mtl.pretrain", *common,
                        f"out_dir={two}"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "x 2 process(es)" in (two / "pretrain.log").read_text()
    a = json.loads((one / "metrics.json").read_text())
    b = json.loads((two / "metrics.json").read_text())
    assert a["tokens"] == b["tokens"] == 6 * 2 * 8 * 32
    for x, y in zip(a["history"], b["history"], strict=True):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-4)
    wa, wb = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4
