"""R-Drop (train.rdrop): the loss against a hand computation, the two passes differ by dropout alone, a real run."""
from __future__ import annotations

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


def test_the_run_optimises_rdrop_and_says_so(tiny_dir, synthetic_dir, tmp_path):
    """The run's objective doubles the batch and adds alpha x the symmetric KL (checked against a hand computation
    on the run's own model), and the loop optimises that objective: with the same seed (so the same dropout
    draws) two weights of the KL term train different weights, which a loop that dropped the term would not."""
    t = trainer(tiny_dir, synthetic_dir, tmp_path / "a", "train.rdrop=0.5", "train.max_steps=4", "train.eval_every=2")
    batch = t.next_batch()
    model_input = t.objective.prepare(batch)
    assert len(model_input["input_ids"]) == 2 * len(batch["input_ids"])  # each row twice, in one forward
    t.model.train()
    scores = t.model(**model_input).float()
    first, second = scores.chunk(2)
    assert not torch.allclose(first, second)  # dropout: two different passes
    w = batch["weights"]
    p, q = first.log_softmax(-1), second.log_softmax(-1)
    kl = ((p.exp() * (p - q)).sum(-1) + (q.exp() * (q - p)).sum(-1)) / 2
    by_hand = (label_loss(first, batch["labels"], w) + label_loss(second, batch["labels"], w)) / 2 \
        + 0.5 * (kl * w).sum() / w.sum()
    assert t.objective.loss(scores, batch).item() == pytest.approx(by_hand.item(), rel=1e-5)

    runs = {}
    for alpha in ("0.5", "5.0"):
        run = trainer(tiny_dir, synthetic_dir, tmp_path / alpha, f"train.rdrop={alpha}", "train.max_steps=3",
                      "train.eval_every=0", "train.checkpoint_last=none")
        run.fit()
        runs[alpha] = run.model.state_dict()
        assert f"objective: RDrop(CrossEntropy, alpha={float(alpha):g})" in run.plan()  # the log's first lines
    assert any(not torch.equal(runs["0.5"][k], runs["5.0"][k]) for k in runs["0.5"])


def test_rdrop_composes_with_distillation(tiny_dir, synthetic_dir, tmp_path):
    """R-Drop wraps the soft-label objective of a distillation run (it used to be refused): soft rows keep their
    soft cross-entropy in both passes."""
    from pet_mtl.training.objectives import RDrop, SoftLabels, build_objective

    cfg = make_cfg("train.rdrop=1.0", "distill.teachers=[x]", "distill.temperature=3.0")
    objective = build_objective(cfg)
    assert isinstance(objective, RDrop) and isinstance(objective.inner, SoftLabels)
    scores = torch.randn(4, 3)
    batch = {"labels": torch.tensor([0, 1, 2, 0]), "soft": torch.softmax(torch.randn(4, 3), -1),
             "is_soft": torch.tensor([False, True, True, False]), "weights": torch.ones(4)}
    doubled = torch.cat([scores, scores])
    assert objective.loss(doubled, batch).item() == pytest.approx(SoftLabels(3.0).loss(scores, batch).item())
