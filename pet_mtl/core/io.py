"""Atomic file and folder writes: a crash leaves the old file or the new one, never half of one.

Everything that matters on disk (checkpoints, metrics.json, calibration, submissions, model cards) is written
through here; code that only writes files imports this and nothing of the checkpoint format.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_dir(target: Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` on a fresh sibling directory, then swap it in for `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp's 0o700 would make the result private to this user
        write(tmp)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def remove_leftovers(target: Path) -> list[Path]:
    """Remove the temporary siblings (`.<name>.tmp-*`, `.<name>.old-*`) that a process killed inside `atomic_dir`
    left beside `target`; call it only while nothing else writes `target`."""
    target = Path(target)
    found = [p for pattern in (f".{target.name}.tmp-*", f".{target.name}.old-*") for p in target.parent.glob(pattern)]
    for p in found:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        logging.getLogger("pet_mtl").info("removed %s, left by an interrupted write", p)
    return found


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
