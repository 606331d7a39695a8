"""Readers from files to typed `Example`s, and the seeded stratified validation split.

Rules (documented in docs/data.md, asserted by tests/test_data.py):
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
from array import array
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

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


#: what the id column of a header line says; a first row with one of these ids is a header, not a row
HEADER_IDS = {"id", "idx", "index", "guid", "qid", "uid", "sample_id"}


class LineError(ValueError):
    """What is wrong with one line; a strict reader names the file and line, a lenient one counts it as bad."""


def tsv_columns(line: str, task: Task, labelled: bool | None) -> tuple[str, dict[str, str], str | None]:
    """(id, fields, label) of one competition row: `id, <task.fields...>[, label]`, tab-separated, every column
    non-empty. `labelled=None` takes the label column as optional (text readers that ignore labels)."""
    if "\r" in line:
        raise LineError("a carriage return (\\r) inside the line: the file has old Mac (CR) line endings, or a text "
                        "holds a line break; expected one row per line ending in \\n or \\r\\n")
    parts = line.split("\t")
    with_label = len(parts) == 2 + len(task.fields) if labelled is None else labelled
    columns = ("id", *task.fields, *(("label",) if with_label else ()))
    if len(parts) != len(columns):
        hint = ""
        if labelled is None:
            columns_said = f"{len(columns)} or {len(columns) + 1}"
        else:
            columns_said = str(len(columns))
            if len(parts) == len(columns) + 1 and not labelled:
                hint = " (a label column in a test file?)"
            elif len(parts) == len(columns) - 1 and labelled:
                hint = " (the label column is missing: is this a test file?)"
        if not hint and len(parts) > len(columns) + (labelled is None):
            hint = " (a tab inside a text?)"
        raise LineError(f"expected {columns_said} tab-separated columns ({', '.join(columns)}"
                        f"{'[, label]' if labelled is None else ''}), found {len(parts)}{hint}")
    for name, value in zip(columns, parts):
        if not value.strip():
            raise LineError(f"empty {name} field")
    return parts[0], dict(zip(task.fields, parts[1:1 + len(task.fields)])), parts[-1].strip() if with_label else None


def json_object(line: str) -> dict:
    """One JSON-lines row as a dict: an object, each key once, of a depth and size Python parses."""
    try:
        obj = json.loads(line, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise LineError(f"not a JSON object: {e.msg} at column {e.colno}") from None
    except _DuplicateKey as e:
        raise LineError(f"key {e.args[0]!r} appears twice in one object") from None
    except (RecursionError, ValueError) as e:  # nested too deep; an integer of thousands of digits
        raise LineError(f"not a JSON line pet_mtl reads: {type(e).__name__}: {str(e)[:120]}") from None
    if not isinstance(obj, dict):
        raise LineError(f"expected a JSON object, found {type(obj).__name__}")
    return obj


def tsv_rows(path: Path, task: Task, labelled: bool) -> Iterator[Example]:
    """A competition file's rows: `id, <task.fields...>[, label]`, tab-separated, each validated as read."""
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            ex_id, fields, label = tsv_columns(line, task, labelled)
        except LineError as e:
            raise DataError(path, lineno, str(e)) from None
        if lineno == 1 and ex_id.strip().lower() in HEADER_IDS:
            raise DataError(path, lineno, f"looks like a header (its id column reads {ex_id!r}); competition files "
                            "have none: remove the line")
        label = _check_label(task, label, path, lineno) if labelled else None
        yield Example(task.name, ex_id, fields, label, f"{path}:{lineno}")


def jsonl_rows(path: Path, task: Task, labelled: bool) -> Iterator[Example]:
    """CLUE/FewCLUE JSON lines for `task` (keys from `task.json_fields`), each validated as read."""
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json_object(line)
        except LineError as e:
            raise DataError(path, lineno, str(e)) from None
        fields = {}
        for name, key in task.json_fields.items():
            value = obj.get(key)
            if not isinstance(value, str) or not value.strip():
                raise DataError(path, lineno, f"missing or empty {key!r} (the {task.name} {name} text)")
            fields[name] = value
        ex_id = _json_id(obj.get("id", lineno - 1), path, lineno)
        label = None
        if labelled:
            if "label" not in obj:
                raise DataError(path, lineno, "missing 'label'")
            raw = str(obj["label"])
            label = _check_label(task, task.json_labels.get(raw, raw), path, lineno)
        yield Example(task.name, ex_id, fields, label, f"{path}:{lineno}")


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


def iter_examples(path: str | Path, task: Task, labelled: bool,
                  rows: Callable[[Path, Task, bool], Iterator[Example]] | None = None) -> Iterator[Example]:
    """Stream a file's rows (`.json`/`.jsonl`: CLUE JSON lines; anything else: competition TSV; or `rows`), each
    validated as read, so memory does not grow with the file. Ids must be unique: checked in 8 bytes a row (a
    hash), and a duplicate is reported with both lines once the file has been read (after the last row was handed
    out: a caller that writes must write somewhere it can throw away, as predict's temporary folder)."""
    path = Path(path)
    if rows is None:
        rows = jsonl_rows if path.suffix.lower() in (".json", ".jsonl") else tsv_rows
    hashes = array("q")
    for ex in rows(path, task, labelled):
        hashes.append(hash(ex.id))
        yield ex
    if not hashes:
        raise DataError(path, None, "file holds no rows")
    _refuse_duplicates(path, hashes, lambda: rows(path, task, labelled))


def _refuse_duplicates(path: Path, hashes: array, reread: Callable[[], Iterator[Example]]) -> None:
    """The first row (in file order) whose id an earlier row had. Equal hashes are rare: only then is the file read
    again, for the rows with those hashes, to compare the ids themselves and name the lines."""
    import torch

    ordered = torch.frombuffer(hashes, dtype=torch.int64).sort().values
    suspects = set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())
    if not suspects:
        return
    seen: dict[str, int] = {}
    for ex in reread():
        if hash(ex.id) in suspects:
            line = int(ex.source.rsplit(":", 1)[1])
            if ex.id in seen:
                raise DataError(path, line, f"duplicate id {ex.id!r} (first seen on line {seen[ex.id]})")
            seen[ex.id] = line


def read_examples(path: str | Path, task: Task, labelled: bool) -> list[Example]:
    """All of a file's rows (see iter_examples)."""
    return list(iter_examples(path, task, labelled))


def read_tsv(path: str | Path, task: Task, labelled: bool) -> list[Example]:
    """A competition file's rows, whatever its name."""
    return list(iter_examples(path, task, labelled, tsv_rows))


def read_jsonl(path: str | Path, task: Task, labelled: bool = True) -> list[Example]:
    """A CLUE JSON-lines file's rows, whatever its name."""
    return list(iter_examples(path, task, labelled, jsonl_rows))


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
