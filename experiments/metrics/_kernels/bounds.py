r"""The rigorous forward error bound of the Gram expansion of squared distances.

For points ``a``, ``b`` (centred and scaled, see :mod:`.expansion`) the estimate
``S~ = |a|^2 + |b|^2 - 2 a.b`` of ``S = |a - b|^2`` satisfies

.. math::  |\tilde S - S| \le K\,(\lVert a \rVert + \lVert b \rVert)^2 + \epsilon_\text{abs}

(Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., sec. 3.1: a length-``d`` dot product computed
in any order with unit round-off ``u`` is off by at most ``gamma_d sum_k |a_k b_k|``, ``gamma_d = d u / (1 - d u)``).
The coefficients are derived in the docstring of :mod:`experiments.metrics.distances`.
"""

from __future__ import annotations

import torch

__all__ = ["U32", "U64", "error_coefficient", "float32_matmul_is_ieee", "gamma"]

U64 = 2.0**-53
U32 = 2.0**-24


def gamma(k: int, u: float) -> float:
    """Higham's ``gamma_k = k u / (1 - k u)``."""
    return k * u / (1.0 - k * u)


def float32_matmul_is_ieee(device: torch.device) -> bool:
    """Whether float32 matrix products on ``device`` run in IEEE float32 (no TF32/BF16 shortcuts)."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    paths = [("backends", "mkldnn", "matmul"), ("backends", "mkldnn")]
    if device.type == "cuda":
        paths.insert(0, ("backends", "cuda", "matmul"))
        if getattr(torch.backends.cuda.matmul, "allow_tf32", False):
            return False
    for path in paths:
        obj = torch
        for name in path:
            obj = getattr(obj, name, None)
        setting = getattr(obj, "fp32_precision", None)
        if setting not in (None, "none", "ieee"):
            return False
    return True


def error_coefficient(dim: int, low_precision: bool, vs_direct: bool) -> tuple[float, float]:
    """``(K, epsilon_abs)`` of the bound ``|S~ - S| <= K (|a| + |b|)**2 + epsilon_abs``.

    ``S`` is the exact squared distance, or with ``vs_direct`` the one the direct float64 formula computes.
    """
    if low_precision:  # float32 product of the rounded coordinates (x2 for the -2 a.b term), float64 norms
        k = 2.0 * U32 + U32**2 + gamma(dim, U32) * (1.0 + U32) ** 2 + gamma(dim, U64)
        tiny = 2.0**-126
    else:  # float64 norms and product: gamma_d (|a|^2 + |b|^2 + 2 sum_k |a_k b_k|) <= gamma_d (|a| + |b|)^2
        k = gamma(dim, U64)
        tiny = 2.0**-1022
    k += 6.0 * U64  # the two additions forming S~ (2 u) and the centring (<= 2.1 u)
    if vs_direct:
        k += gamma(dim + 2, U64) + 4.0 * U64  # the direct formula's own error; roundings of the comparisons
    return 1.1 * k, 4.0 * (dim + 2) * tiny
