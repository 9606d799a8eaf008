"""Block sizes, row blocks and the explicit device argument of the metric kernels."""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DeviceLike",
    "check_block_size",
    "resolve_device",
    "row_blocks",
    "steps",
    "to_tensor",
]

#: Default number of pairwise distances per block (2**22 float64 entries = 32 MiB).
DEFAULT_BLOCK_SIZE: int = 2**22

DeviceLike = str | torch.device | None


def check_block_size(block_size: int) -> int:
    """``block_size`` as an ``int``, or ``ValueError`` unless it is a positive integer."""
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer; got {block_size!r}")
    return int(block_size)


def row_blocks(n_rows: int, n_cols: int, block_size: int) -> range:
    """Start indices of row blocks of ``P`` holding at most ``block_size`` distances (at least one row each)."""
    check_block_size(block_size)
    rows_per_block = max(1, int(block_size) // n_cols)
    return range(0, n_rows, rows_per_block)


def steps(n: int, m: int, block_size: int) -> list[tuple[int, int]]:
    """``(start, rows)`` of every row block of :func:`row_blocks`."""
    starts = row_blocks(n, m, block_size)
    return [(start, starts.step) for start in starts]


def resolve_device(device: DeviceLike = None) -> torch.device:
    """The torch device the metrics run on: ``None`` means the CPU; a string or ``torch.device`` is used as given.

    Nothing chooses CUDA because CUDA is visible: a CUDA path is taken only when the caller passes a CUDA device
    (e.g. the trial's device, handed down to the bootstrap tasks).
    """
    if device is None:
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"device must be None, a device string or a torch.device; got {device!r}") from exc


def to_tensor(X: np.ndarray, device: torch.device) -> torch.Tensor:
    """``X`` as a torch tensor on ``device`` (no copy on the CPU unless ``X`` is read-only)."""
    if not X.flags.writeable:  # e.g. an array from Ray's object store; torch.from_numpy wants writable memory
        X = X.copy()
    return torch.from_numpy(X).to(device)
