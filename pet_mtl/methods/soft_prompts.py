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

from pet_mtl.core.errors import ConfigError
from pet_mtl.methods.features import PromptTable

#: P-tuning's prompt encoders (model.prompt_encoder), by whether the MLP reads the tokens through a bidirectional LSTM
PROMPT_ENCODERS = {"lstm": True, "mlp": False}


def check_prompt_encoder(kind: str | None) -> None:
    if kind is not None and kind not in PROMPT_ENCODERS:
        raise ConfigError(f"model.prompt_encoder={kind!r}: expected {', '.join(PROMPT_ENCODERS)} or null")


class SoftPrompts(nn.Module):
    """[rows, embedding size] learned embeddings, row order as the featurizer's PromptTable: a soft('text') starts
    from its tokens' embeddings, a soft(n) from the embeddings of n tokens drawn from the vocabulary (as prompt
    tuning initialises; drawn with torch's generator, which training seeds)."""

    def __init__(self, table: PromptTable, embeddings: nn.Embedding, special_ids: list[int],
                 encoder: str | None = None):
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
        self._embeddings = [embeddings]  # a list: the model's module, read here, never registered (nor saved) twice
        #: P-tuning's reparametrisation: the tokens are encoder(weight) while they train
        self.encoder = None if encoder is None else PromptEncoder(self.weight.size(1), encoder)

    def table(self) -> torch.Tensor:
        """[rows, embedding size]: the embeddings the model reads."""
        return self.weight if self.encoder is None else self.encoder(self.weight)

    def plain_state(self, prefix: str) -> dict[str, torch.Tensor]:
        """This table as a plain one (what a checkpoint for prediction holds): the encoder's output as `weight`."""
        return {f"{prefix}weight": self.table().detach()}

    @contextmanager
    def on(self, positions: torch.Tensor, rows: torch.Tensor) -> Iterator[None]:
        """Within the block, the model's input embeddings at `positions` ([B, M], -1 for none) are the table's
        `rows` ([B, M]); only for an embedding call over the batch's own rows (a causal LM's later calls over
        repeated rows, for its cached candidates, read no prompt)."""
        b, m = (positions >= 0).nonzero(as_tuple=True)
        at, take = positions[b, m], rows[b, m]
        table = self.table()  # once a forward: the encoder (if any) runs once for all rows

        def place(module, args, output):
            if output.dim() != 3 or output.size(0) != positions.size(0):
                return None
            output = output.clone()
            output[b, at] = table[take].to(output.dtype)
            return output

        handle = self._embeddings[0].register_forward_hook(place)
        try:
            yield
        finally:
            handle.remove()


class PromptEncoder(nn.Module):
    """P-tuning's prompt encoder (Liu et al. 2021): the prompt tokens as one sequence through a bidirectional LSTM
    (`lstm`), then a two-layer MLP with a residual path (`mlp` alone skips the LSTM). The residual starts it near
    the identity: the last layer is zero at first, so the encoded tokens start as the raw ones (a soft('text')
    still starts as its text)."""

    def __init__(self, dim: int, kind: str):
        super().__init__()
        check_prompt_encoder(kind)
        self.lstm = nn.LSTM(dim, dim // 2, bidirectional=True, batch_first=True) if PROMPT_ENCODERS[kind] else None
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        hidden = self.lstm(rows[None])[0][0] if self.lstm is not None else rows
        return rows + self.mlp(hidden)
