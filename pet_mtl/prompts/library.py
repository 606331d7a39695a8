"""The pattern library: template files and verbalizers looked up by name through the user's pattern roots, then
the shipped pattern_library/ (each independently: a user's template may use a shipped verbalizer and the other way
round); pattern-set files; YAML read strictly (a key given twice is an error)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from pet_mtl.core.errors import ConfigError, PatternError
from pet_mtl.core.io import read_yaml as read_strict_yaml
from pet_mtl.core.resources import PATTERNS_ROOT
from pet_mtl.core.tasks import Task, get_task
from pet_mtl.prompts.pattern import Pattern, PatternSpec


def read_yaml(path: Path) -> Any:
    """A YAML file of a pattern library (verbalizers, pattern sets): strict (core.io.read_yaml), any error one
    PatternError with the file and line."""
    return read_strict_yaml(path, PatternError)


def user_set_files(roots: Sequence[Path]) -> dict[str, Path]:
    """The pattern-set files of pattern roots, `<root>/sets/<name>.yaml`, by name (an earlier root wins)."""
    found: dict[str, Path] = {}
    for root in roots:
        for path in sorted(Path(root).expanduser().glob("sets/*.yaml")):
            found.setdefault(path.stem, path)
    return found


def load_verbalizer(path: Path, name: str, task: Task) -> dict[str, str]:
    if not path.is_file():
        raise PatternError(path, None, f"verbalizer file not found (expected beside the template, for {task.name})")
    data = read_yaml(path)
    if not isinstance(data, dict) or name not in data or not isinstance(data[name], dict):
        names = ", ".join(data) if isinstance(data, dict) else "none"
        raise PatternError(path, None, f"no verbalizer named {name!r} (a mapping label -> word); found: {names}")
    return {str(k): list(v) if isinstance(v, list) else v for k, v in data[name].items()}


def key_line(path: Path, key: str) -> int | None:
    """The 1-based line of a top-level key of a YAML mapping (already read strictly), so an error about the
    verbalizer under it points there."""
    import yaml

    node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if k.value == key:
                return k.start_mark.line + 1
    return None


def verbalizer_files(template: str, found: Path, roots: Sequence[Path]) -> list[Path]:
    """Where a template's verbalizers are looked up, in order: the `verbalizers.yaml` of its folder in each pattern
    root (the user's first, the shipped library last), so a user's template uses the shipped verbalizers and a
    shipped template a user's; for a template given by absolute path, its own folder first."""
    rel = Path(template).expanduser()
    folder = rel.parent if not rel.is_absolute() else Path(found.parent.name)
    files = ([found.parent / "verbalizers.yaml"] if rel.is_absolute() else []) + [r / folder / "verbalizers.yaml"
                                                                                  for r in roots]
    return list(dict.fromkeys(files))


def find_verbalizer(name: str, files: Sequence[Path], task: Task) -> Path:
    """The first file of `files` that defines verbalizer `name`; one error naming every file searched if none."""
    seen: dict[Path, list[str]] = {}
    for path in files:
        if path.is_file():
            data = read_yaml(path)
            if isinstance(data, dict) and name in data:
                return path
            seen[path] = list(data) if isinstance(data, dict) else []
    if not seen:
        raise ConfigError(f"{task.name}: no verbalizers.yaml for verbalizer {name!r} in {', '.join(map(str, files))}")
    raise ConfigError(f"{task.name}: no verbalizer named {name!r} in "
                      + "; ".join(f"{p} (has {', '.join(n) or 'none'})" for p, n in seen.items()))


def pattern_roots(roots: str | Path | Sequence[str | Path] | None) -> list[Path]:
    """The folders templates are looked up in, in order: the user's (given first) and the shipped library last."""
    if roots is None:
        given = []
    elif isinstance(roots, (str, Path)):
        given = [roots]
    else:
        given = list(roots)
    out = [Path(r).expanduser().resolve() for r in given]
    return out + ([PATTERNS_ROOT] if PATTERNS_ROOT not in out else [])


def find_template(template: str, roots: Sequence[Path]) -> Path | None:
    path = Path(template).expanduser()
    if path.is_absolute():
        return path if path.is_file() else None
    return next((r / path for r in roots if (r / path).is_file()), None)


def load_pattern(task_name: str, spec: PatternSpec, root: str | Path | Sequence[str | Path] | None = None,
                 scoring: str = "word") -> Pattern:
    """Load and validate one pattern; `spec.template` is absolute or relative to the first of the pattern roots
    (`root`: one folder or several, searched in order before the shipped library) that has it."""
    task = get_task(task_name)
    roots = pattern_roots(root)
    path = find_template(spec.template, roots)
    if path is None:
        raise ConfigError(f"{task.name}: pattern template {spec.template} not found in {', '.join(map(str, roots))}; "
                          "fix the pattern set's 'template' entry or add the file")
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PatternError(path, None, "template is not valid UTF-8") from None
    vpath = find_verbalizer(spec.verbalizer, verbalizer_files(spec.template, path, roots), task)
    verbalizer = load_verbalizer(vpath, spec.verbalizer, task)
    name = f"{path.parent.name}/{path.stem}" + ("" if spec.verbalizer == "default" else f"@{spec.verbalizer}")
    return Pattern(task=task.name, name=name, source=source, verbalizer=verbalizer, origin=str(path),
                   verbalizer_origin=f"{vpath}:{key_line(vpath, spec.verbalizer)}", scoring=spec.scoring or scoring,
                   aggregate=spec.aggregate or "logsumexp")


def load_pattern_set(pattern_set: Mapping[str, Sequence[Any]], tasks: Sequence[str],
                     root: str | Path | Sequence[str | Path] | None = None,
                     scoring: str = "word") -> dict[str, list[Pattern]]:
    """Load the patterns a set names for each task; every task must have at least one. `scoring` is the rule for
    entries that name none."""
    out: dict[str, list[Pattern]] = {}
    for task_name in tasks:
        get_task(task_name)
        entries = pattern_set.get(task_name)
        if not entries:
            raise ConfigError(f"the pattern set gives no pattern for task {task_name!r}; add an entry under "
                              f"'{task_name}:' in conf/patterns/<set>.yaml")
        specs = []
        for entry in entries:
            if isinstance(entry, str):
                specs.append(PatternSpec(entry))
            elif isinstance(entry, Mapping) and "template" in entry and set(entry) <= set(PatternSpec.__annotations__):
                specs.append(PatternSpec(str(entry["template"]), str(entry.get("verbalizer", "default")),
                                         entry.get("scoring"), entry.get("aggregate")))
            else:
                raise ConfigError(f"pattern set entry {entry!r} for {task_name}: expected a template path or "
                                  "{template: ..., verbalizer: ..., scoring: ..., aggregate: ...}")
        out[task_name] = [load_pattern(task_name, s, root, scoring) for s in specs]
    unknown = sorted(set(pattern_set) - set(tasks) - {"root"})
    for name in unknown:
        get_task(name)  # a typo in a task name is an error, a known task that is not trained is fine
    return out
