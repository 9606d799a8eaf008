"""Manifold Topology Divergence (MTopDiv) between two point clouds.

Reference: S. Barannikov, I. Trofimov, G. Sotnikov, E. Trimbach, A. Korotin, A. Filippov, E. Burnaev,
"Manifold Topology Divergence: a Framework for Comparing Data Manifolds", NeurIPS 2021,
https://arxiv.org/abs/2106.04024 -- reference code https://github.com/IlyaTrofimov/MTopDiv (``mtd/barcodes.py``).

The cross-barcode ``Cross(P, Q)`` is the persistence barcode of the Vietoris-Rips filtration of the union of both
clouds, with all distances *inside Q* set to zero: topological features of ``P`` that ``Q`` does not "fill in" survive.
MTopDiv is the total length of its H1 bars. It is **not symmetric**: ``mtopdiv(P, Q) != mtopdiv(Q, P)`` in general
(the authors suggest ``0.5 * (mtopdiv(P, Q) + mtopdiv(Q, P))`` where a symmetric score is wanted).

This module reproduces the reference implementation exactly -- including its argument order -- with these
differences, all deliberate (see ``notes/mtopdiv.md``):

* ``mtopdiv`` works on the full clouds; the reference's random subsampling is :func:`mtopdiv_subsampled`.
* The distance matrix is built symmetric (the reference writes only the lower triangle, which only ripser++'s
  ``lower-distance`` format reads; ripser.py and giotto-ph read the upper one).
* The persistence backend is selectable: ripser++ (GPU), giotto-ph or ripser.py (CPU). All compute in float32.

Example
-------
>>> import numpy as np
>>> from experiments.metrics import mtopdiv
>>> rng = np.random.default_rng(0)
>>> reference, evaluated = rng.random((50, 2)), rng.random((40, 2))
>>> score = mtopdiv(reference, evaluated, backend="giotto")  # P = reference (training class), Q = evaluated
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.distance import cdist
from sklearn.utils import check_random_state

from experiments.metrics import ripserpp
from experiments.metrics.validation import check_clouds

__all__ = [
    "BACKENDS",
    "ZERO_TOLERANCE",
    "available_backends",
    "cross_distance_matrix",
    "cross_matrix_from_blocks",
    "h1_bars",
    "mtopdiv",
    "mtopdiv_from_matrix",
    "mtopdiv_subsampled",
    "resolve_backend",
]

logger = logging.getLogger(__name__)

#: Persistence backends, in the order ``available_backends`` reports them.
BACKENDS: tuple[str, ...] = ("ripserplusplus", "giotto", "ripser")

#: Distances below ``ZERO_TOLERANCE * mean(P-Q distance)`` are set to 0, as in the reference code.
ZERO_TOLERANCE: float = 1e-6

_MODULES = {"giotto": "gph", "ripser": "ripser", "ripserplusplus": "ripserplusplus"}
_INSTALL_HINTS = {
    "giotto": "pip install giotto-ph",
    "ripser": "pip install ripser  (or pip install 'embedding-sweeper[dev]')",
    "ripserplusplus": "pip install 'embedding-sweeper[gpu]'",
}

RandomStateLike = int | np.random.RandomState | None


def cross_distance_matrix(P: ArrayLike, Q: ArrayLike) -> np.ndarray:
    r"""Symmetric distance matrix of the MTopDiv cross-barcode filtration.

    Vertices are ordered ``[Q; P]`` (the reference swaps its arguments), so with ``m = len(Q)``, ``n = len(P)`` the
    ``(m + n) x (m + n)`` matrix is

    .. math::

        D = \begin{pmatrix} 0_{m \times m} & d(Q, P) \\ d(P, Q) & d(P, P) \end{pmatrix},
        \qquad D_{ij} \leftarrow 0 \text{ where } D_{ij} < 10^{-6} \cdot \operatorname{mean}\, d(P, Q),

    with ``d`` the Euclidean distance. The Q-Q block is zero: Q is collapsed to a point at filtration value 0.

    Parameters
    ----------
    P : array-like of shape (n, d)
        First cloud (the reference cloud, e.g. the training class).
    Q : array-like of shape (m, d)
        Second cloud (the evaluated cloud), whose internal distances are zeroed.

    Returns
    -------
    ndarray of shape (m + n, m + n), float64
        Exactly symmetric, zero diagonal.
    """
    P, Q = check_clouds(P, Q)
    return cross_matrix_from_blocks(cdist(P, Q), cdist(P, P))


def cross_matrix_from_blocks(cross: np.ndarray, within: np.ndarray) -> np.ndarray:
    """:func:`cross_distance_matrix` from its two blocks: ``cross = d(P, Q)`` ``(n, m)`` and ``within = d(P, P)``.

    Both are float64 distance matrices as :func:`scipy.spatial.distance.cdist` returns them; the bootstrap gathers
    them from precomputed full matrices (:mod:`experiments.metrics.batched`), which gives the very same numbers.
    """
    n, m = cross.shape
    D = np.zeros((m + n, m + n), dtype=np.float64)
    D[m:, :m] = cross
    D[:m, m:] = cross.T
    D[m:, m:] = within
    D[ZERO_TOLERANCE * cross.mean() > D] = 0.0
    return D


def _import_backend(name: str) -> ModuleType:
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError as exc:
        raise ImportError(
            f"MTopDiv backend {name!r} needs the Python package {_MODULES[name]!r}, which is not installed: "
            f"{_INSTALL_HINTS[name]}"
        ) from exc


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _is_importable(name: str) -> bool:
    if name == "ripserplusplus":  # its package imports even when its compiled libraries are missing
        return ripserpp.unavailable_reason() is None
    try:
        _import_backend(name)
    except ImportError:
        return False
    return True


def available_backends() -> list[str]:
    """Backends that can run here, in order of preference.

    ``"ripserplusplus"`` is listed only when the package imports *and* ``torch.cuda.is_available()``;
    ``"giotto"`` and ``"ripser"`` when their packages import.
    """
    found = []
    for name in BACKENDS:
        if not _is_importable(name):
            continue
        if name == "ripserplusplus" and not _cuda_available():
            continue
        found.append(name)
    return found


def _is_cuda(device: object) -> bool:
    """Whether ``device`` (None, a string or a ``torch.device``) names a CUDA device."""
    if device is None:
        return False
    if isinstance(device, str):
        return device.split(":")[0] == "cuda"
    return getattr(device, "type", None) == "cuda"


def resolve_backend(backend: str, device: object = None) -> str:
    """The persistence backend to run: ``backend`` itself, or for ``"auto"`` ripser++ only when the caller passed
    a CUDA ``device`` *and* ripser++ imports *and* CUDA is available, else giotto-ph (the reason logged).

    Nothing picks the GPU because one is visible: without an explicit CUDA device ``"auto"`` is giotto-ph.
    """
    valid = ("auto", *BACKENDS)
    if backend not in valid:
        raise ValueError(f"unknown MTopDiv backend {backend!r}; valid backends are {', '.join(map(repr, valid))}")
    if backend == "auto":
        if not _is_cuda(device):
            return "giotto"
        if not _cuda_available():
            logger.info("MTopDiv backend 'auto' on %s: CUDA is not available; using giotto-ph", device)
            return "giotto"
        reason = ripserpp.unavailable_reason()
        if reason is not None:
            logger.info("MTopDiv backend 'auto' on %s: giotto-ph, not ripser++: %s", device, reason)
            return "giotto"
        return "ripserplusplus"
    if backend == "ripserplusplus":
        _import_backend(backend)
        reason = ripserpp.unavailable_reason()
        if reason is not None:
            raise ImportError(f"MTopDiv backend 'ripserplusplus' cannot run: {reason}; {_INSTALL_HINTS[backend]}")
        if not _cuda_available():
            raise RuntimeError(
                "MTopDiv backend 'ripserplusplus' needs a CUDA GPU, but torch.cuda.is_available() is False; "
                "use backend='giotto' or backend='auto'"
            )
    return backend


def h1_bars(D: np.ndarray, backend: str) -> np.ndarray:
    """H1 persistence pairs, shape ``(k, 2)`` (birth, death), of the Vietoris-Rips filtration of ``D``."""
    if backend == "giotto":
        gph = _import_backend("giotto")
        dgms = gph.ripser_parallel(D, metric="precomputed", maxdim=1, collapse_edges=False)["dgms"]
        return np.asarray(dgms[1], dtype=np.float64).reshape(-1, 2)
    if backend == "ripser":
        ripser = _import_backend("ripser")
        dgms = ripser.ripser(D, distance_matrix=True, maxdim=1)["dgms"]
        return np.asarray(dgms[1], dtype=np.float64).reshape(-1, 2)
    if backend == "ripserplusplus":
        return ripserpp.h1_bars(D)  # Python-side errors as one RuntimeError (see experiments.metrics.ripserpp)
    raise AssertionError(f"unresolved backend {backend!r}")  # pragma: no cover


def mtopdiv(P: ArrayLike, Q: ArrayLike, *, backend: str = "auto", device: object = None) -> float:
    r"""Manifold Topology Divergence ``MTopDiv(P, Q)`` of the full clouds (Barannikov et al., NeurIPS 2021).

    .. math::

        \operatorname{MTopDiv}(P, Q) = \sum_{[b, d) \in H_1(\operatorname{Cross}(P, Q))} (d - b),

    the total length of the H1 bars of the Vietoris-Rips filtration of :func:`cross_distance_matrix` ``(P, Q)``.
    Equals the reference's ``get_score(calc_cross_barcodes(P, Q, len(P), len(Q)), 1, "sum_length")`` up to float32
    round-off (relative ~1e-5); no subsampling happens here -- the bootstrap layer resamples, or use
    :func:`mtopdiv_subsampled` for the reference's estimator.

    **Not symmetric.** ``P`` is the first argument, as in the reference ``mtopdiv(P, Q)``; the distances inside
    ``Q`` are zeroed, so the score measures how much of ``P``'s topology is not covered by ``Q``. In our sweeps ``P``
    is the training-class reference sample and ``Q`` the evaluated sample (proj18 passes the training-class sample
    first).

    Parameters
    ----------
    P : array-like of shape (n, d)
        First cloud (reference / training class).
    Q : array-like of shape (m, d)
        Second cloud (evaluated sample).
    backend : {"auto", "ripserplusplus", "giotto", "ripser"}, default "auto"
        Persistence engine. ``"auto"`` picks ripser++ only when ``device`` is a CUDA device, ripser++ is installed
        and CUDA is available, else giotto-ph (``collapse_edges`` stays off: the zeroed Q-Q clique makes edge
        collapse pathologically slow).
    device : None, str or torch.device, default None
        The device the caller computes on (e.g. the trial's). Only ``"auto"`` reads it; ``None`` means the CPU.

    Returns
    -------
    float
        The score, ``>= 0``.

    Raises
    ------
    ValueError
        On invalid clouds or an unknown backend.
    ImportError
        If the requested backend's package is not installed (the message gives the pip command).
    RuntimeError
        If ripser++ is requested without a CUDA GPU, or if an infinite H1 bar appears (it cannot without a
        threshold; it would mean a backend bug, so it is not silently dropped).
    """
    P, Q = check_clouds(P, Q)
    name = resolve_backend(backend, device)
    score, n_bars = mtopdiv_from_matrix(cross_distance_matrix(P, Q), name)
    logger.debug("mtopdiv: |P|=%d, |Q|=%d, backend=%s, %d H1 bars -> %g", len(P), len(Q), name, n_bars, score)
    return score


def mtopdiv_from_matrix(D: np.ndarray, name: str) -> tuple[float, int]:
    """``(score, number of H1 bars)`` of a :func:`cross_distance_matrix` with a resolved backend ``name``."""
    bars = h1_bars(D, name)
    if not np.isfinite(bars).all():
        raise RuntimeError(
            f"MTopDiv: backend {name!r} returned {int((~np.isfinite(bars)).any(axis=1).sum())} infinite H1 bar(s) "
            f"on a {D.shape[0]}-vertex cross-barcode; the unthresholded filtration should have none"
        )
    return float(np.sum(bars[:, 1] - bars[:, 0], dtype=np.float64)), len(bars)


def mtopdiv_subsampled(
    P: ArrayLike,
    Q: ArrayLike,
    batch_size1: int = 1000,
    batch_size2: int = 10000,
    n: int = 20,
    random_state: RandomStateLike = None,
    backend: str = "auto",
    device: object = None,
) -> float:
    """The reference's subsampled MTopDiv estimator, ``mtd.mtopdiv(P, Q, batch_size1, batch_size2, n)``.

    Repeats ``n`` times: draw ``min(batch_size2, len(Q))`` indices of ``Q`` without replacement, *then*
    ``min(batch_size1, len(P))`` indices of ``P``, and compute :func:`mtopdiv` on the two subsets; returns the mean.
    The draws use ``RandomState.choice`` in the reference's order, so ``random_state=np.random.RandomState(7)``
    reproduces the reference run after ``np.random.seed(7)``.

    Not symmetric; ``P`` is the first (reference) cloud as in :func:`mtopdiv`. Barannikov et al., "Manifold Topology
    Divergence: a Framework for Comparing Data Manifolds", NeurIPS 2021.

    Parameters
    ----------
    P : array-like of shape (n_P, d)
        First cloud; ``batch_size1`` points are sampled from it.
    Q : array-like of shape (n_Q, d)
        Second cloud; ``batch_size2`` points are sampled from it.
    batch_size1, batch_size2 : int
        Subsample sizes (capped at the cloud sizes). The defaults are the reference's, sized for ripser++ on a GPU:
        on CPU, 1 000 + 10 000 points take many minutes per repetition.
    n : int, default 20
        Number of repetitions.
    random_state : None, int or numpy.random.RandomState
        ``None`` uses numpy's global RandomState (as the reference does), an int seeds a fresh one, a RandomState
        is used (and advanced) as given.
    backend : str, default "auto"
        See :func:`mtopdiv`.
    device : None, str or torch.device, default None
        See :func:`mtopdiv`.

    Returns
    -------
    float
        Mean of the ``n`` subsample scores.
    """
    for arg_name, value in (("batch_size1", batch_size1), ("batch_size2", batch_size2), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{arg_name} must be a positive integer; got {value!r}")
    if random_state is not None and not isinstance(random_state, (int, np.integer, np.random.RandomState)):
        raise ValueError(
            f"random_state must be None, an int or a numpy.random.RandomState; got {type(random_state).__name__}"
        )
    P, Q = check_clouds(P, Q)
    name = resolve_backend(backend, device)
    rs = check_random_state(random_state)
    k_P, k_Q = min(batch_size1, P.shape[0]), min(batch_size2, Q.shape[0])
    scores = []
    for _ in range(n):
        idx_Q = rs.choice(Q.shape[0], k_Q, replace=False)
        idx_P = rs.choice(P.shape[0], k_P, replace=False)
        scores.append(mtopdiv(P[idx_P], Q[idx_Q], backend=name))
    logger.debug("mtopdiv_subsampled: %d x (%d + %d points) -> scores %s", n, k_P, k_Q, scores)
    return float(np.mean(scores))
