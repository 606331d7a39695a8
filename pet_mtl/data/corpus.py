"""Text for continued pretraining: many files, streamed line by line, mixed by weight, with a held-out slice.

Why streaming: a corpus (`../shared/data/corpus/*.txt.gz`, a Wikipedia dump) can be far larger than memory, so a
file is never read whole; each is an open handle and a line number, which is also what makes resume exact (the
state is those numbers). Why per-line hashing for the held-out slice: it picks the same lines on every pass and
every resume without a first pass over the data, and a held-out line is never trained on.

Kinds of file (`kind`, guessed from the name when not given):
- `text`: plain text, one document per line (`.txt`, `.txt.gz`, anything else not below);
- `clue`: CLUE/FewCLUE JSON lines (`.json`, `.jsonl`): `sentence1`+`sentence2` as a pair, else `sentence`,
  `content` or `text`; labels are ignored;
- `competition`: the Tianchi TSV files (`.csv`, `.tsv`): the task's text columns after the id (OCNLI's premise and
  hypothesis as a pair), with or without the label column, which is ignored.
A folder holding competition files stands for all of them (training files and test files A and B).

A line that cannot be read (not UTF-8, not JSON, wrong columns, no text) is a bad line: counted per file, the first
few named in the log with file and line, and fatal only when a file's share of bad lines passes
`max_bad_fraction` (after at least `MIN_LINES_FOR_FRACTION` lines, so one bad first line is not a 100% rate).
"""
from __future__ import annotations

import glob
import gzip
import io
import logging
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from pet_mtl.core.errors import ConfigError, DataError
from pet_mtl.core.tasks import TASKS, Task
from pet_mtl.data.readers import LineError, json_object, tsv_columns

log = logging.getLogger("pet_mtl")

KINDS = ("text", "clue", "competition")
#: JSON keys read from CLUE lines, in order of preference; a pair wins over a single text
CLUE_PAIR = ("sentence1", "sentence2")
CLUE_SINGLE = ("sentence", "content", "text")
MIN_LINES_FOR_FRACTION = 1000
BAD_LINES_LOGGED = 5
#: hash buckets of the held-out draw
BUCKETS = 1_000_000


@dataclass(frozen=True)
class Doc:
    """One document: a text, or a pair of texts (OCNLI premise and hypothesis) encoded as two segments."""

    segments: tuple[str, ...]
    where: str  # path:line


@dataclass
class FileSource:
    path: Path
    kind: str
    weight: float  # the share of documents drawn from this file
    entry: str  # the `text` entry it came from (held-out perplexity is reported per entry)
    task: Task | None = None  # competition files
    skip_ids: frozenset[str] = frozenset()  # competition rows never read (validation rows of the training files)
    skip_texts: frozenset[tuple[str, ...]] = frozenset()  # documents never read, whatever the file (stripped texts)


def _kind_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".json", ".jsonl")):
        return "clue"
    if name.endswith((".csv", ".tsv")):
        return "competition"
    return "text"


def _task_of(path: Path) -> Task | None:
    for task in TASKS.values():
        if path.name.lower() in {f.lower() for f in task.files.values()}:
            return task
    return None


def _entry_files(entry: dict[str, Any]) -> list[tuple[Path, Task | None]]:
    raw = str(entry["path"])
    path = Path(raw).expanduser()
    if path.is_dir():
        found = [(path / f, t) for t in TASKS.values() for f in t.files.values() if (path / f).is_file()]
        if not found:
            raise ConfigError(f"text: {path} is a folder without competition files "
                              f"({', '.join(f for t in TASKS.values() for f in t.files.values())})")
        return found
    paths = [Path(p) for p in sorted(glob.glob(str(path)))] if any(c in raw for c in "*?[") else [path]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        raise ConfigError(f"text: {raw} matches no file")
    task = None
    if entry.get("task") is not None:
        task = TASKS.get(entry["task"])
        if task is None:
            raise ConfigError(f"text: task={entry['task']!r} is not one of {', '.join(TASKS)}")
    return [(p, task or _task_of(p)) for p in paths]


def parse_entries(text: list[Any]) -> list[dict[str, Any]]:
    """The `text` config as a list of {path, weight, kind, task}: a bare string is a path of weight 1."""
    if not text:
        raise ConfigError("text=[...] is empty: give the files to pretrain on, e.g. text=[../shared/data/tianchi]")
    out = []
    for i, item in enumerate(text):
        entry = {"path": item} if isinstance(item, str) else dict(item)
        unknown = set(entry) - {"path", "weight", "kind", "task"}
        if "path" not in entry or unknown:
            raise ConfigError(f"text[{i}]={item}: expected a path or {{path, weight, kind, task}}"
                              + (f"; unknown keys {sorted(unknown)}" if unknown else ""))
        entry.setdefault("weight", 1.0)
        w = entry["weight"]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0 or w == float("inf"):
            raise ConfigError(f"text[{i}]: weight={w}: expected a finite number > 0")
        if entry.get("kind") is not None and entry["kind"] not in KINDS:
            raise ConfigError(f"text[{i}]: kind={entry['kind']!r}: expected one of {', '.join(KINDS)}")
        out.append(entry)
    return out


def build_sources(text: list[Any], skip_ids: dict[Path, frozenset[str]] | None = None) -> list[FileSource]:
    """Every file of every entry, each weighted by its entry's weight times its share of the entry's bytes (so a
    folder of files is read in proportion, not file after file)."""
    sources = []
    for entry in parse_entries(text):
        files = _entry_files(entry)
        sizes = [max(1, p.stat().st_size) for p, _ in files]
        for (p, task), size in zip(files, sizes):
            kind = entry.get("kind") or _kind_of(p)
            if kind == "competition" and task is None:
                raise ConfigError(f"text: {p} is read as a competition file but its name is no task's; give "
                                  "{path: ..., task: ocnli|ocemotion|tnews}")
            sources.append(FileSource(p, kind, entry["weight"] * size / sum(sizes), str(entry["path"]), task,
                                      (skip_ids or {}).get(p.resolve(), frozenset())))
    return sources


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


class BadLine(Exception):
    pass


def parse_line(source: FileSource, raw: bytes) -> tuple[str, ...] | None:
    """The document on one raw line; None for a line that holds none (blank, a skipped row); BadLine otherwise."""
    raw = raw.rstrip(b"\n").rstrip(b"\r")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadLine(f"not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 4]!r})") from None
    if not line.strip():
        return None
    segments = _segments(source, line)
    return None if segments is None or segments in source.skip_texts else segments


def _segments(source: FileSource, line: str) -> tuple[str, ...] | None:
    if source.kind == "text":
        return (line.strip(),)
    if source.kind == "clue":
        try:
            obj = json_object(line)
        except LineError as e:
            raise BadLine(str(e)) from None
        keys = tuple(source.task.json_fields.values()) if source.task is not None else None
        if keys is not None:  # a task's file: exactly its keys (OCNLI's pair, TNEWS's sentence...)
            if not all(isinstance(obj.get(k), str) and obj[k].strip() for k in keys):
                raise BadLine(f"no text under {', '.join(keys)} (the {source.task.name} keys)")
            return tuple(obj[k].strip() for k in keys)
        if all(isinstance(obj.get(k), str) and obj[k].strip() for k in CLUE_PAIR):
            return tuple(obj[k].strip() for k in CLUE_PAIR)
        for k in CLUE_SINGLE:
            if isinstance(obj.get(k), str) and obj[k].strip():
                return (obj[k].strip(),)
        raise BadLine(f"no text under {', '.join(CLUE_PAIR + CLUE_SINGLE)}")
    try:  # the competition format as the strict reader parses it, the label column optional
        row_id, fields, _ = tsv_columns(line, source.task, labelled=None)
    except LineError as e:
        raise BadLine(str(e)) from None
    return None if row_id in source.skip_ids else tuple(v.strip() for v in fields.values())


def documents(source: FileSource, select: Callable[[int], bool] | None = None,
              bad: Callable[[int, str], None] | None = None) -> Iterator[tuple[int, tuple[str, ...]]]:
    """One pass over a file: (line number, document) of the lines `select` keeps (all by default); a bad line is
    handed to `bad` (line number, problem) and skipped."""
    with _open(source.path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if select is not None and not select(lineno):
                continue
            try:
                segments = parse_line(source, raw)
            except BadLine as e:
                if bad is not None:
                    bad(lineno, str(e))
                continue
            if segments is not None:
                yield lineno, segments


def in_eval_slice(seed: int, source: FileSource, lineno: int, fraction: float) -> bool:
    """Whether this line belongs to the evaluation slice (never trained on; the pseudo-perplexity reads it): the
    same answer on every pass, resume and process. Not the few-shot regime's held-out set, which is rows of a task."""
    key = f"{seed}:{source.path.name}:{lineno}".encode()
    return zlib.crc32(key) % BUCKETS < fraction * BUCKETS


@dataclass
class FileState:
    passes: int = 0  # completed passes over the file
    line: int = 0  # lines consumed in the current pass
    docs: int = 0  # documents yielded, all passes
    bad: int = 0  # bad lines, first pass only (later passes repeat them)
    lines_seen: int = 0  # lines read in the first pass (the denominator of the bad-line rate)


@dataclass
class CorpusState:
    draws: int = 0  # documents drawn so far (the mixer's counter-based RNG needs only this)
    files: list[FileState] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"draws": self.draws, "files": [vars(f) for f in self.files]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "CorpusState":
        return cls(doc["draws"], [FileState(**f) for f in doc["files"]])


class Corpus:
    """An endless, seeded, resumable stream of training documents drawn from `sources` by weight; files that end
    start again (another pass). `state` is all it needs to continue exactly where it was."""

    def __init__(self, sources: list[FileSource], seed: int, eval_fraction: float, max_bad_fraction: float):
        self.sources = sources
        self.seed = seed
        self.fraction = eval_fraction
        self.max_bad = max_bad_fraction
        self.state = CorpusState(0, [FileState() for _ in sources])
        self._handles: list[Iterator[tuple[int, bytes]] | None] = [None] * len(sources)
        total = sum(s.weight for s in sources)
        self._cum = []
        acc = 0.0
        for s in sources:
            acc += s.weight / total
            self._cum.append(acc)

    def restore(self, state: CorpusState) -> None:
        if len(state.files) != len(self.sources):
            raise ConfigError(f"the saved corpus state has {len(state.files)} files, this config {len(self.sources)}")
        self.state = state
        self._handles = [None] * len(self.sources)

    def _lines(self, i: int) -> Iterator[tuple[int, bytes]]:
        """Lines of file i from the current position (reopened after a pass or a resume)."""
        st = self.state.files[i]
        with _open(self.sources[i].path) as fh:
            for lineno, raw in enumerate(fh, start=1):
                if lineno > st.line:
                    yield lineno, raw

    def _pick(self) -> int:
        r = random.Random(f"{self.seed}/draw/{self.state.draws}").random()
        self.state.draws += 1
        return next((i for i, c in enumerate(self._cum) if r < c), len(self._cum) - 1)

    def _bad(self, i: int, lineno: int, problem: str) -> None:
        st, src = self.state.files[i], self.sources[i]
        if st.passes:
            return
        st.bad += 1
        if st.bad <= BAD_LINES_LOGGED:
            log.warning("%s:%d: %s (bad line, skipped%s)", src.path, lineno, problem,
                        "; later bad lines of this file are only counted" if st.bad == BAD_LINES_LOGGED else "")

    def _check_rate(self, i: int, lineno: int) -> None:
        st = self.state.files[i]
        if st.lines_seen >= MIN_LINES_FOR_FRACTION and st.bad > self.max_bad * st.lines_seen:
            raise DataError(self.sources[i].path, lineno, f"{st.bad} of its first {st.lines_seen} lines are bad, over "
                            f"data.max_bad_fraction={self.max_bad:g}: is it the format you think (kind="
                            f"{self.sources[i].kind})?")

    def endless(self) -> Iterator[Doc]:
        """Documents for ever, drawn by weight (a file read to its end starts again): what a packed stream reads."""
        while True:
            yield self.next_doc()

    def next_doc(self) -> Doc:
        i = self._pick()
        src, st = self.sources[i], self.state.files[i]
        for _ in range(2):  # a file may need one restart to yield a document; twice without one means it has none
            if self._handles[i] is None:
                self._handles[i] = self._lines(i)
            for lineno, raw in self._handles[i]:
                st.line = lineno
                if not st.passes:
                    st.lines_seen += 1
                try:
                    segments = parse_line(src, raw)
                except BadLine as e:
                    self._bad(i, lineno, str(e))
                    self._check_rate(i, lineno)
                    continue
                if segments is None or in_eval_slice(self.seed, src, lineno, self.fraction):
                    continue
                st.docs += 1
                return Doc(segments, f"{src.path}:{lineno}")
            self._check_rate(i, st.line)
            if st.passes == 0 and st.lines_seen and st.bad == st.lines_seen:
                raise DataError(src.path, None, f"none of its {st.lines_seen} lines could be read as {src.kind}")
            st.passes, st.line, self._handles[i] = st.passes + 1, 0, None
        raise DataError(src.path, None, "holds no training document (empty, or every line held out or skipped)")

    def eval_slice_docs(self, per_entry: int) -> dict[str, list[Doc]]:
        """Up to `per_entry` held-out documents of each `text` entry, its files read in turn, line by line (a
        separate read: the training stream is untouched)."""
        out: dict[str, list[Doc]] = {}
        for entry in dict.fromkeys(s.entry for s in self.sources):
            members = [s for s in self.sources if s.entry == entry]
            iters = [self._held_out_lines(s) for s in members]
            docs: list[Doc] = []
            while iters and len(docs) < per_entry:
                for it in list(iters):
                    d = next(it, None)
                    if d is None:
                        iters.remove(it)
                    else:
                        docs.append(d)
                        if len(docs) >= per_entry:
                            break
            out[entry] = docs
        return out

    def _held_out_lines(self, src: FileSource) -> Iterator[Doc]:
        for lineno, segments in documents(src, lambda n: in_eval_slice(self.seed, src, n, self.fraction)):
            yield Doc(segments, f"{src.path}:{lineno}")

    def report(self) -> list[dict[str, Any]]:
        """Per file: documents read, passes, bad lines (first pass) and the lines they were counted over."""
        return [{"path": str(s.path), "kind": s.kind, "weight": round(s.weight, 6), "docs": st.docs,
                 "passes": st.passes, "bad_lines": st.bad, "lines_read_first_pass": st.lines_seen}
                for s, st in zip(self.sources, self.state.files)]


def competition_rows_to_skip(text: list[Any], val_size: float, split_seed: int,
                             fewclue_dir: str | None, held_out_per_task: float) -> dict[Path, frozenset[str]]:
    """Ids of the rows of competition training files that `train` scores on: the full regime's validation split
    (data.val_size, data.split_seed) and, with a FewCLUE folder, the few-shot regime's held-out set. Pretraining
    never reads their text, so a pretrained model is scored on text it has not seen."""
    from pet_mtl.core.config import Config
    from pet_mtl.data.readers import read_examples
    from pet_mtl.data.regimes import carve_validation, fewshot

    skip: dict[Path, set[str]] = {}
    for entry in parse_entries(text):
        for path, task in _entry_files(entry):
            if task is None or path.name != task.files["train"] or (entry.get("kind") or _kind_of(path)) != "competition":
                continue
            examples = read_examples(path, task, labelled=True)
            ids = skip.setdefault(path.resolve(), set())
            ids.update(ex.id for ex in carve_validation(examples, val_size, split_seed)[1])
            if fewclue_dir is not None:
                cfg = Config(tasks=[task.name])
                cfg.data.dir, cfg.data.fewclue_dir = str(path.parent), fewclue_dir
                cfg.data.split_seed, cfg.data.held_out_per_task = split_seed, held_out_per_task
                ids.update(ex.id for ex in fewshot(cfg)[task.name].held_out)
    return {p: frozenset(v) for p, v in skip.items()}
