"""How the tasks' training data interleave into one stream of batches.

An epoch is a list of batches computed from (seed, epoch) alone, so a resumed run replays exactly the batches
an uninterrupted one would. Each rule fixes how many items each task contributes per epoch:
- proportional: every item exactly once (task share = its size share);
- temperature: share proportional to size**(1/T) (T=1 proportional, large T uniform), small tasks upsampled;
- round_robin: equal counts per task, interleaved one item at a time.
Tasks that contribute more than their size cycle through fresh permutations; fewer, a seeded subset.
Batches are then grouped by length (sort within chunks of `group_size` batches, shuffle the batches), so
padding stays small while the batch order stays random.

`batch_tasks`: `mixed` (the items of all tasks shuffled together, then cut into batches) or `single` (each task's
items cut into batches of their own, length-grouped within the task, then all batches shuffled; round_robin
alternates the tasks' batches): every batch then holds one task, as a plain multi-task classifier trains.
"""
from __future__ import annotations

import random
from typing import Callable, Mapping, Sequence

from pet_mtl.core.errors import ConfigError


def _proportional(sizes: Mapping[str, int], temperature: float) -> dict[str, int]:
    return dict(sizes)


def _temperature(sizes: Mapping[str, int], temperature: float) -> dict[str, int]:
    if temperature <= 0:
        raise ConfigError(f"train.sampling_temperature must be > 0, got {temperature}")
    total = sum(sizes.values())
    weights = {t: n ** (1.0 / temperature) for t, n in sizes.items()}
    z = sum(weights.values())
    return {t: max(1, round(total * w / z)) for t, w in weights.items()}


def _round_robin(sizes: Mapping[str, int], temperature: float) -> dict[str, int]:
    total = sum(sizes.values())
    return {t: -(-total // len(sizes)) for t in sizes}


BATCH_TASKS = ("mixed", "single")
SAMPLING_RULES: dict[str, Callable[[Mapping[str, int], float], dict[str, int]]] = {
    "proportional": _proportional,
    "temperature": _temperature,
    "round_robin": _round_robin,
}


def check_batching(rule: str, batch_tasks: str) -> None:
    """The one refusal of an unknown train.sampling or train.batch_tasks: config.check calls it before any data is
    read, and MultiTaskBatches again for callers that build batches without a config."""
    if rule not in SAMPLING_RULES:
        raise ConfigError(f"train.sampling={rule!r}: expected one of {', '.join(SAMPLING_RULES)}")
    if batch_tasks not in BATCH_TASKS:
        raise ConfigError(f"train.batch_tasks={batch_tasks!r}: expected one of {', '.join(BATCH_TASKS)}")


class MultiTaskBatches:
    def __init__(self, items: Mapping[str, Sequence[int]], lengths: Sequence[int], batch_size: int,
                 rule: str = "proportional", temperature: float = 2.0, seed: int = 0,
                 group_by_length: bool = True, group_size: int = 32, batch_tasks: str = "single"):
        check_batching(rule, batch_tasks)
        self.batch_tasks = batch_tasks
        empty = [t for t, v in items.items() if not v]
        if empty:
            raise ConfigError(f"no training data for task(s) {', '.join(empty)}")
        self.items = {t: list(v) for t, v in items.items()}
        self.lengths = lengths
        self.batch_size = batch_size
        self.rule = rule
        self.seed = seed
        self.group_by_length = group_by_length
        self.group_size = group_size
        self.counts = SAMPLING_RULES[rule]({t: len(v) for t, v in self.items.items()}, temperature)
        self._epoch: tuple[int, list[list[int]]] | None = None  # the last epoch's batches, computed once

    def __len__(self) -> int:
        if self.batch_tasks == "single":
            return sum(-(-n // self.batch_size) for n in self.counts.values())
        return -(-sum(self.counts.values()) // self.batch_size)

    def _cut(self, stream: list[int]) -> list[list[int]]:
        """Batches of `stream` in its order, or (length grouping) sorted by length within chunks of group_size."""
        if not self.group_by_length:
            return [stream[i:i + self.batch_size] for i in range(0, len(stream), self.batch_size)]
        batches: list[list[int]] = []
        chunk = self.batch_size * self.group_size
        for start in range(0, len(stream), chunk):
            part = sorted(stream[start:start + chunk], key=lambda i: self.lengths[i], reverse=True)
            batches.extend(part[i:i + self.batch_size] for i in range(0, len(part), self.batch_size))
        return batches

    def _draw(self, task: str, epoch: int) -> list[int]:
        rng = random.Random(f"{self.seed}/{epoch}/{task}")
        pool, out = self.items[task], []
        while len(out) < self.counts[task]:
            out.extend(rng.sample(pool, len(pool)))
        return out[: self.counts[task]]

    def epoch(self, epoch: int) -> list[list[int]]:
        rng = random.Random(f"{self.seed}/{epoch}")
        draws = {t: self._draw(t, epoch) for t in self.items}
        if self.batch_tasks == "single":  # each draw is already a random order of the task's items
            per_task = [self._cut(d) for d in draws.values()]
            if self.rule == "round_robin":
                return [b[i] for i in range(max(map(len, per_task))) for b in per_task if i < len(b)]
            batches = [b for bs in per_task for b in bs]
            rng.shuffle(batches)
            return batches
        if self.rule == "round_robin":
            stream = [d[i] for i in range(max(map(len, draws.values()))) for d in draws.values() if i < len(d)]
        else:
            stream = [i for d in draws.values() for i in d]
            rng.shuffle(stream)
        batches = self._cut(stream)
        if self.group_by_length:
            rng.shuffle(batches)
        return batches

    def batch(self, index: int) -> list[int]:
        """The index-th batch of the endless stream of epochs (each recomputed from the seed, so a resumed run
        continues with the very batch an uninterrupted one would take)."""
        epoch, pos = divmod(index, len(self))
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, self.epoch(epoch))
        return self._epoch[1][pos]
