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
shorten the fields and never the pattern or the slot (see methods/features.py). It does so by wrapping each field
value in marker characters from Unicode's supplementary private-use plane, which the template passes through
untouched; a block of markers that the example's own text does not use is picked per render (real Weibo text
does contain private-use emoji), so no input can forge a marker.

The code: sandbox.py (the environment and the budget), pattern.py (Pattern, rendering, scoring rules), library.py
(roots, verbalizers, pattern sets, strict YAML).
"""
from pet_mtl.core.resources import PATTERNS_ROOT
from pet_mtl.prompts.library import (
                                     UniqueKeyLoader,
                                     find_template,
                                     load_pattern,
                                     load_pattern_set,
                                     load_verbalizer,
                                     pattern_roots,
                                     read_yaml,
                                     user_set_files,
)
from pet_mtl.prompts.pattern import AGGREGATIONS, MAX_SLOT, SCORING_RULES, Pattern, PatternSpec, Rendered, Segment
from pet_mtl.prompts.sandbox import ALLOWED_FILTERS, MAX_INT, MAX_RENDER_CHARS, REFUSED_NODES

__all__ = ["AGGREGATIONS", "ALLOWED_FILTERS", "MAX_INT", "MAX_RENDER_CHARS", "MAX_SLOT", "PATTERNS_ROOT",
           "REFUSED_NODES", "SCORING_RULES", "Pattern", "PatternSpec", "Rendered", "Segment", "UniqueKeyLoader",
           "find_template", "load_pattern", "load_pattern_set", "load_verbalizer", "pattern_roots", "read_yaml",
           "user_set_files"]
