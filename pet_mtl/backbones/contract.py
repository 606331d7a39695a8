"""The backbone contract: what the methods, pretraining and the auxiliary MLM may ask of a model (a masked LM, or a
causal LM for method=causal and the plain-text methods), answered by the model itself and checked once against its
own forward.

Before it, each caller reached into the model with a guess that held for BERT and failed for someone: the vocabulary
head taken as "the one child holding the output embeddings" (ELECTRA's generator splits its head over two modules,
so its slot logits were silently wrong or a shape error; DeBERTa-v2 with legacy=false passes the word embeddings to
its head, a TypeError), token type ids sent whenever the tokenizer makes them (XLM-R's tokenizer makes none, but a
BERT tokenizer beside a model with one token type crashes in the embeddings), the classifier reading position 0.

Vocabulary logits at chosen positions: the model's OWN forward runs, with a forward hook on its base model that
narrows the hidden states to the chosen positions, so whatever the head's shape (one module, two, a function of the
embeddings) its own code projects just those positions. That is exact for every head that acts on each position
alone (all transformers masked LMs), and `verify` proves it on a probe input against the unnarrowed forward when the
contract is built: a head that fails the probe is run whole (the `full` adapter: slower, never wrong), with a
warning saying so. Projecting only the slot positions is most of the saving on a small Chinese BERT, whose
vocabulary projection (hidden x 21,128) is its costliest layer.
"""
from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pet_mtl.core.errors import ConfigError

log = logging.getLogger("pet_mtl")

#: what narrows a base model's hidden states [B, T, H] while a narrowed forward runs (None: the whole sequence)
_narrowing: weakref.WeakKeyDictionary[nn.Module, Callable[[torch.Tensor], torch.Tensor]] = weakref.WeakKeyDictionary()


def _narrow_hook(module: nn.Module, args, output):
    select = _narrowing.get(module)
    if select is None:
        return None
    if isinstance(output, tuple):
        return (select(output[0]),) + tuple(output[1:])
    output["last_hidden_state"] = select(output["last_hidden_state"])
    return output


def _hook_once(base: nn.Module) -> None:
    """One narrowing hook per base model, however many contracts are built on it (and none doubled by a copy)."""
    if not any(h is _narrow_hook for h in base._forward_hooks.values()):
        base.register_forward_hook(_narrow_hook)


@contextmanager
def _narrowed(base: nn.Module, select: Callable[[torch.Tensor], torch.Tensor]):
    _narrowing[base] = select
    try:
        yield
    finally:
        _narrowing.pop(base, None)


def at_positions(positions: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """[B, T, H] -> [B, S, H] at positions [B, S]."""
    return lambda h: h.gather(1, positions[..., None].expand(-1, -1, h.size(-1)))


def where_true(where: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """[B, T, H] -> [1, N, H] at the N true places of where [B, T] (a batch axis kept: some heads want one)."""
    return lambda h: h[where][None]


def has_token_types(tokenizer) -> bool:
    """Whether the tokenizer gives token type ids for a pair (BERT's do; RoBERTa's and XLM-R's have none to give)."""
    return "token_type_ids" in tokenizer.model_input_names


def model_kind(config: Any) -> str:
    """masked | causal, from a model's config.json: a decoder flag or a causal architecture name is causal."""
    names = getattr(config, "architectures", None) or []
    if getattr(config, "is_decoder", False) or any(n.endswith(("ForCausalLM", "LMHeadModel")) for n in names):
        return "causal"
    return "masked"


@dataclass(frozen=True)
class Specials:
    """The special tokens a model's tokenizer has (ids, None where it has none)."""

    mask: int | None
    cls: int | None
    sep: int | None
    pad: int | None
    eos: int | None

    @classmethod
    def of(cls, tokenizer) -> "Specials":
        return cls(tokenizer.mask_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
                   tokenizer.eos_token_id)


#: how vocabulary logits at chosen positions are computed; `verify` picks the first that matches the full forward
VOCAB_HEADS = {
    "narrowed": "the model's own forward with its base model's hidden states narrowed to the chosen positions",
    "full": "the model's full forward (every position through the head), then the chosen positions",
}


def is_norm(module: nn.Module) -> bool:
    """A normalisation layer a condition (conditional LayerNorm) may shift: torch's LayerNorm, or an RMSNorm (Llama,
    Qwen: transformers defines one class per model, all named ...RMSNorm, all with a `weight` of the hidden size)."""
    return isinstance(module, nn.LayerNorm) or (type(module).__name__.endswith("RMSNorm")
                                                and isinstance(getattr(module, "weight", None), torch.Tensor))


class Backbone:
    """A language model and its tokenizer behind the few questions pet_mtl asks of them. Not an nn.Module: it holds
    references, so a Scorer (which owns the model) stays the one module DDP, checkpoints and `.to()` see."""

    def __init__(self, model: nn.Module, tokenizer: Any, verify: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.config = model.config
        self.kind = model_kind(self.config)
        self.specials = Specials.of(tokenizer)
        #: a causal LM's first token before any text: its tokenizer's bos, else cls (GPT-2 models with a BERT
        #: vocabulary, as uer/gpt2-chinese, start texts with [CLS]), else none
        self.start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
        #: the tokenizer makes token type ids AND the model has more than one type to embed (BERT: 2; RoBERTa, XLM-R: 1)
        self.takes_token_types = has_token_types(tokenizer) and (getattr(self.config, "type_vocab_size", 0) or 0) >= 2
        base = getattr(model, "base_model", None)
        self.base = base if isinstance(base, nn.Module) and base is not model else None
        self.vocab_head = "narrowed" if self.base is not None else "full"
        #: a causal LM's candidates: packed after the prompt behind a 4D mask, or over its repeated cache (verify)
        self.candidate_pass = "packed"
        if self.base is not None:
            _hook_once(self.base)
        if verify:
            self.verify()

    # ---------------------------------------------------------------- inputs

    def inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The keyword arguments of a forward: token type ids only for a model that embeds them."""
        out = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self.takes_token_types:
            out["token_type_ids"] = token_type_ids
        return out

    # ---------------------------------------------------------------- what the methods read

    def hidden(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """[B, T, H] the encoder's last hidden states."""
        inputs = self.inputs(input_ids, attention_mask, token_type_ids)
        if self.base is not None:
            return self.base(**inputs).last_hidden_state
        return self.model(**inputs, output_hidden_states=True).hidden_states[-1]

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, H] one state per sequence for a classifier. A masked LM: the first token ([CLS], <s>), which its
        bidirectional attention lets see every other. A causal LM: the last real token (rows are padded on the
        right), the only one that has seen the whole text."""
        if self.kind == "causal":
            return hidden[torch.arange(hidden.size(0), device=hidden.device), attention_mask.sum(1) - 1]
        return hidden[:, 0]

    def continuations(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      candidates: torch.Tensor) -> torch.Tensor:
        """[B, M, S] a causal LM's log-probability of each candidate's token at each of its positions, teacher
        forced after each row's prompt: input_ids [B, T] right-padded prompts, candidates [B, M, S] token ids.
        One pass, never one forward per candidate: `packed` (the candidates' tokens after the prompts in the same
        sequence, each seeing its prompt and its own earlier tokens through a 4D attention mask: the prompt plus
        every candidate token once, the bound), or `cached` (the prompt's key/value cache repeated for the
        candidates) for a model that refuses a 4D mask. `verify` picks, against one forward per candidate."""
        if self.candidate_pass == "packed":
            return self._packed(input_ids, attention_mask, candidates)
        return self._cached(input_ids, attention_mask, candidates)

    def _packed(self, input_ids, attention_mask, candidates) -> torch.Tensor:
        B, T = input_ids.shape
        M, S = candidates.shape[1:]
        W, dev = M * (S - 1), input_ids.device
        lengths = attention_mask.sum(1)
        ids = torch.cat([input_ids, candidates[:, :, :-1].reshape(B, W)], 1)
        k = torch.arange(W, device=dev)
        which, step = k // max(S - 1, 1), k % max(S - 1, 1)
        real = attention_mask.bool()
        mask = torch.zeros(B, T + W, T + W, dtype=torch.bool, device=dev)
        mask[:, :T, :T] = torch.ones(T, T, dtype=torch.bool, device=dev).tril()[None] & real[:, None, :]
        mask[:, T:, :T] = real[:, None, :]  # a candidate sees its row's prompt...
        mask[:, T:, T:] = (which[:, None] == which[None, :]) & (step[:, None] >= step[None, :])  # ...and itself
        mask |= torch.eye(T + W, dtype=torch.bool, device=dev)[None]  # padding sees itself: no empty softmax row
        positions = torch.cat([(attention_mask.cumsum(1) - 1).clamp(min=0), lengths[:, None] + step[None]], 1)
        # the head runs once per predicting position: the prompt's last token (it predicts every candidate's first
        # token) and each candidate token but the last (it predicts the next one)
        heads = torch.cat([(lengths - 1)[:, None], T + k[None].expand(B, -1)], 1)  # [B, 1 + W]
        inputs = dict(input_ids=ids, attention_mask=mask[:, None], position_ids=positions)
        if self.vocab_head == "narrowed":
            with _narrowed(self.base, at_positions(heads)):
                logits = self.model(**inputs).logits
        else:
            logits = self.model(**inputs).logits
            logits = logits.gather(1, heads[..., None].expand(-1, -1, logits.size(-1)))
        logp = logits.float().log_softmax(-1)  # [B, 1 + W, V]
        j = torch.arange(S, device=dev)
        source = torch.where(j[None] == 0, 0, 1 + torch.arange(M, device=dev)[:, None] * (S - 1) + j[None] - 1)
        flat = source.reshape(1, M * S) * logp.size(-1) + candidates.reshape(B, M * S)  # into [B, (1 + W) * V]
        return logp.view(B, -1).gather(1, flat).view(B, M, S)

    def _cached(self, input_ids, attention_mask, candidates) -> torch.Tensor:
        B, T = input_ids.shape
        M, S = candidates.shape[1:]
        lengths = attention_mask.sum(1)
        align = (torch.arange(T, device=input_ids.device)[None] + lengths[:, None]) % T  # right- to left-padded
        ids, mask = input_ids.gather(1, align), attention_mask.gather(1, align)
        prompt = dict(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0),
                      use_cache=S > 1)
        if self.vocab_head == "narrowed":  # the vocabulary head on the last position only: the rest only feed the cache
            with _narrowed(self.base, lambda h: h[:, -1:]):
                out = self.model(**prompt)
        else:
            out = self.model(**prompt)
        first = out.logits[:, -1].float().log_softmax(-1).gather(1, candidates[:, :, 0])  # [B, M]
        if S == 1:
            return first[..., None]
        cache = out.cache
        cache.batch_repeat_interleave(M)
        steps = candidates[:, :, :-1].reshape(B * M, S - 1)
        mask = torch.cat([mask.repeat_interleave(M, 0), mask.new_ones(B * M, S - 1)], 1)
        positions = lengths.repeat_interleave(M)[:, None] + torch.arange(S - 1, device=ids.device)[None]
        rest = self.model(input_ids=steps, attention_mask=mask, position_ids=positions, cache=cache).logits
        rest = rest.float().log_softmax(-1).gather(2, candidates[:, :, 1:].reshape(B * M, S - 1, 1))
        return torch.cat([first[..., None], rest.view(B, M, S - 1)], -1)

    def _check_candidate_pass(self, device) -> None:
        """The packed pass against one plain forward per candidate on a probe; a model that fails (or refuses a
        4D mask) is scored through the cached pass, which is checked the same way."""
        n = len(self.tokenizer)
        g = torch.Generator().manual_seed(0)
        prompts = torch.randint(0, n, (2, 6), generator=g).to(device)
        mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2], device=device)
        candidates = torch.randint(0, n, (2, 3, 2), generator=g).to(device)
        naive = torch.empty(2, 3, 2)
        for b in range(2):
            for m in range(3):
                seq = torch.cat([prompts[b, : int(mask[b].sum())], candidates[b, m]])[None]
                logp = self.model(input_ids=seq).logits[0].float().log_softmax(-1)
                naive[b, m] = torch.stack([logp[seq.size(1) - 3 + j, candidates[b, m, j]] for j in range(2)])
        for mode in ("packed", "cached"):
            self.candidate_pass = mode
            try:
                got = self.continuations(prompts, mask, candidates).cpu()
            except Exception as e:  # a model that refuses a 4D attention mask or position ids
                log.warning("%s: the %s candidate pass failed (%s); trying the next", type(self.model).__name__,
                            mode, f"{type(e).__name__}: {str(e)[:120]}")
                continue
            if torch.allclose(got, naive, atol=1e-3 * float(naive.abs().max().clamp(min=1.0))):
                return
            log.warning("%s: the %s candidate pass differs from one forward per candidate; trying the next",
                        type(self.model).__name__, mode)
        raise ConfigError(f"{type(self.model).__name__}: neither candidate pass matches the model's own forward, so "
                          "method=causal cannot score it exactly")

    def logits_at(self, positions: torch.Tensor, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """[B, S, V] vocabulary logits at positions [B, S]."""
        inputs = self.inputs(input_ids, attention_mask, token_type_ids)
        if self.vocab_head == "narrowed":
            with _narrowed(self.base, at_positions(positions)):
                return self.model(**inputs).logits
        logits = self.model(**inputs).logits
        return logits.gather(1, positions[..., None].expand(-1, -1, logits.size(-1)))

    def logits_where(self, where: torch.Tensor, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """[N, V] vocabulary logits at the N true places of where [B, T] (the masked-LM objective's positions)."""
        inputs = self.inputs(input_ids, attention_mask, token_type_ids)
        if self.vocab_head == "narrowed":
            with _narrowed(self.base, where_true(where)):
                return self.model(**inputs).logits[0]
        return self.model(**inputs).logits[where]

    def norms(self) -> list[nn.Module]:
        """The encoder's normalisation layers, each once (ALBERT shares one set across its layers, so a condition
        shifts each shared LayerNorm once, wherever it runs)."""
        return [m for m in (self.base or self.model).modules() if is_norm(m)]

    def describe(self) -> str:
        return (f"backbone: {type(self.model).__name__} ({self.kind} LM, {len(self.tokenizer)} tokens, "
                f"{'with' if self.takes_token_types else 'without'} token type ids, "
                f"vocabulary head: {self.vocab_head})")

    # ---------------------------------------------------------------- the check

    def probe(self) -> dict[str, torch.Tensor]:
        """A short input every tokenizer can encode: text around two mask tokens (a masked LM), or a pair."""
        tok = self.tokenizer
        mask = tok.mask_token or ""
        enc = tok("这是" + mask * 2 + "新闻。", "一段文字", return_tensors="pt",
                  return_token_type_ids=self.takes_token_types)
        return dict(enc)

    @torch.no_grad()
    def verify(self) -> None:
        """The narrowed head against the model's own full forward on a probe input; a mismatch falls back to the
        full forward with a warning (never a silent wrong score); a tokenizer larger than the vocabulary head is
        refused (its ids would index past the logits)."""
        embedded = self.model.get_input_embeddings().num_embeddings
        if len(self.tokenizer) > embedded:
            raise ConfigError(f"the tokenizer has {len(self.tokenizer)} tokens but the model embeds {embedded}: they "
                              "are not a pair (model.path and its tokenizer disagree)")
        enc = self.probe()
        device = next(self.model.parameters()).device
        ids, attention = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        types = enc["token_type_ids"].to(device) if "token_type_ids" in enc else None
        T = ids.size(1)
        positions = torch.tensor([[1, T // 2, T - 1]], device=device)
        was_training = self.model.training
        self.model.eval()
        try:
            full = self.model(**self.inputs(ids, attention, types)).logits
            if len(self.tokenizer) > full.size(-1):
                raise ConfigError(f"the tokenizer has {len(self.tokenizer)} tokens but the model's vocabulary head "
                                  f"scores {full.size(-1)}: they are not a pair (model.path and its tokenizer "
                                  "disagree)")
            full = full.gather(1, positions[..., None].expand(-1, -1, full.size(-1))).float()
            if self.vocab_head == "narrowed":
                got = self.logits_at(positions, ids, attention, types).float()
                scale = full.abs().max().clamp(min=1.0)
                if got.shape != full.shape or not torch.allclose(got, full, rtol=1e-3, atol=1e-3 * float(scale)):
                    diff = (got - full).abs().max().item() if got.shape == full.shape else float("inf")
                    log.warning("%s: the vocabulary head narrowed to chosen positions differs from the model's own "
                                "forward (max %.3g); scoring through the full forward instead (slower, exact)",
                                type(self.model).__name__, diff)
                    self.vocab_head = "full"
            if self.kind == "causal":
                self._check_candidate_pass(device)
        finally:
            self.model.train(was_training)
