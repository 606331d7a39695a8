"""The Jinja sandbox patterns are compiled in, and the budget that keeps a template from hanging a run or
exhausting memory (see the package's docstring for the rules)."""
from __future__ import annotations

from jinja2 import StrictUndefined, nodes, pass_eval_context
from jinja2 import filters as jinja_filters
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from pet_mtl.core.errors import PatternError

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


def check_size(what: str, chars: int) -> None:
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
    check_size("filter replace", len(text) + hits * max(0, len(n) - len(o)))
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
                check_size(f"{type(seq).__name__} * {n}", len(seq) * n)
        return super().call_binop(context, operator, left, right)


def _environment() -> ImmutableSandboxedEnvironment:
    env = _PatternEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.globals.clear()  # no range/cycler/joiner/namespace/lipsum: a template sees fields and mask, nothing else
    env.filters = dict(ALLOWED_FILTERS)
    return env


def check_budget(ast: nodes.Template, origin: str) -> None:
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
