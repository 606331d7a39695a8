"""LoRA (model.lora.r > 0): only the adapters train, checkpoints hold only them and the base they belong to, a
reload onto that base scores exactly what the trained model scored, another base is refused, and the export folds
them into a plain model."""
from __future__ import annotations

import shutil

import pytest
import torch
import zoo
from conftest import FILLER, KEYS, pattern_texts
from helpers import make_cfg
from safetensors.torch import load_file, save_file

from pet_mtl.backbones.adapters import add_lora, fingerprint, merge_lora, parameter_counts
from pet_mtl.backbones.loading import load_pretrained
from pet_mtl.core.errors import CheckpointError, ConfigError
from pet_mtl.inference.checkpoint import load_scorer
from pet_mtl.inference.predictor import Predictor
from pet_mtl.training.trainer import Trainer


def lora_run(tiny_dir, synthetic_dir, tmp_path, method="pet", *extra):
    base = tmp_path / "base"
    shutil.copytree(tiny_dir, base)
    trainer = Trainer(make_cfg(f"method={method}", f"model.path={base}", f"data.dir={synthetic_dir}",
                               "model.lora.r=4", "model.lora.alpha=8", "train.max_steps=4", "train.eval_every=2",
                               "train.batch_size=8", "train.lr=1e-2", "train.progress=false", "train.predict_splits=[]",
                               *extra), tmp_path / "run")
    trainer.fit()
    return base, trainer


@pytest.mark.parametrize("method", ["pet", "cln"])
def test_a_lora_run_trains_only_its_adapters_and_reloads_onto_its_base_exactly(tiny_dir, synthetic_dir, tmp_path,
                                                                              method, caplog):
    caplog.set_level("INFO", logger="pet_mtl")
    base, trainer = lora_run(tiny_dir, synthetic_dir, tmp_path, method)
    original = load_file(base / "model.safetensors")
    trained = trainer.model.mlm.state_dict()
    frozen = {k.replace(".base_layer", ""): v for k, v in trained.items() if "lora_" not in k}
    assert set(original) <= set(frozen) and all(torch.equal(frozen[k], original[k]) for k in original)
    assert any(v.abs().sum() > 0 for k, v in trained.items() if "lora_B" in k)  # the adapters did train
    log = caplog.text
    trained_n, total_n = parameter_counts(trainer.model)
    assert f"parameters: {trained_n:,} trained of {total_n:,}" in log and "LoRA r=4 alpha=8 on query, value" in log
    last = trainer.run_dir / "checkpoint-last"
    assert (last / "adapter.safetensors").is_file() and not (last / "model").exists()
    assert set(load_file(last / "adapter.safetensors")) == {k for k in trained if "lora_" in k}
    rows = [e for d in trainer.data.values() for e in d.val]
    by_task = {t: [e for e in rows if e.task == t] for t in trainer.data}
    _, meta, featurizer, loaded = load_scorer(last)
    assert meta["adapter"]["base"] == str(base) and meta["adapter"]["fingerprint"] == fingerprint(
        load_pretrained(base)[1])
    for task, examples in by_task.items():
        assert torch.equal(Predictor(featurizer, loaded).scores(examples),
                           Predictor(trainer.featurizer, trainer.model).scores(examples)), task


def test_a_lora_checkpoint_is_refused_on_another_base_and_found_on_a_copy_of_its_own(tiny_dir, synthetic_dir,
                                                                                     tmp_path):
    base, trainer = lora_run(tiny_dir, synthetic_dir, tmp_path)
    ckpt = trainer.run_dir / "checkpoint-best"
    copy, other = tmp_path / "copy", tmp_path / "other"
    shutil.copytree(base, copy)
    shutil.copytree(base, other)
    weights = load_file(other / "model.safetensors")
    name = next(k for k in sorted(weights) if k.endswith("query.weight"))
    weights[name] = weights[name] + 1e-3
    save_file(weights, other / "model.safetensors")
    with pytest.raises(CheckpointError, match="holds other weights"):
        load_scorer(ckpt, base_model=str(other))
    shutil.move(base, tmp_path / "moved")
    with pytest.raises(CheckpointError, match="pass the base's folder as base_model="):
        load_scorer(ckpt)
    _, _, featurizer, model = load_scorer(ckpt, base_model=str(copy))  # the same weights elsewhere: accepted
    assert model.adapter is not None


def test_the_export_merges_the_adapters_into_a_plain_model_that_scores_the_same(tiny_dir, synthetic_dir, tmp_path):
    from transformers import AutoModelForMaskedLM

    from pet_mtl.export import main as export

    _, trainer = lora_run(tiny_dir, synthetic_dir, tmp_path, "heads")
    out = tmp_path / "exported"
    assert export([str(trainer.run_dir), f"output_dir={out}"]) == 0
    plain = AutoModelForMaskedLM.from_pretrained(out / "model")
    assert not any("lora" in k for k in plain.state_dict())
    assert (out / "calibration.json").is_file() and not (out / "adapter.safetensors").exists()
    rows = [e for d in trainer.data.values() for e in d.val if e.task == "tnews"]
    _, _, f1, lora = load_scorer(trainer.run_dir / "checkpoint-best")
    _, meta, f2, merged = load_scorer(out)
    assert "adapter" not in meta and meta["exported_from"]["adapter"]["r"] == 4
    assert torch.allclose(Predictor(f1, lora).scores(rows), Predictor(f2, merged).scores(rows), atol=1e-5)
    assert export([str(trainer.run_dir), f"output_dir={out}"]) == 2  # the folder exists
    assert export([str(out), f"output_dir={tmp_path / 'again'}"]) == 2  # nothing to merge


@pytest.mark.parametrize("arch", [*zoo.ARCHITECTURES, *zoo.CAUSAL_ARCHITECTURES])
def test_every_architecture_gets_adapters_by_default_and_starts_as_its_base(arch, tmp_path):
    """The default target modules exist for every backbone the project supports; LoRA's B starts at zero, so the
    adapted model's first forward is the base's, and merging an untrained adapter changes nothing."""
    tokenizer, model = load_pretrained(zoo.build(arch, tmp_path / arch, [FILLER, KEYS] + pattern_texts()),
                                       kinds=("masked", "causal"))
    model.eval()
    ids = tokenizer("他们在讨论比赛结果", return_tensors="pt")
    with torch.no_grad():
        before = model(**ids).logits
    adapter = add_lora(model, "base", r=2, alpha=4, dropout=0.0, target_modules=None)
    trained, total = parameter_counts(model)
    assert 0 < trained < total / 2 and adapter.target_modules
    assert all(("lora_" in n) == p.requires_grad for n, p in model.named_parameters())
    with torch.no_grad():
        assert torch.equal(model(**ids).logits, before)
        assert torch.allclose(merge_lora(model)(**ids).logits, before, atol=1e-6)


def test_lora_settings_that_cannot_work_are_one_line(tiny_dir, synthetic_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"model.lora.target_modules=\['nosuch'\]"):
        lora_run(tiny_dir, synthetic_dir, tmp_path, "pet", "model.lora.target_modules=[nosuch]")
    with pytest.raises(ConfigError, match="model.lora.r"):
        Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "model.lora.r=-1"), tmp_path / "r")


@pytest.mark.parametrize("arch", ["gpt2", "qwen2", "llama"])
def test_method_causal_trains_adapters_and_reloads_them_exactly(arch, tmp_path):
    """The GPT-style system with LoRA on each causal architecture (GPT-2's transposed Conv1D projections, Qwen2's
    and Llama's q_proj/v_proj): trained, reloaded from checkpoint-last onto the base, the same label scores."""
    from conftest import write_synthetic

    base = zoo.build(arch, tmp_path / arch, [FILLER, KEYS, "甲乙丙丁这是新闻一段文字。？！：，"] + pattern_texts())
    data = write_synthetic(tmp_path / "data", {"ocnli": 6, "ocemotion": 3, "tnews": 2}, test_rows=4)
    trainer = Trainer(make_cfg("method=causal", f"model.path={base}", f"data.dir={data}", "model.lora.r=4",
                               "train.max_steps=3", "train.batch_size=8", "train.eval_every=3", "train.lr=1e-2",
                               "train.progress=false", "train.predict_splits=[]", "model.max_length=64",
                               "data.val_size=0.25"), tmp_path / "run")
    trainer.fit()
    assert any(v.abs().sum() > 0 for k, v in trainer.model.mlm.state_dict().items() if "lora_B" in k)
    _, meta, featurizer, loaded = load_scorer(tmp_path / "run" / "checkpoint-last")
    assert meta["adapter"]["r"] == 4 and not (tmp_path / "run" / "checkpoint-last" / "model").exists()
    rows = trainer.data["tnews"].val
    ours = Predictor(trainer.featurizer, trainer.model).scores(rows)
    assert torch.equal(Predictor(featurizer, loaded).scores(rows), ours)
