"""Documents to packed, masked sequences for masked-LM training.

Packing: documents are tokenized and laid end to end, `[CLS] doc1 [SEP] doc2-premise [SEP] doc2-hypothesis [SEP]
doc3 ...`, cut into sequences of exactly `max_length` tokens; a document longer than the room left continues in the
next sequence, so no compute is spent on padding and no text is lost. A pair's second segment has token type 1.

Masking (`unit`, `max_ngram`): BERT chooses 15% of the tokens and replaces 80% of those with [MASK], 10% with a
random token and leaves 10%; here the choice is made over *units*: single tokens (`unit=token`, BERT), or whole
words (`unit=word`: every token of a word is masked together; Chinese words come from jieba, see `Segmenter`). With
`max_ngram` > 1 a chosen unit starts a span of n units, n drawn with probability proportional to 1/n (short spans
most often, as in SpanBERT/MacBERT-style n-gram masking). The 80/10/10 decision is taken per unit, so a masked word
is never half [MASK], half original. Each sequence's masking is seeded by (seed, its index), so it is the same after
a resume or on another rank, without saving any random state.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch

from pet_mtl.core.config import MaskingConfig as Masking
from pet_mtl.core.errors import ConfigError
from pet_mtl.data.corpus import Doc

UNITS = ("token", "word")


class Segmenter:
    """Chinese word boundaries, for whole-word masking: jieba (the `wwm` extra), chosen because it is pure Python,
    needs no model download and is the segmenter most Chinese NLP code already uses; the Chinese BERT-wwm models
    used LTP, which needs a model file that cannot be fetched here. Words only decide which tokens are masked
    together; they never change the tokens."""

    def __init__(self) -> None:
        try:
            import jieba
        except ImportError:
            raise ConfigError('masking.unit=word needs the jieba word segmenter: pip install "pet_mtl[wwm]"') from None
        jieba.setLogLevel(60)
        self._cut = jieba.cut

    def word_starts(self, text: str) -> set[int]:
        """Character offsets where a word begins."""
        starts, pos = set(), 0
        for w in self._cut(text, HMM=True):
            starts.add(pos)
            pos += len(w)
        return starts


@dataclass
class Encoded:
    """A document's tokens, with each token's segment (0, 1) and whether it starts a masking unit."""

    ids: list[int] = field(default_factory=list)
    types: list[int] = field(default_factory=list)
    starts: list[bool] = field(default_factory=list)


def encode_doc(doc: Doc, tokenizer, segmenter: Segmenter | None, sep_id: int | None = None) -> Encoded:
    """A document's segments, each followed by `sep_id` (default: the tokenizer's [SEP])."""
    sep_id = tokenizer.sep_token_id if sep_id is None else sep_id
    out = Encoded()
    for s, text in enumerate(doc.segments):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=segmenter is not None)
        ids = enc["input_ids"]
        if segmenter is None:
            starts = [True] * len(ids)
        else:  # a token starts a unit when a word starts where the token does; WordPiece "##" pieces never do
            words = segmenter.word_starts(text)
            starts = [a in words for a, _ in enc["offset_mapping"]]
            if starts:
                starts[0] = True
        out.ids += ids + [sep_id]
        out.types += [min(s, 1)] * (len(ids) + 1)
        out.starts += starts + [True]
    return out


@dataclass
class PackState:
    """Tokens encoded but not yet emitted (the head of the next sequence), and how many sequences were emitted."""

    ids: list[int] = field(default_factory=list)
    types: list[int] = field(default_factory=list)
    starts: list[bool] = field(default_factory=list)
    sequences: int = 0

    def to_json(self) -> dict[str, Any]:
        return vars(self)


class Packer:
    """Cuts a stream of encoded documents into sequences of exactly `max_length` tokens ([CLS] first)."""

    def __init__(self, max_length: int, cls_id: int):
        if max_length < 8:
            raise ConfigError(f"max_length={max_length}: expected at least 8")
        self.room = max_length - 1
        self.cls_id = cls_id
        self.state = PackState()

    def add(self, enc: Encoded) -> list[tuple[list[int], list[int], list[bool]]]:
        """Take a document; return the sequences it completes (ids, types, unit starts)."""
        st = self.state
        st.ids += enc.ids
        st.types += enc.types
        st.starts += enc.starts
        out = []
        while len(st.ids) >= self.room:
            ids, types, starts = st.ids[:self.room], st.types[:self.room], st.starts[:self.room]
            st.ids, st.types, st.starts = st.ids[self.room:], st.types[self.room:], st.starts[self.room:]
            if st.starts:
                st.starts[0] = True  # a word cut at a sequence boundary: its rest is a unit of its own
            out.append(([self.cls_id] + ids, [types[0]] + types, [True] + starts))
            st.sequences += 1
        return out


def check_masking(masking: Masking) -> Masking:
    if masking.unit not in UNITS:
        raise ConfigError(f"masking.unit={masking.unit!r}: expected one of {', '.join(UNITS)}")
    if not 0 < masking.prob < 1:
        raise ConfigError(f"masking.prob={masking.prob}: expected a number in (0, 1)")
    if not isinstance(masking.max_ngram, int) or masking.max_ngram < 1:
        raise ConfigError(f"masking.max_ngram={masking.max_ngram}: expected an integer >= 1")
    if not (0 <= masking.replace_mask and 0 <= masking.replace_random
            and masking.replace_mask + masking.replace_random <= 1):
        raise ConfigError(f"masking.replace_mask={masking.replace_mask}, replace_random={masking.replace_random}: "
                          "expected shares >= 0 that sum to at most 1 (the rest keeps the token)")
    return masking


def units_of(starts: Sequence[bool], special: Sequence[bool]) -> list[tuple[int, int]]:
    """[start, end) token spans of the maskable units: a unit runs from a start to the next start or special."""
    units, begin = [], None
    for i, (s, sp) in enumerate(zip(starts, special)):
        if begin is not None and (s or sp):
            units.append((begin, i))
            begin = None
        if not sp and begin is None:
            begin = i
    if begin is not None:
        units.append((begin, len(starts)))
    return units


def mask_sequence(ids: list[int], starts: list[bool], special_ids: frozenset[int], vocab_size: int,
                  masking: Masking, rng: random.Random) -> tuple[list[int], list[int]]:
    """(input ids, labels): labels hold the original id at masked positions and -100 elsewhere."""
    special = [i in special_ids for i in ids]
    units = units_of(starts, special)
    budget = max(1, round(masking.prob * sum(not s for s in special)))
    weights = [1.0 / n for n in range(1, masking.max_ngram + 1)]
    order = list(range(len(units)))
    rng.shuffle(order)
    taken = [False] * len(units)
    chosen: list[tuple[int, int]] = []
    covered = 0
    for u in order:
        if covered >= budget:
            break
        n = rng.choices(range(1, masking.max_ngram + 1), weights)[0] if masking.max_ngram > 1 else 1
        span = range(u, min(u + n, len(units)))
        if any(taken[v] for v in span):
            continue
        size = units[span[-1]][1] - units[u][0]
        if covered + size > budget:
            continue
        for v in span:
            taken[v] = True
            chosen.append(units[v])
        covered += size
    inputs, labels = list(ids), [-100] * len(ids)
    for a, b in chosen:
        r = rng.random()
        for i in range(a, b):
            labels[i] = ids[i]
            if r < masking.replace_mask:
                inputs[i] = MASK_PLACEHOLDER
            elif r < masking.replace_mask + masking.replace_random:
                inputs[i] = rng.randrange(vocab_size)
    return inputs, labels


#: stands for the tokenizer's [MASK] id inside mask_sequence (replaced by MaskedStream, which knows the tokenizer)
MASK_PLACEHOLDER = -1


class MaskedStream:
    """Documents in, batches of packed and masked sequences out: {input_ids, token_type_ids, attention_mask,
    labels}, every row exactly `max_length` long (so attention_mask is all ones)."""

    def __init__(self, docs: Iterable[Doc] | None, tokenizer, max_length: int, masking: Masking, seed: int,
                 segmenter: Segmenter | None = None, start_id: int | None = None, sep_id: int | None = None):
        """`start_id` begins every sequence, `sep_id` ends every segment (default: [CLS], [SEP])."""
        self.docs = docs
        self.sep_id = tokenizer.sep_token_id if sep_id is None else sep_id
        self.tokenizer = tokenizer
        self.masking = check_masking(masking)
        self.seed = seed
        self.segmenter = segmenter if segmenter is not None or masking.unit == "token" else Segmenter()
        self.packer = Packer(max_length, tokenizer.cls_token_id if start_id is None else start_id)
        self.special_ids = frozenset(tokenizer.all_special_ids)
        self.vocab_size = len(tokenizer)
        self._ready: list[tuple[list[int], list[int], list[bool], int]] = []

    def encode(self, doc: Doc) -> Encoded:
        return encode_doc(doc, self.tokenizer, self.segmenter, self.sep_id)

    def sequences_of(self, docs: Iterable[Doc]) -> list[tuple[list[int], list[int], list[bool], int]]:
        out = []
        for doc in docs:
            for ids, types, starts in self.packer.add(self.encode(doc)):
                out.append((ids, types, starts, self.packer.state.sequences - 1))
        return out

    def mask(self, ids: list[int], starts: list[bool], index: int) -> tuple[list[int], list[int]]:
        rng = random.Random(f"{self.seed}/mask/{index}")
        inputs, labels = mask_sequence(ids, starts, self.special_ids, self.vocab_size, self.masking, rng)
        mask_id = self.tokenizer.mask_token_id
        return [mask_id if t == MASK_PLACEHOLDER else t for t in inputs], labels

    def batch(self, size: int) -> dict[str, torch.Tensor]:
        while len(self._ready) < size:
            self._ready += self.sequences_of([next(self.docs)])
        rows, self._ready = self._ready[:size], self._ready[size:]
        return self.collate(rows)

    def flush(self) -> list[tuple[list[int], list[int], list[bool], int]]:
        """The packer's remainder as one shorter sequence (the held-out set keeps its last tokens too)."""
        st = self.packer.state
        if not st.ids:
            return []
        row = ([self.packer.cls_id] + st.ids, [st.types[0]] + st.types, [True] + st.starts, st.sequences)
        self.packer.state = PackState(sequences=st.sequences + 1)
        return [row]

    def collate(self, rows) -> dict[str, torch.Tensor]:
        """Masked rows as tensors; training rows are all max_length long, a flushed last row is padded."""
        width = max(len(r[0]) for r in rows)
        pad = self.tokenizer.pad_token_id
        out: dict[str, list[list[int]]] = {"input_ids": [], "token_type_ids": [], "attention_mask": [], "labels": []}
        for ids, types, starts, index in rows:
            inputs, labels = self.mask(ids, starts, index)
            fill = width - len(ids)
            out["input_ids"].append(inputs + [pad] * fill)
            out["token_type_ids"].append(types + [0] * fill)
            out["attention_mask"].append([1] * len(ids) + [0] * fill)
            out["labels"].append(labels + [-100] * fill)
        return {k: torch.tensor(v) for k, v in out.items()}

    # resume: what has been encoded but not yet trained on lives in the packer and in _ready
    def state(self) -> dict[str, Any]:
        return {"packer": self.packer.state.to_json(), "ready": [list(r) for r in self._ready]}

    def restore(self, doc: dict[str, Any]) -> None:
        self.packer.state = PackState(**doc["packer"])
        self._ready = [(r[0], r[1], r[2], r[3]) for r in doc["ready"]]



class CausalStream(MaskedStream):
    """The same packed sequences for a causal LM's next-token loss: nothing masked, every token its own label (the
    model predicts each from the ones before it; CausalLM shifts). The packing, the stream position and resume are
    MaskedStream's."""

    def __init__(self, docs: Iterable[Doc] | None, tokenizer, max_length: int, seed: int):
        """Sequences begin with the tokenizer's bos (else cls, else eos) and segments end with sep (else eos):
        Qwen's and Llama's tokenizers have no [CLS] or [SEP]; their eos marks where a text ends."""
        eos = tokenizer.eos_token_id
        start = next((t for t in (tokenizer.bos_token_id, tokenizer.cls_token_id, eos) if t is not None), None)
        sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else eos
        if start is None or sep is None:
            raise ConfigError("a causal LM's tokenizer needs an eos token (or bos and sep) to pack texts")
        super().__init__(docs, tokenizer, max_length, Masking(unit="token"), seed, start_id=start, sep_id=sep)

    def mask(self, ids: list[int], starts: list[bool], index: int) -> tuple[list[int], list[int]]:
        return list(ids), list(ids)
