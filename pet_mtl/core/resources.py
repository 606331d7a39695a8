"""Where the shipped configs, patterns and demo data are, whether pet_mtl runs from its checkout or a wheel.

The checkout's top-level `conf/`, `pattern_library/` and `examples/demo/` are the one place they are edited. A built wheel
carries copies of them inside the package (`pet_mtl/_shipped/`, made by setup.py at build time), so an installed
pet_mtl works from any directory; an editable install or a source tree has no `_shipped/` and reads the checkout.
"""
from __future__ import annotations

from pathlib import Path

from pet_mtl.core.errors import ConfigError

_PACKAGE = Path(__file__).resolve().parents[1]  # pet_mtl/
SHIPPED = _PACKAGE / "_shipped"
#: name inside pet_mtl/_shipped/ -> folder in the checkout (setup.py copies the one to the other)
CHECKOUT_PATHS = {"conf": "conf", "patterns": "pattern_library", "demo": "examples/demo"}


def resource_dir(name: str) -> Path:
    """The shipped folder `name` (conf, patterns, demo): the wheel's copy, else the checkout's original."""
    for candidate in (SHIPPED / name, _PACKAGE.parent / CHECKOUT_PATHS[name]):
        if candidate.is_dir():
            return candidate
    raise ImportError(f"pet_mtl cannot find its {CHECKOUT_PATHS[name]}/ (looked in {SHIPPED / name} and "
                      f"{_PACKAGE.parent / CHECKOUT_PATHS[name]}); reinstall it with `pip install .` or "
                      "`pip install -e .` from the repository")


CONF_DIR = resource_dir("conf")
#: the built-in pattern library
PATTERNS_ROOT = resource_dir("patterns")
#: the demo data set the default run trains on
DEMO_DIR = resource_dir("demo")


def data_dir(configured: str | None) -> Path:
    """`data.dir` as a path: the demo set when it is null (the default run), else the folder given."""
    if configured is None:
        return DEMO_DIR
    try:
        return Path(configured).expanduser().resolve()
    except (RuntimeError, OSError) as e:  # a symlink loop (pathlib raises RuntimeError before Python 3.13)
        raise ConfigError(f"data.dir={configured}: cannot be resolved ({e})") from None
