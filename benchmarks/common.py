"""What every benchmark shares: the machine line, package versions, appending a section to BENCHMARKS.md."""

from __future__ import annotations

import importlib.metadata
import os
import platform
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
