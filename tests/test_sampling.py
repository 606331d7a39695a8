"""Interleaving rules, determinism (resume relies on it) and length grouping."""
from __future__ import annotations

from collections import Counter

import pytest

from pet_mtl.errors import ConfigError
from pet_mtl.sampling import MultiTaskBatches

ITEMS = {"a": list(range(0, 60)), "b": list(range(60, 80)), "c": list(range(80, 85))}
TASK_OF = {i: t for t, v in ITEMS.items() for i in v}
LENGTHS = [(i * 37) % 50 + 5 for i in range(85)]


def flat(batches):
    return [i for b in batches for i in b]


def test_proportional_sees_every_item_once_per_epoch():
    s = MultiTaskBatches(ITEMS, LENGTHS, batch_size=8, rule="proportional", seed=1)
    for epoch in (0, 1):
        assert sorted(flat(s.epoch(epoch))) == list(range(85))
    assert len(s) == len(s.epoch(0)) == 11


def test_temperature_upsamples_small_tasks():
    counts = MultiTaskBatches(ITEMS, LENGTHS, 8, "temperature", temperature=2.0).counts
    share = {t: counts[t] / sum(counts.values()) for t in counts}
    assert share["c"] > 5 / 85 and share["a"] < 60 / 85
    drawn = Counter(TASK_OF[i] for i in flat(MultiTaskBatches(ITEMS, LENGTHS, 8, "temperature").epoch(0)))
    assert drawn == Counter(counts)
    assert MultiTaskBatches(ITEMS, LENGTHS, 8, "temperature", temperature=1.0).counts == {"a": 60, "b": 20, "c": 5}


def test_round_robin_gives_equal_counts_and_cycles_small_tasks():
    s = MultiTaskBatches(ITEMS, LENGTHS, 8, "round_robin", group_by_length=False)
    stream = flat(s.epoch(0))
    assert Counter(TASK_OF[i] for i in stream) == {"a": 29, "b": 29, "c": 29}
    assert [TASK_OF[i] for i in stream[:6]] == ["a", "b", "c"] * 2
    assert set(i for i in stream if TASK_OF[i] == "c") == set(ITEMS["c"])


def test_epochs_are_a_function_of_seed_and_epoch():
    a = MultiTaskBatches(ITEMS, LENGTHS, 8, seed=3)
    b = MultiTaskBatches(ITEMS, LENGTHS, 8, seed=3)
    assert a.epoch(2) == b.epoch(2) and a.epoch(2) != a.epoch(3)
    assert MultiTaskBatches(ITEMS, LENGTHS, 8, seed=4).epoch(2) != a.epoch(2)


def test_length_grouping_cuts_padding_but_keeps_batches_mixed():
    def padding(batches):
        return sum(max(LENGTHS[i] for i in b) * len(b) - sum(LENGTHS[i] for i in b) for b in batches)

    grouped = MultiTaskBatches(ITEMS, LENGTHS, 8, seed=0, group_by_length=True).epoch(0)
    plain = MultiTaskBatches(ITEMS, LENGTHS, 8, seed=0, group_by_length=False).epoch(0)
    assert padding(grouped) < padding(plain) / 2
    assert any(len({TASK_OF[i] for i in b}) > 1 for b in grouped)


def test_bad_rule_and_empty_task():
    with pytest.raises(ConfigError, match="train.sampling='uniform'"):
        MultiTaskBatches(ITEMS, LENGTHS, 8, rule="uniform")
    with pytest.raises(ConfigError, match="no training data for task"):
        MultiTaskBatches({"a": [0], "b": []}, LENGTHS, 8)
