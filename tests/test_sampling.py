"""Interleaving rules, determinism (resume relies on it) and length grouping."""
from __future__ import annotations

from collections import Counter

import pytest

from pet_mtl.core.errors import ConfigError
from pet_mtl.data.sampling import MultiTaskBatches

ITEMS = {"a": list(range(0, 60)), "b": list(range(60, 80)), "c": list(range(80, 85))}
TASK_OF = {i: t for t, v in ITEMS.items() for i in v}
LENGTHS = [(i * 37) % 50 + 5 for i in range(85)]


def flat(batches):
    return [i for b in batches for i in b]


@pytest.mark.parametrize("batch_tasks,batches", [("mixed", 11), ("single", 8 + 3 + 1)])  # 85 rows; per task 60, 20, 5
def test_proportional_sees_every_item_once_per_epoch(batch_tasks, batches):
    s = MultiTaskBatches(ITEMS, LENGTHS, batch_size=8, rule="proportional", seed=1, batch_tasks=batch_tasks)
    for epoch in (0, 1):
        assert sorted(flat(s.epoch(epoch))) == list(range(85))
    assert len(s) == len(s.epoch(0)) == batches


def test_temperature_upsamples_small_tasks():
    counts = MultiTaskBatches(ITEMS, LENGTHS, 8, "temperature", temperature=2.0).counts
    share = {t: counts[t] / sum(counts.values()) for t in counts}
    assert share["c"] > 5 / 85 and share["a"] < 60 / 85
    drawn = Counter(TASK_OF[i] for i in flat(MultiTaskBatches(ITEMS, LENGTHS, 8, "temperature").epoch(0)))
    assert drawn == Counter(counts)
    assert MultiTaskBatches(ITEMS, LENGTHS, 8, "temperature", temperature=1.0).counts == {"a": 60, "b": 20, "c": 5}


def test_round_robin_gives_equal_counts_and_cycles_small_tasks():
    s = MultiTaskBatches(ITEMS, LENGTHS, 8, "round_robin", group_by_length=False, batch_tasks="mixed")
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

    grouped = MultiTaskBatches(ITEMS, LENGTHS, 8, seed=0, group_by_length=True, batch_tasks="mixed").epoch(0)
    plain = MultiTaskBatches(ITEMS, LENGTHS, 8, seed=0, group_by_length=False, batch_tasks="mixed").epoch(0)
    assert padding(grouped) < padding(plain) / 2
    assert any(len({TASK_OF[i] for i in b}) > 1 for b in grouped)


def test_bad_rule_and_empty_task():
    with pytest.raises(ConfigError, match="train.sampling='uniform'"):
        MultiTaskBatches(ITEMS, LENGTHS, 8, rule="uniform")
    with pytest.raises(ConfigError, match="no training data for task"):
        MultiTaskBatches({"a": [0], "b": []}, LENGTHS, 8)


@pytest.mark.parametrize("rule", ["proportional", "temperature", "round_robin"])
@pytest.mark.parametrize("grouped", [True, False])
def test_single_task_batches_hold_one_task_and_follow_the_rule(rule, grouped):
    s = MultiTaskBatches(ITEMS, LENGTHS, 8, rule, seed=2, group_by_length=grouped, batch_tasks="single")
    mixed = MultiTaskBatches(ITEMS, LENGTHS, 8, rule, seed=2, group_by_length=grouped, batch_tasks="mixed")
    for epoch in (0, 1):
        batches = s.epoch(epoch)
        assert all(len({TASK_OF[i] for i in b}) == 1 for b in batches)
        assert Counter(TASK_OF[i] for i in flat(batches)) == Counter(s.counts)  # the rule's counts, as mixed
        assert len(batches) == len(s) and s.counts == mixed.counts
    assert sorted(flat(s.epoch(0))) == sorted(flat(mixed.epoch(0)))  # the same draws, batched per task
    assert s.epoch(1) == MultiTaskBatches(ITEMS, LENGTHS, 8, rule, seed=2, group_by_length=grouped,
                                          batch_tasks="single").epoch(1)  # a function of seed and epoch: resume
    if rule == "round_robin":
        assert [TASK_OF[b[0]] for b in s.epoch(0)[:3]] == ["a", "b", "c"]
    if rule == "proportional":
        assert sorted(flat(s.epoch(0))) == list(range(85))


def test_single_task_batches_are_length_grouped_within_the_task():
    def padding(batches):
        return sum(max(LENGTHS[i] for i in b) * len(b) - sum(LENGTHS[i] for i in b) for b in batches)

    grouped = MultiTaskBatches(ITEMS, LENGTHS, 8, seed=0, batch_tasks="single").epoch(0)
    plain = MultiTaskBatches(ITEMS, LENGTHS, 8, seed=0, group_by_length=False, batch_tasks="single").epoch(0)
    assert padding(grouped) < padding(plain) / 2
    with pytest.raises(ConfigError, match="train.batch_tasks='one'"):
        MultiTaskBatches(ITEMS, LENGTHS, 8, batch_tasks="one")
