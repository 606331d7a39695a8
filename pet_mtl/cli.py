"""What the Hydra entry points share: where conf/ is, a check of the command line's keys, and turning our errors
into one clear line."""
from __future__ import annotations

import difflib
import errno
import functools
import logging
import sys
from pathlib import Path
from typing import Any, Callable

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
            _log_to_files(f"{type(e).__name__}: {e}")
            print(f"error: {e}", file=sys.stderr)
            sys.exit(getattr(e, "exit_code", 2))
        except KeyboardInterrupt:  # outside the training loop (which stops cleanly itself): loading, predicting
            _log_to_files("interrupted (Ctrl-C)")
            print("error: interrupted (Ctrl-C); outputs are written whole or not at all, so none is half-written",
                  file=sys.stderr)
            sys.exit(130)
        except OSError as e:  # the disk is full, a folder is read-only, a symlink loop: the machine's, not a bug
            if e.errno not in FILESYSTEM_ERRNOS:
                raise
            where = f"{e.filename}: " if e.filename else ""
            message = f"{where}{e.strerror or e}" + FILESYSTEM_ERRNOS[e.errno]
            _log_to_files(message)
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def _log_to_files(message: str) -> None:
    """The error into the run's log files (train.log), not the console: there the `error:` line says it once."""
    logger = logging.getLogger("pet_mtl")
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, (), None)
    for handler in {*logging.getLogger().handlers, *logger.handlers}:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


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


def _given(argv: list[str]) -> dict[str, Any]:
    """key -> value of the command line's plain (not sweep) overrides, `+` dropped."""
    return {o.key_or_group.lstrip("+"): o.value() for o in _overrides(argv) if not o.is_sweep_override()}


def _true(value: Any) -> bool:
    return str(value).lower() == "true"


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
    typed = OmegaConf.structured(schema)
    for o in overrides:
        key = o.key_or_group
        if key in leaves and key not in groups and not any(key.startswith(f"{m}.") for m in open_maps):
            _check_value(typed, o, key)


#: what a typed config node takes, in a user's words
_KINDS = {"FloatNode": "a number", "IntegerNode": "an integer", "BooleanNode": "true or false",
          "StringNode": "a text", "ListConfig": "a list", "DictConfig": "a mapping"}


def _values(o) -> list:
    """The value(s) an override sets: each of a sweep's choices (ranges and intervals are Hydra's to check)."""
    if not o.is_sweep_override():
        return [o.value()]
    try:
        return list(o.sweep_iterator())
    except Exception:
        return []


def _check_value(typed, o, key: str) -> None:
    """One line naming the key, the value and what the key takes, where Hydra prints OmegaConf's 7-13 lines
    (`train.lr=abc`, `pattern_roots=/path` without brackets, `seed=null`)."""
    from omegaconf.errors import OmegaConfBaseException

    parent, _, leaf = key.rpartition(".")
    node = (OmegaConf.select(typed, parent) if parent else typed)._get_node(leaf)
    kind = _KINDS.get(type(node).__name__, type(node).__name__)
    for value in _values(o):
        try:
            OmegaConf.update(typed, key, value, merge=False)
        except OmegaConfBaseException:
            found = "null" if value is None else repr(value)
            hint = f"; write {key}=[{value}]" if kind == "a list" and isinstance(value, str) else ""
            print(f"error: {o.input_line}: {key} takes {kind}, not {found}{hint}", file=sys.stderr)
            sys.exit(2)


def check_group_choices(argv: list[str], groups: set[str]) -> None:
    """`patterns=nosuch` in one line with the options (Hydra prints its search path): the shipped files of the
    group, and for patterns the sets found in the command line's pattern_roots (registered before this runs)."""
    from hydra.core.config_store import ConfigStore

    for o in _overrides(argv):
        group = o.key_or_group.lstrip("+")
        if group not in groups:
            continue
        options = {p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml")}
        try:
            options |= {n.removesuffix(".yaml") for n in ConfigStore.instance().list(group)}
        except OSError:  # nothing registered for the group
            pass
        for value in _values(o):
            if str(value) not in options:
                hint = (" (a set of your own: <root>/sets/<name>.yaml, with pattern_roots=[<root>] on the command "
                        "line)") if group == "patterns" else ""
                print(f"error: {o.input_line}: no {group} option {value!r}; the options are "
                      f"{', '.join(sorted(options))}{hint}", file=sys.stderr)
                sys.exit(2)


def resumed_argv(argv: list[str], run_key: str) -> list[str]:
    """`train.resume=true` with the run's directory (`run_key`: hydra.run.dir, or pretrain's out_dir) is a whole
    resume command: the run's own overrides (its .hydra/overrides.yaml) go first and the command line's after them,
    a key given again replacing the saved one, so nothing of the original command need be repeated. Hydra then
    writes no new .hydra/ record (hydra.output_subdir=null): the run's record stays the one that made it, and a
    refused resume leaves the directory as it was."""
    from pet_mtl.core.io import read_yaml

    given = _given(argv)
    if not _true(given.get("train.resume")) or not given.get(run_key):
        return argv
    record = Path(str(given[run_key])).expanduser() / ".hydra" / "overrides.yaml"
    if not record.is_file():
        return argv
    try:
        saved = read_yaml(record)
    except PetMtlError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    parsed = _overrides(saved) if isinstance(saved, list) and all(isinstance(x, str) for x in saved) else []
    if len(parsed) != len(saved or []):
        print(f"error: {record}: not a run's record of its overrides (expected a list of key=value lines)",
              file=sys.stderr)
        sys.exit(2)
    kept = [line for line, o in zip(saved, parsed) if o.key_or_group.lstrip("+") not in {*given, "train.overwrite"}]
    return [*kept, *argv, "hydra.output_subdir=null"]


def record_resume(loop, run_dir: Path) -> None:
    """After `resumed_argv`, Hydra writes no record of the resumed command; once the loop has accepted the resume,
    the run's `.hydra/overrides.yaml` becomes that command's overrides (the saved ones merged with the new), so the
    next resume from the directory alone starts from what this one changed (a `train.resume_changes` key)."""
    from hydra.core.hydra_config import HydraConfig

    from pet_mtl.core.io import atomic_write_text

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.output_subdir is not None or not loop.dist.is_main:
        return
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("hydra.")]
    record = Path(run_dir) / ".hydra" / "overrides.yaml"
    loop.on_resumed = [lambda: atomic_write_text(record, OmegaConf.to_yaml(OmegaConf.create(overrides)))]


def refuse_finished_run_dir(argv: list[str]) -> None:
    """Before Hydra starts: it writes its .hydra/ record into the run directory first thing, so a new run pointed at
    a finished one (hydra.run.dir=<it> without train.resume=true or train.overwrite=true) would replace that run's
    record before the trainer could refuse. Refused here, by the trainer's own check."""
    from pet_mtl.core.rundir import TRAIN_CHOICES, refuse_results

    values = _given(argv)
    if not values.get("hydra.run.dir"):
        return
    try:
        refuse_results(Path(str(values["hydra.run.dir"])).expanduser(), _true(values.get("train.resume")),
                       _true(values.get("train.overwrite")), TRAIN_CHOICES)
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
    for root in roots:
        if not Path(root).expanduser().is_dir():
            print(f"error: pattern_roots: {root} is not a folder (a pattern root holds <task>/<template>.j2 files and "
                  "sets/<name>.yaml)", file=sys.stderr)
            sys.exit(2)
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


def check_training_command_line(argv: list[str]) -> None:
    """Before Hydra composes a training config (train, distill, ipet): the keys and their values, the user's pattern
    sets registered, and the group choices, each problem in one line."""
    from pet_mtl.core.config import Config

    check_overrides(argv, Config, {"patterns", "data"}, {"patterns", "train.task_weights"})
    register_user_pattern_sets(argv)
    check_group_choices(argv, {"patterns", "data"})


def key_value_flags(argv: list[str] | None, flags: dict[str, str]) -> list[str]:
    """The argparse commands (patterns, report, ensemble) take the training commands' spelling too: `data.dir=X`
    for `--data-dir X`, `pattern_roots=[a,b]` for `--roots a b`, so one key is written one way everywhere."""
    out: list[str] = []
    for arg in sys.argv[1:] if argv is None else argv:
        key, eq, value = arg.partition("=")
        if not eq or key not in flags:
            out.append(arg)
            continue
        values = ([v.strip() for v in value[1:-1].split(",") if v.strip()]
                  if value.startswith("[") and value.endswith("]") else [value])
        out += [flags[key], *values]
    return out


def report_outcome(action: Callable[[], str], errors: tuple[type[BaseException], ...] = ()) -> int:
    """The end of an argparse command (ensemble, export): its result line on stdout and exit 0, or its error as one
    line on stderr and exit 2 (pet_mtl's own errors, and `errors`)."""
    from pet_mtl.core.errors import PetMtlError

    try:
        line = action()
    except (PetMtlError, *errors) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(line)
    return 0
