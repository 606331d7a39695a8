"""From rendered clozes to token ids: slot-safe truncation, verbalizer token ids, and collation.

The whole rendered text is tokenized at once (so ids equal what a plain `tokenizer(text)` gives, or
`tokenizer(a, b)` with its token type ids for a pattern that marks a pair boundary with `{{ sep }}`: the scoring
oracle depends on it), and offsets tell which tokens came from which field. Truncation then removes tokens
from the end of the longest field, one at a time, until the sequence fits: pattern text and slot are never cut.

Every field is first cut to `max_length * CHARS_PER_TOKEN` characters, so one row's memory is bounded whatever the
input: a field that long already holds more tokens than fit (Chinese text is about one token per character, and
BERT's tokenizer never makes one token of more than 100 characters), so the cut changes nothing the model sees
unless a field is mostly whitespace or long unknown words.

Label words are tokenized in context: as the text before the slot followed by the word, keeping the tokens past the
text's own (`word_tokens`). A character vocabulary (Chinese BERT) gives the same tokens alone or in context, but a
sentencepiece or byte-level BPE vocabulary marks a word's start (XLM-R's `▁`): scored alone, 体育 would be
[▁ 体 育], a piece the model never sees after 这是. `patterns check --model` lists the words that differ.

Verbalizer padding rule: a pattern's slot has as many [MASK] tokens as its longest label word (or the n of
`mask(n)`); a shorter word is padded on the right with the tokenizer's pad token. Which positions then count in a
word's score is the pattern's scoring rule (patterns.SCORING_RULES): all of them ("padded"), the word's own
("word"), or those divided by the word's token count ("word_mean").
"""
from __future__ import annotations

import bisect
import dataclasses
import logging
from dataclasses import dataclass
from typing import Sequence

import torch

from pet_mtl.backbones.contract import has_token_types
from pet_mtl.core.errors import ConfigError, PatternError
from pet_mtl.core.tasks import get_task
from pet_mtl.data.readers import Example
from pet_mtl.prompts import Pattern, Rendered

log = logging.getLogger("pet_mtl")


@dataclass(frozen=True)
class LabelWords:
    """A pattern's verbalizer in token ids: `ids[label][k]` is the label's k-th word, padded to `slot_len`."""

    slot_len: int
    words: tuple[tuple[str, ...], ...]  # [label][k]
    ids: tuple[tuple[tuple[int, ...], ...], ...]  # [label][k][slot_len], pad-filled
    lengths: tuple[tuple[int, ...], ...]  # [label][k]: the word's own token count
    #: words whose tokens in context differ from their tokens alone: "word: in context [..], alone [..]"
    context_notes: tuple[str, ...] = ()

    def weights(self, rule: str) -> list[list[list[float]]]:
        """[label][k][slot position] weight of each position's log-probability in the word's score (SCORING_RULES)."""
        out = []
        for lengths in self.lengths:
            out.append([[1.0 if rule == "padded" or i < n else 0.0 for i in range(self.slot_len)]
                        if rule != "word_mean" else [1.0 / n if i < n else 0.0 for i in range(self.slot_len)]
                        for n in lengths])
        return out


def word_tokens(tokenizer, context: str, word: str) -> tuple[list[int], list[int]]:
    """(tokens of `word` as it reads after `context`, tokens of `word` alone). In context: the tokens of
    context + word past the context's own tokens; when the word merges with the context's last piece (the context's
    tokens are not a prefix of the joined text's), the tokens alone, which are the closest the slot can hold."""
    alone = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not context:
        return alone, alone
    before = tokenizer(context, add_special_tokens=False)["input_ids"]
    joined = tokenizer(context + word, add_special_tokens=False)["input_ids"]
    if joined[: len(before)] == before and len(joined) > len(before):
        return joined[len(before):], alone
    return alone, alone


def label_words(pattern: Pattern, tokenizer, context: str | None = None) -> LabelWords:
    """The pattern's words in token ids, each tokenized after `context` (default: the text before the pattern's
    slot, `Pattern.slot_context`)."""
    task = get_task(pattern.task)
    where = pattern.verbalizer_origin or pattern.origin
    words = pattern.word_lists()
    context = pattern.slot_context() if context is None else context
    tokenized: dict[str, list[list[int]]] = {}
    notes: list[str] = []
    for code in task.labels:
        tokenized[code] = []
        for word in words[code]:
            ids, alone = word_tokens(tokenizer, context, word)
            if ids != alone:
                notes.append(f"{word}: in context [{' '.join(tokenizer.convert_ids_to_tokens(ids))}], alone "
                             f"[{' '.join(tokenizer.convert_ids_to_tokens(alone))}]")
            if not ids:
                raise PatternError(where, None, f"label {code} word {word!r} tokenizes to nothing")
            check_word_tokens(where, code, word, ids, tokenizer)
            tokenized[code].append(ids)
    longest = max(len(t) for ts in tokenized.values() for t in ts)
    slot_len = pattern.declared_slot or longest
    for code in task.labels:
        for word, ids in zip(words[code], tokenized[code]):
            if len(ids) > slot_len:
                raise PatternError(where, None, f"label {code} word {word!r} is {len(ids)} tokens "
                                   f"({' '.join(tokenizer.convert_ids_to_tokens(ids))}) but {pattern.origin} declares "
                                   f"a slot of {slot_len} (mask({slot_len})); shorten the word or widen the slot")
    return padded_words(where, task.labels, words, tokenized, slot_len, tokenizer, tuple(notes))


def check_word_tokens(where: str, code: str, word: str, ids: Sequence[int], tokenizer) -> None:
    """A label word must be text the tokenizer knows: no unknown token (the model cannot tell such words apart), no
    special token (it would be scored as a separator or a mask, not as the word)."""
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
        raise PatternError(where, None, f"label {code} word {word!r} contains a token unknown to the "
                           f"tokenizer ({tokenizer.convert_ids_to_tokens(list(ids))}); choose a word in its vocabulary")
    specials = set(ids) & set(tokenizer.all_special_ids)
    if specials:
        raise PatternError(where, None, f"label {code} word {word!r} contains the special token(s) "
                           f"{tokenizer.convert_ids_to_tokens(sorted(specials))}; a label word must be real text")


def padded_words(where: str, labels: Sequence[str], words: dict[str, list[str]],
                 tokenized: dict[str, list[list[int]]], slot_len: int, tokenizer, notes: tuple[str, ...] = ()
                 ) -> LabelWords:
    """Each word's tokens padded to the slot, refused when two labels end up with the same padded tokens (the
    scorer could never tell them apart)."""
    pad = tokenizer.pad_token_id
    if pad is None:
        raise ConfigError("the tokenizer has no pad token; verbalizer padding needs one")
    padded = {code: tuple(tuple(ids + [pad] * (slot_len - len(ids))) for ids in tokenized[code]) for code in labels}
    seen: dict[tuple[int, ...], str] = {}
    for code in labels:
        for ids in padded[code]:
            if ids in seen and seen[ids] != code:
                raise PatternError(where, None, f"labels {seen[ids]} and {code} have a word with the same token "
                                   "sequence after tokenization")
            seen[ids] = code
    return LabelWords(slot_len, tuple(words[c] for c in labels), tuple(padded[c] for c in labels),
                      tuple(tuple(len(t) for t in tokenized[c]) for c in labels), notes)


def verbalizer_tensors(all_words: Sequence[LabelWords], patterns: Sequence[Pattern]) -> dict[str, torch.Tensor]:
    """The verbalizers as tensors for the label scorers (P patterns, C labels, K words, S slot positions):
    ids [P, C, K, S] (pad-filled), weights [P, C, K, S] (each position's share in a word's score, by the
    pattern's scoring rule), word_mask [P, C, K] (real words), label_mask [P, C] (real labels),
    logsumexp [P] (the pattern combines a label's words by log-sum-exp, else by their mean)."""
    P = len(all_words)
    C = max(len(w.ids) for w in all_words)
    K = max(len(k) for w in all_words for k in w.ids)
    S = max(w.slot_len for w in all_words)
    t = {"ids": torch.zeros(P, C, K, S, dtype=torch.long), "weights": torch.zeros(P, C, K, S),
         "word_mask": torch.zeros(P, C, K, dtype=torch.bool), "label_mask": torch.zeros(P, C, dtype=torch.bool),
         "logsumexp": torch.tensor([p.aggregate == "logsumexp" for p in patterns])}
    for p, (w, pattern) in enumerate(zip(all_words, patterns)):
        weights = w.weights(pattern.scoring)
        for c, label_ids in enumerate(w.ids):
            for k, ids in enumerate(label_ids):
                t["ids"][p, c, k, : w.slot_len] = torch.tensor(ids)
                t["weights"][p, c, k, : w.slot_len] = torch.tensor(weights[c][k])
                t["word_mask"][p, c, k] = True
        t["label_mask"][p, : len(w.ids)] = True
    return t


CHARS_PER_TOKEN = 32


def second_segment(types: Sequence[int]) -> int:
    """Where a pair's token type 1 begins (`Feature.second_segment`); the end when the second text was cut away."""
    return types.index(1) if 1 in types else len(types)


def clip_fields(example: Example, max_length: int) -> Example:
    """The example with each field cut to max_length * CHARS_PER_TOKEN characters (see the module docstring)."""
    limit = max_length * CHARS_PER_TOKEN
    if all(len(v) <= limit for v in example.fields.values()):
        return example
    return dataclasses.replace(example, fields={k: v[:limit] for k, v in example.fields.items()})


@dataclass(frozen=True)
class Feature:
    input_ids: tuple[int, ...]
    slot_start: int
    slot_len: int
    #: which of the scorer's output tables answers this feature: a pattern's verbalizer (cloze methods) or a task's
    #: classifier (plain-text methods)
    head: int
    task: int  # index into the featurizer's task list
    label: int  # -1 when unlabelled
    example: int  # index of the example within its task's list (patterns of one example share it)
    #: distillation: the teachers' label distribution (the task's labels, in order) instead of a gold label
    soft: tuple[float, ...] | None = None
    #: a sentence pair's second segment starts here (token type 1 from it to the end); None: no token type ids
    second_segment: int | None = None
    #: learned tokens (a pattern's soft()): their positions in input_ids, and the prompt table's row for each
    prompt_positions: tuple[int, ...] = ()
    prompt_rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class PromptTable:
    """The rows of learned input embeddings a featurizer's patterns use: each soft() key's first row, token count and
    the token ids it starts from (None: from no text). Patterns that name the same key share its rows."""

    offsets: dict[str, int]
    lengths: dict[str, int]
    init_ids: dict[str, tuple[int, ...] | None]

    @property
    def rows(self) -> int:
        return sum(self.lengths.values())

    @classmethod
    def of(cls, patterns: Sequence[Pattern], tokenizer) -> "PromptTable":
        offsets: dict[str, int] = {}
        lengths: dict[str, int] = {}
        init: dict[str, tuple[int, ...] | None] = {}
        owner: dict[str, Pattern] = {}
        specials = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
        for p in patterns:
            for spec in p.soft_specs:
                ids = None if spec.text is None else tuple(tokenizer(spec.text, add_special_tokens=False)["input_ids"])
                if ids is not None and (not ids or set(ids) & specials):
                    raise PatternError(p.origin, None, f"soft({spec.text!r}) must be text the tokenizer reads as "
                                       f"ordinary tokens; it gives {tokenizer.convert_ids_to_tokens(list(ids))}")
                if ids is not None and tokenizer.unk_token_id in ids:  # learned all the same, from the unknown token
                    log.warning("%s: soft(%r) starts from %s: the tokenizer does not know all of it", p.origin,
                                spec.text, tokenizer.convert_ids_to_tokens(list(ids)))
                length = len(ids) if ids is not None else spec.length
                if spec.key in lengths:
                    if (lengths[spec.key], init[spec.key]) != (length, ids):
                        raise PatternError(p.origin, None, f"soft tokens {spec.key!r} are {length} token(s) from "
                                           f"{spec.text!r} here but {lengths[spec.key]} in {owner[spec.key].origin}: "
                                           "shared tokens must agree")
                    continue
                offsets[spec.key], lengths[spec.key], init[spec.key] = sum(lengths.values()), length, ids
                owner[spec.key] = p
        return cls(offsets, lengths, init)


def segment_width(rendered: Rendered, seg_index: int, slot_len: int, mask_token: str, pad_token: str,
                  table: PromptTable) -> int:
    """How many characters a rendered segment takes in the text the tokenizer gets (`Rendered.parts`)."""
    seg = rendered.segments[seg_index]
    if seg.soft is not None:
        return table.lengths[rendered.soft[seg.soft].key] * len(pad_token)
    return slot_len * len(mask_token) if seg.is_slot else len(seg.text)


def prompt_tokens(rendered: Rendered, owners: Sequence[int | None], kept: Sequence[int], table: PromptTable,
                  pad_id: int, origin: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(positions, table rows) of a featurized row's learned tokens: `owners[j]` is the rendered segment the j-th
    kept token came from; each soft() must have become its placeholders, all of them (pattern text is never cut)."""
    positions: list[int] = []
    rows: list[int] = []
    for s, seg in enumerate(rendered.segments):
        if seg.soft is None:
            continue
        key = rendered.soft[seg.soft].key
        at = [j for j, o in enumerate(owners) if o == s]
        if len(at) != table.lengths[key] or any(kept[j] != pad_id for j in at):
            raise PatternError(origin, None, f"the soft tokens {key!r} did not tokenize to {table.lengths[key]} "
                               "placeholders")
        positions += at
        rows += range(table.offsets[key], table.offsets[key] + len(at))
    return tuple(positions), tuple(rows)


def check_soft(pattern: Pattern, rendered: Rendered, ex: Example) -> None:
    if rendered.soft != pattern.soft_specs:
        raise PatternError(pattern.origin, None, f"row {ex.id} renders other soft tokens than the pattern has "
                           "(a soft() inside an if?); every row must carry the same learned tokens")


class ClozeFeaturizer:
    """Holds the pattern table and turns examples into `Feature`s for one tokenizer and max length (the featurizer
    of the cloze methods, see methods/cloze.py)."""

    def __init__(self, tokenizer, patterns: dict[str, list[Pattern]], max_length: int,
                 token_types: bool | None = None):
        """`token_types`: whether a pair pattern's input carries token type ids, i.e. whether the model embeds
        them (the backbone contract's `takes_token_types`; None: whether the tokenizer makes them)."""
        if tokenizer.mask_token is None:
            raise ConfigError("the tokenizer has no mask token; PET needs a masked-LM tokenizer")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.token_types = has_token_types(tokenizer) if token_types is None else token_types
        self.tasks = list(patterns)
        self.patterns: list[Pattern] = [p for t in self.tasks for p in patterns[t]]
        self.words = [label_words(p, tokenizer) for p in self.patterns]
        self.prompts = PromptTable.of(self.patterns, tokenizer)
        for warning in self.warnings():
            log.warning("%s", warning)
        self._by_task = {t: [i for i, p in enumerate(self.patterns) if p.task == t] for t in self.tasks}

    def describe(self) -> list[str]:
        """Per pattern: the slot length, the scoring rule, each label word's tokens, and which words are padded."""
        lines = []
        for p, w in zip(self.patterns, self.words):
            words = " ".join(f"{code}=" + "|".join(f"{word}[{' '.join(self.tokenizer.convert_ids_to_tokens(list(ids[:n])))}]"
                                                  for word, ids, n in zip(ws, idss, ns))
                             for code, ws, idss, ns in zip(get_task(p.task).labels, w.words, w.ids, w.lengths))
            padded = [word for ws, ns in zip(w.words, w.lengths) for word, n in zip(ws, ns) if n < w.slot_len]
            lines.append(f"pattern {p.name}: slot of {w.slot_len} token(s), scoring {p.scoring}; words {words}"
                         + (f"; padded with {self.tokenizer.pad_token}: {', '.join(padded)}" if padded else "")
                         + (f"; tokens in context differ from alone: {'; '.join(w.context_notes)}"
                            if w.context_notes else ""))
        return lines

    def warnings(self) -> list[str]:
        """Words of different token counts under the "padded" rule: the short words' pad positions are scored as if
        the model should predict [PAD] there, which biases the pattern towards the long (or the short) words."""
        out = []
        for p, w in zip(self.patterns, self.words):
            counts = {n for ns in w.lengths for n in ns}
            if p.scoring == "padded" and len(counts) > 1:
                by_count = {n: [word for ws, ns in zip(w.words, w.lengths) for word, m in zip(ws, ns) if m == n]
                            for n in sorted(counts)}
                out.append(f"pattern {p.name}: label words of different token counts ("
                           + "; ".join(f"{n}: {', '.join(ws[:6])}{' ...' if len(ws) > 6 else ''}" for n, ws in by_count.items())
                           + ") under scoring=padded, which scores the short words' [PAD] positions; use "
                             "scoring: word (the default) or word_mean for this pattern, or label_scoring=word")
        return out

    def label_tensors(self) -> dict[str, torch.Tensor]:
        return verbalizer_tensors(self.words, self.patterns)

    def parts(self, rendered: Rendered, pattern: int) -> tuple[str, ...]:
        """The text, or a pair pattern's two texts, exactly as the tokenizer gets them (learned tokens as pad-token
        placeholders, whose embeddings the model replaces)."""
        return rendered.parts(self.tokenizer.mask_token, self.words[pattern].slot_len, self.tokenizer.pad_token,
                              self.prompts.lengths)

    def encode(self, examples: Sequence[Example], with_labels: bool = True) -> list[Feature]:
        """All (example, pattern) features; `examples` must belong to one task, indexed by position."""
        out: list[Feature] = []
        for ex_idx, ex in enumerate(examples):
            for p in self._by_task[ex.task]:
                out.append(self._encode_one(ex, ex_idx, p, with_labels))
        return out

    def _encode_one(self, ex: Example, ex_idx: int, p: int, with_labels: bool) -> Feature:
        pattern = self.patterns[p]
        rendered = pattern.render(clip_fields(ex, self.max_length))
        check_soft(pattern, rendered, ex)
        slot_len = self.words[p].slot_len
        spans, pos = [], 0  # start char of each segment in the parts joined (the pair boundary takes no char)
        for s in range(len(rendered.segments)):
            spans.append(pos)
            pos += segment_width(rendered, s, slot_len, self.tokenizer.mask_token, self.tokenizer.pad_token,
                                 self.prompts)
        parts = self.parts(rendered, p)
        pair = len(parts) == 2
        types_wanted = pair and self.token_types
        enc = self.tokenizer(*parts, return_offsets_mapping=True, return_special_tokens_mask=True,
                             return_token_type_ids=types_wanted)
        ids, offsets, special = enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"]
        # a pair's second text: its offsets count from its own start, the joined text's from the first's
        shift = [len(parts[0]) if s == 1 else 0 for s in enc.sequence_ids()] if pair else [0] * len(ids)
        # the segment each content token came from; None for the tokenizer's own specials ([CLS], [SEP])
        owner = [None if sp else bisect.bisect_right(spans, start + d) - 1
                 for (start, _), sp, d in zip(offsets, special, shift)]
        keep = [True] * len(ids)
        excess = len(ids) - self.max_length
        if excess > 0:
            by_seg: dict[int, list[int]] = {}
            for i, s in enumerate(owner):
                if s is not None and rendered.segments[s].field is not None:
                    by_seg.setdefault(s, []).append(i)
            if sum(len(v) for v in by_seg.values()) < excess:
                raise ConfigError(f"{pattern.origin}: the pattern text, slot and special tokens alone take "
                                  f"{len(ids) - sum(len(v) for v in by_seg.values())} tokens, more than "
                                  f"model.max_length={self.max_length}")
            for _ in range(excess):
                longest = max(by_seg, key=lambda s: (len(by_seg[s]), -s))
                keep[by_seg[longest].pop()] = False
        kept_idx = [i for i, k in enumerate(keep) if k]
        kept = [ids[i] for i in kept_idx]
        slot_seg = next(i for i, s in enumerate(rendered.segments) if s.is_slot)
        slot_tok = [j for j, i in enumerate(kept_idx) if owner[i] == slot_seg]
        if (len(slot_tok) != slot_len or slot_tok != list(range(slot_tok[0], slot_tok[0] + slot_len))
                or any(kept[j] != self.tokenizer.mask_token_id for j in slot_tok)):
            raise PatternError(pattern.origin, None, f"the slot did not tokenize to {slot_len} consecutive mask tokens")
        prompt_positions, prompt_rows = prompt_tokens(rendered, [owner[i] for i in kept_idx], kept, self.prompts,
                                                      self.tokenizer.pad_token_id, pattern.origin)
        label = -1
        if with_labels and ex.label is not None:
            label = get_task(ex.task).label_index(ex.label)
        second = second_segment([enc["token_type_ids"][i] for i in kept_idx]) if types_wanted else None
        return Feature(tuple(kept), slot_tok[0], slot_len, p,
                       self.tasks.index(ex.task), label, ex_idx, second_segment=second,
                       prompt_positions=prompt_positions, prompt_rows=prompt_rows)


def collate(features: Sequence[Feature], pad_id: int, pad_to_multiple_of: int) -> dict[str, torch.Tensor]:
    """Dynamic padding to the batch's longest sequence, rounded up to a multiple (1: no rounding); the multiple is
    resolved by `inference.pad_multiple` from the config, never defaulted here."""
    T = max(len(f.input_ids) for f in features)
    if pad_to_multiple_of > 1:
        T = -(-T // pad_to_multiple_of) * pad_to_multiple_of
    S = max(f.slot_len for f in features)
    B = len(features)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    slot_positions = torch.zeros((B, S), dtype=torch.long)
    for b, f in enumerate(features):
        n = len(f.input_ids)
        input_ids[b, :n] = torch.tensor(f.input_ids)
        attention_mask[b, :n] = 1
        slot_positions[b, : f.slot_len] = torch.arange(f.slot_start, f.slot_start + f.slot_len)
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "slot_positions": slot_positions,
        "head": torch.tensor([f.head for f in features]),
        "task": torch.tensor([f.task for f in features]),
        "labels": torch.tensor([f.label for f in features]),
    }
    if any(f.second_segment is not None for f in features):  # pairs: token type 1 from the second segment on
        types = torch.zeros((B, T), dtype=torch.long)
        for b, f in enumerate(features):
            if f.second_segment is not None:
                types[b, f.second_segment: len(f.input_ids)] = 1
        batch["token_type_ids"] = types
    if any(f.prompt_positions for f in features):  # learned tokens: where they sit, and their table rows
        M = max(len(f.prompt_positions) for f in features)
        positions = torch.full((B, M), -1, dtype=torch.long)
        rows = torch.zeros((B, M), dtype=torch.long)
        for b, f in enumerate(features):
            positions[b, : len(f.prompt_positions)] = torch.tensor(f.prompt_positions, dtype=torch.long)
            rows[b, : len(f.prompt_rows)] = torch.tensor(f.prompt_rows, dtype=torch.long)
        batch["prompt_positions"], batch["prompt_rows"] = positions, rows
    if any(f.soft is not None for f in features):  # distillation: soft rows carry the teachers' distribution
        K = max(len(f.soft) for f in features if f.soft is not None)
        batch["soft"] = torch.tensor([list(f.soft) + [0.0] * (K - len(f.soft)) if f.soft is not None else [0.0] * K
                                      for f in features])
        batch["is_soft"] = torch.tensor([f.soft is not None for f in features])
    return batch
