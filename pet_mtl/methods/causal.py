"""The GPT-style system (method=causal): a causal LM answers every task by continuing a prompt that names the task.

The blog this project follows shares one unidirectional model across tasks by "putting a task field before each
sample, such as 文本多分类 or 情感分析, and turning every task into generation". A causal pattern is a template
whose slot ends it, e.g. `新闻分类：{{ title | sentence }}类别：{{ mask }}`; a label's score is the teacher-forced
log-likelihood of its word's tokens after the prompt (summed by default; the pattern's scoring rule `word_mean`
divides by the word's token count), several words per label combined as for pet. Training is the same
cross-entropy over the task's labels, so calibration, saved scores, ensembles, distillation and iPET work unchanged.

Words are tokenized in context, as `prompt + word` reads: with byte-level BPE the word's first piece may merge with
the prompt's last character (Qwen's pre-tokenizer joins a punctuation mark to the letters after it: ：体育 is one
piece). A pattern then "gives back" the prompt's last tokens: the prompt is fed without them, and every candidate's
continuation is the tokens of context + word past what all candidates share, so a word is scored exactly as a plain
forward of the literal text scores it (tests/test_causal.py). All of a row's candidates are scored from one pass
over its prompt (the backbone contract's `continuations`: the prompt's key/value cache shared by the candidates).
"""
from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

import torch

from pet_mtl.backbones.contract import Backbone
from pet_mtl.core.errors import ConfigError, PatternError
from pet_mtl.core.tasks import get_task
from pet_mtl.data.readers import Example
from pet_mtl.methods.base import Featurizer, Method, MethodOptions
from pet_mtl.methods.cloze import ClozeModel
from pet_mtl.methods.features import (
    Feature,
    PromptTable,
    check_soft,
    check_word_tokens,
    clip_fields,
    padded_words,
    prompt_tokens,
    segment_width,
    verbalizer_tensors,
)
from pet_mtl.prompts import Pattern


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def check_causal_pattern(pattern: Pattern) -> None:
    """A causal pattern's slot must end it (the model generates the label after the prompt) and it has one text."""
    task = get_task(pattern.task)
    rendered = pattern.render(Example(task.name, "check", {f: "甲乙丙丁" for f in task.fields}, None, "check"))
    at = next(i for i, s in enumerate(rendered.segments) if s.is_slot)
    after = "".join(s.text for s in rendered.segments[at + 1:])
    if after.strip() or any(s.is_sep for s in rendered.segments):
        raise PatternError(pattern.origin, None, "method=causal scores the label word as the text's continuation, so "
                           "the slot must end the template (no text after {{ mask }}, no {{ sep }}); "
                           f"this one has {after.strip()[:20]!r} after it" if after.strip() else
                           "method=causal reads one text: write the pair's two fields into it, without {{ sep }}")


class CausalWords:
    """A pattern's words as continuations: the prompt tokens given back (`give_back`, the tail every row's prompt
    must end with), and each word's tokens past them, in LabelWords (padded with pad to the longest)."""

    def __init__(self, pattern: Pattern, tokenizer):
        task = get_task(pattern.task)
        where = pattern.verbalizer_origin or pattern.origin
        context = pattern.slot_context()
        before = tokenizer(context, add_special_tokens=False)["input_ids"] if context else []
        words = pattern.word_lists()
        joined = {w: tokenizer(context + w, add_special_tokens=False)["input_ids"] for ws in words.values() for w in ws}
        shared = min([len(before)] + [_common(before, ids) for ids in joined.values()])
        self.tail = tuple(before[shared:])  # the prompt's last tokens, re-read as part of every continuation
        ids = {code: [joined[w][shared:] for w in words[code]] for code in task.labels}
        for code in task.labels:
            for word, t in zip(words[code], ids[code]):
                if tuple(t) == self.tail:
                    raise PatternError(where, None, f"label {code} word {word!r} tokenizes to nothing after the prompt")
                check_word_tokens(where, code, word, t, tokenizer)
        slot = max(len(t) for ts in ids.values() for t in ts)
        self.words = padded_words(where, task.labels, words, ids, slot, tokenizer)


class CausalFeaturizer:
    """Examples to prompts: the start token, then the rendered text before the slot (fields cut from the longest
    first when it does not fit, the pattern's own text never), less the tokens its words give back."""

    def __init__(self, tokenizer, patterns: dict[str, list[Pattern]], max_length: int, start: int | None):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.start = start
        self.tasks = list(patterns)
        self.patterns: list[Pattern] = [p for t in self.tasks for p in patterns[t]]
        for p in self.patterns:
            check_causal_pattern(p)
        self.causal = [CausalWords(p, tokenizer) for p in self.patterns]
        self.prompts = PromptTable.of(self.patterns, tokenizer)
        self.words = [c.words for c in self.causal]
        self._by_task = {t: [i for i, p in enumerate(self.patterns) if p.task == t] for t in self.tasks}

    def describe(self) -> list[str]:
        lines = []
        for p, c in zip(self.patterns, self.causal):
            words = " ".join(f"{code}=" + "|".join(
                f"{w}[{' '.join(self.tokenizer.convert_ids_to_tokens(list(ids[:n])))}]"
                for w, ids, n in zip(ws, idss, ns))
                for code, ws, idss, ns in zip(get_task(p.task).labels, c.words.words, c.words.ids, c.words.lengths))
            back = (f"; the prompt's last {len(c.tail)} token(s) "
                    f"[{' '.join(self.tokenizer.convert_ids_to_tokens(list(c.tail)))}] merge with the words and are "
                    "scored with them" if c.tail else "")
            lines.append(f"pattern {p.name}: continuations of up to {c.words.slot_len} token(s), scoring {p.scoring}; "
                         f"words {words}{back}")
        return lines

    def label_tensors(self) -> dict[str, torch.Tensor]:
        return verbalizer_tensors(self.words, self.patterns)  # the cloze's table: ids, weights, masks, aggregation

    def encode(self, examples: Sequence[Example], with_labels: bool = True) -> list[Feature]:
        return [self._encode_one(ex, i, p, with_labels) for i, ex in enumerate(examples) for p in self._by_task[ex.task]]

    def _encode_one(self, ex: Example, ex_idx: int, p: int, with_labels: bool) -> Feature:
        pattern, causal = self.patterns[p], self.causal[p]
        rendered = pattern.render(clip_fields(ex, self.max_length))
        check_soft(pattern, rendered, ex)
        at = next(i for i, s in enumerate(rendered.segments) if s.is_slot)
        segments = rendered.segments[:at]
        spans, pos = [], 0
        for s in range(at):
            spans.append(pos)
            pos += segment_width(rendered, s, 0, "", self.tokenizer.pad_token, self.prompts)
        prompt = "".join(s.text if s.soft is None else self.tokenizer.pad_token * self.prompts.lengths[
            rendered.soft[s.soft].key] for s in segments)
        enc = self.tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        owner = [bisect.bisect_right(spans, start) - 1 for start, _ in enc["offset_mapping"]]
        budget = self.max_length - (self.start is not None) - causal.words.slot_len + len(causal.tail)
        keep = [True] * len(ids)
        if len(ids) > budget:
            by_seg: dict[int, list[int]] = {}
            for i, s in enumerate(owner):
                if segments[s].field is not None:
                    by_seg.setdefault(s, []).append(i)
            if sum(map(len, by_seg.values())) < len(ids) - budget:
                raise ConfigError(f"{pattern.origin}: the prompt's own text and the longest continuation take more "
                                  f"than model.max_length={self.max_length} tokens")
            for _ in range(len(ids) - budget):
                longest = max(by_seg, key=lambda s: (len(by_seg[s]), -s))
                keep[by_seg[longest].pop()] = False
        kept = [t for t, k in zip(ids, keep) if k]
        owners = [o for o, k in zip(owner, keep) if k]
        if causal.tail:
            if tuple(kept[-len(causal.tail):]) != causal.tail:
                raise PatternError(pattern.origin, None, f"row {ex.id} ({ex.source}): the prompt's last tokens "
                                   f"{self.tokenizer.convert_ids_to_tokens(kept[-len(causal.tail):])} are not the "
                                   f"pattern's {self.tokenizer.convert_ids_to_tokens(list(causal.tail))}, which its "
                                   "words continue; end the text before {{ mask }} with a space or a newline")
            kept = kept[: len(kept) - len(causal.tail)]
        owners = owners[: len(kept)]
        positions, rows = prompt_tokens(rendered, owners, kept, self.prompts, self.tokenizer.pad_token_id,
                                        pattern.origin)
        offset = self.start is not None
        input_ids = ([self.start] if self.start is not None else []) + kept
        if not input_ids:
            raise PatternError(pattern.origin, None, "the prompt is empty and the tokenizer has no start token "
                               "(bos or cls) to continue from; put text before {{ mask }}")
        label = get_task(ex.task).label_index(ex.label) if with_labels and ex.label is not None else -1
        return Feature(tuple(input_ids), len(input_ids), causal.words.slot_len, p, self.tasks.index(ex.task), label,
                       ex_idx, prompt_positions=tuple(j + offset for j in positions), prompt_rows=rows)


class CausalModel(ClozeModel):
    """Label scores from the causal LM's log-likelihood of each label word's tokens after the prompt, all of a row's
    words from one pass over its prompt."""

    def scores(self, input_ids, attention_mask, slot_positions, head, task, token_type_ids=None) -> torch.Tensor:
        S = slot_positions.size(1)  # the longest continuation among the batch's patterns
        ids = self.ids[head][..., :S]  # [B, C, K, S]
        B, C, K, _ = ids.shape
        logp = self.backbone.continuations(input_ids, attention_mask, ids.reshape(B, C * K, S))
        return self.combine(logp.view(B, C, K, S), head)


def causal_featurizer(backbone: Backbone, patterns: Mapping[str, list[Pattern]], tasks: list[str],
                      max_length: int, options: MethodOptions) -> CausalFeaturizer:
    return CausalFeaturizer(backbone.tokenizer, {t: patterns[t] for t in tasks}, max_length, backbone.start)


def causal_scorer(backbone: Backbone, featurizer: Featurizer, options: MethodOptions) -> CausalModel:
    assert isinstance(featurizer, CausalFeaturizer), "the causal scorer reads the causal featurizer's words"
    return CausalModel(backbone, featurizer.label_tensors())


CAUSAL = Method("causal", "a task prefix, then the causal LM's likelihood of each label word after the prompt",
                causal_featurizer, causal_scorer, uses_patterns=True, needs_mlm_head=True, backbone_kinds=("causal",),
                default_patterns="causal")

__all__ = ["CAUSAL", "CausalFeaturizer", "CausalModel", "check_causal_pattern"]
