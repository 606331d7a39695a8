"""Readers from files to typed `Example`s, and the seeded stratified validation split.

Rules (documented in the README, asserted by tests/test_data.py):
- competition TSV: UTF-8, tab-separated, no header, one row per line; a UTF-8 BOM and CRLF line endings are
  accepted; quotes are literal text (the competition's OCEMOTION file contains them); lines that are empty or
  only whitespace are skipped (they hold no row). Anything else that does not fit raises `DataError` naming the
  file, the line and what was expected: nothing is dropped silently.
- CLUE/FewCLUE JSON lines: one object per line with the task's keys (`sentence`, `sentence1`/`sentence2`,
  `content`) and `label`; ids come from `id` when present (a string, or an integer written in decimal), else the
  line number. A key given twice in one object is an error, not "the last one wins".
- ids are kept exactly as read (a TSV id keeps its spaces), and a submission writes them back unchanged.
"""
from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from pet_mtl.core.errors import DataError
from pet_mtl.core.tasks import Task

BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Example:
    task: str
    id: str
    fields: Mapping[str, str]
    label: str | None
    #: "path:line", so errors found later (e.g. while rendering) still point at the row
    source: str = ""


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, decoded line without its line ending); bytes are decoded strictly per line."""
    if not path.is_file():
        raise DataError(path, None, "file not found" if not path.exists() else "not a regular file")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            raw = raw.rstrip(b"\n")
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, lineno, f"not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 4]!r})") from None


def _check_label(task: Task, label: str, path: Path, lineno: int) -> str:
    if label not in task.labels:
        raise DataError(path, lineno, f"label {label!r} is not a {task.name} label; expected one of {', '.join(task.labels)}")
    return label


def _check_unique(seen: dict[str, int], ex_id: str, path: Path, lineno: int) -> None:
    if ex_id in seen:
        raise DataError(path, lineno, f"duplicate id {ex_id!r} (first seen on line {seen[ex_id]})")
    seen[ex_id] = lineno


def read_tsv(path: str | Path, task: Task, labelled: bool) -> list[Example]:
    """Read a competition file: `id, <task.fields...>[, label]`, tab-separated."""
    path = Path(path)
    columns = ("id", *task.fields, *(("label",) if labelled else ()))
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        if "\r" in line:
            raise DataError(path, lineno, "a carriage return (\\r) inside the line: the file has old Mac (CR) line "
                            "endings, or a text holds a line break; expected one row per line ending in \\n or \\r\\n")
        parts = line.split("\t")
        if len(parts) != len(columns):
            hint = ""
            if len(parts) == len(columns) + 1 and not labelled:
                hint = " (a label column in a test file?)"
            elif len(parts) == len(columns) - 1 and labelled:
                hint = " (the label column is missing: is this a test file?)"
            elif len(parts) > len(columns):
                hint = " (a tab inside a text?)"
            raise DataError(path, lineno, f"expected {len(columns)} tab-separated columns ({', '.join(columns)}), found {len(parts)}{hint}")
        for name, value in zip(columns, parts):
            if not value.strip():
                raise DataError(path, lineno, f"empty {name} field")
        ex_id = parts[0]
        _check_unique(seen, ex_id, path, lineno)
        label = _check_label(task, parts[-1].strip(), path, lineno) if labelled else None
        fields = dict(zip(task.fields, parts[1:1 + len(task.fields)]))
        examples.append(Example(task.name, ex_id, fields, label, f"{path}:{lineno}"))
    if not examples:
        raise DataError(path, None, "file holds no rows")
    return examples


def read_jsonl(path: str | Path, task: Task, labelled: bool = True) -> list[Example]:
    """Read CLUE/FewCLUE JSON lines for `task` (keys from `task.json_fields`)."""
    path = Path(path)
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as e:
            raise DataError(path, lineno, f"not a JSON object: {e.msg} at column {e.colno}") from None
        except _DuplicateKey as e:
            raise DataError(path, lineno, f"key {e.args[0]!r} appears twice in one object") from None
        except (RecursionError, ValueError) as e:  # nested too deep; an integer of thousands of digits
            raise DataError(path, lineno, f"not a JSON line pet_mtl reads: {type(e).__name__}: {str(e)[:120]}") from None
        if not isinstance(obj, dict):
            raise DataError(path, lineno, f"expected a JSON object, found {type(obj).__name__}")
        fields = {}
        for name, key in task.json_fields.items():
            value = obj.get(key)
            if not isinstance(value, str) or not value.strip():
                raise DataError(path, lineno, f"missing or empty {key!r} (the {task.name} {name} text)")
            fields[name] = value
        ex_id = _json_id(obj.get("id", lineno - 1), path, lineno)
        _check_unique(seen, ex_id, path, lineno)
        label = None
        if labelled:
            if "label" not in obj:
                raise DataError(path, lineno, "missing 'label'")
            raw = str(obj["label"])
            label = _check_label(task, task.json_labels.get(raw, raw), path, lineno)
        examples.append(Example(task.name, ex_id, fields, label, f"{path}:{lineno}"))
    if not examples:
        raise DataError(path, None, "file holds no rows")
    return examples


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _json_id(value: object, path: Path, lineno: int) -> str:
    """A JSON id as the submission will write it: a string as it is, an integer in decimal; nothing else, since
    `null`, `true` or `1.0` have no one spelling the competition would recognise."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DataError(path, lineno, f"id must be a non-empty string or an integer, found {json.dumps(value)}")


def read_examples(path: str | Path, task: Task, labelled: bool) -> list[Example]:
    """Dispatch on the file name: `.json`/`.jsonl` are CLUE JSON lines, anything else competition TSV."""
    suffix = Path(path).suffix.lower()
    return (read_jsonl if suffix in (".json", ".jsonl") else read_tsv)(path, task, labelled)


def stratified_split(examples: Sequence[Example], size: float | int, seed: int) -> tuple[list[Example], list[Example]]:
    """Split off a validation set with each label's share preserved.

    `size` < 1 is a fraction, >= 1 a row count; each label contributes round(share) rows, at least one when
    the label has two or more rows, so rare classes (TNEWS 114: 0.5%) are always evaluated. Seeded, and
    independent of the order of labels in the file.
    """
    if size <= 0:
        return list(examples), []
    frac = size if size < 1 else min(1.0, size / max(1, len(examples)))
    by_label: dict[str | None, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_label[ex.label].append(i)
    rng = random.Random(seed)
    val_idx: set[int] = set()
    for label in sorted(by_label, key=str):
        idx = by_label[label]
        rng.shuffle(idx)
        k = round(len(idx) * frac)
        if k == 0 and len(idx) >= 2:
            k = 1
        val_idx.update(idx[:k])
    train = [ex for i, ex in enumerate(examples) if i not in val_idx]
    val = [ex for i, ex in enumerate(examples) if i in val_idx]
    return train, val
