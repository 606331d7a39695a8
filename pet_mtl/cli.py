"""What the Hydra entry points share: where conf/ is, and turning our errors into one clear line."""
from __future__ import annotations

import functools
import logging
import sys

from .config import register
from .errors import PetMtlError
from .resources import CONF_DIR as _CONF_DIR

#: the folder Hydra composes configs from: the checkout's conf/, or the wheel's copy (see resources.py)
CONF_DIR = str(_CONF_DIR)
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
