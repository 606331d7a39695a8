"""PET's output style: one masked LM answers every task through its own MLM head (method=pet).

A label word's score is built from the log-probabilities (log-softmax over the full vocabulary) of its tokens at
the slot positions; the pattern's scoring rule says which positions count (patterns.SCORING_RULES: the whole
padded slot, the word's own tokens, or their per-token mean), and a label with several words combines them by
log-sum-exp or mean (patterns.AGGREGATIONS). The encoder runs on the whole sequence, but the MLM head (transform +
vocabulary projection) runs only on the slot positions (the backbone contract's `logits_at`): for a 64-token TNEWS
title with a 2-token slot that is 32x less head work, and the head is the costliest layer of a small Chinese BERT
(256 x 21,128). The result is identical to gathering from a full forward (tests/test_scoring.py is the oracle, one
case per rule; tests/test_backbones.py the same for every architecture).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from pet_mtl.backbones.contract import Backbone
from pet_mtl.methods.base import NEG, Featurizer, Method, MethodOptions, Scorer
from pet_mtl.methods.features import ClozeFeaturizer
from pet_mtl.prompts import Pattern


class ClozeModel(Scorer):
    def __init__(self, backbone: Backbone, verbalizers: dict[str, torch.Tensor]):
        """`verbalizers`: ClozeFeaturizer.label_tensors() (ids, weights, word_mask, label_mask, logsumexp)."""
        super().__init__(backbone)
        self.max_labels = verbalizers["label_mask"].size(1)
        for name, tensor in verbalizers.items():
            self.register_buffer(name, tensor, persistent=False)

    def slot_logits(self, input_ids, attention_mask, slot_positions, token_type_ids=None) -> torch.Tensor:
        """[B, S, V] vocabulary logits at the slot positions."""
        return self.backbone.logits_at(slot_positions, input_ids, attention_mask, token_type_ids)

    def label_scores(self, logp: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        """[B, C] label scores from [B, S, V] log-probabilities at the slot, through each row's pattern (`head`: its
        index in the pattern table); labels a pattern's task lacks score NEG."""
        B, S, _ = logp.shape
        ids = self.ids[head][..., :S]  # [B, C, K, S]
        C, K = ids.size(1), ids.size(2)
        per_pos = logp.gather(2, ids.reshape(B, C * K, S).transpose(1, 2))  # [B, S, C*K]
        return self.combine(per_pos.transpose(1, 2).reshape(B, C, K, S), head)

    def combine(self, per_pos: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        """[B, C] label scores from [B, C, K, S] log-probabilities of each word's token at each slot position: a
        word's positions weighted by the pattern's scoring rule, a label's words by log-sum-exp or mean."""
        words = (per_pos * self.weights[head][..., :per_pos.size(-1)]).sum(-1)  # [B, C, K]
        mask = self.word_mask[head]
        lse = words.masked_fill(~mask, float("-inf")).logsumexp(-1)
        mean = words.masked_fill(~mask, 0.0).sum(-1) / mask.sum(-1).clamp(min=1)
        scores = torch.where(self.logsumexp[head][:, None], lse, mean)
        return scores.masked_fill(~self.label_mask[head], NEG)

    def scores(self, input_ids, attention_mask, slot_positions, head, task, token_type_ids=None) -> torch.Tensor:
        logp = self.slot_logits(input_ids, attention_mask, slot_positions, token_type_ids).float().log_softmax(-1)
        return self.label_scores(logp, head)


def cloze_featurizer(backbone: Backbone, patterns: Mapping[str, list[Pattern]], tasks: list[str],
                     max_length: int, options: MethodOptions) -> ClozeFeaturizer:
    return ClozeFeaturizer(backbone.tokenizer, {t: patterns[t] for t in tasks}, max_length,
                           token_types=backbone.takes_token_types)


def cloze_scorer(backbone: Backbone, featurizer: Featurizer, options: MethodOptions) -> ClozeModel:
    assert isinstance(featurizer, ClozeFeaturizer), "the cloze scorer reads the cloze featurizer's label words"
    return ClozeModel(backbone, featurizer.label_tensors())


PET = Method("pet", "pattern cloze answered by the MLM head", cloze_featurizer, cloze_scorer, uses_patterns=True,
             needs_mlm_head=True)
