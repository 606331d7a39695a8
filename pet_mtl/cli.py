"""What the Hydra entry points share: where conf/ is, a check of the command line's keys, and turning our errors
into one clear line."""
from __future__ import annotations

import difflib
import errno
import functools
import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from pet_mtl.core.config import flatten, register
from pet_mtl.core.errors import PetMtlError
from pet_mtl.core.resources import CONF_DIR as _CONF_DIR

#: the folder Hydra composes configs from: the checkout's conf/, or the wheel's copy (see core/resources.py)
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
        except OSError as e:  # the disk is full, a folder is read-only, a symlink loop: the machine's, not a bug
            if e.errno not in FILESYSTEM_ERRNOS:
                raise
            where = f"{e.filename}: " if e.filename else ""
            message = f"{where}{e.strerror or e}" + FILESYSTEM_ERRNOS[e.errno]
            logging.getLogger("pet_mtl").error("%s", message)
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)

    return wrapper


#: file-system errors a user fixes on the machine, and what to add to the system's own words
FILESYSTEM_ERRNOS = {
    errno.ENOSPC: " (the disk is full; what was written before is intact: outputs are replaced whole or not at all)",
    errno.EDQUOT: " (over the disk quota; what was written before is intact)",
    errno.EFBIG: " (over this process's or file system's file size limit; what was written before is intact)",
    errno.EROFS: "", errno.EACCES: "", errno.EPERM: "", errno.ELOOP: " (a symbolic link loop)",
    errno.ENAMETOOLONG: "", errno.ENOTDIR: "", errno.EISDIR: "", errno.EIO: " (an input/output error on the disk)",
}


def _overrides(argv: list[str]) -> list:
    """The command line's key=value overrides, parsed as Hydra parses them ([] when Hydra would refuse them: it
    then reports its own syntax error)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides([a for a in argv if "=" in a and not a.startswith("-")])
    except HydraException:
        return []


def check_overrides(argv: list[str], schema: Any, groups: set[str], open_maps: set[str]) -> None:
    """Refuse, with a "did you mean", an override whose key the typed config does not have. Hydra itself lets
    `+train.max_step=20` through (the run then trains its default length, and the typo lands in the config) and
    answers `train.max_step=20` with no suggestion. `groups` are config groups (patterns=alt), `open_maps` the
    keys whose entries are free (patterns.tnews, train.task_weights.ocnli, files.tnews)."""
    overrides = _overrides(argv)
    leaves = flatten(OmegaConf.to_container(OmegaConf.structured(schema)))
    known = set(leaves) | {k.rsplit(".", i)[0] for k in leaves for i in range(1, k.count(".") + 1)}
    for o in overrides:
        key = o.key_or_group
        if (key in known or key in groups or key.split("/")[0] in groups | {"hydra"} or key.startswith("hydra.")
                or any(key.startswith(f"{m}.") for m in open_maps)):
            continue
        guess = difflib.get_close_matches(key, sorted(known | groups), n=1, cutoff=0.6)
        hint = f"; did you mean {guess[0]}?" if guess else ""
        print(f"error: {o.input_line}: {key} is not a config key{hint} (all keys: {sys.argv[0].split('/')[-1]} "
              "--cfg job)", file=sys.stderr)
        sys.exit(2)


def refuse_finished_run_dir(argv: list[str]) -> None:
    """Before Hydra starts: it writes its .hydra/ record into the run directory first thing, so a new run pointed at
    a finished one (hydra.run.dir=<it> without train.resume=true or train.overwrite=true) would replace that run's
    record before the trainer could refuse. Refused here, by the trainer's own check."""
    from pet_mtl.core.rundir import TRAIN_CHOICES, refuse_results

    values = {o.key_or_group.lstrip("+"): o.value() for o in _overrides(argv) if not o.is_sweep_override()}
    if not values.get("hydra.run.dir"):
        return
    try:
        refuse_results(Path(str(values["hydra.run.dir"])).expanduser(), str(values.get("train.resume")).lower() ==
                       "true", str(values.get("train.overwrite")).lower() == "true", TRAIN_CHOICES)
    except PetMtlError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def register_user_pattern_sets(argv: list[str]) -> None:
    """Pattern-set files in the user's pattern roots (<root>/sets/<name>.yaml, from pattern_roots=[...] on the
    command line) become options of the `patterns` group, beside the shipped conf/patterns/*.yaml."""
    from hydra.core.config_store import ConfigStore

    from pet_mtl.prompts import read_yaml, user_set_files

    roots: list[str] = []
    for o in _overrides(argv):
        if o.key_or_group.lstrip("+") in ("pattern_roots", "pattern_root") and not o.is_sweep_override():
            value = o.value()
            roots += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    shipped = {p.stem for p in (Path(CONF_DIR) / "patterns").glob("*.yaml")}
    for name, path in user_set_files([Path(r) for r in roots]).items():
        if name in shipped:
            print(f"error: {path}: a shipped pattern set is named {name!r} too; rename yours", file=sys.stderr)
            sys.exit(2)
        try:
            node = read_yaml(path) or {}
        except PetMtlError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        if not isinstance(node, dict) or not all(isinstance(k, str) for k in node):
            print(f"error: {path}: a pattern set is a mapping task -> [templates] (e.g. tnews: [tnews/topic.j2]); "
                  f"this file holds {type(node).__name__ if not isinstance(node, dict) else 'a key that is not text'}",
                  file=sys.stderr)
            sys.exit(2)
        ConfigStore.instance().store(group="patterns", name=name, node=node)
