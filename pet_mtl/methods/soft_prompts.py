"""Learned prompt tokens (a pattern's `{{ soft(...) }}`, P-tuning and prompt tuning): a table of input embeddings
that replace the placeholder tokens the featurizer put where the pattern asked for them.

Why a forward hook on the model's input-embedding module rather than `inputs_embeds`: every method and backbone
then reads the learned tokens without a code path of its own (the cloze head narrowed to the slot, the causal
LM's packed candidates, conditional LayerNorm's hooks), and the model's own code adds position and token-type
embeddings to them as to any token. So a soft token initialised from a text's token and not trained gives exactly
the scores of that text written out.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from pet_mtl.methods.features import PromptTable


class SoftPrompts(nn.Module):
    """[rows, embedding size] learned embeddings, row order as the featurizer's PromptTable: a soft('text') starts
    from its tokens' embeddings, a soft(n) from the embeddings of n tokens drawn from the vocabulary (as prompt
    tuning initialises; drawn with torch's generator, which training seeds)."""

    def __init__(self, table: PromptTable, embeddings: nn.Embedding, special_ids: list[int]):
        super().__init__()
        vocab = embeddings.weight.detach()
        ordinary = torch.tensor(sorted(set(range(vocab.size(0))) - set(special_ids)))
        rows = []
        for key in sorted(table.offsets, key=table.offsets.get):
            ids = table.init_ids[key]
            index = (torch.tensor(ids) if ids is not None
                     else ordinary[torch.randint(len(ordinary), (table.lengths[key],))])
            rows.append(vocab[index].clone())
        self.weight = nn.Parameter(torch.cat(rows).float())
        self.keys = {key: (table.offsets[key], table.lengths[key]) for key in table.offsets}
        self._embeddings = [embeddings]  # a list: the model's module, read here, never registered (nor saved) twice

    @contextmanager
    def on(self, positions: torch.Tensor, rows: torch.Tensor) -> Iterator[None]:
        """Within the block, the model's input embeddings at `positions` ([B, M], -1 for none) are the table's
        `rows` ([B, M]); only for an embedding call over the batch's own rows (a causal LM's later calls over
        repeated rows, for its cached candidates, read no prompt)."""
        b, m = (positions >= 0).nonzero(as_tuple=True)
        at, take = positions[b, m], rows[b, m]

        def place(module, args, output):
            if output.dim() != 3 or output.size(0) != positions.size(0):
                return None
            output = output.clone()
            output[b, at] = self.weight[take].to(output.dtype)
            return output

        handle = self._embeddings[0].register_forward_hook(place)
        try:
            yield
        finally:
            handle.remove()
