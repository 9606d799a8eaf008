"""Collapse diagnostics against independent computations: numpy's std of the normalised rows, scipy's entropy of
the normalised singular values, and known values on a collapsed and an isotropic cloud."""

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from experiments.metrics.collapse import collapse_diagnostics, is_collapsed, rankme, std_of_l2_normalized


def _iso(n=4000, d=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_std_matches_numpy_formula():
    z = np.random.default_rng(1).normal(size=(300, 8)) * np.arange(1, 9)
    normed = z / np.linalg.norm(z, axis=1, keepdims=True)
    assert std_of_l2_normalized(z) == pytest.approx(normed.std(axis=0, ddof=1).mean(), rel=1e-10)


def test_std_agrees_with_lightly():
    from lightly.utils.debug import std_of_l2_normalized as lightly_std

    for z in (np.random.default_rng(2).normal(size=(50, 12)) * 3 + 1, np.ones((5, 4))):
        expect = float(lightly_std(torch.from_numpy(z)))
        assert std_of_l2_normalized(z) == pytest.approx(expect, rel=1e-12, abs=1e-15)


def test_std_isotropic_is_one_over_sqrt_d_and_collapsed_is_zero():
    for d in (4, 16, 64):
        assert std_of_l2_normalized(_iso(d=d)) == pytest.approx(1 / math.sqrt(d), rel=0.03)
    point = np.random.default_rng(2).normal(size=16)
    collapsed = np.tile(point, (500, 1)) * np.random.default_rng(3).uniform(0.5, 2, size=(500, 1))
    assert std_of_l2_normalized(collapsed) == pytest.approx(0, abs=1e-12)
    assert is_collapsed(std_of_l2_normalized(collapsed), 16)
    assert not is_collapsed(std_of_l2_normalized(_iso()), 16)


def test_rankme_matches_scipy_entropy():
    z = np.random.default_rng(4).normal(size=(200, 12)) @ np.diag(np.linspace(0.1, 3, 12))
    s = scipy.linalg.svdvals(z)
    p = s / s.sum() + 1e-7
    expected = math.exp(-(p * np.log(p)).sum())
    assert rankme(z) == pytest.approx(expected, rel=1e-9)
    # without the epsilon it is exp of scipy's Shannon entropy of the normalised singular values
    assert rankme(z, eps=0) == pytest.approx(math.exp(scipy.stats.entropy(s / s.sum())), rel=1e-9)


def test_rankme_collapsed_isotropic_and_low_rank():
    point = np.random.default_rng(5).normal(size=32)
    assert rankme(np.tile(point, (400, 1))) == pytest.approx(1.0, abs=1e-4)
    assert rankme(_iso(d=16)) > 15.5
    basis = np.linalg.qr(np.random.default_rng(6).normal(size=(32, 3)))[0].T  # 3 orthonormal directions in 32-d
    low = np.random.default_rng(7).normal(size=(3000, 3)) @ basis
    assert rankme(low) == pytest.approx(3.0, abs=0.1)


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="2-D"):
        rankme(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        std_of_l2_normalized(np.array([[1.0, np.nan], [0.0, 1.0]]))


def test_collapse_diagnostics_names():
    d = collapse_diagnostics(_iso(n=500, d=8))
    assert set(d) == {"embedding.std", "embedding.rankme", "embedding.dim"} and d["embedding.dim"] == 8
