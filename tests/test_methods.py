"""The four methods side by side: each learns through the one loop and predicts through the one entry point;
conditional LayerNorm starts as exactly the pretrained model; heads keep each task's loss to its own head."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from helpers import make_cfg
from transformers import PretrainedConfig

from pet_mtl.backbones.contract import Backbone
from pet_mtl.core.errors import ConfigError
from pet_mtl.core.tasks import TASKS
from pet_mtl.data.readers import read_tsv
from pet_mtl.inference.checkpoint import load_scorer
from pet_mtl.inference.predictor import Predictor, score_features
from pet_mtl.inference.submission import write_submission
from pet_mtl.methods import METHODS, MethodOptions, build_scorer, get_method, register
from pet_mtl.methods.base import NEG
from pet_mtl.methods.cln import TaskLayerNorm
from pet_mtl.methods.features import collate
from pet_mtl.methods.heads import HeadsModel, TextFeaturizer
from pet_mtl.prompts import PatternSpec, load_pattern
from pet_mtl.training.losses import label_loss
from pet_mtl.training.trainer import Trainer


def cloze_patterns():
    return {"ocnli": [load_pattern("ocnli", PatternSpec("ocnli/question.j2"))],
            "ocemotion": [load_pattern("ocemotion", PatternSpec("ocemotion/feel.j2"))],
            "tnews": [load_pattern("tnews", PatternSpec("tnews/topic.j2"))]}


def mixed_batch(tok, featurizer, synthetic_rows_by_task):
    feats = [f for exs in synthetic_rows_by_task.values() for f in featurizer.encode(exs)]
    return collate(feats, tok.pad_token_id, 1)


@pytest.fixture(scope="module")
def examples(synthetic_dir):
    return {t: read_tsv(synthetic_dir / TASKS[t].files["train"], TASKS[t], True)[:6] for t in TASKS}


@pytest.mark.parametrize("method", [m for m in METHODS if "masked" in METHODS[m].backbone_kinds])
def test_each_method_learns_and_predicts_through_the_same_entry_point(method, tiny_dir, synthetic_dir, tmp_path):
    # lr 2e-3 x 10 epochs: at 3e-3 the conditional LayerNorm of pet_cln stalls for some random inits of the tiny
    # model (its zero-initialised projections move at Adam's full rate), which is the method, not the loop
    cfg = make_cfg(f"method={method}", f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.lr=2e-3",
                   "train.epochs=10", "train.batch_size=16", "train.eval_every=40", "train.progress=false",
                   "data.val_size=0.25", "train.warmup_ratio=0.1", "train.predict_splits=[]")
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit()
    h = trainer.state.history
    assert min(e["train_loss"] for e in h[1:]) < 0.75 * h[0]["train_loss"], [e["train_loss"] for e in h]
    chance = sum(1 / TASKS[t].num_labels for t in TASKS) / 3
    assert max(e["score"] for e in h) > 1.25 * chance, [e["score"] for e in h]  # random guessing scores ~chance
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["method"] == method

    # the checkpoint rebuilds the same method with the same weights
    _, meta, featurizer, model = load_scorer(tmp_path / "run" / "checkpoint-last")
    assert meta["method"] == method and type(model) is type(trainer.model)
    assert (model.conditioning is not None) == method.endswith("cln")
    feats = featurizer.encode(trainer.data["tnews"].val)
    args = dict(batch_size=8, pad_id=featurizer.tokenizer.pad_token_id, pad_to_multiple_of=1, precision="fp32",
                device=torch.device("cpu"))
    assert torch.equal(score_features(model, feats, **args), score_features(trainer.model, feats, **args))

    # predict through the entry point on labelled files of both formats: TSV for tnews, CLUE JSON for ocnli
    tnews_file = synthetic_dir / TASKS["tnews"].files["train"]
    ocnli_json = tmp_path / "ocnli_dev.json"
    names = {"0": "entailment", "1": "neutral", "2": "contradiction"}
    ocnli = trainer.data["ocnli"].val
    ocnli_json.write_text("".join(json.dumps({"sentence1": e.fields["premise"], "sentence2": e.fields["hypothesis"],
                                              "label": names[e.label]}, ensure_ascii=False) + "\n" for e in ocnli))
    out = subprocess.run([sys.executable, "-m", "pet_mtl.predict", f"checkpoint={tmp_path / 'run' / 'checkpoint-last'}",
                          f"+files.tnews={tnews_file}", f"+files.ocnli={ocnli_json}", "labelled=true",
                          f"output_dir={tmp_path / 'sub'}", f"hydra.run.dir={tmp_path / 'hydra'}"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "sub" / "tnews_predict.json").read_text().splitlines()]
    tnews = read_tsv(tnews_file, TASKS["tnews"], True)
    assert [r["id"] for r in rows] == [e.id for e in tnews] and {r["label"] for r in rows} <= set(TASKS["tnews"].labels)
    scored = json.loads((tmp_path / "sub" / "eval.json").read_text())
    expected = Predictor(trainer.featurizer, trainer.model, 16).evaluate({"tnews": tnews, "ocnli": ocnli})
    for t in ("tnews", "ocnli"):
        assert scored["tasks"][t]["macro_f1"] == pytest.approx(expected["tasks"][t]["macro_f1"], abs=1e-9)
        assert scored["tasks"][t]["confusion"] == expected["tasks"][t]["confusion"]  # per class, in eval.json too
        assert list(scored["tasks"][t]["per_class"]) == list(TASKS[t].labels)
    assert not (tmp_path / "sub" / "ocemotion_predict.json").exists()


@pytest.mark.parametrize("output", ["cloze", "heads"])
def test_cln_at_initialisation_is_exactly_the_unwrapped_model_and_gets_gradients(output, tiny, examples):
    tok, mlm = tiny
    torch.manual_seed(0)
    plain_name, cln_name = {"cloze": ("pet", "pet_cln"), "heads": ("heads", "cln")}[output]
    torch.manual_seed(1)
    featurizer, plain = build_scorer(plain_name, tok, mlm, cloze_patterns(), list(TASKS), 64)
    torch.manual_seed(1)  # the same head initialisation
    _, conditioned = build_scorer(cln_name, tok, mlm, cloze_patterns(), list(TASKS), 64, MethodOptions(cln_dim=8))
    plain.eval(), conditioned.eval()
    batch = mixed_batch(tok, featurizer, examples)
    try:
        with torch.no_grad():
            assert torch.equal(conditioned(**batch), plain(**batch))
            hidden = mlm.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
            with conditioned.conditioning.on(batch["task"]):
                hidden_on = mlm.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
            assert torch.equal(hidden, hidden_on)

        cln = conditioned.conditioning
        conditioned.train()
        label_loss(conditioned(**batch), batch["labels"]).backward()
        for proj in (*cln.gain, *cln.shift):
            assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
            assert proj.bias.grad.abs().sum() > 0
        # the embedding's gradient flows through the projections: zero while they are, non-zero after a step
        assert cln.task_embedding.weight.grad.abs().sum() == 0
        torch.optim.SGD(cln.parameters(), lr=1.0).step()
        conditioned.zero_grad()
        label_loss(conditioned(**batch), batch["labels"]).backward()
        assert cln.task_embedding.weight.grad.abs().sum() > 0
        # and now the task changes the featurizer's output for the same text
        conditioned.eval()
        with torch.no_grad():
            other = dict(batch, task=(batch["task"] + 1) % 3)
            with cln.on(batch["task"]):
                a = mlm.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
            with cln.on(other["task"]):
                b = mlm.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
            assert not torch.allclose(a, b)
    finally:
        for h in conditioned.conditioning._hooks:  # the session-wide tiny model must leave unpatched
            h.remove()
        mlm.zero_grad(set_to_none=True)


def test_cln_needs_layernorms(tiny):
    from pet_mtl.core.errors import ConfigError

    class NoNorms(torch.nn.Module):  # a "backbone" whose encoder has no LayerNorm
        def __init__(self):
            super().__init__()
            self.config = PretrainedConfig()
            self.encoder = torch.nn.Linear(2, 2)

    with pytest.raises(ConfigError, match="no torch.nn.LayerNorm"):
        TaskLayerNorm(Backbone(NoNorms(), tiny[0], verify=False), 3, 4)


def test_heads_loss_reaches_only_the_heads_of_tasks_in_the_batch(tiny, examples):
    tok, mlm = tiny
    featurizer = TextFeaturizer(tok, list(TASKS), 64, segment_ids=True)
    torch.manual_seed(0)
    model = HeadsModel(Backbone(mlm, tok), list(TASKS)).eval()
    present = {"ocnli": examples["ocnli"], "tnews": examples["tnews"]}
    batch = mixed_batch(tok, featurizer, present)
    scores = model(**batch)
    label_loss(scores, batch["labels"]).backward()
    assert model.heads["ocemotion"].weight.grad is None and model.heads["ocemotion"].bias.grad is None
    for t in present:
        assert model.heads[t].weight.grad.abs().sum() > 0
    # oracle: each row's scores are its own head on [CLS] of a plain forward, NEG beyond its labels
    with torch.no_grad():
        cls = mlm.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             token_type_ids=batch["token_type_ids"])[0][:, 0]
        for i, t in enumerate(batch["task"].tolist()):
            n = TASKS[featurizer.tasks[t]].num_labels
            assert torch.allclose(scores[i, :n], model.heads[featurizer.tasks[t]](cls[i]), atol=1e-6)
            assert (scores[i, n:] == NEG).all()
    # a row's loss gradient reaches only its own task's head
    model.zero_grad(set_to_none=True)
    one = {k: v[:1] for k, v in batch.items()}
    label_loss(model(**one), one["labels"]).backward()
    own = featurizer.tasks[one["task"].item()]
    assert [t for t in TASKS if model.heads[t].weight.grad is not None] == [own]
    mlm.zero_grad(set_to_none=True)


def test_head_init_chooses_between_berts_and_pytorchs_initialisation(tiny):
    """model.head_init=bert: N(0, initializer_range) weights, zero bias; torch: nn.Linear's own Kaiming-uniform
    weights and uniform bias, bounded by 1/sqrt(hidden) (the plain reference classifier's heads)."""
    tok, mlm = tiny
    bound = mlm.config.hidden_size ** -0.5
    torch.manual_seed(0)
    bert = HeadsModel(Backbone(mlm, tok), list(TASKS), head_init="bert").heads["tnews"]
    torch.manual_seed(0)
    plain = HeadsModel(Backbone(mlm, tok), list(TASKS), head_init="torch").heads["tnews"]
    assert bert.bias.eq(0).all() and bert.weight.std() < 2 * mlm.config.initializer_range
    assert plain.bias.ne(0).all() and plain.weight.abs().max() <= bound and plain.bias.abs().max() <= bound
    assert plain.weight.std() > 3 * mlm.config.initializer_range  # uniform(-1/sqrt(h), 1/sqrt(h)): std ~ 0.58/sqrt(h)
    with pytest.raises(ConfigError, match="model.head_init='xavier': expected one of bert, torch"):
        HeadsModel(Backbone(mlm, tok), list(TASKS), head_init="xavier")


def test_heads_encode_the_plain_text_as_a_pair_without_pattern(tiny, examples):
    tok, _ = tiny
    ex = examples["ocnli"][0]
    f = TextFeaturizer(tok, list(TASKS), 64).encode([ex])[0]
    assert list(f.input_ids) == tok(ex.fields["premise"], ex.fields["hypothesis"])["input_ids"]
    assert f.slot_len == 0 and f.label == TASKS["ocnli"].label_index(ex.label)
    long = TextFeaturizer(tok, list(TASKS), 12).encode([ex])[0]
    assert len(long.input_ids) == 12


def test_heads_feed_a_pair_with_the_segment_ids_a_plain_tokenizer_call_gives(tiny, examples):
    """Oracle: the collated OCNLI batch is exactly `tokenizer(premises, hypotheses, padding=True)` (ids, mask,
    token types), and the heads' [CLS] state is the plain encoder's on that encoding; one-text tasks and
    segment_ids=False carry no token types, and an old checkpoint (no segment_ids recorded) is read without them."""
    from pet_mtl.inference.checkpoint import method_options

    tok, mlm = tiny
    rows = examples["ocnli"]
    featurizer, model = build_scorer("heads", tok, mlm, {}, list(TASKS), 20)
    batch = collate(featurizer.encode(rows), tok.pad_token_id, 1)
    plain = tok([r.fields["premise"] for r in rows], [r.fields["hypothesis"] for r in rows], padding=True,
                truncation="longest_first", max_length=20, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(batch[key], plain[key]), key
    assert batch["token_type_ids"].sum() > 0
    model.eval()
    with torch.no_grad():
        cls = mlm.base_model(**plain).last_hidden_state[:, 0]
        t = featurizer.tasks.index("ocnli")
        expected = model.heads["ocnli"](cls)
        got = model(**batch)[:, : expected.size(1)]
        assert torch.allclose(got, expected, atol=1e-5)
        without = {k: v for k, v in batch.items() if k != "token_type_ids"}
        assert (model(**without)[:, : expected.size(1)] - got).abs().max() > 1e-4  # the types reached the encoder
    assert batch["task"].eq(t).all()
    assert "token_type_ids" not in collate(featurizer.encode(examples["tnews"]), tok.pad_token_id, 1)
    off, _ = build_scorer("heads", tok, mlm, {}, list(TASKS), 20, MethodOptions(segment_ids=False))
    assert "token_type_ids" not in collate(off.encode(rows), tok.pad_token_id, 1)
    assert method_options({"method_options": {"cln_dim": 32}}).segment_ids is False
    assert method_options({"method_options": {"cln_dim": 32, "segment_ids": True}}).segment_ids is True


@pytest.fixture
def toy_method():
    from toy_method import TOY

    register(TOY)
    yield TOY
    del METHODS[TOY.name]


def test_a_method_is_one_file_and_one_register_call(toy_method, tiny_dir, synthetic_dir, tmp_path):
    """A method pet_mtl has never seen trains through the one loop, saves, reloads and predicts through the same
    code as the built-in ones; it reads plain text, so a broken pattern set cannot block it."""
    cfg = make_cfg(f"method={toy_method.name}", f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.lr=3e-2",
                   "train.epochs=15", "train.batch_size=16", "train.eval_every=0", "train.progress=false",
                   "data.val_size=0.25", "train.predict_splits=[]", "patterns.tnews=[tnews/no_such.j2]")
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.patterns == {}
    trainer.fit()
    best = max(e["score"] for e in trainer.state.history)
    chance = sum(1 / TASKS[t].num_labels for t in TASKS) / 3
    assert best > 1.25 * chance
    ckpt = tmp_path / "run" / "checkpoint-last"
    _, meta, featurizer, model = load_scorer(ckpt)
    assert meta["method"] == toy_method.name and meta["patterns"] == [] and type(model).__name__ == "BagOfEmbeddings"
    val = trainer.data["tnews"].val
    assert torch.equal(Predictor(featurizer, model).scores(val), Predictor(trainer.featurizer, trainer.model).scores(val))
    write_submission(ckpt, synthetic_dir, "a", tmp_path / "sub")
    assert len((tmp_path / "sub" / "tnews_predict.json").read_text().splitlines()) == 12


def test_methods_that_use_patterns_say_which_task_has_none(tiny):
    tok, mlm = tiny
    with pytest.raises(ConfigError, match="method=pet needs a pattern for every task; none for ocemotion"):
        build_scorer("pet", tok, mlm, {"ocnli": cloze_patterns()["ocnli"]}, ["ocnli", "ocemotion"], 64)
    with pytest.raises(ConfigError, match="method='bag': expected one of pet, heads, cln, pet_cln"):
        get_method("bag")
