"""What the Hydra entry points share: where conf/ is, and turning our errors into one clear line."""
from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

from .config import register
from .errors import PetMtlError

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
if not Path(CONF_DIR).is_dir():
    raise ImportError(f"pet_mtl reads conf/, patterns/ and examples/ from its checkout, and {CONF_DIR} does not "
                      "exist: install with `pip install -e .` from the repository")
register()


def friendly_errors(fn):
    """Bad input is the user's to fix: print the message (file, line, problem), not a traceback; exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PetMtlError as e:
            logging.getLogger("pet_mtl").error("%s: %s", type(e).__name__, e)
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper
