"""A directory belongs to one run: a lock held for the run's life, and results a new run will not silently replace.

Two trainings started into one directory at once would interleave their logs and overwrite each other's
checkpoints; a new training into a finished run's directory would replace its checkpoints and metrics. So a run
holds `<dir>/.pet_mtl.lock` (an flock, released by the kernel if the process dies, the file removed at a clean
end) and a run that is not resuming refuses a directory holding a run's results unless told to overwrite them.
"""
from __future__ import annotations

import atexit
import fcntl
import os
import shlex
from pathlib import Path
from typing import IO

from pet_mtl.core.errors import ConfigError

LOCK_NAME = ".pet_mtl.lock"
#: what a training or pretraining run leaves that a later run would replace
RESULTS = ("metrics.json", "checkpoint-best", "checkpoint-last", "model.safetensors")
#: what a refused training can do instead (the command line's pre-check and the trainer say the same)
TRAIN_CHOICES = "resume it with train.resume=true, choose a new hydra.run.dir, or pass train.overwrite=true to replace them"


def resume_command(module: str, key: str, path: Path) -> str:
    """What goes on from a run's checkpoint-last: its directory is enough (the entry point takes the run's own
    overrides from its .hydra/overrides.yaml: cli.resumed_argv)."""
    return shlex.join(["python", "-m", module, f"{key}={path}", "train.resume=true"])


def refuse_results(path: Path, resume: bool, overwrite: bool, choices: str) -> None:
    """A run that does not resume may not replace another run's results in `path` without being told to."""
    found = [name for name in RESULTS if (Path(path) / name).exists()]
    if found and not resume and not overwrite:
        raise ConfigError(f"{path} holds another run's results ({', '.join(found)}); {choices}")


class RunDirectory:
    """Held for the life of one run (`release()` at its end; the kernel releases it if the process dies)."""

    def __init__(self, path: Path, what: str):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"the run directory {self.path} exists and is not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._fh: IO[str] | None = open(self.path / LOCK_NAME, "a+")
        except OSError as e:
            raise ConfigError(f"the run directory {self.path} cannot be written: {e.strerror or e}") from None
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "?"
            self._fh.close()
            self._fh = None
            raise ConfigError(f"another pet_mtl run (pid {holder}) is writing {self.path}; wait for it, or choose "
                              "another directory") from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"{os.getpid()} {what}\n")
        self._fh.flush()
        atexit.register(self.release)  # a run that fails before it trains (a bad model.path) leaves no lock file

    def refuse_results(self, resume: bool, overwrite: bool, choices: str) -> None:
        """refuse_results for the held directory, released first when it refuses."""
        try:
            refuse_results(self.path, resume, overwrite, choices)
        except ConfigError:
            self.release()
            raise

    def release(self) -> None:
        atexit.unregister(self.release)
        if self._fh is not None:
            (self.path / LOCK_NAME).unlink(missing_ok=True)  # while still held: no other run can hold this file
            self._fh.close()
            self._fh = None
