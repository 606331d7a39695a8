"""Every masked LM a user brings: the compatibility matrix (tiny random models of each architecture x each method:
train, reload, predict), the scoring oracle per architecture, zero-shot, pretraining and the auxiliary MLM on a
sentence-pair task, and loading that says what a folder holds. The matrix prints at the end of the run."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import zoo
from conftest import FILLER, KEYS, pattern_texts, write_synthetic
from helpers import make_cfg
from transformers import AutoModelForMaskedLM, AutoTokenizer

from pet_mtl.backbones.contract import Backbone
from pet_mtl.backbones.loading import load_pretrained
from pet_mtl.core.errors import ConfigError, PetMtlError
from pet_mtl.core.tasks import TASKS
from pet_mtl.data.readers import Example
from pet_mtl.inference.checkpoint import load_scorer
from pet_mtl.inference.predictor import score_features
from pet_mtl.methods import build_scorer
from pet_mtl.prompts import Pattern
from pet_mtl.training.trainer import Trainer

ARCHS = list(zoo.ARCHITECTURES)
METHODS = ["pet", "heads", "cln", "pet_cln"]
CPU = dict(pad_to_multiple_of=1, precision="fp32", device=torch.device("cpu"))


def record(arch: str, column: str, result: str = "ok") -> None:
    zoo.MATRIX.setdefault(arch, {})[column] = result


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory):
    """Builds an architecture's tiny model on first use (each is built once per session)."""
    root = tmp_path_factory.mktemp("zoo")
    texts = [FILLER, KEYS, "[]{}()#@测试样例子句长短，。？！这是新闻一段文字甲乙丙丁"] + pattern_texts()
    texts += ["这是体育新闻", "这是财经新闻", "我很开心", "他们在讨论比赛结果", "也许可能是的不是", "电竞农业股票"] * 20
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = zoo.build(name, root / name, texts)
        return built[name]

    return get


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("small"), {"ocnli": 6, "ocemotion": 3, "tnews": 2}, test_rows=4)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arch", ARCHS)
def test_each_architecture_trains_reloads_and_predicts_with_each_method(arch, method, zoo_dir, small_dir, tmp_path):
    """4 steps of the real trainer from the folder, then checkpoint-last reloaded predicts exactly what the
    in-memory model scored, for a sentence-pair task (OCNLI) and a one-text task (TNEWS)."""
    record(arch, method, "fails")
    cfg = make_cfg(f"method={method}", f"model.path={zoo_dir(arch)}", f"data.dir={small_dir}", "train.max_steps=4",
                   "train.batch_size=8", "train.eval_every=4", "train.progress=false", "train.predict_splits=[]",
                   "model.max_length=64", "data.val_size=0.25", "train.lr=1e-3")
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit()
    assert all(torch.isfinite(torch.tensor(e["train_loss"])) for e in trainer.state.history)
    _, meta, featurizer, model = load_scorer(tmp_path / "run" / "checkpoint-last")
    assert meta["method"] == method and type(model.mlm) is type(trainer.model.mlm)
    for task in ("ocnli", "tnews"):
        feats = featurizer.encode(trainer.data[task].val)
        assert feats == trainer.featurizer.encode(trainer.data[task].val)
        ours = score_features(model, feats, 8, featurizer.tokenizer.pad_token_id, **CPU)
        assert torch.equal(ours, score_features(trainer.model, feats, 8, featurizer.tokenizer.pad_token_id, **CPU))
        assert torch.isfinite(ours[:, : TASKS[task].num_labels]).all()
    record(arch, method)


#: a one-text pattern with literal text before the slot, and a pair pattern; words of one and several tokens
TNEWS = Pattern("tnews", "topic", "{{ title }}。这是{{ mask }}新闻。",
                {c: w for c, w in zip(TASKS["tnews"].labels, ["故事", "文化", "娱乐", "体育", "财经", "房产", "汽车",
                                                              "教育", "科技", "军事", "旅游", "国际", "股票", "农业",
                                                              "电竞"])}, origin="topic.j2")
OCNLI = Pattern("ocnli", "pair", "{{ premise }}？{{ mask }}，{{ sep }}{{ hypothesis }}",
                {"0": "是的", "1": ["可能", "也许"], "2": "不是"}, origin="pair.j2")
ROWS = [Example("tnews", "1", {"title": "他们在讨论比赛结果"}, None),
        Example("tnews", "2", {"title": "甲乙丙丁"}, None),
        Example("ocnli", "3", {"premise": "我很开心", "hypothesis": "他们在讨论比赛结果"}, None)]


def oracle(model_dir: Path, pattern: Pattern, example: Example) -> list[float]:
    """Label scores from a plain AutoModelForMaskedLM forward on the literal text: the slot's mask tokens, each word
    tokenized as it reads after this row's own text before the slot, log-softmax at the mask positions, summed over
    the word's tokens, a label's words by log-sum-exp."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    mlm = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    rendered = pattern.render(example)
    before = ""
    for s in rendered.segments:
        if s.is_slot:
            break
        before = "" if s.is_sep else before + s.text

    def in_context(word: str) -> list[int]:
        a = tok(before, add_special_tokens=False)["input_ids"] if before else []
        return tok(before + word, add_special_tokens=False)["input_ids"][len(a):]

    words = {code: [in_context(w) for w in ws] for code, ws in pattern.word_lists().items()}
    slot = max(len(ids) for ws in words.values() for ids in ws)
    parts = rendered.parts(tok.mask_token, slot)
    enc = tok(*parts, return_tensors="pt")
    if mlm.config.type_vocab_size < 2:
        enc.pop("token_type_ids", None)
    start = enc["input_ids"][0].tolist().index(tok.mask_token_id)
    with torch.no_grad():
        logp = mlm(**enc).logits[0, start: start + slot].log_softmax(-1)
    scores = []
    for code in TASKS[pattern.task].labels:
        per_word = torch.stack([sum(logp[i, t] for i, t in enumerate(ids)) for ids in words[code]])
        scores.append(per_word.logsumexp(0).item())
    return scores


@pytest.mark.parametrize("arch", ARCHS)
def test_cloze_scores_equal_the_models_own_forward_on_the_literal_text(arch, zoo_dir):
    path = zoo_dir(arch)
    record(arch, "oracle", "fails")
    tok, mlm = load_pretrained(path)
    featurizer, model = build_scorer("pet", tok, mlm, {"tnews": [TNEWS], "ocnli": [OCNLI]}, ["tnews", "ocnli"], 64)
    model.eval()
    for ex in ROWS:
        pattern = TNEWS if ex.task == "tnews" else OCNLI
        feats = featurizer.encode([ex], with_labels=False)
        ours = score_features(model, feats, 4, tok.pad_token_id, **CPU)[0, : TASKS[ex.task].num_labels]
        expected = torch.tensor(oracle(path, pattern, ex))
        assert torch.allclose(ours, expected, atol=1e-4), (arch, ex.id, (ours - expected).abs().max())
    record(arch, "oracle")


def test_sentencepiece_label_words_are_tokenized_as_they_read_after_the_prompt(zoo_dir):
    """XLM-R's Unigram vocabulary marks a word's start with ▁: alone, 体育 is [▁ 体育]; after 这是 it is [体育], the
    piece the model reads in place of the slot. The featurizer scores the in-context pieces; check says so."""
    tok = AutoTokenizer.from_pretrained(zoo_dir("xlm_roberta"))
    from pet_mtl.methods.features import label_words

    words = label_words(TNEWS, tok)
    sports = TASKS["tnews"].labels.index("103")
    alone = tok("体育", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(alone)[0] == "▁"
    assert words.ids[sports][0][: words.lengths[sports][0]] == tuple(tok("这是体育", add_special_tokens=False)
                                                                     ["input_ids"][len(tok("这是", add_special_tokens=False)["input_ids"]):])
    assert "▁" not in tok.convert_ids_to_tokens(list(words.ids[sports][0][: words.lengths[sports][0]]))
    assert any(note.startswith("体育: in context") for note in words.context_notes)


@pytest.mark.parametrize("arch", ARCHS)
def test_zero_shot_pretraining_and_the_auxiliary_mlm_on_a_sentence_pair_task(arch, zoo_dir, small_dir, tmp_path,
                                                                           capsys):
    """patterns zero-shot on OCNLI; pretraining on OCNLI's premise/hypothesis pairs; train.mlm_weight with OCNLI
    unlabelled pairs: each runs (XLM-R has one token type: the pairs' second segment must not index a second)."""
    path = zoo_dir(arch)
    for column in ("zero-shot", "pretrain", "aux MLM"):
        record(arch, column, "fails")
    from pet_mtl.patterns import main as workbench

    code = workbench(["zero-shot", "--task", "ocnli", "--model", str(path), "--data-dir", str(small_dir), "--rows", "12"])
    out = capsys.readouterr()
    assert code == 0 and "macro-F1" in out.out, out.err[-1500:]
    record(arch, "zero-shot")

    from test_pretrain import pretrain_cfg

    from pet_mtl.pretraining.pretrainer import Pretrainer

    ocnli = small_dir / TASKS["ocnli"].files["train"]
    cfg = pretrain_cfg(f"model.path={path}", f"out_dir={tmp_path / 'pre'}", f"text=[{ocnli}]", "data.max_length=48",
                       "data.eval_docs=4", "data.held_out_fraction=0.1", "train.batch_size=4", "train.max_steps=3",
                       "train.eval_every=3", "train.progress=false", "train.log_every=0", "data.exclude_validation=false")
    pre = Pretrainer(cfg, tmp_path / "pre")
    assert any((b["token_type_ids"] == 1).any() for bs in pre.eval_batches.values() for b in bs)  # real pairs
    pre.fit()
    assert type(load_pretrained(tmp_path / "pre")[1]) is type(pre.model)
    record(arch, "pretrain")

    Trainer(make_cfg(f"model.path={path}", f"data.dir={small_dir}", "train.mlm_weight=0.5", "data.unlabelled.ocnli=[a]",
                     "train.max_steps=2", "train.eval_every=0", "train.batch_size=4", "train.mlm_batch_size=4",
                     "train.progress=false", "train.predict_splits=[]", "model.max_length=48"), tmp_path / "aux").fit()
    record(arch, "aux MLM")


def _encoder_only(src: Path, dst: Path) -> Path:
    """The folder a user gets from `BertModel.save_pretrained`: the encoder, no masked-LM head."""
    import shutil

    from transformers import AutoConfig, AutoModel

    AutoModel.from_config(AutoConfig.from_pretrained(src)).save_pretrained(dst)
    for f in src.iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            shutil.copy(f, dst / f.name)
    return dst


@pytest.mark.parametrize("arch", ["bert", "xlm_roberta"])
def test_an_encoder_without_mlm_head_serves_heads_and_is_refused_by_cloze_methods(arch, zoo_dir, small_dir, tmp_path):
    enc = _encoder_only(zoo_dir(arch), tmp_path / "encoder")
    with pytest.raises(ConfigError, match=r"has no masked-LM head .*missing (cls|lm_head)\.\*.*method=heads / cln"):
        Trainer(make_cfg("method=pet", f"model.path={enc}", f"data.dir={small_dir}"), tmp_path / "pet")
    trainer = Trainer(make_cfg("method=heads", f"model.path={enc}", f"data.dir={small_dir}", "train.max_steps=2",
                               "train.eval_every=0", "train.batch_size=4", "train.progress=false",
                               "train.predict_splits=[]", "model.max_length=48"), tmp_path / "heads")
    trainer.fit()
    assert load_scorer(tmp_path / "heads" / "checkpoint-last")[2].tasks == list(TASKS)


def test_a_folder_that_is_not_a_masked_lm_gets_one_line_saying_what_it_holds(zoo_dir, tmp_path):
    from transformers import BertConfig, BertLMHeadModel, GPT2Config, GPT2LMHeadModel

    bert = zoo_dir("bert")
    empty = tmp_path / "empty"
    empty.mkdir()
    no_tokenizer = tmp_path / "weights-only"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_tokenizer / name).write_bytes((bert / name).read_bytes())
    gpt2, decoder = tmp_path / "gpt2", tmp_path / "decoder"
    GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=1, n_head=2)).save_pretrained(gpt2)
    BertLMHeadModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, is_decoder=True)).save_pretrained(decoder)
    for folder in (gpt2, decoder):
        AutoTokenizer.from_pretrained(bert).save_pretrained(folder)
    cases = {empty: r"has no config.json \(it is empty\)",
             no_tokenizer: r"has no tokenizer files \(one of tokenizer.json, .*it holds config.json, model.safetensors",
             gpt2: r"holds a causal LM \(GPT2LMHeadModel\); method=pet and pet_cln, and pretraining, need a masked LM",
             decoder: r"holds a causal LM \(BertLMHeadModel\)"}
    for folder, message in cases.items():
        with pytest.raises(PetMtlError, match=message) as e:
            load_pretrained(folder)
        assert "\n" not in str(e.value)


def test_a_tokenizer_larger_than_the_vocabulary_head_is_refused(zoo_dir, tmp_path):
    tok, mlm = load_pretrained(zoo_dir("bert"))
    mlm.resize_token_embeddings(len(tok) - 10)
    with pytest.raises(ConfigError, match=r"the tokenizer has \d+ tokens but the model embeds \d+: they are not a pair"):
        Backbone(mlm, tok)


def test_a_head_that_fails_the_probe_is_run_whole_with_a_warning(zoo_dir, caplog):
    """A head that looks across positions (here: adds the sequence mean) cannot be narrowed to the slot positions;
    the probe finds it and the scores come from the full forward, equal to the model's own."""
    tok, mlm = load_pretrained(zoo_dir("bert"))

    class Mixing(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, h):
            return self.inner(h + h.mean(1, keepdim=True))

    mlm.cls = Mixing(mlm.cls)
    backbone = Backbone(mlm, tok)
    assert backbone.vocab_head == "full" and "scoring through the full forward instead" in caplog.text
    featurizer, model = build_scorer("pet", tok, mlm, {"tnews": [TNEWS]}, ["tnews"], 64)
    feats = featurizer.encode(ROWS[:1], with_labels=False)
    ours = score_features(model.eval(), feats, 4, tok.pad_token_id, **CPU)[0, :15]
    enc = tok("他们在讨论比赛结果。这是" + tok.mask_token * 2 + "新闻。", return_tensors="pt")
    with torch.no_grad():
        start = enc["input_ids"][0].tolist().index(tok.mask_token_id)
        logp = mlm.eval()(**enc).logits[0, start:start + 2].log_softmax(-1)
    words = featurizer.words[0]
    expected = [sum(logp[i, t] for i, t in enumerate(ids[0][:n[0]])) for ids, n in zip(words.ids, words.lengths)]
    assert torch.allclose(ours, torch.stack(expected), atol=1e-4)


def test_check_lists_the_words_whose_tokens_differ_in_context(zoo_dir, capsys):
    from pet_mtl.patterns import main as workbench

    assert workbench(["check", "--model", str(zoo_dir("xlm_roberta"))]) == 0
    out = capsys.readouterr().out
    assert "all patterns valid" in out
    differ = [line for line in out.splitlines() if "tokens in context differ from alone" in line]
    assert differ and all("▁" in line.split("differ from alone:", 1)[1] for line in differ)
    assert workbench(["check", "--model", str(zoo_dir("bert"))]) == 0  # a character vocabulary: never
    assert "differ from alone" not in capsys.readouterr().out
