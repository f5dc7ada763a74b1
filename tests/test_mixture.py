"""The task mixture: per-micro-batch task counts, epoch sampling, resume-safe determinism, rank shards."""

from __future__ import annotations

import numpy as np
import pytest

from sgt_pipeline.training.mixture import TaskMixture

WEIGHTS = {"proxy": 2.0, "understanding": 0.5, "generation": 0.5}
SIZES = {"proxy": 50, "understanding": 120, "generation": 80}


def test_every_micro_batch_mixes_the_tasks_in_proportion():
    mixture = TaskMixture(WEIGHTS, SIZES, global_batch=32)
    assert mixture.counts() == {"understanding": 5, "generation": 5, "proxy": 22}  # SGT's 2:1, 32 examples
    draw = mixture.draw(7)
    assert {t: len(i) for t, i in draw.items()} == mixture.counts()
    assert mixture.share()["proxy"] == pytest.approx(22 / 32)
    # Small batches still carry every task; a batch smaller than the task count is refused.
    assert TaskMixture(WEIGHTS, SIZES, global_batch=4).counts() == {"understanding": 1, "generation": 1, "proxy": 2}
    with pytest.raises(ValueError, match="cannot hold"):
        TaskMixture(WEIGHTS, SIZES, global_batch=2).counts()


def test_every_example_is_seen_once_per_epoch():
    mixture = TaskMixture(WEIGHTS, SIZES, global_batch=8)
    seen = np.concatenate([mixture.draw(i)["proxy"] for i in range(40)])
    first_epochs = seen[: (len(seen) // 50) * 50].reshape(-1, 50)
    assert len(first_epochs) >= 2
    for epoch in first_epochs:
        assert sorted(epoch) == list(range(50))
    assert not (first_epochs[0] == first_epochs[1]).all()  # reshuffled each epoch


def test_a_fresh_mixture_draws_the_same_batches_as_one_that_ran():
    """Resume needs nothing but the step: draw k is the same whatever was drawn before."""
    ran = TaskMixture(WEIGHTS, SIZES, global_batch=4, seed=7)
    history = [ran.draw(i) for i in range(300)]
    fresh = TaskMixture(WEIGHTS, SIZES, global_batch=4, seed=7)
    for i in (299, 150, 0, 151):
        for task, indices in history[i].items():
            np.testing.assert_array_equal(fresh.draw(i)[task], indices)
    other = TaskMixture(WEIGHTS, SIZES, global_batch=4, seed=8)
    assert not all(np.array_equal(other.draw(i)["proxy"], ran.draw(i)["proxy"]) for i in range(50))


def test_ranks_split_every_task_of_the_global_batch():
    mixture = TaskMixture(WEIGHTS, SIZES, global_batch=19)  # 3, 3 and 13 examples: 13 splits 4/5/4
    whole = mixture.draw(3)
    shards = [mixture.draw(3, rank=r, world_size=3) for r in range(3)]
    for task in mixture.tasks:  # the ranks' parts are the 1-process micro-batch, whatever the world size
        np.testing.assert_array_equal(np.concatenate([s[task] for s in shards]), whole[task])
    assert [len(s["proxy"]) for s in shards] == [4, 5, 4]
    with pytest.raises(ValueError, match="cannot be shared"):
        mixture.draw(3, rank=0, world_size=4)


def test_weight_zero_removes_a_task_and_missing_examples_are_refused():
    mixture = TaskMixture({"proxy": 0, "understanding": 1}, SIZES, global_batch=2)
    assert set(mixture.draw(5)) == {"understanding"} and len(mixture.draw(5)["understanding"]) == 2
    with pytest.raises(ValueError, match="no examples"):
        TaskMixture(WEIGHTS, {**SIZES, "generation": 0}, global_batch=2)
