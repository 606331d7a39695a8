"""Patterns as data: Jinja templates that turn an example into a cloze, plus verbalizers (label -> word).

A template sees the example's fields by name and marks the cloze slot with `{{ mask }}` (slot length = the
longest verbalizer's token count) or `{{ mask(n) }}` (a fixed length n), and may mark one pair boundary with
`{{ sep }}`: the text before and after it are then encoded as the tokenizer's sentence pair (`[CLS] a [SEP] b [SEP]`,
token type ids 0/1), as BERT saw premise/hypothesis pairs in pretraining. Templates are untrusted input: they
are compiled in Jinja's immutable sandbox with no globals, no loader (so no include/import/extends) and
undefined variables as errors, and are validated when loaded (parses, only the task's fields, exactly one
slot, a word for every label), so a broken pattern fails before any model is built.

Templates also get a budget, so a shared pattern cannot hang a run or exhaust memory. What could make rendering
cost more than linear time or memory is refused at load, with the reason: loops, macros and call blocks (nested
loops and self-calling macros are exponential), `set` (doubling a variable 30 times is 2^30 characters), `**`
and integer literals above MAX_INT, and filters outside ALLOWED_FILTERS. What remains is a fixed expression tree,
and the operations in it that can multiply text (`*` on a string, `replace`, `join`, `center`, `indent`) are
checked before they run: no single render may produce more than MAX_RENDER_CHARS characters, which is also checked
on the whole output of every row and on a realistic stand-in row at load.

Rendering keeps track of what came from the example's fields and what is pattern text, so truncation can
shorten the fields and never the pattern or the slot (see features.py). It does so by wrapping each field
value in marker characters from Unicode's supplementary private-use plane, which the template passes through
untouched; a block of markers that the example's own text does not use is picked per render (real Weibo text
does contain private-use emoji), so no input can forge a marker.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from jinja2 import (
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    meta,
    nodes,
    pass_eval_context,
)
from jinja2 import filters as jinja_filters
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from pet_mtl.core.errors import ConfigError, DataError, PatternError
from pet_mtl.core.resources import PATTERNS_ROOT
from pet_mtl.core.tasks import Task, get_task
from pet_mtl.data.readers import Example

MAX_SLOT = 16
_MARKER_BLOCK = 0x200  # slot, field open/close, then one code point per field from +0x100
_MARKER_BASES = range(0xF0000, 0x10FFFE - _MARKER_BLOCK, _MARKER_BLOCK)


class _Markers:
    """The marker characters of one block: slot, field open/close, and one name per field index."""

    def __init__(self, base: int):
        self.base = base
        self.slot, self.open, self.close, self.sep = chr(base), chr(base + 1), chr(base + 2), chr(base + 3)
        lo, hi = chr(base + 0x100), chr(base + _MARKER_BLOCK - 1)
        self.segments = re.compile(f"{self.sep}|{self.slot}(\\d*){self.slot}|{self.open}([{lo}-{hi}])(.*?){self.close}",
                                   re.S)
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


@dataclass(frozen=True)
class Segment:
    """A piece of rendered cloze text: pattern text (field None), a field's text, the slot, or the pair boundary."""

    text: str
    field: str | None = None
    is_slot: bool = False
    is_sep: bool = False


@dataclass(frozen=True)
class Rendered:
    segments: tuple[Segment, ...]
    #: slot length written in the template (`mask(n)`), None for "longest verbalizer"
    declared_slot: int | None

    def parts(self, mask_token: str, slot_len: int) -> tuple[str, ...]:
        """What a user (or an oracle) would feed to a masked LM: one text, or a pair's two (`{{ sep }}`)."""
        out = [""]
        for s in self.segments:
            if s.is_sep:
                out.append("")
            else:
                out[-1] += mask_token * slot_len if s.is_slot else s.text
        return tuple(out)

    def text(self, mask_token: str, slot_len: int) -> str:
        """The parts as one string (for display; a pair pattern's model input is `parts`)."""
        return "".join(self.parts(mask_token, slot_len))


class _Mask:
    """What `mask` is inside a template: prints as the slot, or `mask(n)` for an explicit length."""

    def __init__(self, slot: str):
        self._slot = slot

    def __str__(self) -> str:
        return self._slot + self._slot

    def __call__(self, n: Any) -> str:
        if not isinstance(n, int) or not 1 <= n <= MAX_SLOT:
            raise TemplateError(f"mask(n) needs an integer 1..{MAX_SLOT}, got {n!r}")
        return f"{self._slot}{n}{self._slot}"


#: the most characters one render may produce (a row's fields are already cut to a bounded length, features.py)
MAX_RENDER_CHARS = 1_000_000
#: the largest integer literal a template may hold
MAX_INT = 10_000
#: statements a pattern may not use, and why
REFUSED_NODES = {
    nodes.For: "loops are refused (nested loops cost exponential time); write the fields out",
    nodes.Macro: "macros are refused (a macro that calls itself costs exponential time)",
    nodes.CallBlock: "call blocks are refused (they call macros)",
    nodes.Assign: "`set` is refused (repeated doubling of a variable exhausts memory)",
    nodes.AssignBlock: "`set` is refused (repeated doubling of a variable exhausts memory)",
    nodes.Pow: "`**` is refused (a power builds unbounded numbers and strings)",
    nodes.Include: "templates cannot include, import or extend other templates",
    nodes.Import: "templates cannot include, import or extend other templates",
    nodes.FromImport: "templates cannot include, import or extend other templates",
    nodes.Extends: "templates cannot include, import or extend other templates",
}


def _check_size(what: str, chars: int) -> None:
    if chars > MAX_RENDER_CHARS:
        raise SecurityError(f"{what} would produce {chars:,} characters, over the budget of {MAX_RENDER_CHARS:,} "
                            "per row")


# the filters that can multiply text, each checked before it runs
@pass_eval_context
def _replace(eval_ctx, s, old, new, count=None):
    text, o, n = str(s), str(old), str(new)
    hits = text.count(o) if o else len(text) + 1
    if count is not None:
        hits = min(hits, int(count))
    _check_size("filter replace", len(text) + hits * max(0, len(n) - len(o)))
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def _join(eval_ctx, value, d="", attribute=None):
    items = list(value)
    _check_size("filter join", sum(len(str(x)) for x in items) + len(str(d)) * max(0, len(items) - 1))
    return jinja_filters.do_join(eval_ctx, items, d, attribute)


def _center(value, width=80):
    _check_size("filter center", max(len(str(value)), int(width)))
    return jinja_filters.do_center(value, width)


def _indent(s, width=4, first=False, blank=False):
    text = str(s)
    _check_size("filter indent", len(text) + (text.count("\n") + 1) * (len(width) if isinstance(width, str) else int(width)))
    return jinja_filters.do_indent(s, width, first, blank)


_LINEAR_FILTERS = ("abs", "capitalize", "default", "d", "first", "last", "length", "count", "lower", "upper",
                   "title", "trim", "truncate", "string", "int", "float", "round", "striptags", "wordcount",
                   "reverse", "list", "escape", "e")
#: the filters a template may use: those whose output grows at most linearly, and the multiplying ones, checked
ALLOWED_FILTERS = {**{name: jinja_filters.FILTERS[name] for name in _LINEAR_FILTERS},
                   "replace": _replace, "join": _join, "center": _center, "indent": _indent}


class _PatternEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with `*` checked: `'x' * n` may not build more than MAX_RENDER_CHARS characters."""

    intercepted_binops = frozenset({"*"})

    def call_binop(self, context, operator, left, right):
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                _check_size(f"{type(seq).__name__} * {n}", len(seq) * n)
        return super().call_binop(context, operator, left, right)


def _environment() -> ImmutableSandboxedEnvironment:
    env = _PatternEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.globals.clear()  # no range/cycler/joiner/namespace/lipsum: a template sees fields and mask, nothing else
    env.filters = dict(ALLOWED_FILTERS)
    return env


def _check_budget(ast: nodes.Template, origin: str) -> None:
    """Refuse, before compiling, whatever could make a render cost more than linear time or memory."""
    for node in ast.find_all(nodes.Node):
        reason = next((why for kind, why in REFUSED_NODES.items() if isinstance(node, kind)), None)
        if reason is not None:
            raise PatternError(origin, node.lineno, reason)
        if isinstance(node, nodes.Const) and isinstance(node.value, int) and not isinstance(node.value, bool) \
                and abs(node.value) > MAX_INT:
            raise PatternError(origin, node.lineno, f"integer {node.value} is larger than {MAX_INT:,}; patterns "
                               "need no large numbers")
        if isinstance(node, nodes.Filter) and node.name not in ALLOWED_FILTERS:
            raise PatternError(origin, node.lineno, f"filter {node.name!r} is not allowed in patterns; allowed: "
                               f"{', '.join(sorted(ALLOWED_FILTERS))}")


_ENV = _environment()


def _error_line(exc: BaseException, filename: str) -> int | None:
    """The template line of a render-time error (Jinja rewrites tracebacks to template lines)."""
    line = getattr(exc, "lineno", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


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
        try:
            ast = _ENV.parse(self.source, name=self.name, filename=origin)
        except TemplateSyntaxError as e:
            raise PatternError(origin, e.lineno, f"template does not parse: {e.message}") from None
        _check_budget(ast, origin)
        allowed = set(task.fields) | {"mask", "sep"}
        unknown = sorted(meta.find_undeclared_variables(ast) - allowed)
        if unknown:
            line = next((n.lineno for n in ast.find_all(nodes.Name) if n.name == unknown[0]), None)
            raise PatternError(origin, line, f"unknown variable {unknown[0]!r}; a {task.name} template may use "
                               f"{', '.join(task.fields)}, mask and sep")
        if "mask" not in meta.find_undeclared_variables(ast):
            raise PatternError(origin, None, "the template has no cloze slot: write {{ mask }} where the label word goes")
        try:
            code = _ENV.compile(ast, name=self.name, filename=origin)
        except TemplateError as e:  # an unknown test, a construct the compiler refuses
            raise PatternError(origin, getattr(e, "lineno", None), f"template does not compile: {e}") from None
        self._template = _ENV.template_class.from_code(_ENV, code, _ENV.make_globals(None))
        # a realistic stand-in row: long fields, so a template that multiplies its input fails here, not mid-run
        probe = Example(task.name, "probe", {f: "甲乙丙丁" * 128 for f in task.fields}, None, "probe")
        self.declared_slot = self.render(probe).declared_slot
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
        ctx = {f: f"{mk.open}{mk.field(i)}{example.fields[f]}{mk.close}" for i, f in enumerate(task.fields)}
        try:
            out = self._template.render(mask=_Mask(mk.slot), sep=mk.sep, **ctx)
            _check_size("the template", len(out))
        except SecurityError as e:
            raise PatternError(origin, _error_line(e, origin), f"refused by the sandbox: {e}") from None
        except TemplateError as e:
            raise PatternError(origin, _error_line(e, origin), f"cannot render: {e}") from None
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
        return Rendered(tuple(segments), declared[0])

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


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error instead of "the last wins"."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> Any:
    """A YAML file of a pattern library (verbalizers, pattern sets): safe, a key given twice is an error, and any
    error is one PatternError with the file and line."""
    try:
        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise PatternError(path, None if line is None else line + 1, f"not valid YAML: {e}") from None


def user_set_files(roots: Sequence[Path]) -> dict[str, Path]:
    """The pattern-set files of pattern roots, `<root>/sets/<name>.yaml`, by name (an earlier root wins)."""
    found: dict[str, Path] = {}
    for root in roots:
        for path in sorted(Path(root).expanduser().glob("sets/*.yaml")):
            found.setdefault(path.stem, path)
    return found


def load_verbalizer(path: Path, name: str, task: Task) -> dict[str, str]:
    if not path.is_file():
        raise PatternError(path, None, f"verbalizer file not found (expected beside the template, for {task.name})")
    data = read_yaml(path)
    if not isinstance(data, dict) or name not in data or not isinstance(data[name], dict):
        names = ", ".join(data) if isinstance(data, dict) else "none"
        raise PatternError(path, None, f"no verbalizer named {name!r} (a mapping label -> word); found: {names}")
    return {str(k): list(v) if isinstance(v, list) else v for k, v in data[name].items()}


def pattern_roots(roots: str | Path | Sequence[str | Path] | None) -> list[Path]:
    """The folders templates are looked up in, in order: the user's (given first) and the shipped library last."""
    if roots is None:
        given = []
    elif isinstance(roots, (str, Path)):
        given = [roots]
    else:
        given = list(roots)
    out = [Path(r).expanduser().resolve() for r in given]
    return out + ([PATTERNS_ROOT] if PATTERNS_ROOT not in out else [])


def find_template(template: str, roots: Sequence[Path]) -> Path | None:
    path = Path(template).expanduser()
    if path.is_absolute():
        return path if path.is_file() else None
    return next((r / path for r in roots if (r / path).is_file()), None)


def load_pattern(task_name: str, spec: PatternSpec, root: str | Path | Sequence[str | Path] | None = None,
                 scoring: str = "word") -> Pattern:
    """Load and validate one pattern; `spec.template` is absolute or relative to the first of the pattern roots
    (`root`: one folder or several, searched in order before the shipped library) that has it."""
    task = get_task(task_name)
    roots = pattern_roots(root)
    path = find_template(spec.template, roots)
    if path is None:
        raise ConfigError(f"{task.name}: pattern template {spec.template} not found in {', '.join(map(str, roots))}; "
                          "fix the pattern set's 'template' entry or add the file")
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PatternError(path, None, "template is not valid UTF-8") from None
    vpath = path.parent / "verbalizers.yaml"
    verbalizer = load_verbalizer(vpath, spec.verbalizer, task)
    name = f"{path.parent.name}/{path.stem}" + ("" if spec.verbalizer == "default" else f"@{spec.verbalizer}")
    return Pattern(task=task.name, name=name, source=source, verbalizer=verbalizer, origin=str(path),
                   verbalizer_origin=f"{vpath}#{spec.verbalizer}", scoring=spec.scoring or scoring,
                   aggregate=spec.aggregate or "logsumexp")


def load_pattern_set(pattern_set: Mapping[str, Sequence[Any]], tasks: Sequence[str],
                     root: str | Path | Sequence[str | Path] | None = None,
                     scoring: str = "word") -> dict[str, list[Pattern]]:
    """Load the patterns a set names for each task; every task must have at least one. `scoring` is the rule for
    entries that name none."""
    out: dict[str, list[Pattern]] = {}
    for task_name in tasks:
        get_task(task_name)
        entries = pattern_set.get(task_name)
        if not entries:
            raise ConfigError(f"the pattern set gives no pattern for task {task_name!r}; add an entry under "
                              f"'{task_name}:' in conf/patterns/<set>.yaml")
        specs = []
        for entry in entries:
            if isinstance(entry, str):
                specs.append(PatternSpec(entry))
            elif isinstance(entry, Mapping) and "template" in entry and set(entry) <= set(PatternSpec.__annotations__):
                specs.append(PatternSpec(str(entry["template"]), str(entry.get("verbalizer", "default")),
                                         entry.get("scoring"), entry.get("aggregate")))
            else:
                raise ConfigError(f"pattern set entry {entry!r} for {task_name}: expected a template path or "
                                  "{template: ..., verbalizer: ..., scoring: ..., aggregate: ...}")
        out[task_name] = [load_pattern(task_name, s, root, scoring) for s in specs]
    unknown = sorted(set(pattern_set) - set(tasks) - {"root"})
    for name in unknown:
        get_task(name)  # a typo in a task name is an error, a known task that is not trained is fine
    return out
