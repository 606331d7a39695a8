"""Atomic file and folder writes: a crash leaves the old file or the new one, never half of one.

Everything that matters on disk (checkpoints, metrics.json, calibration, submissions, model cards) is written
through here; code that only writes files imports this and nothing of the checkpoint format.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pet_mtl.core.errors import LocatedError


def atomic_dir(target: Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` on a fresh sibling directory, then swap it in for `target`. The swap is three renames, and
    a process killed between any two leaves a complete copy under a name `remove_leftovers` recognises: `.tmp-`
    (being written: never complete), `.new-` (complete, not yet in place), `.old-` (the replaced copy)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp's 0o700 would make the result private to this user
        write(tmp)
        new = target.parent / f".{target.name}.new-{os.getpid()}"
        os.replace(tmp, new)  # complete from here on
        tmp = new
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
        os.replace(new, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def remove_leftovers(target: Path) -> list[Path]:
    """Finish or undo a swap that a killed process left half done (see atomic_dir), so `target` is a complete copy
    again wherever the kill came, then remove the rest: a missing `target` is the newest complete copy (`.new-`),
    else the replaced one (`.old-`). Call it only while nothing else writes `target`."""
    target = Path(target)
    log = logging.getLogger("pet_mtl")

    def siblings(kind: str) -> list[Path]:
        return sorted(target.parent.glob(f".{target.name}.{kind}-*"), key=lambda p: p.stat().st_mtime, reverse=True)

    if not target.exists():
        for kind in ("new", "old"):
            found = [p for p in siblings(kind) if p.is_dir()]
            if found:
                os.replace(found[0], target)
                log.info("%s: restored from %s, left by a swap that was interrupted", target, found[0].name)
                break
    removed = [p for kind in ("tmp", "new", "old") for p in siblings(kind)]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        log.info("removed %s, left by an interrupted write", p)
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0o600 would make the file private to this user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: the largest YAML file read (pattern sets, verbalizers, saved configs and overrides are a few KB)
MAX_YAML_BYTES = 1_000_000


class StrictYamlLoader(yaml.SafeLoader):
    """YAML's safe loader, stricter: a key given twice in one mapping is an error instead of "the last wins", and
    an alias (`*name`) is refused: shared nodes are expanded into copies by OmegaConf and Hydra, so ten nested
    aliases become billions of nodes (the "billion laughs")."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                twice = key in seen
            except TypeError:  # an unhashable key (a list or a mapping)
                raise yaml.constructor.ConstructorError(None, None, f"a key must be a scalar, not {key!r}"[:200],
                                                        key_node.start_mark) from None
            if twice:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"alias *{event.anchor} refused: write the value out "
                                              "(aliases can expand to billions of nodes)", event.start_mark)
        return super().compose_node(parent, index)


def read_yaml(path: Path, error: type[LocatedError] = LocatedError) -> Any:
    """A YAML file a user or a checkpoint wrote, read strictly (StrictYamlLoader, at most MAX_YAML_BYTES); any
    problem is one `error` naming the file and the line."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_YAML_BYTES + 1)
    except OSError as e:
        raise error(path, None, f"cannot read ({e.strerror or e})") from None
    if len(raw) > MAX_YAML_BYTES:
        raise error(path, None, f"larger than {MAX_YAML_BYTES:,} bytes; not a file this project writes or reads")
    try:
        return yaml.load(raw.decode("utf-8"), Loader=StrictYamlLoader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError:
        raise error(path, None, "not valid UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = " ".join(str(getattr(e, "problem", None) or e).split())[:300]
        raise error(path, None if mark is None else mark.line + 1, f"not valid YAML: {problem}") from None


#: characters that end a line for str.splitlines and other readers but that json.dumps(ensure_ascii=False) leaves raw
_LINE_BREAKS = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}


def json_line(obj: Any) -> str:
    """One JSON-lines row as every file the project writes holds it: UTF-8 text kept readable (ensure_ascii=False),
    except the characters some readers take for a line end (U+0085, U+2028, U+2029), escaped, so an id holding one
    is still one line for any reader; then "\n"."""
    return json.dumps(obj, ensure_ascii=False).translate(_LINE_BREAKS) + "\n"
