"""What every benchmark shares: the machine line, package versions, appending a section to BENCHMARKS.md."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> str:
    """Processor, cores, platform, Python and the GPU (or "no GPU"), for the benchmark's record."""
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except ImportError:
        gpu = "no GPU (torch not installed)"
    processor = platform.processor() or platform.machine()
    return f"{processor}, {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}, {gpu}"


def append_section(section: str, path: Path = BENCHMARKS) -> None:
    """Append a Markdown section (never overwrite: every benchmark adds its own)."""
    if not path.exists():
        path.write_text("# Benchmarks\n", encoding="utf-8")
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n" + section.rstrip("\n") + "\n")


def median_seconds(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` (``time.perf_counter``), after one untimed warm-up call."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
