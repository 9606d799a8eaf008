"""A restricted unpickler for data files in pickle formats (CIFAR-10's batches), which cannot run code.

``pickle.load`` calls whatever callable a file names (``os.system``, ``builtins.eval``…), so a crafted
``data_batch_1`` from a mirror or a shared cluster folder runs code as soon as it is read. :class:`DataUnpickler`
resolves only the globals a CIFAR batch needs — numpy's own array reconstruction functions and the ``ndarray`` and
``dtype`` types — and refuses every other global; dicts, lists, tuples, bytes, str and numbers need no global at all.
The approach is the one the Python documentation recommends ("Restricting Globals", ``pickle`` module docs).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from experiments.data.base import DatasetCorruptError

#: ``(module, name)`` pairs a data pickle may reference: numpy's array reconstruction (protocol <= 4 and 5, numpy 1
#: and 2 module paths), the array and dtype types, numpy scalars (``scalar``, used for 0-d values), and
#: ``_codecs.encode``, which protocol 2 uses to rebuild ``bytes`` from text (the set torch's ``weights_only`` allows).
ALLOWED_GLOBALS = frozenset(
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
) | frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside :data:`ALLOWED_GLOBALS` (it would call or build arbitrary objects)."""


class DataUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose :meth:`find_class` resolves only :data:`ALLOWED_GLOBALS`.

    Example:
        >>> import io, pickle
        >>> DataUnpickler(io.BytesIO(pickle.dumps({"labels": [1, 2]}))).load()
        {'labels': [1, 2]}
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(f"refused global {module}.{name} (a data file may only hold arrays, lists and dicts)")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused a persistent id (a data file may only hold arrays, lists and dicts)")


def restricted_loads(data: bytes, encoding: str = "ASCII") -> Any:
    """Unpickle ``data`` with :class:`DataUnpickler` (``encoding`` as in ``pickle.loads``; ``"latin1"`` for the
    Python-2 pickles CIFAR-10 ships)."""
    return DataUnpickler(io.BytesIO(data), encoding=encoding).load()


def _not_a_batch(path: Path, why: str) -> DatasetCorruptError:
    return DatasetCorruptError(f"{path} is not a CIFAR-10 batch ({why}); replace it with a fresh copy of the dataset")


def load_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file, read without running code: ``(images, labels)`` with images ``(N, 32, 32, 3)`` uint8
    (the file's rows are the R, G and B planes of 32 x 32 images) and labels ``(N,)`` int64 in 0..9.

    Raises:
        DatasetCorruptError: the file is not a pickle, names a global outside :data:`ALLOWED_GLOBALS`, or does not
            hold a ``data`` uint8 array of N x 3072 and N ``labels`` in 0..9.
    """
    path = Path(path)
    try:
        batch = restricted_loads(path.read_bytes(), encoding="latin1")
    except UnsafePickleError as exc:
        raise _not_a_batch(path, f"unsafe pickle: {exc}") from None
    except Exception as exc:  # a truncated or random file raises any of several types from deep inside pickle
        raise _not_a_batch(path, f"unreadable pickle: {type(exc).__name__}") from None
    if not isinstance(batch, dict):
        raise _not_a_batch(path, f"holds a {type(batch).__name__}, not a dict")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise _not_a_batch(path, "no 'data' array of uint8 N x 3072")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise _not_a_batch(path, "'labels' is not a list of integers") from None
    if labels.shape != (len(data),) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise _not_a_batch(path, f"'labels' is not {len(data)} integers in 0..9")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar_meta(path: str | Path) -> list[str]:
    """The class names of CIFAR-10's ``batches.meta`` (``label_names``), read without running code.

    Raises:
        DatasetCorruptError: the file is not a safe pickle of a dict with a list of str ``label_names``.
    """
    path = Path(path)
    try:
        meta = restricted_loads(path.read_bytes(), encoding="latin1")
    except Exception as exc:
        raise DatasetCorruptError(f"{path} is not CIFAR-10's batches.meta ({type(exc).__name__}: {exc})") from None
    names = meta.get("label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DatasetCorruptError(f"{path} is not CIFAR-10's batches.meta (no list of 'label_names')")
    return names
