"""The ripser++ (GPU) persistence backend of MTopDiv: can it run here, and one guarded call.

ripser++ (Zhang, Xiao, Wang, "GPU-Accelerated Computation of Vietoris-Rips Persistence Barcodes", SoCG 2020,
https://github.com/simonzhang00/ripser-plusplus). Its Python package imports without its compiled libraries: they
are loaded with ``ctypes`` on every ``run`` call. So "usable" here means the package imports *and* both libraries
(``libpyripser++.so``, ``libphmap.so``) load; :func:`unavailable_reason` says why not, and MTopDiv's ``auto`` backend
then falls back to giotto-ph and logs that reason.

What the binding allows, and what it does not:

* one distance matrix per call -- there is no batched entry point, so each bootstrap resample is one call, and each
  call allocates its GPU buffers afresh and converts the matrix's ``n (n - 1) / 2`` entries to C floats in Python
  (about 20 k entries for 100 + 100 points);
* Python-side errors (bad arguments, a library that fails to load) are exceptions, re-raised here as one
  ``RuntimeError`` naming the matrix size;
* a CUDA error inside the library calls ``exit()``: it cannot be caught and ends the process. The sweeper therefore
  runs ripser++ in the trial's own process (the one that holds the GPU), where such an exit fails the trial -- which
  Tune retries from its last checkpoint -- instead of silently killing a pool worker.
"""

from __future__ import annotations

import ctypes
import importlib
from pathlib import Path

import numpy as np

#: The compiled libraries the binding loads on each call.
LIBRARIES: tuple[str, ...] = ("libphmap.so", "libpyripser++.so")


def unavailable_reason() -> str | None:
    """``None`` when ripser++ can be called here, else why not (not installed, import error, a library missing or
    failing to load). Does not touch CUDA."""
    try:
        module = importlib.import_module("ripserplusplus")
    except Exception as exc:  # an ImportError, or whatever a broken build raises on import
        return f"ripserplusplus does not import ({type(exc).__name__}: {exc})"
    folder = Path(getattr(module, "__file__", "") or ".").parent
    for name in LIBRARIES:
        path = folder / name
        if not path.is_file():
            return f"ripserplusplus is installed without its compiled library {name} (looked in {folder})"
        try:
            ctypes.CDLL(str(path))
        except OSError as exc:
            return f"ripserplusplus's library {name} does not load ({exc})"
    return None


def h1_bars(D: np.ndarray) -> np.ndarray:
    """The H1 bars ``(k, 2)`` (birth, death; float64) of the Vietoris-Rips filtration of the symmetric, zero-diagonal
    distance matrix ``D``, computed by ripser++ on the GPU (float32 inside, as every backend).

    Raises:
        RuntimeError: ripser++ is unusable here (:func:`unavailable_reason`) or raised an error on this matrix.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"MTopDiv backend 'ripserplusplus' cannot run: {reason}")
    rpp = importlib.import_module("ripserplusplus")
    try:
        result = rpp.run("--format distance --dim 1", np.ascontiguousarray(D, dtype=np.float32))
    except Exception as exc:
        raise RuntimeError(f"ripser++ failed on a {D.shape[0]}-vertex distance matrix: {exc}") from exc
    h1 = np.asarray(result.get(1, np.empty(0)))
    if h1.size == 0:
        return np.empty((0, 2))
    if h1.dtype.names is not None:  # structured array with fields birth, death
        return np.column_stack([h1["birth"], h1["death"]]).astype(np.float64)
    return np.asarray(h1, dtype=np.float64).reshape(-1, 2)


__all__ = ["LIBRARIES", "h1_bars", "unavailable_reason"]
