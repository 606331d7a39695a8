"""The Jinja sandbox patterns are compiled in, and the budget that keeps a template from hanging a run or
exhausting memory (see the package's docstring for the rules)."""
from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from jinja2 import StrictUndefined, nodes, pass_eval_context
from jinja2 import filters as jinja_filters
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from pet_mtl.core.errors import PatternError

#: the most characters one render may produce, and the most its intermediate values may hold together (a row's
#: fields are cut to a bounded length before rendering, features.py)
MAX_RENDER_CHARS = 1_000_000
#: the largest integer literal a template may hold, and the largest number arithmetic in it may produce
MAX_INT = 10_000
MAX_NUMBER = 10**12
#: the longest template source, and the most seconds one render may take
MAX_TEMPLATE_CHARS = 100_000
MAX_RENDER_SECONDS = 2.0

#: the only syntax a template may use: output, fields, constants, conditions, filters, tests, arithmetic, the
#: string methods below. Everything else (loops, macros, set, with, blocks, imports, ...) is refused at load: what is
#: left is an expression tree evaluated once, whose every step that creates text is charged to the render's budget
ALLOWED_NODES = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Const, nodes.Getattr,
                 nodes.Getitem, nodes.Slice, nodes.Filter, nodes.Test, nodes.CondExpr, nodes.If, nodes.Concat,
                 nodes.Compare, nodes.Operand, nodes.And, nodes.Or, nodes.Not, nodes.Neg, nodes.Pos, nodes.Add,
                 nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Tuple, nodes.List, nodes.Dict,
                 nodes.Pair, nodes.Keyword, nodes.Call, nodes.FilterBlock)
#: the refused constructs users reach for, and why
REFUSED_NODES = {
    nodes.For: "loops are refused (nested loops cost exponential time); write the fields out",
    nodes.Macro: "macros are refused (a macro that calls itself costs exponential time)",
    nodes.CallBlock: "call blocks are refused (they call macros)",
    nodes.Assign: "`set` is refused (repeated doubling of a variable exhausts memory)",
    nodes.AssignBlock: "`set` is refused (repeated doubling of a variable exhausts memory)",
    nodes.With: "`with` is refused (a value doubled level by level exhausts memory)",
    nodes.Block: "blocks are refused (a block can call itself through `self`)",
    nodes.Pow: "`**` is refused (a power builds unbounded numbers and strings)",
    nodes.Include: "templates cannot include, import or extend other templates",
    nodes.Import: "templates cannot include, import or extend other templates",
    nodes.FromImport: "templates cannot include, import or extend other templates",
    nodes.Extends: "templates cannot include, import or extend other templates",
}
#: methods a template may call on a field (or a value made from one): none whose argument sets the output's size
#: (ljust, rjust, center, zfill, expandtabs, format, ...) and none that changes encodings
SAFE_METHODS = frozenset({
    "strip", "lstrip", "rstrip", "lower", "upper", "title", "capitalize", "casefold", "swapcase", "startswith",
    "endswith", "find", "rfind", "index", "rindex", "count", "isdigit", "isalpha", "isalnum", "isspace", "isupper",
    "islower", "isnumeric", "isdecimal", "istitle", "split", "rsplit", "splitlines", "partition", "rpartition",
    "removeprefix", "removesuffix", "replace", "join"})


def check_size(what: str, chars: int) -> None:
    if chars > MAX_RENDER_CHARS:
        raise SecurityError(f"{what} would produce {chars:,} characters, over the budget of {MAX_RENDER_CHARS:,} "
                            "per row")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, dict)) else 0


class _Meter:
    """One render's budget: the characters (and list items) its steps create, and its time."""

    def __init__(self) -> None:
        self.created = 0
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def charge(self, what: str, value: Any) -> Any:
        self.created += _size(value)
        if self.created > MAX_RENDER_CHARS:
            raise SecurityError(f"{what} takes the row's values over the budget of {MAX_RENDER_CHARS:,} characters")
        if time.monotonic() > self.deadline:
            raise SecurityError(f"the render took more than {MAX_RENDER_SECONDS:g} s")
        return value


_meter: ContextVar[_Meter | None] = ContextVar("pet_mtl_render_meter", default=None)


def _charge(what: str, value: Any) -> Any:
    meter = _meter.get()
    return meter.charge(what, value) if meter is not None else value


def _number(what: str, value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > MAX_NUMBER:
        raise SecurityError(f"{what} makes a number larger than {MAX_NUMBER:,}; patterns need no large numbers")
    return value


def _expected_replace(text: str, old: str, new: str, count: Any = None) -> int:
    hits = text.count(old) if old else len(text) + 1
    if count is not None and int(count) >= 0:
        hits = min(hits, int(count))
    return len(text) + hits * max(0, len(new) - len(old))


# the filters that can multiply text, each checked before it runs
@pass_eval_context
def _replace(eval_ctx, s, old, new, count=None):
    check_size("filter replace", _expected_replace(str(s), str(old), str(new), count))
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def _join(eval_ctx, value, d="", attribute=None):
    items = list(value)
    check_size("filter join", sum(len(str(x)) for x in items) + len(str(d)) * max(0, len(items) - 1))
    return jinja_filters.do_join(eval_ctx, items, d, attribute)


def _center(value, width=80):
    check_size("filter center", max(len(str(value)), int(width)))
    return jinja_filters.do_center(value, width)


def _indent(s, width=4, first=False, blank=False):
    text = str(s)
    check_size("filter indent", len(text) + (text.count("\n") + 1) * (len(width) if isinstance(width, str) else int(width)))
    return jinja_filters.do_indent(s, width, first, blank)


class FieldText(str):
    """A field as a template sees it: the field's text inside a frame of marker characters (rendering finds the
    field again by them, so truncation cuts fields and never the pattern), whose end-trimming and end-testing
    methods act on the text alone, as a template's author means them: `{{ premise.rstrip('。') }}` drops the
    premise's own full stop, where on the framed string it would meet the closing marker and drop nothing."""

    def __new__(cls, text: str, before: str = "", after: str = "") -> "FieldText":
        self = super().__new__(cls, f"{before}{text}{after}")
        self._frame = (text, before, after)
        return self

    @property
    def _text(self) -> str:
        return self._frame[0]

    def _same_frame(self, text: str) -> "FieldText":
        return FieldText(text, *self._frame[1:])

    def strip(self, chars: str | None = None) -> "FieldText":
        return self._same_frame(self._text.strip(chars))

    def lstrip(self, chars: str | None = None) -> "FieldText":
        return self._same_frame(self._text.lstrip(chars))

    def rstrip(self, chars: str | None = None) -> "FieldText":
        return self._same_frame(self._text.rstrip(chars))

    def removeprefix(self, prefix: str) -> "FieldText":
        return self._same_frame(self._text.removeprefix(prefix))

    def removesuffix(self, suffix: str) -> "FieldText":
        return self._same_frame(self._text.removesuffix(suffix))

    def startswith(self, *args: Any) -> bool:
        return self._text.startswith(*args)

    def endswith(self, *args: Any) -> bool:
        return self._text.endswith(*args)


def text_of(value: Any) -> str:
    """The text of a field (without its frame) or of any other value."""
    return value._text if isinstance(value, FieldText) else str(value)


#: punctuation that ends a sentence, and punctuation that only pauses one (a text cut off mid-sentence ends so)
FINAL_PUNCTUATION = "。！？!?…~～."
PAUSE_PUNCTUATION = "，,；;：:、"
_SPACE = " \t\u3000"


def _rstrip_punct(value: Any) -> Any:
    """`{{ premise | rstrip_punct }}？`: the text without its own closing punctuation, so the template's mark is the
    only one (a text that is all punctuation is kept whole: it would otherwise vanish)."""
    stripped = value.rstrip(FINAL_PUNCTUATION + PAUSE_PUNCTUATION + _SPACE) if isinstance(value, str) else value
    return stripped if text_of(stripped).strip() else value


def _sentence(value: Any) -> Any:
    """`{{ text | sentence }}我感到很{{ mask }}`: the text ending with one sentence-final mark: its own (a 。, ！ or
    ？ says something about the text, so it is kept) or, where it has none, a full stop after it; a trailing pause
    (，、；：) becomes that full stop."""
    if not isinstance(value, str):
        return value
    stripped = value.rstrip(PAUSE_PUNCTUATION + _SPACE)
    if not text_of(stripped).strip():
        return value
    return stripped if stripped.endswith(tuple(FINAL_PUNCTUATION)) else stripped + "。"


def _charged(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose result is charged to the render's budget (Jinja's pass_* marker kept)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return _charge(f"filter {name}", fn(*args, **kwargs))

    return run


_LINEAR_FILTERS = ("abs", "capitalize", "default", "d", "first", "last", "length", "count", "lower", "upper",
                   "title", "trim", "truncate", "string", "int", "float", "round", "striptags", "wordcount",
                   "reverse", "list", "escape", "e")
#: the filters a template may use: those whose output grows at most linearly, and the multiplying ones, checked
ALLOWED_FILTERS = {name: _charged(name, f) for name, f in
                   {**{name: jinja_filters.FILTERS[name] for name in _LINEAR_FILTERS},
                    "replace": _replace, "join": _join, "center": _center, "indent": _indent,
                    "rstrip_punct": _rstrip_punct, "sentence": _sentence}.items()}


class _CodeGenerator(CodeGenerator):
    """`a ~ b` compiled through the environment, so a concatenation is charged like any other step."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _kind(value: Any) -> str:
    """A value's type as a template's author knows it: a field is a str."""
    return "str" if isinstance(value, str) else type(value).__name__


class _PatternEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with every step that can create text or numbers checked: arithmetic, concatenation, filters and
    method calls; `%` on a string (printf formatting, whose width specifiers size the output) is refused."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%"})
    intercepted_unops = frozenset({"-", "+"})

    def call_binop(self, context, operator, left, right):
        what = f"{_kind(left)} {operator} {_kind(right)}"
        if operator == "%" and isinstance(left, str):
            raise SecurityError("`%` on text (printf formatting) is refused: its width specifiers size the output")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    check_size(f"{_kind(seq)} * {n}", len(seq) * n)
        if operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            check_size(what, len(left) + len(right))
        return _charge(what, _number(what, super().call_binop(context, operator, left, right)))

    def call_unop(self, context, operator, arg):
        return _number(f"unary {operator}", super().call_unop(context, operator, arg))

    def concat(self, values: tuple[Any, ...]) -> str:
        parts = [str(v) for v in values]
        check_size("`~`", sum(map(len, parts)))
        return _charge("`~`", "".join(parts))

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (Jinja's own signature)
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, (str, list, tuple)):
            if name not in SAFE_METHODS:
                raise SecurityError(f".{name}() is refused in patterns; methods allowed: "
                                    f"{', '.join(sorted(SAFE_METHODS))}")
            if name == "replace" and len(args) >= 2:
                check_size(".replace()", _expected_replace(str(owner), str(args[0]), str(args[1]),
                                                           args[2] if len(args) > 2 else None))
            if name == "join" and len(args) == 1:
                items = list(args[0])
                check_size(".join()", sum(len(str(x)) for x in items) + len(owner) * max(0, len(items) - 1))
                args = (items,)
        elif not getattr(__obj, "pattern_callable", False):
            raise SecurityError(f"{type(__obj).__name__} is not callable in patterns")
        return _charge(f".{name}()", super().call(__context, __obj, *args, **kwargs))


def _environment() -> ImmutableSandboxedEnvironment:
    env = _PatternEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.globals.clear()  # no range/cycler/joiner/namespace/lipsum: a template sees fields and mask, nothing else
    env.filters = dict(ALLOWED_FILTERS)
    return env


def check_budget(ast: nodes.Template, origin: str) -> None:
    """Refuse, before compiling, whatever could make a render cost more than linear time or memory: any syntax
    outside ALLOWED_NODES, large integer literals, unknown filters, calls other than SAFE_METHODS and mask(n)."""
    for node in ast.find_all(nodes.Node):
        reason = next((why for kind, why in REFUSED_NODES.items() if isinstance(node, kind)), None)
        if reason is None and not isinstance(node, ALLOWED_NODES):
            reason = f"{type(node).__name__} is not allowed in patterns (fields, text, if, filters and tests only)"
        if reason is not None:
            raise PatternError(origin, node.lineno, reason)
        if isinstance(node, nodes.Const) and isinstance(node.value, int) and not isinstance(node.value, bool) \
                and abs(node.value) > MAX_INT:
            raise PatternError(origin, node.lineno, f"integer {node.value} is larger than {MAX_INT:,}; patterns "
                               "need no large numbers")
        if isinstance(node, (nodes.Filter, nodes.FilterBlock)):
            name = node.filter.name if isinstance(node, nodes.FilterBlock) else node.name
            if name not in ALLOWED_FILTERS:
                raise PatternError(origin, node.lineno, f"filter {name!r} is not allowed in patterns; allowed: "
                                   f"{', '.join(sorted(ALLOWED_FILTERS))}")
        if isinstance(node, nodes.Call):
            callee = node.node
            if isinstance(callee, nodes.Getattr) and callee.attr not in SAFE_METHODS:
                raise PatternError(origin, node.lineno, f".{callee.attr}() is not allowed in patterns; methods "
                                   f"allowed: {', '.join(sorted(SAFE_METHODS))}")
            if not isinstance(callee, nodes.Getattr) and not (isinstance(callee, nodes.Name)
                                                              and callee.name in ("mask", "soft")):
                raise PatternError(origin, node.lineno, "patterns may call mask(n), soft(...) and string methods only")


def render_bounded(template: Any, **context: Any) -> str:
    """Render within the budget: every step charged, the output cut off as soon as it passes MAX_RENDER_CHARS."""
    token = _meter.set(_Meter())
    try:
        out, total = [], 0
        for piece in template.generate(**context):
            total += len(piece)
            check_size("the template", total)
            out.append(piece)
        return "".join(out)
    finally:
        _meter.reset(token)


ENV = _environment()


def error_line(exc: BaseException, filename: str) -> int | None:
    """The template line of a render-time error (Jinja rewrites tracebacks to template lines)."""
    line = getattr(exc, "lineno", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
