"""``image_folder`` on the real CIFAR-10 JPEG archive: decoding all 60 000 images (one process, two threads, two
processes) against loading them from the decoded-image cache, the archive against the same files unpacked into a
folder; appends a section to BENCHMARKS.md.

Usage (from the repository root)::

    python benchmarks/image_folder_cache.py [--archive ../shared/data/cifar10-jpeg.tar.gz] [--repeats 1]

Each timing is wall time (``time.perf_counter``) of one call, the median of ``--repeats``: the listing
(:func:`experiments.data.image_folder_source.scan`), the decode of every image
(:func:`experiments.data.image_folder.decode_layout`, reading the files included) with each pool, and
:func:`experiments.data.image_folder.load_image_folder` with a cold cache (list, decode with the default pool, write
the cache) and a warm one (list, read the cache), and reading the cache file alone. An archive is listed afresh in
every timed call, as in a new process (a process keeps its archive listings). The unpacked copy goes to a temporary folder under ``/tmp``
(``tarfile``; removed at the end); caches go to a temporary folder too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np
import torch
from common import append_section, machine

from experiments.data.image_folder import decode_layout, load_image_folder, read_cache, usable_cores
from experiments.data.image_folder_source import forget_listings, scan

DEFAULT_ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall seconds of ``repeats`` calls of ``fn`` and the last call's result; each call lists an archive
    afresh (the per-process listing cache is emptied first), as a new process would."""
    times, out = [], None
    for _ in range(repeats):
        forget_listings()
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def read_cache_key(path: Path) -> str:
    """The key stored in cache file ``path``."""
    with np.load(path, allow_pickle=False) as npz:
        return str(npz["key"])


def measure(source: str, repeats: int, cache_root: Path, pools: bool) -> dict[str, float]:
    """The timings of one source (archive or folder); ``pools``: also decode with every pool."""
    t: dict[str, float] = {}
    t["list"], layout = timed(lambda: scan(source), repeats)
    if pools:
        for name, workers, pool in (("serial", 1, "thread"), ("threads", 2, "thread"), ("processes", 2, "process")):
            t[f"decode {name}"], _ = timed(lambda w=workers, p=pool: decode_layout(layout, 32, w, p), repeats)
    cold = []
    for k in range(repeats):
        cache = cache_root / f"{Path(source).name}-{k}"
        forget_listings()
        start = time.perf_counter()
        data = load_image_folder(source, 32, cache_dir=cache)
        cold.append(time.perf_counter() - start)
    t["load, cold cache"] = statistics.median(cold)
    t["load, warm cache"], warm = timed(lambda: load_image_folder(source, 32, cache_dir=cache), repeats)
    assert torch.equal(warm.train_images, data.train_images) and len(warm.test_images) + len(warm.train_images) == len(
        layout.images
    )
    (npz,) = Path(cache).glob("*.npz")
    t["read the cache file alone"], _ = timed(lambda: read_cache(npz, read_cache_key(npz)), repeats)
    t["cache MB"] = sum(f.stat().st_size for f in Path(cache).glob("*.npz")) / 1e6
    t["images"] = len(layout.images)
    return t


def section(
    archive: Path, results: dict[str, dict[str, float]], load: tuple[float, float], when: str, repeats: int
) -> str:
    """The Markdown section: one row per step, one column per source."""
    names = list(results)
    steps = [s for s in results[names[0]] if s not in ("cache MB", "images")]
    rows = [
        f"| {s} | " + " | ".join(f"{results[n][s]:.2f} s" if s in results[n] else "–" for n in names) + " |"
        for s in steps
    ]
    a = results["archive"]
    return "\n".join(
        [
            f"## `image_folder`: CIFAR-10 JPEG, decode vs cache (benchmarks/image_folder_cache.py) — {when}",
            "",
            f"{int(a['images'])} images (32 × 32 JPEG) of `{archive.name}`; {machine()}; {usable_cores()} usable cores, "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; load average "
            f"{load[0]:.2f} before (the machine is shared with two other engineers). Cache file {a['cache MB']:.0f} MB (uncompressed `.npz`).",
            "",
            f"| step (wall s, median of {repeats}) | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
            *rows,
            "",
            f"Decoding the archive: {a['decode processes']:.1f} s with two processes (the default pool), "
            f"{a['decode threads']:.1f} s with two threads (they contend for the GIL), {a['decode serial']:.1f} s in "
            f"one; a warm cache loads {a['load, cold cache'] / a['load, warm cache']:.0f}× faster than a cold one "
            f"(both include listing the source, as in a new process). Load average {load[1]:.2f} after.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    load = os.getloadavg()
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="image_folder_bench_") as tmp:
        folder = Path(tmp) / "unpacked"
        start = time.perf_counter()
        with tarfile.open(args.archive) as tf:
            tf.extractall(folder, filter="data")
        unpack = time.perf_counter() - start
        results = {
            "archive": measure(str(args.archive), args.repeats, Path(tmp) / "cache", pools=True),
            "unpacked folder": measure(str(folder), args.repeats, Path(tmp) / "cache", pools=True),
        }
        shutil.rmtree(folder)
    text = (
        section(args.archive, results, (load[0], os.getloadavg()[0]), when, args.repeats)
        + f" Unpacking the archive with `tarfile` took {unpack:.1f} s."
    )
    print(text)
    append_section(text, args.output)


if __name__ == "__main__":
    main()
