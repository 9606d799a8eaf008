"""Collapse diagnostics of one embedding cloud: is the representation degenerate?

- :func:`std_of_l2_normalized` — the formula of lightly's ``std_of_l2_normalized`` (Chen & He, "Exploring Simple
  Siamese Representation Learning", CVPR 2021, https://arxiv.org/abs/2011.10566): the mean over dimensions of the standard
  deviation of the L2-normalised embeddings, ``mean_j std_i(z_ij / ||z_i||)``. About ``1/sqrt(d)`` for an isotropic
  cloud, 0 when every embedding is the same vector (complete collapse).
- :func:`rankme` — RankMe (Garrido, Balestriero, Najman & LeCun, "RankMe: Assessing the Downstream Performance of
  Pretrained Self-Supervised Representations by Their Rank", ICML 2023, https://arxiv.org/abs/2210.02885): the
  effective rank ``exp(-sum_k p_k log p_k)`` with ``p_k = sigma_k / ||sigma||_1 + eps`` over the singular values
  ``sigma`` of the embedding matrix (not centred, as in the paper). 1 for a cloud on a line through the origin (one
  vector repeated), close to ``min(n, d)`` for an isotropic cloud, about ``r`` for a cloud spanning ``r`` directions
  equally (dimensional collapse).

:func:`is_collapsed` applies the documented threshold: a cloud is collapsed when its std is below
``COLLAPSE_FRACTION / sqrt(d)``, i.e. under 5 % of the isotropic value. Why 5 %: the demo (digits, 3 epochs,
d = 64) gives SimCLR 0.0145 (12 % of 1/8; RankMe 8.4: dimensional collapse, yet it still separates the classes) and
Barlow Twins 0.0002 (0.16 %; RankMe 1.04: every embedding points the same way) -- the threshold flags the second.

Example::

    >>> z = np.random.default_rng(0).normal(size=(2000, 16))
    >>> round(std_of_l2_normalized(z) * 4, 1), rankme(z) > 15
    (1.0, True)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import ArrayLike

#: Epsilon added to each normalised singular value (Garrido et al. 2023 use 1e-7 in float32).
RANKME_EPS = 1e-7

#: A cloud whose ``std_of_l2_normalized`` is below ``COLLAPSE_FRACTION / sqrt(d)`` counts as collapsed.
COLLAPSE_FRACTION = 0.05


def _embedding_matrix(z: ArrayLike, what: str) -> np.ndarray:
    x = np.asarray(z, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what}: embeddings must be a 2-D array (n, d), got shape {x.shape}")
    if x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"{what}: need at least 2 embeddings of at least 1 dimension, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: embeddings contain NaN or inf")
    return x


def std_of_l2_normalized(z: ArrayLike) -> float:
    """``mean_j std_i(z_ij / ||z_i||)`` (unbiased std over the ``n`` rows); ``z`` has shape ``(n, d)``.
    ~``1/sqrt(d)`` healthy, 0 collapsed.

    The two lines of lightly's ``lightly.utils.debug.std_of_l2_normalized`` (``tests/test_collapse.py`` checks
    that they agree): that module imports ``matplotlib.pyplot`` at the top, 0.7 s of every trial worker's start."""
    x = torch.nn.functional.normalize(torch.from_numpy(_embedding_matrix(z, "std_of_l2_normalized")), dim=1)
    return float(torch.std(x, dim=0).mean())


def rankme(z: ArrayLike, eps: float = RANKME_EPS) -> float:
    """RankMe effective rank of ``z`` ``(n, d)``: ``exp(-sum_k p_k log p_k)``, ``p_k = sigma_k / sum(sigma) + eps``
    (Garrido et al., ICML 2023). Ranges from about 1 (one direction) to ``min(n, d)`` (all directions equal)."""
    x = _embedding_matrix(z, "rankme")
    sigma = np.linalg.svd(x, compute_uv=False)
    total = sigma.sum()
    if total <= 0:  # every embedding is the zero vector: no direction at all
        return 0.0
    p = sigma / total + eps
    return float(math.exp(-np.sum(p * np.log(p))))


def is_collapsed(std: float, dim: int, fraction: float = COLLAPSE_FRACTION) -> bool:
    """True when ``std`` (:func:`std_of_l2_normalized`) is below ``fraction / sqrt(dim)`` (default: 5 % of the
    isotropic value)."""
    return bool(std < fraction / math.sqrt(dim))


def collapse_diagnostics(z: ArrayLike) -> dict[str, float]:
    """The summary metrics a trial logs for its reference cloud: ``embedding.std``, ``embedding.rankme`` and
    ``embedding.dim`` (the dimension, which the collapse threshold needs)."""
    x = _embedding_matrix(z, "collapse diagnostics")
    return {
        "embedding.std": std_of_l2_normalized(x),
        "embedding.rankme": rankme(x),
        "embedding.dim": float(x.shape[1]),
    }
