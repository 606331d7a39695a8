"""Patterns as data: Jinja templates that turn an example into a cloze, plus verbalizers (label -> word).

A template sees the example's fields by name and marks the cloze slot with `{{ mask }}` (slot length = the
longest verbalizer's token count) or `{{ mask(n) }}` (a fixed length n). Templates are untrusted input: they
are compiled in Jinja's immutable sandbox with no globals, no loader (so no include/import/extends) and
undefined variables as errors, and are validated when loaded (parses, only the task's fields, exactly one
slot, a word for every label), so a broken pattern fails before any model is built.

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
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from .data import Example
from .errors import ConfigError, PatternError
from .resources import PATTERNS_ROOT
from .tasks import Task, get_task

MAX_SLOT = 16
_MARKER_BLOCK = 0x200  # slot, field open/close, then one code point per field from +0x100
_MARKER_BASES = range(0xF0000, 0x10FFFE - _MARKER_BLOCK, _MARKER_BLOCK)


class _Markers:
    """The marker characters of one block: slot, field open/close, and one name per field index."""

    def __init__(self, base: int):
        self.base = base
        self.slot, self.open, self.close = chr(base), chr(base + 1), chr(base + 2)
        lo, hi = chr(base + 0x100), chr(base + _MARKER_BLOCK - 1)
        self.segments = re.compile(f"{self.slot}(\\d*){self.slot}|{self.open}([{lo}-{hi}])(.*?){self.close}", re.S)
        self.any = re.compile(f"[{chr(base)}-{hi}]")

    def field(self, i: int) -> str:
        return chr(self.base + 0x100 + i)

    def field_index(self, c: str) -> int:
        return ord(c) - self.base - 0x100



@functools.lru_cache(maxsize=None)
def _markers(base: int) -> _Markers:
    return _Markers(base)


def _free_markers(values) -> _Markers:
    """The first marker block that none of `values` uses (almost always the first block)."""
    used = {ord(c) for v in values for c in v if ord(c) >= _MARKER_BASES.start}
    for base in _MARKER_BASES:
        if not any(base <= u < base + _MARKER_BLOCK for u in used):
            return _markers(base)
    raise ValueError("no free marker block")  # unreachable: more blocks than a field has characters


@dataclass(frozen=True)
class Segment:
    """A piece of rendered cloze text: pattern text (field None), a field's text, or the slot."""

    text: str
    field: str | None = None
    is_slot: bool = False


@dataclass(frozen=True)
class Rendered:
    segments: tuple[Segment, ...]
    #: slot length written in the template (`mask(n)`), None for "longest verbalizer"
    declared_slot: int | None

    def text(self, mask_token: str, slot_len: int) -> str:
        """The plain text a user (or an oracle) would feed to a masked LM."""
        return "".join(mask_token * slot_len if s.is_slot else s.text for s in self.segments)


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


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.globals.clear()  # no range/cycler/joiner/namespace/lipsum: a template sees fields and mask, nothing else
    return env


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

    def __post_init__(self) -> None:
        task = get_task(self.task)
        origin = self.origin or self.name
        try:
            ast = _ENV.parse(self.source, name=self.name, filename=origin)
        except TemplateSyntaxError as e:
            raise PatternError(origin, e.lineno, f"template does not parse: {e.message}") from None
        for node_type in (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends):
            node = next(ast.find_all(node_type), None)
            if node is not None:
                raise PatternError(origin, node.lineno, "templates cannot include, import or extend other templates")
        allowed = set(task.fields) | {"mask"}
        unknown = sorted(meta.find_undeclared_variables(ast) - allowed)
        if unknown:
            line = next((n.lineno for n in ast.find_all(nodes.Name) if n.name == unknown[0]), None)
            raise PatternError(origin, line, f"unknown variable {unknown[0]!r}; a {task.name} template may use "
                               f"{', '.join(task.fields)} and mask")
        if "mask" not in meta.find_undeclared_variables(ast):
            raise PatternError(origin, None, "the template has no cloze slot: write {{ mask }} where the label word goes")
        code = _ENV.compile(ast, name=self.name, filename=origin)
        self._template = _ENV.template_class.from_code(_ENV, code, _ENV.make_globals(None))
        probe = Example(task.name, "probe", {f: "甲" for f in task.fields}, None, "probe")
        self.declared_slot = self.render(probe).declared_slot
        self._check_verbalizer(task)

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
            word = self.verbalizer[code]
            if not isinstance(word, str) or not word.strip():
                raise PatternError(where, None, f"verbalizer word for label {code} must be a non-empty string")
            if word in words:
                raise PatternError(where, None, f"labels {words[word]} and {code} share the word {word!r}")
            words[word] = code

    def render(self, example: Example) -> Rendered:
        origin = self.origin or self.name
        task = get_task(self.task)
        mk = _free_markers(example.fields.values())
        ctx = {f: f"{mk.open}{mk.field(i)}{example.fields[f]}{mk.close}" for i, f in enumerate(task.fields)}
        try:
            out = self._template.render(mask=_Mask(mk.slot), **ctx)
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
            if m.group(2) is not None:
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
        stray = [s.text for s in segments if mk.any.search(s.text)]
        if stray:
            raise PatternError(origin, None, "a filter cut into a field's markers; apply filters to whole fields only")
        return Rendered(tuple(segments), declared[0])

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "name": self.name, "source": self.source, "verbalizer": dict(self.verbalizer)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], origin: str) -> "Pattern":
        return cls(task=d["task"], name=d["name"], source=d["source"], verbalizer=dict(d["verbalizer"]),
                   origin=f"{origin}#{d['name']}", verbalizer_origin=f"{origin}#{d['name']}")


@dataclass(frozen=True)
class PatternSpec:
    """One entry of a pattern set (conf/patterns/*.yaml): a template file and a verbalizer name."""

    template: str
    verbalizer: str = "default"


def load_verbalizer(path: Path, name: str, task: Task) -> dict[str, str]:
    if not path.is_file():
        raise PatternError(path, None, f"verbalizer file not found (expected beside the template, for {task.name})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise PatternError(path, None if line is None else line + 1, f"not valid YAML: {e}") from None
    if not isinstance(data, dict) or name not in data or not isinstance(data[name], dict):
        names = ", ".join(data) if isinstance(data, dict) else "none"
        raise PatternError(path, None, f"no verbalizer named {name!r} (a mapping label -> word); found: {names}")
    return {str(k): v for k, v in data[name].items()}


def load_pattern(task_name: str, spec: PatternSpec, root: str | Path = PATTERNS_ROOT) -> Pattern:
    """Load and validate one pattern; `spec.template` is absolute or relative to `root`."""
    task = get_task(task_name)
    path = Path(spec.template)
    if not path.is_absolute():
        path = Path(root) / path
    if not path.is_file():
        raise ConfigError(f"{task.name}: pattern template {path} not found; fix the pattern set's 'template' entry "
                          f"or add the file")
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PatternError(path, None, "template is not valid UTF-8") from None
    vpath = path.parent / "verbalizers.yaml"
    verbalizer = load_verbalizer(vpath, spec.verbalizer, task)
    name = f"{path.parent.name}/{path.stem}" + ("" if spec.verbalizer == "default" else f"@{spec.verbalizer}")
    return Pattern(task=task.name, name=name, source=source, verbalizer=verbalizer, origin=str(path),
                   verbalizer_origin=f"{vpath}#{spec.verbalizer}")


def load_pattern_set(pattern_set: Mapping[str, Sequence[Any]], tasks: Sequence[str],
                     root: str | Path = PATTERNS_ROOT) -> dict[str, list[Pattern]]:
    """Load the patterns a set names for each task; every task must have at least one."""
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
            elif isinstance(entry, Mapping) and "template" in entry:
                specs.append(PatternSpec(str(entry["template"]), str(entry.get("verbalizer", "default"))))
            else:
                raise ConfigError(f"pattern set entry {entry!r} for {task_name}: expected a template path or "
                                  "{template: ..., verbalizer: ...}")
        out[task_name] = [load_pattern(task_name, s, root) for s in specs]
    unknown = sorted(set(pattern_set) - set(tasks) - {"root"})
    for name in unknown:
        get_task(name)  # a typo in a task name is an error, a known task that is not trained is fine
    return out
