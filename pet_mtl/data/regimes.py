"""Data regimes (`data.regime`): which rows a run trains on, selects its checkpoint on, and reports on.

- full: each competition training file, minus a stratified validation split carved from it (seeded by
  data.split_seed, not by the run's seed, so every seed and every method is scored on the same rows).
- fewshot: FewCLUE's train_k/dev_k files (data.fewclue_dir, data.fewclue_split) for the tasks that have them; for
  the others (OCEMOTION) a seeded k-per-class train and dev sample from the competition training file. Reported on
  a fixed labelled held-out set carved from each competition training file that shares no text with any FewCLUE
  file (train, dev, few_all, unlabeled) nor with the sampled rows, the same set for every split, seed and method.

"held-out" is this report set; "test file" always means the competition's unlabelled test files A and B.
"""
from __future__ import annotations

import logging
import random
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pet_mtl.core.config import Config
from pet_mtl.core.errors import ConfigError
from pet_mtl.core.resources import data_dir
from pet_mtl.core.tasks import Task, get_task
from pet_mtl.data.readers import Example, read_examples, stratified_split

log = logging.getLogger("pet_mtl")

FEWCLUE_FILE = re.compile(r"^(train|dev|test)_.*\.json$|^unlabeled\.json$")


@dataclass
class TaskData:
    train: list[Example]
    #: evaluated every train.eval_every steps; picks checkpoint-best
    val: list[Example]
    #: evaluated once, with checkpoint-best, after training (the few-shot report set); None when the regime has none
    held_out: list[Example] | None = None


def text_key(ex: Example, task: Task) -> tuple[str, ...]:
    return tuple(ex.fields[f].strip() for f in task.fields)


def carve_validation(examples: Sequence[Example], val_size: float, split_seed: int
                     ) -> tuple[list[Example], list[Example]]:
    """(train, validation) of a training file: seeded, stratified by label. The one place the validation rows are
    chosen: whatever must know them (pretraining's exclusions, the workbench's samples) carves them here."""
    return stratified_split(examples, val_size, split_seed)


def full(cfg: Config) -> dict[str, TaskData]:
    d = cfg.data
    out = {}
    for name in cfg.tasks:
        task = get_task(name)
        examples = read_examples(data_dir(d.dir) / task.files["train"], task, labelled=True)
        train, val = carve_validation(examples, d.val_size, d.split_seed)
        if d.max_val_per_task and len(val) > d.max_val_per_task:
            _, val = stratified_split(val, d.max_val_per_task, d.split_seed)
        if d.max_train_per_task and len(train) > d.max_train_per_task:
            _, train = stratified_split(train, d.max_train_per_task, d.split_seed)
        if not val:
            raise ConfigError(f"{name}: data.val_size={d.val_size} leaves no validation rows")
        out[name] = TaskData(train, val)
    return out


def k_per_class(examples: Sequence[Example], k: int, rng: random.Random) -> list[Example]:
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_label[ex.label].append(ex)
    out = []
    for label in sorted(by_label):
        rows = by_label[label]
        out += rng.sample(rows, min(k, len(rows)))
    rng.shuffle(out)
    return out


def fewshot(cfg: Config) -> dict[str, TaskData]:
    d = cfg.data
    if d.fewclue_dir is None:
        raise ConfigError("data.regime=fewshot needs data.fewclue_dir (the folder with tnews/, ocnli/ of FewCLUE)")
    root = Path(d.fewclue_dir).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"data.fewclue_dir={root} is not a directory")
    out = {}
    for name in cfg.tasks:
        task = get_task(name)
        pool = read_examples(data_dir(d.dir) / task.files["train"], task, labelled=True)
        folder = root / name
        fewclue = sorted(p for p in folder.glob("*.json") if FEWCLUE_FILE.match(p.name)) if folder.is_dir() else []
        taken = {text_key(ex, task) for f in fewclue for ex in read_examples(f, task, labelled=False)}
        candidates = [ex for ex in pool if text_key(ex, task) not in taken]
        _, held_out = stratified_split(candidates, d.held_out_per_task, d.split_seed)
        if fewclue:
            train, val = (read_examples(folder / f"{part}_{d.fewclue_split}.json", task, labelled=True)
                          for part in ("train", "dev"))
            source = f"FewCLUE {folder}/{{train,dev}}_{d.fewclue_split}.json"
        else:
            held = {text_key(ex, task) for ex in held_out}
            rest = [ex for ex in candidates if text_key(ex, task) not in held]
            rng = random.Random(f"{d.split_seed}/{name}/{d.fewclue_split}")
            train = k_per_class(rest, d.k_per_class, rng)
            chosen = {ex.id for ex in train}
            val = k_per_class([ex for ex in rest if ex.id not in chosen], d.k_per_class, rng)
            source = f"{d.k_per_class} per class sampled from {task.files['train']} (split {d.fewclue_split})"
        overlap = {text_key(ex, task) for ex in train + val} & {text_key(ex, task) for ex in held_out}
        if overlap:  # a guard on the construction above, which should make this impossible
            raise ConfigError(f"{name}: {len(overlap)} few-shot texts also in the held-out set, e.g. {next(iter(overlap))}")
        log.info("%s few-shot: %d train, %d dev (%s); %d held-out rows carved from %s (%d of its rows share a text "
                 "with a FewCLUE file and are left out)", name, len(train), len(val), source, len(held_out),
                 task.files["train"], len(pool) - len(candidates))
        out[name] = TaskData(train, val, held_out)
    return out


REGIMES: dict[str, Callable[[Config], dict[str, TaskData]]] = {"full": full, "fewshot": fewshot}


def load_task_data(cfg: Config) -> dict[str, TaskData]:
    """Every task's rows under the config's regime (deprecated keys already renamed where the config entered: the
    training checks, the iPET entry point)."""
    if cfg.data.regime not in REGIMES:
        raise ConfigError(f"data.regime={cfg.data.regime!r}: expected one of {', '.join(REGIMES)}")
    data = REGIMES[cfg.data.regime](cfg)
    for name, path in (getattr(cfg.data, "pseudo_labelled", None) or {}).items():
        if path and name in data:
            add_pseudo_labelled(data[name], Path(path), get_task(name))
    return data


def add_pseudo_labelled(d: TaskData, path: Path, task: Task) -> None:
    """Rows labelled by models (iPET), JSON lines with the task's keys and `label`, join the training rows; one
    whose text is a validation or held-out row's is an error, not a silent leak."""
    rows = read_examples(path, task, labelled=True)
    scored = {text_key(ex, task) for ex in [*d.val, *(d.held_out or [])]}
    leaked = [ex for ex in rows if text_key(ex, task) in scored]
    if leaked:
        raise ConfigError(f"{leaked[0].source}: a pseudo-labelled {task.name} row has the text of a validation or "
                          f"held-out row ({len(leaked)} such rows); pseudo-labels must come from unlabelled rows")
    d.train.extend(rows)
    log.info("%s: %d pseudo-labelled rows from %s join the %d training rows", task.name, len(rows), path,
             len(d.train) - len(rows))
