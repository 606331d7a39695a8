"""Our own error types, so callers (and tests) can tell bad input from bugs.

Every error about a file names the file and, where it has one, the 1-based line, so a user can open the
file at the fault without reading a traceback.
"""
from __future__ import annotations

from pathlib import Path

#: the longest message an error shows: an input with 100,000 bad labels is told so in one line, not listed
MAX_MESSAGE_CHARS = 2_000


class PetMtlError(Exception):
    """Base class: anything the user can fix by changing input, config or files."""

    def __str__(self) -> str:
        text = super().__str__()
        if len(text) <= MAX_MESSAGE_CHARS:
            return text
        return f"{text[:MAX_MESSAGE_CHARS]}... ({len(text) - MAX_MESSAGE_CHARS:,} more characters)"


class LocatedError(PetMtlError):
    """An error tied to a place in a file."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class DataError(LocatedError):
    """A data file breaks the competition or CLUE format."""


class PatternError(LocatedError):
    """A pattern template or verbalizer file is invalid."""


class ConfigError(PetMtlError):
    """The configuration asks for something that cannot work; raised before any training step."""


class InputError(PetMtlError, ValueError):
    """A value given to the Python API (inference/classifier.py) is not what the task takes."""


class CheckpointError(LocatedError):
    """A checkpoint directory is incomplete or unsafe to load."""


class Interrupted(PetMtlError):
    """The user stopped a run (Ctrl-C, SIGTERM): the message says which step is saved and the command that goes on.
    Exit status 130, a shell's for an interrupted command."""

    exit_code = 130


class TrainingError(PetMtlError):
    """Training went wrong in a way the user must act on (a loss that is no longer a number)."""
