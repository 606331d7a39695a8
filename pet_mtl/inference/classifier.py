"""A trained model in memory, for notebooks, services and scripts: texts in, labels and probabilities out.

    clf = Classifier.from_pretrained("outputs/run")          # a run directory or a checkpoint
    clf.predict("tnews", ["华为发布新款手机"])                 # [{"label": "109", "name": "tech", "probs": {...}}]
    clf.predict("ocnli", [("他去了北京", "他在北京")])          # pairs: tuples or dicts of the task's fields

`python -m pet_mtl.predict` writes its files through this same object (inference/submission.py), so a row gets
the same label from a script as from the submission; the checkpoint's calibration biases decide labels in both
unless switched off. Inputs are checked as the readers check a file's rows: each must carry every field of the
task, as non-empty text.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Union

import torch

from pet_mtl.core.device import resolve_device, resolve_precision
from pet_mtl.core.errors import CheckpointError, ConfigError, InputError
from pet_mtl.core.precision import pad_multiple
from pet_mtl.core.tasks import get_task
from pet_mtl.data.readers import Example
from pet_mtl.inference import calibration
from pet_mtl.inference.checkpoint import load_scorer
from pet_mtl.inference.predictor import Predictor

#: one input: a text (one-field tasks), a tuple of the task's fields in file order, or a dict of them by name
Input = Union[str, Sequence[str], Mapping[str, str]]


class Classifier:
    """One checkpoint's model, featurizer and calibration biases, ready to score (build it with `from_pretrained`)."""

    def __init__(self, checkpoint: Path, meta: dict[str, Any], predictor: Predictor):
        self.checkpoint = checkpoint
        self.meta = meta
        self.predictor = predictor

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "auto", batch_size: int = 32, precision: str = "auto",
                        trust_pickle: bool = False, strict: bool = True, progress: bool = False,
                        base_model: str | None = None) -> "Classifier":
        """`path`: a run directory (its checkpoint-best) or a checkpoint directory. `device`: auto (the GPU when
        torch sees one), cpu, cuda or cuda:N; `precision`: auto (bf16 on a GPU that has it), fp32 or bf16.
        `base_model`: a LoRA checkpoint's base model, when it is no longer where it was trained."""
        batch_size = _batch_size(batch_size)
        dev = resolve_device(device)
        precision = resolve_precision(precision, dev)
        ckpt, meta, featurizer, model = load_scorer(path, trust_pickle, strict, base_model)
        biases = calibration.load(ckpt, {t: get_task(t).labels for t in meta["tasks"]})
        predictor = Predictor(featurizer, model.to(dev).eval(), batch_size, precision, dev,
                              pad_multiple(None, precision, dev), progress=progress, biases=biases)
        return cls(ckpt, meta, predictor)

    @property
    def tasks(self) -> list[str]:
        """The tasks this model was trained on, in its order."""
        return list(self.meta["tasks"])

    def labels(self, task: str) -> list[str]:
        """The task's label codes (as the competition writes them), in the model's label order."""
        return list(self._task(task).labels)

    def calibrated(self, task: str) -> bool:
        """Whether the checkpoint holds calibration biases for this task that move any decision."""
        return bool(self.predictor.biases.get(task, torch.zeros(1)).any())

    def predict(self, task: str, inputs: Sequence[Input] | Input, batch_size: int | None = None,
                calibrate: bool = True) -> list[dict[str, Any]]:
        """One dict per input, in order: `label` (the competition's code), `name` (what the code means) and `probs`
        (code -> probability, after the checkpoint's calibration biases unless `calibrate` is false; the label is
        the most probable code). A single text (or a dict) may be given instead of a list: still a list comes
        back."""
        t = self._task(task)
        if isinstance(inputs, (str, Mapping)) or (isinstance(inputs, tuple) and len(t.fields) > 1
                                                  and all(isinstance(v, str) for v in inputs)):
            inputs = [inputs]
        examples = [Example(t.name, str(i), self._fields(t, value, i), None, f"input {i}")
                    for i, value in enumerate(inputs)]
        if not examples:
            return []
        predictor = self.predictor if batch_size is None else replace(self.predictor,
                                                                      batch_size=_batch_size(batch_size))
        decided = predictor.calibrated(t.name, torch.cat([lp for _, lp in self.stream(examples, predictor)]),
                                       calibrate)  # the argmax of these is the label, as the submission decides it
        codes = [t.labels[i] for i in decided.argmax(-1).tolist()]
        return [{"label": code, "name": t.label_names[code], "probs": dict(zip(t.labels, row))}
                for code, row in zip(codes, decided.softmax(-1).tolist())]

    def stream(self, examples: Iterable[Example], predictor: Predictor | None = None
               ) -> Iterator[tuple[list[Example], torch.Tensor]]:
        """(rows, their [n, labels] label log-probabilities before calibration) chunk by chunk, in input order, for
        one task's rows read lazily; a score that is not a number stops here, naming the row, so no label is ever
        decided from NaN."""
        predictor = predictor or self.predictor
        for chunk, scores in predictor.stream(examples):
            log_probs = scores.log_softmax(-1)
            bad = torch.isnan(log_probs).any(-1)
            if bool(bad.any()):
                ex = chunk[int(bad.nonzero()[0])]
                raise CheckpointError(self.checkpoint, None, f"the model's scores for {ex.task} row {ex.id} "
                                      f"({ex.source}) are not numbers (NaN); nothing was written")
            yield chunk, log_probs

    def _task(self, task: str):
        if task not in self.meta["tasks"]:
            raise ConfigError(f"task {task!r} is not one this model was trained on ({', '.join(self.tasks)})")
        return get_task(task)

    @staticmethod
    def _fields(t, value: Input, i: int) -> dict[str, str]:
        """The task's fields of one input, each a non-empty text, or one line saying what input `i` lacks."""
        names = t.fields
        if isinstance(value, str):
            if len(names) != 1:
                raise InputError(f"input {i}: {t.name} takes {len(names)} texts ({', '.join(names)}): give a tuple "
                                 "or a dict of them, not one string")
            fields = {names[0]: value}
        elif isinstance(value, Mapping):
            missing, unknown = [n for n in names if n not in value], sorted(map(str, set(value) - set(names)))
            if missing or unknown:
                raise InputError(f"input {i}: {t.name} takes the fields {', '.join(names)}"
                                 + (f"; missing {', '.join(missing)}" if missing else "")
                                 + (f"; unknown {', '.join(unknown)}" if unknown else ""))
            fields = {n: value[n] for n in names}
        elif isinstance(value, Sequence):
            if len(value) != len(names):
                raise InputError(f"input {i}: {t.name} takes {len(names)} text(s) ({', '.join(names)}), "
                                 f"found {len(value)}")
            fields = dict(zip(names, value))
        else:
            raise InputError(f"input {i}: expected a text, a tuple or a dict of {t.name}'s fields "
                             f"({', '.join(names)}), found {type(value).__name__}")
        for name, text in fields.items():
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"input {i}: the {name} must be a non-empty text, found {text!r:.80}")
        return fields


def _batch_size(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"batch_size={value!r}: expected an integer >= 1")
    return value
