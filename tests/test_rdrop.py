"""R-Drop (train.rdrop): the loss against a hand computation, the two passes differ by dropout alone, a real run."""
from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import make_cfg

from pet_mtl.methods.base import NEG
from pet_mtl.training.losses import label_loss, rdrop_loss
from pet_mtl.training.trainer import Trainer


def test_rdrop_loss_matches_a_hand_computation():
    first = torch.tensor([[2.0, 0.0, NEG], [0.5, 1.5, -1.0]])
    second = torch.tensor([[1.0, 1.0, NEG], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 1])
    weights = torch.tensor([1.0, 3.0])

    def probs(row):
        z = [math.exp(v) for v in row]
        return [v / sum(z) for v in z]

    expected_kl = []
    for a, b in zip(first.tolist(), second.tolist()):
        p, q = probs(a), probs(b)
        expected_kl.append(sum(0.5 * (pi * math.log(pi / qi) + qi * math.log(qi / pi))
                               for pi, qi in zip(p, q) if pi > 0 and qi > 0))
    ce = (label_loss(first, labels, weights) + label_loss(second, labels, weights)) / 2
    kl = (expected_kl[0] * 1 + expected_kl[1] * 3) / 4
    assert rdrop_loss(first, second, labels, weights, 0.7).item() == pytest.approx(ce.item() + 0.7 * kl, rel=1e-6)
    assert rdrop_loss(first, first, labels, weights, 5.0).item() == pytest.approx(label_loss(first, labels, weights).item())


def trainer(tiny_dir, synthetic_dir, run_dir, *extra):
    return Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.batch_size=8",
                            "train.progress=false", "train.predict_splits=[]", "train.calibrate=false", *extra), run_dir)


@pytest.mark.parametrize("method", ["pet", "heads"])
def test_the_two_passes_differ_only_by_dropout(tiny_dir, synthetic_dir, tmp_path, method):
    t = trainer(tiny_dir, synthetic_dir, tmp_path, f"method={method}", "train.rdrop=1.0", "train.max_steps=1")
    from pet_mtl.methods.features import collate

    batch = collate(t.features[:8], t.tokenizer.pad_token_id, 1)
    doubled = {k: torch.cat([v, v]) for k, v in batch.items()}
    t.model.train()
    first, second = t.model(**doubled).chunk(2)
    assert not torch.allclose(first, second)  # dropout on: two different passes
    t.model.eval()
    first, second = t.model(**doubled).chunk(2)
    assert torch.allclose(first, second, atol=1e-5)  # dropout off: the very same computation
    weights = torch.ones(8)
    assert rdrop_loss(first, second, batch["labels"], weights, 1.0).item() == pytest.approx(
        label_loss(first, batch["labels"], weights).item(), abs=1e-5)


def test_a_run_with_rdrop_trains_and_says_so(tiny_dir, synthetic_dir, tmp_path):
    t = trainer(tiny_dir, synthetic_dir, tmp_path, "train.rdrop=0.5", "train.max_steps=4", "train.eval_every=2")
    losses, rows = [], []
    original, model = t._loss, t.ddp
    t._loss = lambda batch, w: losses.append((len(batch["labels"]), original(batch, w))) or losses[-1][1]
    t.ddp = lambda **batch: rows.append(len(batch["input_ids"])) or model(**batch)
    t.fit()
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert [e["step"] for e in history] == [2, 4] and all(math.isfinite(x.item()) for _, x in losses)
    assert rows == [2 * n for n, _ in losses] and len(rows) == 4  # each training batch ran twice, in one forward
    assert "rdrop: 0.5" in (tmp_path / "checkpoint-best" / "config.yaml").read_text()
