"""Numerical precision and determinism of training and embedding.

* :func:`resolve_amp` / :func:`precision_name`: ``amp=None`` means bf16 autocast on a CUDA device and fp32
  elsewhere; the *resolved* value is what determines the weights (the training cache keys on it).
* :func:`deterministic_mode`: the switches that make CUDA training and embedding repeatable on the same machine and
  software: ``torch.use_deterministic_algorithms`` (``warn_only``: an op without a deterministic CUDA kernel warns
  instead of failing), ``cudnn.deterministic`` with ``cudnn.benchmark`` off, cuBLAS's fixed workspace
  (``CUBLAS_WORKSPACE_CONFIG=:4096:8``) and TF32 off for matrix products and convolutions (cuDNN convolutions
  default to TF32 on Ampere and newer). On a CPU training is deterministic in its seed with or without it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

#: cuBLAS needs a fixed workspace for deterministic matrix products (CUDA >= 10.2); set before the first CUDA call.
CUBLAS_WORKSPACE = ":4096:8"


def resolve_amp(amp: bool | None, device: str | torch.device) -> bool:
    """Whether bf16 autocast is on: ``amp`` when given, else ``True`` exactly when ``device`` is CUDA."""
    return torch.device(device).type == "cuda" if amp is None else bool(amp)


def precision_name(amp: bool | None, device: str | torch.device) -> str:
    """``"bf16"`` (bf16 autocast) or ``"fp32"``: the resolved precision of a run with ``amp`` on ``device``."""
    return "bf16" if resolve_amp(amp, device) else "fp32"


def _fp32_precision_backends() -> list[object]:
    """The torch backends with an ``fp32_precision`` switch (matmul, cuDNN convolutions and RNNs)."""
    found = []
    for backend in (torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)):
        if backend is not None and hasattr(backend, "fp32_precision"):
            found.append(backend)
    rnn = getattr(torch.backends.cudnn, "rnn", None)
    if rnn is not None and hasattr(rnn, "fp32_precision"):
        found.append(rnn)
    return found


@contextlib.contextmanager
def deterministic_mode(enabled: bool = True) -> Iterator[None]:
    """Within the block: deterministic algorithms, deterministic cuDNN without autotuning, TF32 off (see the module
    docstring); the previous settings come back on exit. ``enabled=False`` changes nothing."""
    if not enabled:
        yield
        return
    saved_env = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    backends = _fp32_precision_backends()
    saved_precision = [b.fp32_precision for b in backends]
    saved_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) if not backends else None
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    for b in backends:
        b.fp32_precision = "ieee"
    if saved_tf32 is not None:  # torch before the fp32_precision switches
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
        for b, value in zip(backends, saved_precision, strict=True):
            b.fp32_precision = value
        if saved_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved_tf32
        if saved_env is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved_env


__all__ = ["CUBLAS_WORKSPACE", "deterministic_mode", "precision_name", "resolve_amp"]
