"""method=causal, the GPT-style system: tiny GPT-2 (BERT vocabulary), Qwen2 (byte-level BPE), Llama (no pad token)
and BertLMHeadModel (is_decoder) built here; the scores against a plain AutoModelForCausalLM forward of the literal
text; the candidates' one pass against one forward per candidate; train, reload, predict; heads and cln on a causal
backbone; what is refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import zoo
from conftest import FILLER, KEYS, pattern_texts, write_synthetic
from helpers import make_cfg
from transformers import AutoModelForCausalLM, AutoTokenizer

from pet_mtl.backbones.contract import Backbone
from pet_mtl.backbones.loading import load_pretrained
from pet_mtl.core.errors import ConfigError, PatternError
from pet_mtl.core.tasks import TASKS
from pet_mtl.data.readers import Example
from pet_mtl.inference.checkpoint import load_scorer
from pet_mtl.inference.predictor import score_features
from pet_mtl.methods import build_scorer
from pet_mtl.prompts import Pattern
from pet_mtl.training.trainer import Trainer

ARCHS = list(zoo.CAUSAL_ARCHITECTURES)
CPU = dict(pad_to_multiple_of=1, precision="fp32", device=torch.device("cpu"))
BOTH = ("masked", "causal")


@pytest.fixture(scope="session")
def causal_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("causal-zoo")
    texts = [FILLER, KEYS, "甲乙丙丁这是新闻一段文字。？！：，"] + pattern_texts()
    texts += ["他们在讨论比赛结果", "我很开心", "是的可能不是蕴含中立矛盾小故事外"] * 10
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            extra = ["类别：体育", "：体育"] * 40 if name == "qwen2" else []  # a merge across the prompt's end
            built[name] = zoo.build(name, root / name, texts + extra)
        return built[name]

    return get


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("small"), {"ocnli": 6, "ocemotion": 3, "tnews": 2}, test_rows=4)


TNEWS = Pattern("tnews", "prefix", "新闻分类：{{ title }}。类别：{{ mask }}",
                {c: w for c, w in zip(TASKS["tnews"].labels, ["小故事", "文化", "娱乐", "体育", "财经", "房产", "汽车",
                                                              "教育", "科技", "军事", "旅游", "外", "股票", "农业",
                                                              ["游戏", "电竞"]])}, origin="prefix.j2")
ROWS = [Example("tnews", "1", {"title": "他们在讨论比赛结果"}, None),
        Example("tnews", "2", {"title": "我很开心"}, None)]


def oracle(model_dir: Path, pattern: Pattern, example: Example) -> list[float]:
    """A plain AutoModelForCausalLM forward of [start] + the literal text prompt + word for each word: the sum of the
    log-probabilities of the tokens past those all of the pattern's words share with the prompt (the word's own
    tokens; with a merge across the prompt's end, the merged piece too), a label's words by log-sum-exp."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    lm = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    start = [tok.bos_token_id] if tok.bos_token_id is not None else [tok.cls_token_id] if tok.cls_token_id else []
    prompt = "".join(s.text for s in pattern.render(example).segments if not s.is_slot)
    words = pattern.word_lists()
    texts = {w: start + tok(prompt + w, add_special_tokens=False)["input_ids"] for ws in words.values() for w in ws}
    before = start + tok(prompt, add_special_tokens=False)["input_ids"]
    shared = min(next((i for i, (a, b) in enumerate(zip(before, ids)) if a != b), min(len(before), len(ids)))
                 for ids in texts.values())
    scores = []
    for code in TASKS[pattern.task].labels:
        per_word = []
        for w in words[code]:
            ids = texts[w]
            with torch.no_grad():
                logp = lm(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
            per_word.append(sum(logp[i - 1, ids[i]] for i in range(shared, len(ids))))
        scores.append(torch.stack(per_word).logsumexp(0).item())
    return scores


@pytest.mark.parametrize("arch", ARCHS)
def test_label_scores_equal_a_plain_causal_forward_of_the_literal_text(arch, causal_dir):
    path = causal_dir(arch)
    tok, lm = load_pretrained(path, kinds=BOTH)
    featurizer, model = build_scorer("causal", tok, lm, {"tnews": [TNEWS]}, ["tnews"], 64)
    model.eval()
    feats = featurizer.encode(ROWS, with_labels=False)
    ours = score_features(model, feats, 2, tok.pad_token_id, **CPU)[:, :15]  # a batch of two prompt lengths
    for row, ex in enumerate(ROWS):
        expected = torch.tensor(oracle(path, TNEWS, ex))
        assert torch.allclose(ours[row], expected, atol=1e-4), (arch, ex.id, (ours[row] - expected).abs().max())
    lengths = {n for ns in featurizer.words[0].lengths for n in ns}
    assert len(lengths) > 1, lengths  # words of one and of several tokens


def test_a_word_that_merges_with_the_prompts_last_character_is_scored_as_the_literal_text_reads(causal_dir):
    """Qwen2's pre-tokenizer joins ： to the letters after it, and this vocabulary has the piece ：体育: the prompt
    gives back its last token and every word continues from before it."""
    tok, lm = load_pretrained(causal_dir("qwen2"), kinds=BOTH)
    assert len(tok("：体育", add_special_tokens=False)["input_ids"]) == 1
    featurizer, _ = build_scorer("causal", tok, lm, {"tnews": [TNEWS]}, ["tnews"], 64)
    assert tok.convert_ids_to_tokens(list(featurizer.causal[0].tail)) == tok.convert_ids_to_tokens(
        tok("：", add_special_tokens=False)["input_ids"])
    assert "merge with the words" in featurizer.describe()[0]


@pytest.mark.parametrize("arch", ARCHS)
def test_the_candidates_one_pass_equals_one_forward_per_candidate(arch, causal_dir):
    tok, lm = load_pretrained(causal_dir(arch), kinds=BOTH)
    lm.eval()
    backbone = Backbone(lm, tok)
    torch.manual_seed(0)
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16]]
    T = max(map(len, prompts))
    ids = torch.full((3, T), tok.pad_token_id)
    mask = torch.zeros(3, T, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, : len(p)], mask[b, : len(p)] = torch.tensor(p), 1
    candidates = torch.randint(20, 60, (3, 4, 3))
    assert backbone.candidate_pass == "packed"  # every architecture here takes the 4D mask
    with torch.no_grad():
        ours = backbone.continuations(ids, mask, candidates)
        backbone.candidate_pass = "cached"  # the fall-back: the prompt's key/value cache shared by the candidates
        assert torch.allclose(backbone.continuations(ids, mask, candidates), ours, atol=1e-4)
        for b, p in enumerate(prompts):
            for m in range(4):
                full = torch.tensor([p + candidates[b, m].tolist()])
                logp = lm(input_ids=full).logits[0].log_softmax(-1)
                naive = torch.stack([logp[len(p) - 1 + j, candidates[b, m, j]] for j in range(3)])
                assert torch.allclose(ours[b, m], naive, atol=1e-4), (arch, b, m)


@pytest.mark.parametrize("method", ["causal", "heads", "cln"])
@pytest.mark.parametrize("arch", ARCHS)
def test_a_causal_backbone_trains_reloads_and_predicts(arch, method, causal_dir, small_dir, tmp_path):
    cfg = make_cfg(f"method={method}", f"model.path={causal_dir(arch)}", f"data.dir={small_dir}", "train.max_steps=4",
                   "train.batch_size=8", "train.eval_every=4", "train.progress=false", "train.predict_splits=[]",
                   "model.max_length=64", "data.val_size=0.25", "train.lr=1e-3")
    trainer = Trainer(cfg, tmp_path / "run")
    if method == "causal":  # the shipped causal set, the run named none
        assert [p.name for p in trainer.featurizer.patterns] == ["ocnli/prefix@relation", "ocemotion/prefix",
                                                                 "tnews/prefix"]
    trainer.fit()
    _, meta, featurizer, model = load_scorer(tmp_path / "run" / "checkpoint-last")
    assert meta["method"] == method and type(model.mlm) is type(trainer.model.mlm)
    for task in ("ocnli", "tnews"):
        feats = featurizer.encode(trainer.data[task].val)
        ours = score_features(model, feats, 8, featurizer.tokenizer.pad_token_id, **CPU)
        assert torch.equal(ours, score_features(trainer.model, feats, 8, featurizer.tokenizer.pad_token_id, **CPU))
        assert torch.isfinite(ours[:, : TASKS[task].num_labels]).all()
    if method == "cln":  # every norm conditioned: LayerNorm (GPT-2, BERT) or RMSNorm (Qwen2, Llama)
        assert len(model.conditioning.gain) == len(Backbone(model.mlm, featurizer.tokenizer, verify=False).norms()) > 0


def test_heads_on_a_causal_lm_read_the_last_real_token(causal_dir):
    tok, lm = load_pretrained(causal_dir("llama"), kinds=BOTH)
    backbone = Backbone(lm.eval(), tok)
    hidden = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert torch.equal(backbone.pool(hidden, mask), torch.stack([hidden[0, 2], hidden[1, 4]]))
    assert tok.pad_token == tok.eos_token  # Llama has no pad token: its eos pads


def test_what_method_causal_refuses(causal_dir):
    tok, lm = load_pretrained(causal_dir("gpt2"), kinds=BOTH)
    after = Pattern("tnews", "after", "{{ mask }}新闻：{{ title }}", dict(TNEWS.verbalizer), origin="after.j2")
    with pytest.raises(PatternError, match=r"the slot must end the template.*'新闻：甲乙丙丁'"):
        build_scorer("causal", tok, lm, {"tnews": [after]}, ["tnews"], 64)
    with pytest.raises(ConfigError, match="method=pet needs a masked LM; GPT2LMHeadModel is a causal LM; use "
                                          "method=causal"):
        build_scorer("pet", tok, lm, {"tnews": [TNEWS]}, ["tnews"], 64)
    with pytest.raises(ConfigError, match=r"holds a causal LM \(GPT2LMHeadModel\); method=pet and pet_cln"):
        load_pretrained(causal_dir("gpt2"))
    # label words the way the cloze's verbalizers are checked: one rule for both systems
    for word, problem in [("[SEP]", r"special token\(s\) \['\[SEP\]'\]"), ("鑫", "unknown to the tokenizer")]:
        bad = Pattern("tnews", "bad", "新闻分类：{{ title }}。类别：{{ mask }}", {**TNEWS.verbalizer, "100": word}, origin="bad.j2")
        with pytest.raises(PatternError, match=rf"bad.j2: label 10\d word .*{problem}"):
            build_scorer("causal", tok, lm, {"tnews": [bad]}, ["tnews"], 64)


def test_the_workbench_previews_scores_and_checks_causal_patterns(causal_dir, small_dir, capsys):
    from pet_mtl.patterns import main as workbench

    model = str(causal_dir("gpt2"))
    data = ["--data-dir", str(small_dir)]
    assert workbench(["zero-shot", "--tasks", "tnews", "--model", model, *data, "--rows", "15"]) == 0
    assert "| tnews | tnews/prefix |" in capsys.readouterr().out  # the causal set, as training uses it
    assert workbench(["preview", "--task", "tnews", "--model", model, *data, "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "each label word's tokens continue it" in out and "103=体育[体 育]" in out
    assert workbench(["check", "--method", "causal", "causal", "causal_noprefix"]) == 0
    capsys.readouterr()
    assert workbench(["check", "--method", "causal", "default"]) == 1
    err = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error: pattern set default")]
    assert len(err) == 1 and "the slot must end the template" in err[0]


@pytest.mark.parametrize("arch", ["qwen2", "bert_decoder"])
def test_a_causal_lm_pretrains_on_next_tokens_and_the_auxiliary_loss_is_its_own(arch, causal_dir, small_dir,
                                                                                 tmp_path):
    """pet_mtl.pretrain continues a causal LM with the next-token loss (held-out perplexity falls, the output loads
    as a causal LM); train.mlm_weight adds the next-token loss of unlabelled text to method=causal."""
    from test_pretrain import corpus_lines, pretrain_cfg

    from pet_mtl.backbones.mlm import CausalLM
    from pet_mtl.pretraining.pretrainer import Pretrainer

    text = tmp_path / "words.txt"
    text.write_text("\n".join(corpus_lines(400)) + "\n", encoding="utf-8")
    cfg = pretrain_cfg(f"model.path={causal_dir(arch)}", f"out_dir={tmp_path / 'pre'}", f"text=[{text}]",
                       "data.max_length=32", "data.eval_docs=40", "data.held_out_fraction=0.1", "train.batch_size=8",
                       "train.max_steps=30", "train.eval_every=30", "train.lr=3e-3", "train.warmup_ratio=0",
                       "train.progress=false", "train.log_every=0")
    pre = Pretrainer(cfg, tmp_path / "pre")
    assert isinstance(pre.masked_lm, CausalLM) and "next-token loss" in pre.plan()[-1]
    pre.fit()
    first, last = pre.state.history[0], pre.state.history[-1]
    assert last["pseudo_perplexity"] < 0.8 * first["pseudo_perplexity"], (first, last)
    assert type(load_pretrained(tmp_path / "pre", kinds=BOTH)[1]) is type(pre.model)  # loads as the causal LM
    assert "AutoModelForCausalLM" in (tmp_path / "pre" / "README.md").read_text()

    trainer = Trainer(make_cfg("method=causal", f"model.path={causal_dir(arch)}", f"data.dir={small_dir}",
                               "train.mlm_weight=0.5", "data.unlabelled.tnews=[a]", "train.max_steps=2",
                               "train.eval_every=2", "train.batch_size=4", "train.mlm_batch_size=4",
                               "train.progress=false", "train.predict_splits=[]", "model.max_length=48"),
                      tmp_path / "aux")
    trainer.fit()
    assert "mlm_loss" in trainer.state.history[-1]


def test_the_gold_words_likelihood_joins_the_label_loss_for_methods_that_score_words():
    from omegaconf import OmegaConf

    from pet_mtl.training.losses import label_loss
    from pet_mtl.training.objectives import build_objective

    cfg = make_cfg("method=causal", "train.gold_word_weight=0.5")
    objective = build_objective(cfg)
    assert objective.describe() == "GoldWordLikelihood(CrossEntropy, weight=0.5)"
    scores = torch.tensor([[-1.0, -2.0, -3.0], [-4.0, -0.5, -9.0]])
    batch = {"labels": torch.tensor([0, 1])}
    expected = label_loss(scores, batch["labels"]) + 0.5 * (1.0 + 0.5) / 2  # minus the gold words' scores, averaged
    assert torch.allclose(objective.loss(scores, batch), expected)
    rdrop = build_objective(make_cfg("method=causal", "train.gold_word_weight=0.5", "train.rdrop=1.0"))
    assert rdrop.describe() == "RDrop(GoldWordLikelihood(CrossEntropy, weight=0.5), alpha=1)"
    with pytest.raises(ConfigError, match="method=heads scores with classifiers, not words"):
        build_objective(OmegaConf.merge(cfg, {"method": "heads"}))


def test_a_causal_teacher_distils_into_a_masked_student_and_back(causal_dir, tiny_dir, small_dir, tmp_path):
    """Distillation reads teachers through their checkpoints, whatever their kind: a method=causal run teaches a pet
    student on a masked LM, and that student teaches a causal one; each student's soft labels are its teacher's."""
    from pet_mtl.training.distillation import SOFT_LABELS

    common = [f"data.dir={small_dir}", "tasks=[ocemotion]", "train.max_steps=2", "train.eval_every=0",
              "train.batch_size=8", "train.progress=false", "train.predict_splits=[]", "train.calibrate=false",
              "model.max_length=48", "data.unlabelled.ocemotion=[a]"]
    teacher = tmp_path / "causal-teacher"
    Trainer(make_cfg("method=causal", f"model.path={causal_dir('gpt2')}", *common), teacher).fit()
    student = tmp_path / "pet-student"
    Trainer(make_cfg("method=pet", f"model.path={tiny_dir}", *common, f"distill.teachers=[{teacher}]"), student).fit()
    back = tmp_path / "causal-student"
    Trainer(make_cfg("method=causal", f"model.path={causal_dir('gpt2')}", *common, f"distill.teachers=[{student}]"),
            back).fit()
    for run, by in ((student, teacher), (back, student)):
        labels = json.loads((run / SOFT_LABELS).read_text())
        assert labels["key"]["teachers"] == [str(by / "checkpoint-best")]
        assert len(labels["probs"]["ocemotion"]) == 4  # the test file's rows


def test_a_killed_causal_pretraining_resumes_to_the_weights_of_an_uninterrupted_run(causal_dir, tmp_path):
    """SIGKILL wherever the run is, then train.resume=true: the next-token stream, the optimizer and the RNG resume
    exactly, as for a masked LM (tests/test_pretrain.py)."""
    import os
    import subprocess

    from helpers import run_and_kill
    from safetensors.torch import load_file
    from test_pretrain import corpus_lines, run_cmd

    text = tmp_path / "words.txt"
    text.write_text("\n".join(corpus_lines(600)) + "\n", encoding="utf-8")
    model, env = causal_dir("bert_decoder"), {**os.environ, "HF_HUB_OFFLINE": "1"}
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(run_cmd(model, full, text), check=True, env=env, capture_output=True, timeout=300)
    stopped = run_and_kill(run_cmd(model, killed, text), env,
                           killed / "checkpoint-last" / "train_state" / "state.json")["progress"]["step"]
    assert stopped < 40
    p = subprocess.run(run_cmd(model, killed, text, "train.resume=true"), env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    a, b = load_file(full / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "next-token perplexity" in (full / "pretrain.log").read_text()


def test_ipet_takes_pseudo_labels_from_a_causal_generation(causal_dir, small_dir, tmp_path, caplog):
    """iPET's generation step, as `pet_mtl.ipet` runs it, with method=causal models: the first generation's label
    log-probabilities of the unlabelled rows (its checkpoint read like any other), label-balanced pseudo-labels, and
    a second causal generation that trains on them."""
    from pet_mtl.data.regimes import load_task_data
    from pet_mtl.ipet import pseudo_labels
    from pet_mtl.training.distillation import unlabelled_examples

    common = ["method=causal", f"model.path={causal_dir('qwen2')}", f"data.dir={small_dir}", "tasks=[ocemotion]",
              "train.max_steps=2", "train.eval_every=0", "train.batch_size=8", "train.progress=false",
              "train.predict_splits=[]", "train.calibrate=false", "model.max_length=48",
              f"data.unlabelled.ocemotion=[a,{small_dir / 'OCEMOTION_train.csv'}]"]
    gen0 = tmp_path / "gen0"
    Trainer(make_cfg(*common), gen0).fit()
    cfg = make_cfg(*common)
    examples = unlabelled_examples(cfg, load_task_data(cfg))
    files = pseudo_labels(tmp_path / "gen1", examples, {"ocemotion": 14}, [gen0], cfg, 0)
    rows = [json.loads(line) for line in Path(files["ocemotion"]).read_text(encoding="utf-8").splitlines()]
    scores = json.loads((gen0 / "unlabelled_scores.json").read_text())["scores"]["ocemotion"]
    assert len(scores) == len(examples["ocemotion"]) > 14 and all(len(s) == 7 for s in scores) and rows
    for r in rows:  # each pseudo-label is the causal model's own best label for that row
        i = [ex.id for ex in examples["ocemotion"]].index(r["id"])
        assert TASKS["ocemotion"].labels[max(range(7), key=scores[i].__getitem__)] == r["label"]
    gen1 = tmp_path / "gen1"
    with caplog.at_level("INFO", logger="pet_mtl"):
        Trainer(make_cfg(*common, f"data.pseudo_labelled.ocemotion={files['ocemotion']}"), gen1).fit()
    assert f"ocemotion: {len(rows)} pseudo-labelled rows from {files['ocemotion']}" in caplog.text
    assert json.loads((gen1 / "metrics.json").read_text())["finished"]
