"""The task mixture: ratios, epoch sampling, resume-safe determinism, rank shards."""

from __future__ import annotations

import numpy as np
import pytest

from sgt_pipeline.training.mixture import TaskMixture

WEIGHTS = {"proxy": 2.0, "understanding": 0.5, "generation": 0.5}
SIZES = {"proxy": 50, "understanding": 120, "generation": 80}


def test_shares_follow_the_weights():
    mixture = TaskMixture(WEIGHTS, SIZES, global_batch=4, total_micro_steps=6000)
    share = mixture.share()
    assert share["proxy"] == pytest.approx(2 / 3, abs=0.02)
    assert share["understanding"] == pytest.approx(1 / 6, abs=0.02)


def test_every_example_is_seen_once_per_epoch():
    mixture = TaskMixture(WEIGHTS, SIZES, global_batch=5, total_micro_steps=400)
    seen = np.concatenate([mixture.draw(i).indices for i in range(400) if mixture.task_at(i) == "proxy"])
    first_epochs = seen[: (len(seen) // 50) * 50].reshape(-1, 50)
    assert len(first_epochs) >= 2
    for epoch in first_epochs:
        assert sorted(epoch) == list(range(50))
    assert not (first_epochs[0] == first_epochs[1]).all()  # reshuffled each epoch


def test_a_fresh_mixture_draws_the_same_batches_as_one_that_ran():
    """Resume needs nothing but the step: draw k is the same whatever was drawn before."""
    ran = TaskMixture(WEIGHTS, SIZES, global_batch=4, total_micro_steps=300, seed=7)
    history = [ran.draw(i) for i in range(300)]
    fresh = TaskMixture(WEIGHTS, SIZES, global_batch=4, total_micro_steps=300, seed=7)
    for i in (299, 150, 0, 151):
        assert fresh.draw(i).task == history[i].task
        np.testing.assert_array_equal(fresh.draw(i).indices, history[i].indices)
    other = TaskMixture(WEIGHTS, SIZES, global_batch=4, total_micro_steps=300, seed=8)
    assert [other.task_at(i) for i in range(50)] != [ran.task_at(i) for i in range(50)]


def test_ranks_split_the_global_batch():
    mixture = TaskMixture(WEIGHTS, SIZES, global_batch=6, total_micro_steps=10)
    whole = mixture.draw(3).indices
    shards = [mixture.draw(3, rank=r, world_size=3) for r in range(3)]
    assert {s.task for s in shards} == {mixture.task_at(3)}
    np.testing.assert_array_equal(np.concatenate([s.indices for s in shards]), whole)
    with pytest.raises(ValueError, match="divisible"):
        mixture.draw(3, rank=0, world_size=4)


def test_weight_zero_removes_a_task_and_missing_examples_are_refused():
    mixture = TaskMixture({"proxy": 0, "understanding": 1}, SIZES, global_batch=2, total_micro_steps=20)
    assert {mixture.task_at(i) for i in range(20)} == {"understanding"}
    with pytest.raises(ValueError, match="no examples"):
        TaskMixture(WEIGHTS, {**SIZES, "generation": 0}, global_batch=2, total_micro_steps=5)
