"""A method written the way the registry's docstring says: one file, then one `register(...)` call.

"bag of embeddings": the plain text's mean input embedding, one linear layer over the most labels any task has
(a task's missing labels masked to NEG). Nothing in pet_mtl knows about it; tests/test_methods.py registers it and
runs it through training, checkpoints and prediction.
"""
from __future__ import annotations

import torch
from torch import nn

from pet_mtl.core.tasks import get_task
from pet_mtl.methods import Method
from pet_mtl.methods.base import NEG, Scorer
from pet_mtl.methods.heads import TextFeaturizer


class BagOfEmbeddings(Scorer):
    def __init__(self, backbone, tasks: list[str]):
        super().__init__(backbone)
        sizes = [get_task(t).num_labels for t in tasks]
        self.max_labels = max(sizes)
        self.classifier = nn.Linear(backbone.config.hidden_size, self.max_labels)
        self.register_buffer("label_mask", torch.tensor([[c < n for c in range(self.max_labels)] for n in sizes]),
                             persistent=False)

    def scores(self, input_ids, attention_mask, slot_positions, head, task) -> torch.Tensor:
        emb = self.mlm.get_input_embeddings()(input_ids) * attention_mask[..., None]
        mean = emb.sum(1) / attention_mask.sum(1, keepdim=True)
        return self.classifier(mean).float().masked_fill(~self.label_mask[task], NEG)


def bag_featurizer(backbone, patterns, tasks, max_length, options):
    return TextFeaturizer(backbone.tokenizer, tasks, max_length)


def bag_scorer(backbone, featurizer, options):
    return BagOfEmbeddings(backbone, featurizer.tasks)


TOY = Method("toy_bag", "mean input embedding + one linear layer", bag_featurizer, bag_scorer, uses_patterns=False)
