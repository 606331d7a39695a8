"""Patterns as data: Jinja templates that turn an example into a cloze, plus verbalizers (label -> word).

A template sees the example's fields by name and marks the cloze slot with `{{ mask }}` (slot length = the
longest verbalizer's token count) or `{{ mask(n) }}` (a fixed length n), and may mark one pair boundary with
`{{ sep }}`: the text before and after it are then encoded as the tokenizer's sentence pair (`[CLS] a [SEP] b [SEP]`,
token type ids 0/1), as BERT saw premise/hypothesis pairs in pretraining. Templates are untrusted input: they
are compiled in Jinja's immutable sandbox with no globals, no loader (so no include/import/extends) and
undefined variables as errors, and are validated when loaded (parses, only the task's fields, exactly one
slot, a word for every label), so a broken pattern fails before any model is built.

Templates also get a budget, so a shared pattern (or one inside a checkpoint) cannot hang a run or exhaust
memory, and it holds by construction rather than by listing dangerous constructs: a template may use only output,
fields, constants, `if`, filters, tests, arithmetic and SAFE_METHODS (string methods whose output is no larger than
their input, e.g. strip, split, replace); anything else (loops, macros, `set`, `with`, blocks, imports, `**`, other
methods such as ljust or format, integer literals above MAX_INT, unknown filters) is refused at load with the line
and the reason. What remains is an expression tree evaluated once, and every step in it that creates text or numbers
(arithmetic, `~`, filters, method calls) is checked before it runs where its size is known in advance (`'x' * n`,
replace, join, center) and charged to the row's budget after: no row's values together, nor its output, may exceed
MAX_RENDER_CHARS characters, no number MAX_NUMBER, no render MAX_RENDER_SECONDS; `%` on text (printf widths) is
refused. A template that fails on one row (a division by zero, a failed .index) is one line naming the template
line and the row. A realistic stand-in row is rendered at load, so most templates that multiply text fail there.

Rendering keeps track of what came from the example's fields and what is pattern text, so truncation can
shorten the fields and never the pattern or the slot (see methods/features.py). It does so by wrapping each field
value in marker characters from Unicode's supplementary private-use plane, which the template passes through
untouched; a block of markers that the example's own text does not use is picked per render (real Weibo text
does contain private-use emoji), so no input can forge a marker.

The code: sandbox.py (the environment and the budget), pattern.py (Pattern, rendering, scoring rules), library.py
(roots, verbalizers, pattern sets, strict YAML).
"""
from pet_mtl.core.resources import PATTERNS_ROOT
from pet_mtl.prompts.library import (
                                     find_template,
                                     load_pattern,
                                     load_pattern_set,
                                     load_verbalizer,
                                     pattern_roots,
                                     read_yaml,
                                     user_set_files,
                                     verbalizer_files,
)
from pet_mtl.prompts.pattern import AGGREGATIONS, MAX_SLOT, SCORING_RULES, Pattern, PatternSpec, Rendered, Segment
from pet_mtl.prompts.sandbox import ALLOWED_FILTERS, MAX_INT, MAX_RENDER_CHARS, REFUSED_NODES

__all__ = ["AGGREGATIONS", "ALLOWED_FILTERS", "MAX_INT", "MAX_RENDER_CHARS", "MAX_SLOT", "PATTERNS_ROOT",
           "REFUSED_NODES", "SCORING_RULES", "Pattern", "PatternSpec", "Rendered", "Segment",
           "find_template", "load_pattern", "load_pattern_set", "load_verbalizer", "pattern_roots", "read_yaml",
           "user_set_files", "verbalizer_files"]
