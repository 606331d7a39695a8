"""Learned prompt tokens in patterns (`{{ soft(...) }}`): a soft token started from a text and never trained scores
exactly what that text written out scores, on masked and causal backbones; prompt tuning trains the tokens alone;
tokens named alike are one set of rows."""
from __future__ import annotations

import pytest
import torch
import zoo
from conftest import FILLER, KEYS, pattern_texts
from helpers import make_cfg, write_soft_patterns
from safetensors.torch import load_file

from pet_mtl.backbones.loading import load_pretrained
from pet_mtl.core.errors import ConfigError, PatternError
from pet_mtl.core.tasks import TASKS
from pet_mtl.data.readers import Example
from pet_mtl.inference.checkpoint import load_scorer
from pet_mtl.inference.predictor import Predictor
from pet_mtl.methods import build_scorer
from pet_mtl.prompts import Pattern
from pet_mtl.training.trainer import Trainer

WORDS = dict(zip(TASKS["tnews"].labels, "故事 文化 娱乐 体育 财经 房产 汽车 教育 科技 军事 旅游 国际 股票 农业 游戏".split()))
ROWS = [Example("tnews", str(i), {"title": t}, None) for i, t in enumerate(["他们在讨论比赛结果", "这是新闻一段文字"])]


def tnews(source: str, name: str = "p") -> Pattern:
    return Pattern("tnews", name, source, dict(WORDS), origin=f"{name}.j2")


@pytest.mark.parametrize("method,arch", [("pet", None), ("pet_cln", None), ("causal", "gpt2"),
                                         ("causal", "bert_decoder")])
def test_soft_tokens_from_a_text_score_exactly_as_the_text_written_out(method, arch, tiny_dir, tmp_path):
    """The oracle: the learned tokens start as the text's own token embeddings, at the text's positions."""
    texts = [FILLER, KEYS, "新闻分类类别："] + pattern_texts()
    path = tiny_dir if arch is None else zoo.build(arch, tmp_path / arch, texts)
    tokenizer, lm = load_pretrained(path, kinds=("masked", "causal"))
    hard = tnews("新闻分类：{{ title }}。类别：{{ mask }}", "hard")
    soft = tnews("{{ soft('新闻分类') }}：{{ title }}。{{ soft('类别', name='ask') }}：{{ mask }}", "soft")
    f1, m1 = build_scorer(method, tokenizer, lm, {"tnews": [hard]}, ["tnews"], 64)
    f2, m2 = build_scorer(method, tokenizer, lm, {"tnews": [soft]}, ["tnews"], 64)
    assert m2.prompts.weight.shape[0] == 6 and m1.prompts is None
    feature = f2.encode(ROWS)[0]
    assert [tokenizer.convert_ids_to_tokens(f1.encode(ROWS)[0].input_ids[j]) for j in feature.prompt_positions] == \
        list("新闻分类类别")
    assert torch.equal(Predictor(f2, m2).scores(ROWS), Predictor(f1, m1).scores(ROWS))


def test_tokens_of_one_name_are_one_set_of_rows_across_tasks(tiny):
    tokenizer, lm = tiny
    emotion = Pattern("ocemotion", "e", "{{ soft(3, name='shared') }}{{ text }}{{ mask }}",
                      {c: w for c, w in zip(TASKS["ocemotion"].labels, "喜欢 开心 伤心 愤怒 厌恶 惊讶 害怕".split())})
    news = tnews("{{ soft(3, name='shared') }}{{ title }}{{ soft(2) }}{{ mask }}")
    featurizer, model = build_scorer("pet", tokenizer, lm, {"ocemotion": [emotion], "tnews": [news]},
                                     ["ocemotion", "tnews"], 64)
    assert model.prompts.weight.shape[0] == 5  # shared: 3 rows for both tasks, then tnews's own 2
    e = featurizer.encode([Example("ocemotion", "1", {"text": "我很开心"}, None)])[0]
    n = featurizer.encode(ROWS[:1])[0]
    assert e.prompt_rows == (0, 1, 2) and n.prompt_rows == (0, 1, 2, 3, 4)
    with pytest.raises(PatternError, match="shared tokens must agree"):
        build_scorer("pet", tokenizer, lm, {"tnews": [news, tnews("{{ soft(4, name='shared') }}{{ title }}{{ mask }}",
                                                                  "q")]}, ["tnews"], 64)
    iffy = tnews("{% if title.startswith('他') %}{{ soft(2) }}{% endif %}{{ title }}{{ mask }}")
    with pytest.raises(PatternError, match="other soft tokens than the pattern has"):
        build_scorer("pet", tokenizer, lm, {"tnews": [iffy]}, ["tnews"], 64)[0].encode(ROWS)


def prompt_run(tiny_dir, synthetic_dir, tmp_path, *extra):
    root = tmp_path / "patterns"
    sets = write_soft_patterns(root)
    trainer = Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", f"pattern_roots=[{root}]",
                               f"patterns={sets}", "train.max_steps=4", "train.eval_every=2", "train.batch_size=8",
                               "train.lr=1e-3", "train.progress=false", "train.predict_splits=[]", *extra),
                      tmp_path / "run")
    return trainer


def test_prompt_tuning_trains_the_learned_tokens_alone(tiny_dir, synthetic_dir, tmp_path, caplog):
    caplog.set_level("INFO", logger="pet_mtl")
    trainer = prompt_run(tiny_dir, synthetic_dir, tmp_path, "train.train_only=prompts", "train.prompt_lr=0.05")
    start = trainer.model.prompts.weight.detach().clone()
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.05]
    trainer.fit()
    assert not torch.equal(trainer.model.prompts.weight, start)
    original = load_file(tiny_dir / "model.safetensors")
    trained = trainer.model.mlm.state_dict()
    assert all(torch.equal(original[k], trained[k]) for k in original)  # the backbone, bit for bit
    assert "12 learned prompt token(s) alone (train.train_only=prompts)" in caplog.text
    last = trainer.run_dir / "checkpoint-last"  # what trained, and the base by name: no copy of the backbone
    assert not (last / "model").exists() and not (last / "adapter.safetensors").exists()
    assert set(load_file(last / "method.safetensors")) == {"prompts.weight"}
    _, meta, featurizer, model = load_scorer(last)
    assert meta["adapter"]["r"] == 0 and meta["adapter"]["base"] == str(tiny_dir)
    rows = trainer.data["tnews"].val
    ours = Predictor(trainer.featurizer, trainer.model).scores(rows)
    assert torch.equal(Predictor(featurizer, model).scores(rows), ours)


def test_the_prompt_learning_rate_is_the_prompts_own(tiny_dir, synthetic_dir, tmp_path):
    trainer = prompt_run(tiny_dir, synthetic_dir, tmp_path, "train.prompt_lr=0.02")
    groups = trainer.optimizer.param_groups
    assert [g["lr"] for g in groups] == [1e-3, 1e-3, 0.02] and groups[-1]["params"] == [trainer.model.prompts.weight]


def test_prompt_tuning_without_soft_tokens_says_how(tiny_dir, synthetic_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"write \{\{ soft\(8\) \}\}"):
        Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.train_only=prompts",
                         "train.max_steps=1"), tmp_path / "run")
    with pytest.raises(ConfigError, match="train.train_only='everything'"):
        Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.train_only=everything"),
                tmp_path / "run2")


@pytest.mark.parametrize("encoder", ["lstm", "mlp"])
def test_p_tunings_encoder_starts_at_the_text_and_is_dropped_into_plain_embeddings(encoder, tiny, tiny_dir,
                                                                                   synthetic_dir, tmp_path):
    from pet_mtl.methods import MethodOptions

    tokenizer, lm = tiny
    hard = tnews("新闻分类：{{ title }}。类别：{{ mask }}", "hard")
    soft = tnews("{{ soft('新闻分类') }}：{{ title }}。{{ soft('类别', name='ask') }}：{{ mask }}", "soft")
    f1, m1 = build_scorer("pet", tokenizer, lm, {"tnews": [hard]}, ["tnews"], 64)
    f2, m2 = build_scorer("pet", tokenizer, lm, {"tnews": [soft]}, ["tnews"], 64, MethodOptions(prompt_encoder=encoder))
    assert torch.equal(Predictor(f2, m2).scores(ROWS), Predictor(f1, m1).scores(ROWS))  # the encoder starts as identity
    trainer = prompt_run(tiny_dir, synthetic_dir, tmp_path, f"model.prompt_encoder={encoder}", "train.prompt_lr=0.05")
    trainer.fit()
    best, last = trainer.run_dir / "checkpoint-best", trainer.run_dir / "checkpoint-last"
    assert set(load_file(best / "method.safetensors")) == {"prompts.weight"}  # plain: what the encoder computes
    assert any(".encoder." in k for k in load_file(last / "method.safetensors"))  # the encoder too: resumable
    _, meta, featurizer, model = load_scorer(last)
    assert meta["method_options"]["prompt_encoder"] == encoder and model.prompts.encoder is not None
    trainer.model.eval()
    plain = model.prompts.plain_state("")["weight"]
    assert torch.equal(plain, trainer.model.prompts.table().detach())
    _, meta, _, plain_model = load_scorer(best)
    assert meta["method_options"]["prompt_encoder"] is None and plain_model.prompts.encoder is None


def test_a_prompt_tuned_model_teaches_a_student(tiny_dir, synthetic_dir, tmp_path):
    """Distillation reads a teacher through its checkpoint: learned tokens and a base named by fingerprint."""
    teacher = prompt_run(tiny_dir, synthetic_dir, tmp_path, "train.train_only=prompts")
    teacher.fit()
    student = Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "method=heads",
                               f"distill.teachers=[{teacher.run_dir}]", "data.unlabelled.tnews=[a]",
                               "train.max_steps=2", "train.batch_size=8", "train.progress=false",
                               "train.predict_splits=[]"), tmp_path / "student")
    assert student.soft_rows["tnews"] and all(abs(sum(p) - 1) < 1e-5 for _, p in student.soft_rows["tnews"])
    student.fit()
