"""Trial order of an ``augmentation_at: eval`` sweep: the trials that share one training are spread apart, so two
concurrent trials train two models instead of one training while the other waits for its weights."""

from __future__ import annotations

import itertools

from sweeper.config.grid import expand_grid
from sweeper.training_cache import run_order


def test_eval_augmentation_trials_of_one_training_come_apart():
    trials = expand_grid(["simclr", "barlow_twins"], ["dog", "cat"], ["none", "gaussian_noise", "non_rigid"], {}, [0])
    ordered = run_order(trials, "eval")
    assert sorted(t.key for t in ordered) == sorted(t.key for t in trials)  # a permutation
    first = ordered[:4]  # every (model, class) training once before any of them a second time
    assert {(t.model, t.train_class) for t in first} == {
        (m, c) for m in ("simclr", "barlow_twins") for c in ("dog", "cat")
    }
    assert all(t.augmentation == "none" for t in first)
    for a, b in itertools.pairwise(ordered):  # no two neighbours share a training
        assert (a.model, a.train_class) != (b.model, b.train_class)


def test_other_settings_keep_the_grid_order():
    trials = expand_grid(["simclr"], ["dog", "cat"], ["none", "gaussian_noise"], {}, [0, 1])
    assert run_order(trials, "both") == trials and run_order(trials, "train") == trials
