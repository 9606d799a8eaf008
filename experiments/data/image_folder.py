"""``image_folder``: a dataset of ``root/train/<class>/*`` and ``root/test/<class>/*`` JPEG and PNG images, or a
``.tar``, ``.tar.gz`` or ``.zip`` of that layout (read in place), decoded once into a cache of uint8 tensors.

Classes are the class folder names, sorted (:func:`list_image_folder_classes` lists them without decoding anything;
the layout rules are :mod:`experiments.data.image_folder_source`'s). Every image is decoded by PIL (JPEG and PNG
only: ``Image.open(..., formats=["JPEG", "PNG"])``, so no other PIL plugin, e.g. Ghostscript's EPS, can run),
converted to RGB (``Image.convert("RGB")``: grey is repeated, alpha dropped, palettes expanded) and, when it is not
``image_size`` × ``image_size``, resized to it with PIL's bilinear filter (``Image.resize``, antialiased when
shrinking; the aspect ratio is not kept). The count of resized images is :attr:`ImageDataset.n_resized`.

The decoded arrays are cached in ``cache_dir`` (default :func:`default_cache_dir`) as one uncompressed ``.npz``,
named by :meth:`~experiments.data.image_folder_source.Layout.key`: a hash of ``image_size`` and the listing (every
image's path, size and modification time; for an archive its member listing), so a changed, added or removed image
makes a new cache. It is written to a temporary file and renamed into place (readers never see half a file) and read
with ``numpy.load(allow_pickle=False)``: no data file, image or cache, can run code.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
import PIL
import torch

from experiments.data.base import DatasetCorruptError, ImageDataset
from experiments.data.image_folder_source import Layout, read_payloads, scan

log = logging.getLogger(__name__)

#: Bumped when the cache's content or decoding changes; it is part of the cache key (with Pillow's version, whose
#: JPEG decoder may round differently from one release to the next).
CACHE_VERSION = 1
#: Images per decoding task.
CHUNK_SIZE = 500
#: The arrays of a cache file.
CACHE_ARRAYS = ("key", "class_names", "train_images", "train_labels", "test_images", "test_labels", "n_resized")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/embedding-sweeper/image_folder`` (``~/.cache/...`` when ``XDG_CACHE_HOME`` is unset or not
    an absolute path, as the XDG base-directory specification says)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "embedding-sweeper" / "image_folder"


def list_image_folder_classes(root: str | None) -> tuple[str, ...]:
    """The class names of the ``image_folder`` at ``root``, sorted: a listing only, nothing is decoded.

    Raises:
        DatasetNotFoundError: ``root`` is unset or absent, or a split folder is missing.
        DatasetCorruptError: the splits hold different classes, a class holds no image, the archive is unreadable.
    """
    return scan(root, full=False).classes


def require_image_folder(root: str | None) -> None:
    """The presence check of the registry: raises as :func:`list_image_folder_classes` does, reads no image."""
    list_image_folder_classes(root)


def decode_images(
    payloads: list[tuple[int, bytes | str]], image_size: int
) -> tuple[list[int], np.ndarray, int, int, str]:
    """Decode one chunk of ``(index, bytes or a file path)``: ``(indices, (n, 3, S, S) uint8 images, number
    resized, position of the first payload that could not be read or decoded (-1: none), why)``; stops there. A
    module-level function, so a process pool can run it."""
    from PIL import Image

    out = np.empty((len(payloads), 3, image_size, image_size), np.uint8)
    resized = 0
    for pos, (_, payload) in enumerate(payloads):
        try:
            data = payload if isinstance(payload, bytes) else Path(payload).read_bytes()
        except OSError as exc:
            return [k for k, _ in payloads], out, resized, pos, f"cannot be read ({exc.strerror or exc})"
        try:
            with Image.open(io.BytesIO(data), formats=["JPEG", "PNG"]) as img:
                rgb = img.convert("RGB") if img.mode != "RGB" else img
                if rgb.size != (image_size, image_size):
                    rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
                    resized += 1
                out[pos] = np.asarray(rgb).transpose(2, 0, 1)
        except Exception:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError... for a bad file
            return [k for k, _ in payloads], out, resized, pos, "cannot be decoded as a JPEG or PNG image"
    return [k for k, _ in payloads], out, resized, -1, ""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS says, else ``os.cpu_count()``)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _executor(workers: int, pool: Literal["process", "thread"]) -> Executor:
    """A pool of ``workers``: processes started by ``fork`` where there is one (a spawned process would import
    torch, seconds per worker; the children run only PIL and numpy), else threads."""
    if pool == "process" and "fork" in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(workers)


def decode_layout(
    layout: Layout,
    image_size: int,
    workers: int | None = None,
    pool: Literal["process", "thread"] = "process",
    chunk_size: int = CHUNK_SIZE,
) -> tuple[np.ndarray, int]:
    """Every image of ``layout`` decoded into one ``(N, 3, S, S)`` uint8 array (layout order), and the number
    resized. ``workers`` (default: the usable cores; never more than there are chunks of ``chunk_size``) decode
    chunks side by side, each reading its folder's files itself; an archive is read in the calling thread meanwhile.
    One worker decodes in the calling thread. ``pool``: processes (the default: 4–5.5 s for the 60 000 CIFAR-10
    JPEGs on 2 cores against 8–11 s with two threads, which contend for the GIL; BENCHMARKS.md) or threads.

    Raises:
        DatasetCorruptError: an image cannot be read or decoded (the first in listing order is named), or the
            archive cannot be read.
    """
    n_chunks = -(-len(layout.images) // chunk_size)
    workers = min(workers or usable_cores(), n_chunks)
    images = np.empty((len(layout.images), 3, image_size, image_size), np.uint8)
    chunks = read_payloads(layout, chunk_size)
    if workers <= 1:
        return _collect(layout, images, (decode_images(chunk, image_size) for chunk in chunks))
    with _executor(workers, pool) as ex:
        futures = [ex.submit(decode_images, chunk, image_size) for chunk in chunks]
        return _collect(layout, images, (f.result() for f in futures))


def _collect(layout: Layout, images: np.ndarray, results: Iterable) -> tuple[np.ndarray, int]:
    """Place decoded chunks into ``images``; the first undecodable file (in listing order) is refused by name."""
    resized, filled, bad = 0, 0, []
    for indices, out, n, failed, why in results:
        upto = failed if failed >= 0 else len(indices)
        images[indices[:upto]] = out[:upto]
        resized, filled = resized + n, filled + upto
        if failed >= 0:
            bad.append((indices[failed], why))
    if bad:
        k, why = min(bad)
        raise DatasetCorruptError(f"{layout.describe(layout.images[k].entry)} {why}")
    if filled != len(layout.images):
        raise DatasetCorruptError(f"{layout.root}: {len(layout.images) - filled} listed images could not be read")
    return images, resized


def cache_file(cache_dir: str | os.PathLike | None, key: str) -> Path:
    """The cache file of ``key`` in ``cache_dir`` (default :func:`default_cache_dir`)."""
    folder = Path(os.path.expanduser(os.fspath(cache_dir))) if cache_dir else default_cache_dir()
    return folder / f"{key[:40]}.npz"


def read_cache(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays of cache file ``path`` (``numpy.load`` with ``allow_pickle=False``: an object array is refused,
    nothing runs), or ``None`` when it is absent, unreadable or for another key (a warning: it is then rewritten)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in CACHE_ARRAYS}
    except (OSError, ValueError, KeyError, EOFError) as exc:
        log.warning("image_folder cache %s is unreadable (%s); decoding again", path, " ".join(str(exc).split()))
        return None
    if str(arrays["key"]) != key:
        log.warning("image_folder cache %s belongs to another listing; decoding again", path)
        return None
    if not _consistent(arrays):
        log.warning("image_folder cache %s holds arrays of the wrong shape or type; decoding again", path)
        return None
    return arrays


def _consistent(arrays: dict[str, np.ndarray]) -> bool:
    """Whether a cache file's arrays are what :func:`_decode_to_arrays` writes: uint8 ``(N, 3, S, S)`` images, as
    many int64 labels, each a valid class index."""
    n_classes = len(arrays["class_names"])
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3 or labels.dtype != np.int64:
            return False
        if labels.shape != (len(images),) or (len(labels) and not 0 <= labels.min() <= labels.max() < n_classes):
            return False
    return arrays["n_resized"].shape == ()


def write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``. A cache
    that cannot be written is a warning, not an error (the next load decodes again)."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        log.warning("image_folder cache not written to %s: %s", path, exc)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _decode_to_arrays(layout: Layout, image_size: int, key: str, workers: int | None) -> dict[str, np.ndarray]:
    """Decode every image of ``layout`` into the arrays of a cache file."""
    images, resized = decode_layout(layout, image_size, workers)
    labels = np.array([img.label for img in layout.images], np.int64)
    n_train = sum(img.split == "train" for img in layout.images)  # the layout lists train first
    log.info("image_folder %s: decoded %d images (%d resized to %d)", layout.root, len(images), resized, image_size)
    return {
        "key": np.array(key),
        "class_names": np.array(layout.classes),
        "train_images": images[:n_train],
        "train_labels": labels[:n_train],
        "test_images": images[n_train:],
        "test_labels": labels[n_train:],
        "n_resized": np.array(resized, np.int64),
    }


def load_image_folder(
    root: str | None,
    image_size: int = 32,
    download: bool = False,
    *,
    cache_dir: str | os.PathLike | None = None,
    decode_workers: int | None = None,
) -> ImageDataset:
    """The ``image_folder`` at ``root`` (a folder or an archive): its ``train/`` and ``test/`` splits as uint8
    tensors of ``image_size`` × ``image_size`` RGB images, labels indexing the sorted class names.

    Decoded on the first call for a listing (``decode_workers`` processes; default the usable cores) and cached in
    ``cache_dir``; later calls read the cache. ``download`` is accepted for the registry's signature (there is
    nothing to download) and ignored.

    Raises:
        DatasetNotFoundError: ``root`` is unset or absent, or it has no ``train/`` or ``test/`` folder.
        DatasetCorruptError: the splits hold different classes, a class holds no image, an image cannot be decoded
            (the message names the file), or the archive is unreadable.
    """
    layout = scan(root, full=True)
    key = layout.key(image_size, f"{CACHE_VERSION}/Pillow {PIL.__version__}")
    path = cache_file(cache_dir, key)
    arrays = read_cache(path, key)
    if arrays is None:
        arrays = _decode_to_arrays(layout, image_size, key, decode_workers)
        write_cache(path, arrays)
    else:
        log.info("image_folder %s: %d images read from the cache %s", layout.root, len(layout.images), path)
    return ImageDataset(
        "image_folder",
        tuple(str(c) for c in arrays["class_names"]),
        torch.from_numpy(arrays["train_images"]),
        torch.from_numpy(arrays["train_labels"]),
        torch.from_numpy(arrays["test_images"]),
        torch.from_numpy(arrays["test_labels"]),
        n_resized=int(arrays["n_resized"]),
    )


__all__ = [
    "CACHE_VERSION",
    "default_cache_dir",
    "list_image_folder_classes",
    "load_image_folder",
    "require_image_folder",
]
