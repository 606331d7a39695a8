"""The task registry: everything that differs between OCNLI, OCEMOTION and TNEWS lives here as data.

Adding a task means adding one `Task` to `TASKS` and a `patterns/<name>/` folder; no other module has an
if-chain over task names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pet_mtl.core.errors import ConfigError


@dataclass(frozen=True)
class Task:
    name: str
    #: text columns of the competition TSV, in file order (between the id and the label)
    fields: tuple[str, ...]
    #: label codes exactly as the competition writes them; their order fixes the label index
    labels: tuple[str, ...]
    #: human-readable meaning of each code (documentation and reports only)
    label_names: dict[str, str]
    #: competition file names per split
    files: dict[str, str]
    #: CLUE/FewCLUE JSON lines: our field name -> JSON key
    json_fields: dict[str, str] = field(default_factory=dict)
    #: CLUE/FewCLUE JSON label spelling -> our label code (identity where absent)
    json_labels: dict[str, str] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def label_index(self, code: str) -> int:
        return self.labels.index(code)


_TNEWS_NAMES = {
    "100": "story", "101": "culture", "102": "entertainment", "103": "sports", "104": "finance",
    "106": "house", "107": "car", "108": "education", "109": "tech", "110": "military",
    "112": "travel", "113": "world", "114": "stock", "115": "agriculture", "116": "game",
}

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            name="ocnli",
            fields=("premise", "hypothesis"),
            labels=("0", "1", "2"),
            label_names={"0": "entailment", "1": "neutral", "2": "contradiction"},
            files={"train": "OCNLI_train.csv", "a": "OCNLI_a.csv", "b": "ocnli_test_B.csv"},
            json_fields={"premise": "sentence1", "hypothesis": "sentence2"},
            json_labels={"entailment": "0", "neutral": "1", "contradiction": "2"},
        ),
        Task(
            name="ocemotion",
            fields=("text",),
            labels=("like", "happiness", "sadness", "anger", "disgust", "surprise", "fear"),
            label_names={k: k for k in ("like", "happiness", "sadness", "anger", "disgust", "surprise", "fear")},
            files={"train": "OCEMOTION_train.csv", "a": "OCEMOTION_a.csv", "b": "ocemotion_test_B.csv"},
            json_fields={"text": "content"},
        ),
        Task(
            name="tnews",
            fields=("title",),
            labels=tuple(_TNEWS_NAMES),
            label_names=_TNEWS_NAMES,
            files={"train": "TNEWS_train.csv", "a": "TNEWS_a.csv", "b": "tnews_test_B.csv"},
            json_fields={"title": "sentence"},
        ),
    )
}


#: the competition's unlabelled test files: `split=a|b` in predict, `train.predict_splits` in train
TEST_SPLITS = ("a", "b")


def test_file(directory: Path, task: str, split: str) -> Path:
    """The competition's test file `split` (a or b) of `task` in `directory`."""
    if split not in TEST_SPLITS:
        raise ConfigError(f"test split {split!r}: expected one of {', '.join(TEST_SPLITS)} (the competition's test "
                          "files A and B)")
    return Path(directory) / get_task(task).files[split]


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)} (see pet_mtl/tasks.py)") from None
