"""A pattern: one template and one verbalizer for one task, validated once; rendering an example into a cloze whose
field text is marked (so truncation cuts fields, never the pattern or the slot); the label-word scoring rules."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from jinja2 import TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SecurityError

from pet_mtl.core.errors import DataError, PatternError
from pet_mtl.core.tasks import Task, get_task
from pet_mtl.data.readers import Example
from pet_mtl.prompts.sandbox import ENV, MAX_TEMPLATE_CHARS, FieldText, check_budget, error_line, render_bounded

MAX_SLOT = 16
_MARKER_BLOCK = 0x200  # slot, field open/close, then one code point per field from +0x100
_MARKER_BASES = range(0xF0000, 0x10FFFE - _MARKER_BLOCK, _MARKER_BLOCK)


class _Markers:
    """The marker characters of one block: slot, field open/close, and one name per field index."""

    def __init__(self, base: int):
        self.base = base
        self.slot, self.open, self.close, self.sep = chr(base), chr(base + 1), chr(base + 2), chr(base + 3)
        self.soft = chr(base + 4)
        lo, hi = chr(base + 0x100), chr(base + _MARKER_BLOCK - 1)
        self.segments = re.compile(f"{self.sep}|{self.slot}(\\d*){self.slot}|{self.open}([{lo}-{hi}])(.*?){self.close}"
                                   f"|{self.soft}(\\d+){self.soft}", re.S)
        self.any = re.compile(f"[{chr(base)}-{hi}]")

    def field(self, i: int) -> str:
        return chr(self.base + 0x100 + i)

    def field_index(self, c: str) -> int:
        return ord(c) - self.base - 0x100



@functools.lru_cache(maxsize=None)
def _markers(base: int) -> _Markers:
    return _Markers(base)


def _free_markers(example: Example) -> _Markers:
    """The first marker block that none of the example's fields uses (almost always the first block)."""
    used = {ord(c) for v in example.fields.values() for c in v if ord(c) >= _MARKER_BASES.start}
    for base in _MARKER_BASES:
        if not any(base <= u < base + _MARKER_BLOCK for u in used):
            return _markers(base)
    path, _, line = example.source.rpartition(":")
    raise DataError(path or example.source, int(line) if line.isdigit() else None,
                    f"row {example.id!r} holds a character from each of the {len(_MARKER_BASES)} private-use blocks "
                    "(U+F0000 to U+10FFFD) that pet_mtl marks fields with; remove those characters from the row")


#: the most learned tokens one soft() call places, and the longest text it may start from
MAX_SOFT = 64


@dataclass(frozen=True)
class SoftSpec:
    """One `{{ soft(...) }}` of a template: learned input embeddings in place of text. `key` names the table rows
    (patterns and tasks that give the same `name=` share them); `length` is the token count (soft(n)), or None when
    the tokens are `text`'s (soft('情感分析'): as many as the text has tokens, initialised from their embeddings)."""

    key: str
    length: int | None
    text: str | None


@dataclass(frozen=True)
class Segment:
    """A piece of rendered cloze text: pattern text (field None), a field's text, the slot, the pair boundary, or
    learned tokens (`soft`: the index of their SoftSpec in the rendered cloze)."""

    text: str
    field: str | None = None
    is_slot: bool = False
    is_sep: bool = False
    soft: int | None = None


@dataclass(frozen=True)
class Rendered:
    segments: tuple[Segment, ...]
    #: slot length written in the template (`mask(n)`), None for "longest verbalizer"
    declared_slot: int | None
    #: the template's soft() calls, in the order rendered
    soft: tuple[SoftSpec, ...] = ()

    def parts(self, mask_token: str, slot_len: int, soft_token: str | None = None,
              soft_lengths: dict[str, int] | None = None) -> tuple[str, ...]:
        """What a user (or an oracle) would feed to a masked LM: one text, or a pair's two (`{{ sep }}`). Learned
        tokens are `soft_token` repeated (a placeholder the model's embeddings replace), or without one shown as
        `[soft×4]` / `[soft:情感分析]`."""
        out = [""]
        for s in self.segments:
            if s.is_sep:
                out.append("")
            elif s.soft is not None:
                spec = self.soft[s.soft]
                if soft_token is None:
                    out[-1] += f"[soft×{spec.length}]" if spec.text is None else f"[soft:{spec.text}]"
                else:
                    out[-1] += soft_token * (soft_lengths or {})[spec.key]
            else:
                out[-1] += mask_token * slot_len if s.is_slot else s.text
        return tuple(out)

    def text(self, mask_token: str, slot_len: int) -> str:
        """The parts as one string (for display; a pair pattern's model input is `parts`)."""
        return "".join(self.parts(mask_token, slot_len))


class _Soft:
    """What `soft` is inside a template: `soft(4)` places four learned tokens, `soft('情感分析')` as many as the
    text's tokens, initialised from them; `name='...'` shares the tokens with every soft() of that name."""

    pattern_callable = True

    def __init__(self, marker: str, default_key: str):
        self._marker, self._default_key = marker, default_key
        self.specs: list[SoftSpec] = []

    def __call__(self, what: Any, name: Any = None) -> str:
        if isinstance(what, bool) or not isinstance(what, (int, str)):
            raise TemplateError(f"soft() takes a token count or a text, got {what!r}")
        if isinstance(what, int) and not 1 <= what <= MAX_SOFT:
            raise TemplateError(f"soft(n) needs an integer 1..{MAX_SOFT}, got {what}")
        if isinstance(what, str) and not 0 < len(what.strip()) <= MAX_SOFT:
            raise TemplateError(f"soft(text) needs a text of 1..{MAX_SOFT} characters, got {what!r}")
        if name is not None and not (isinstance(name, str) and re.fullmatch(r"[\w.-]{1,64}", name)):
            raise TemplateError(f"soft(..., name=...) needs a name of letters, digits, '_', '.', '-', got {name!r}")
        key = name if name is not None else f"{self._default_key}#{len(self.specs)}"
        self.specs.append(SoftSpec(key, what if isinstance(what, int) else None,
                                   what if isinstance(what, str) else None))
        return f"{self._marker}{len(self.specs) - 1}{self._marker}"


class _Mask:
    """What `mask` is inside a template: prints as the slot, or `mask(n)` for an explicit length."""

    pattern_callable = True  # the one object a template may call besides string methods (sandbox.py)

    def __init__(self, slot: str):
        self._slot = slot

    def __str__(self) -> str:
        return self._slot + self._slot

    def __call__(self, n: Any) -> str:
        if not isinstance(n, int) or not 1 <= n <= MAX_SLOT:
            raise TemplateError(f"mask(n) needs an integer 1..{MAX_SLOT}, got {n!r}")
        return f"{self._slot}{n}{self._slot}"


@dataclass
class Pattern:
    """One template + one verbalizer for one task; immutable once validated."""

    task: str
    name: str
    source: str
    verbalizer: dict[str, str]
    #: where it came from, for error messages (a file path, or "checkpoint:<name>")
    origin: str = ""
    verbalizer_origin: str = ""
    _template: Any = field(default=None, repr=False, compare=False)
    declared_slot: int | None = None
    #: which slot positions count in a label word's score (SCORING_RULES)
    scoring: str = "word"
    #: how the scores of a label's several words combine (AGGREGATIONS)
    aggregate: str = "logsumexp"

    def __post_init__(self) -> None:
        task = get_task(self.task)
        origin = self.origin or self.name
        if len(self.source) > MAX_TEMPLATE_CHARS:
            raise PatternError(origin, None, f"the template has {len(self.source):,} characters; patterns are short "
                               f"(at most {MAX_TEMPLATE_CHARS:,})")
        try:
            ast = ENV.parse(self.source, name=self.name, filename=origin)
        except TemplateSyntaxError as e:
            raise PatternError(origin, e.lineno, f"template does not parse: {e.message}") from None
        except RecursionError:
            raise PatternError(origin, None, "template does not parse: its expressions nest too deeply") from None
        check_budget(ast, origin)
        allowed = set(task.fields) | {"mask", "sep", "soft"}
        unknown = sorted(meta.find_undeclared_variables(ast) - allowed)
        if unknown:
            line = next((n.lineno for n in ast.find_all(nodes.Name) if n.name == unknown[0]), None)
            raise PatternError(origin, line, f"unknown variable {unknown[0]!r}; a {task.name} template may use "
                               f"{', '.join(task.fields)}, mask, sep and soft")
        if "mask" not in meta.find_undeclared_variables(ast):
            raise PatternError(origin, None, "the template has no cloze slot: write {{ mask }} where the label word goes")
        try:
            code = ENV.compile(ast, name=self.name, filename=origin)
        except TemplateError as e:  # an unknown test, a construct the compiler refuses
            raise PatternError(origin, getattr(e, "lineno", None), f"template does not compile: {e}") from None
        self._template = ENV.template_class.from_code(ENV, code, ENV.make_globals(None))
        # a realistic stand-in row: long fields, so a template that multiplies its input fails here, not mid-run
        probe = Example(task.name, "probe", {f: "甲乙丙丁" * 128 for f in task.fields}, None, "probe")
        rendered = self.render(probe)
        self.declared_slot = rendered.declared_slot
        #: the learned tokens every row of this pattern carries (a soft() inside an `if` is refused: the model's
        #: table of prompt embeddings is fixed when it is built)
        self.soft_specs: tuple[SoftSpec, ...] = rendered.soft
        keys = [s.key for s in self.soft_specs]
        if len(set(keys)) != len(keys):
            raise PatternError(origin, None, f"soft tokens named {sorted(k for k in keys if keys.count(k) > 1)[0]!r} "
                               "appear twice in one template; give each soft() its own name")
        self._check_verbalizer(task)
        where = self.verbalizer_origin or origin
        if self.scoring not in SCORING_RULES:
            raise PatternError(where, None, f"scoring={self.scoring!r}: expected one of {', '.join(SCORING_RULES)}")
        if self.aggregate not in AGGREGATIONS:
            raise PatternError(where, None, f"aggregate={self.aggregate!r}: expected one of {', '.join(AGGREGATIONS)}")

    def _check_verbalizer(self, task: Task) -> None:
        where = self.verbalizer_origin or self.origin
        missing = [code for code in task.labels if code not in self.verbalizer]
        if missing:
            raise PatternError(where, None, f"verbalizer has no word for {task.name} label(s) {', '.join(missing)}")
        extra = [code for code in self.verbalizer if code not in task.labels]
        if extra:
            raise PatternError(where, None, f"verbalizer names unknown {task.name} label(s) {', '.join(map(str, extra))}")
        words: dict[str, str] = {}
        for code in task.labels:
            value = self.verbalizer[code]
            listed = value if isinstance(value, (list, tuple)) else [value]
            if not listed or not all(isinstance(w, str) and w.strip() for w in listed):
                raise PatternError(where, None, f"verbalizer word for label {code} must be a non-empty string or a "
                                   "non-empty list of them")
            for word in listed:
                if word in words:
                    raise PatternError(where, None, f"labels {words[word]} and {code} share the word {word!r}"
                                       if words[word] != code else f"label {code} lists the word {word!r} twice")
                words[word] = code

    def word_lists(self) -> dict[str, tuple[str, ...]]:
        """Every label's words, in the task's label order (a single word is a list of one)."""
        return {code: tuple(v) if isinstance(v, (list, tuple)) else (v,)
                for code, v in ((c, self.verbalizer[c]) for c in get_task(self.task).labels)}

    def render(self, example: Example) -> Rendered:
        origin = self.origin or self.name
        task = get_task(self.task)
        mk = _free_markers(example)
        ctx = {f: FieldText(example.fields[f], f"{mk.open}{mk.field(i)}", mk.close) for i, f in enumerate(task.fields)}
        row = f"row {example.id}" + (f" ({example.source})" if example.source else "")
        soft = _Soft(mk.soft, f"{self.task}/{self.name}")
        try:
            out = render_bounded(self._template, mask=_Mask(mk.slot), sep=mk.sep, soft=soft, **ctx)
        except SecurityError as e:
            raise PatternError(origin, error_line(e, origin), f"refused by the sandbox: {e} ({row})") from None
        except TemplateError as e:
            raise PatternError(origin, error_line(e, origin), f"cannot render {row}: {e}") from None
        except (ArithmeticError, LookupError, ValueError, TypeError, RecursionError, MemoryError) as e:
            # a template that fails on some rows only (a division by zero, a failed .index): the row and the line
            raise PatternError(origin, error_line(e, origin), f"cannot render {row}: {type(e).__name__}: "
                               f"{str(e)[:200]}") from None
        segments: list[Segment] = []
        declared: list[int | None] = []
        pos = 0
        for m in mk.segments.finditer(out):
            if m.start() > pos:
                segments.append(Segment(out[pos:m.start()]))
            if m.group(0) == mk.sep:
                segments.append(Segment("", is_sep=True))
            elif m.group(2) is not None:
                segments.append(Segment(m.group(3), field=task.fields[mk.field_index(m.group(2))]))
            elif m.group(4) is not None:
                segments.append(Segment("", soft=int(m.group(4))))
            else:
                declared.append(int(m.group(1)) if m.group(1) else None)
                segments.append(Segment("", is_slot=True))
            pos = m.end()
        if pos < len(out):
            segments.append(Segment(out[pos:]))
        if len(declared) != 1:
            raise PatternError(origin, None, f"a pattern must render exactly one cloze slot; rendered {len(declared)}"
                               f" for example {example.id}")
        seps = [i for i, s in enumerate(segments) if s.is_sep]
        if len(seps) > 1:
            raise PatternError(origin, None, f"a pattern may mark one pair boundary; rendered {len(seps)} {{{{ sep }}}}"
                               f" for example {example.id}")
        if seps and not all(any(s.text.strip() or s.is_slot or s.field is not None for s in side)
                            for side in (segments[:seps[0]], segments[seps[0] + 1:])):
            raise PatternError(origin, None, f"{{{{ sep }}}} must have text on both sides (example {example.id})")
        stray = [s.text for s in segments if mk.any.search(s.text)]
        if stray:
            raise PatternError(origin, None, "a filter cut into a field's markers; apply filters to whole fields only")
        return Rendered(tuple(segments), declared[0], tuple(soft.specs))

    def slot_context(self) -> str:
        """The text the slot follows in its part (after `{{ sep }}` if any), for a row whose fields read 甲乙丙丁:
        label words are tokenized after it, as the model would read them in place of the slot."""
        task = get_task(self.task)
        rendered = self.render(Example(task.name, "context", {f: "甲乙丙丁" for f in task.fields}, None, "context"))
        before = ""
        for s in rendered.segments:
            if s.is_slot:
                return before
            before = "" if s.is_sep else before + s.text
        return before

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "name": self.name, "source": self.source, "verbalizer": dict(self.verbalizer),
                "scoring": self.scoring, "aggregate": self.aggregate}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], origin: str) -> "Pattern":
        """A pattern as a checkpoint recorded it; checkpoints from before scoring rules scored "padded"."""
        return cls(task=d["task"], name=d["name"], source=d["source"], verbalizer=dict(d["verbalizer"]),
                   origin=f"{origin}#{d['name']}", verbalizer_origin=f"{origin}#{d['name']}",
                   scoring=d.get("scoring", "padded"), aggregate=d.get("aggregate", "logsumexp"))


#: which slot positions count in a label word's score. The slot has the same length for every label of a pattern
#: (the longest word's token count); a shorter word is padded on the right with the pad token.
SCORING_RULES = {  # the default, "word", won on zh-mini-mlm (benchmarks/RESULTS.md, label words)
    "padded": "joint log-probability over the whole slot, the padding's [PAD] positions included",
    "word": "joint log-probability of the word's own tokens; padded positions are ignored",
    "word_mean": "the word's joint log-probability divided by its token count (per-token mean)",
}
#: how a label's several words combine into its score
AGGREGATIONS = {
    "logsumexp": "log of the summed probabilities of the words (the label is any of them)",
    "mean": "the mean of the words' scores",
}


@dataclass(frozen=True)
class PatternSpec:
    """One entry of a pattern set (conf/patterns/*.yaml): a template file, a verbalizer name, and optionally the
    scoring rule and multi-word aggregation (None: the run's `label_scoring` / logsumexp)."""

    template: str
    verbalizer: str = "default"
    scoring: str | None = None
    aggregate: str | None = None
