"""Unlabelled data (`data.unlabelled`): rows without labels, per task, for PET's auxiliary masked-LM loss.

Sources per task (`data.unlabelled.tnews=[a, b, ../shared/data/fewclue/tnews/unlabeled.json]`):
- `a`, `b`: the competition's test file A or B of that task in data.dir (their text is the very distribution the
  leaderboard scores);
- a competition-format file (`.csv`/`.tsv`, with or without the label column, which is ignored);
- CLUE/FewCLUE JSON lines (`.json`/`.jsonl`) with the task's keys (`sentence`, `sentence1`/`sentence2`, `content`);
- plain text, one row per line (`.txt`, `.txt.gz`), for tasks with one text field (TNEWS, OCEMOTION).
Never read, whatever the file: a row whose text is that of a validation or held-out row of this run (the rows that
select the checkpoint or report it), so a source that overlaps them (a training file, FewCLUE's dev files) is safe.
Files are streamed (corpus.py): their size does not matter.

The auxiliary loss: total = label loss + `train.mlm_weight` x masked-LM loss on a batch of packed, masked unlabelled
text (data/packing.py). PET's paper writes L = (1 - a) L_CE + a L_MLM with a = 1e-4, and its code inverts the two weights;
here the weight multiplies the MLM term alone, so a = 1e-4 in the paper is mlm_weight ~ 1e-4 here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pet_mtl.core.errors import ConfigError
from pet_mtl.core.resources import data_dir
from pet_mtl.core.tasks import TEST_SPLITS, get_task, test_file
from pet_mtl.data.corpus import FileSource, _entry_files, _kind_of
from pet_mtl.data.regimes import TaskData, text_key


def never_read(data: Mapping[str, TaskData]) -> dict[str, frozenset[tuple[str, ...]]]:
    """Per task, the texts (stripped, in field order) of the rows that select or report the checkpoint."""
    out = {}
    for name, d in data.items():
        task = get_task(name)
        out[name] = frozenset(text_key(ex, task) for ex in [*d.val, *(d.held_out or [])])
    return out


def sources(cfg: Any, data: Mapping[str, TaskData]) -> list[FileSource]:
    """The run's unlabelled files, each weighted by its size (so rows are drawn about uniformly over all of them)."""
    skip = never_read(data)
    out = []
    for name in cfg.tasks:
        task = get_task(name)
        for spec in (cfg.data.unlabelled or {}).get(name) or []:
            spec = str(spec)
            if spec in TEST_SPLITS:
                files = [(test_file(data_dir(cfg.data.dir), name, spec), task)]
                if not files[0][0].is_file():
                    raise ConfigError(f"data.unlabelled.{name}: {spec} is {files[0][0]}, which does not exist")
            else:
                files = _entry_files({"path": spec, "task": name})
            for path, _ in files:
                kind = _kind_of(path)
                if kind == "text" and len(task.fields) != 1:
                    raise ConfigError(f"data.unlabelled.{name}: {path} is plain text, but a {name} row has "
                                      f"{len(task.fields)} texts ({', '.join(task.fields)}); give a competition or "
                                      "CLUE JSON file")
                out.append(FileSource(Path(path), kind, float(max(1, Path(path).stat().st_size)), f"{name}:{spec}",
                                      task, skip_texts=skip[name]))
    return out

