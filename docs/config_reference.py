"""Writes docs/configuration.md: every key of train, predict and pretrain with its type, default and meaning, read
from the typed configs (pet_mtl/core/config.py, the one place defaults and their `#:` comments are written), so the
reference cannot drift from the code. `python docs/config_reference.py` rewrites it; `--check` exits 1 when the
file is stale (tests/test_docs.py runs that)."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
from pathlib import Path

from omegaconf import OmegaConf

from pet_mtl.core import config as config_module

OUT = Path(__file__).resolve().parent / "configuration.md"
COMMANDS = [("python -m pet_mtl.train (and distill, ipet)", config_module.Config),
            ("python -m pet_mtl.predict", config_module.PredictConfig),
            ("python -m pet_mtl.pretrain", config_module.PretrainConfig)]


def comments(cls: type) -> dict[str, tuple[str, str]]:
    """field -> (annotation as written, the `#:` comment lines above it), over the class and its bases."""
    out: dict[str, tuple[str, str]] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        source = inspect.getsource(klass)
        lines = source.splitlines()
        for node in ast.parse(source).body[0].body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                above, i = [], node.lineno - 2
                while i >= 0 and lines[i].strip().startswith("#:"):
                    above.insert(0, lines[i].strip()[2:].strip())
                    i -= 1
                out[node.target.id] = (ast.unparse(node.annotation), " ".join(above))
    return out


def rows(cls: type, values: dict, prefix: str = "") -> list[str]:
    notes = comments(cls)
    out = []
    for f in dataclasses.fields(cls):
        key, value = f"{prefix}{f.name}", values[f.name]
        nested = f.type if isinstance(f.type, type) else getattr(config_module, str(f.type), None)
        if dataclasses.is_dataclass(nested):
            out += rows(nested, value, f"{key}.")
            continue
        kind, what = notes.get(f.name, ("", ""))
        shown = flow(value)
        out.append(f"| `{key}` | {kind} | `{shown}` | {what.replace('|', '/')} |")
    return out


def flow(value) -> str:
    """A default as it is written on the command line: null, true, 3e-4, [a, b], {k: v}."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(map(flow, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    return str(value)


def render() -> str:
    parts = ["# Configuration reference", "",
             "Every key each command takes, with its type, default and meaning, generated from "
             "`pet_mtl/core/config.py` by `python docs/config_reference.py` (do not edit by hand). Set a key on the "
             "command line as `key=value` (`train.lr=3e-4`, `pattern_roots=[~/my_patterns]`); "
             "`python -m pet_mtl.train --cfg job` prints the composed config of a command line.", ""]
    for title, cls in COMMANDS:
        values = OmegaConf.to_container(OmegaConf.structured(cls))
        parts += [f"## {title}", "", "| key | type | default | meaning |", "|---|---|---|---|",
                  *rows(cls, values), ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is not what the code says")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is stale: run python docs/config_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
