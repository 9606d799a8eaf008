"""Per-resample cost of every cloud metric in ``experiments.metrics.METRICS``; appends a section to BENCHMARKS.md.

Usage (from the repository root)::

    python benchmarks/metric_cost.py [--output BENCHMARKS.md] [--repeats 7]

Each metric is timed on one pair of clouds -- the cost of one bootstrap resample -- at proj18's sample size
(100 + 100 points) and at 1 000 + 1 000 points, in 64 dimensions: L2-normalised standard Gaussian clouds (the
embeddings are L2-normalised), fixed seed. The reported time is the median wall time (``time.perf_counter``) of
``--repeats`` calls after one untimed warm-up call; MTopDiv at 1 000 + 1 000 points is timed once (it takes seconds),
without warm-up. ``wasserstein`` on equal sizes is the exact W1 (assignment problem); its sliced branch, used when
the sizes differ, is timed as an extra row on 100 + 99 and 1 000 + 999 points.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
from common import append_section, machine, median_seconds, version

from experiments.metrics import METRICS

DIM = 64
SEED = 0
SIZES = (100, 1000)
SINGLE_SHOT = {("mtopdiv", 1000)}  # (metric, size) timed once, without warm-up
ROOT = Path(__file__).resolve().parents[1]


def unit_gaussian_cloud(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    """``n`` standard Gaussian points in ``dim`` dimensions, each scaled to unit Euclidean norm."""
    X = rng.standard_normal((n, dim))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def run(repeats: int) -> list[tuple[str, list[float]]]:
    """Rows ``(label, [ms at each size])``."""
    rng = np.random.default_rng(SEED)
    clouds = {n: (unit_gaussian_cloud(rng, n), unit_gaussian_cloud(rng, n)) for n in SIZES}
    rows = []
    for name, metric in METRICS.items():
        cells = []
        for n in SIZES:
            P, Q = clouds[n]
            single = (name, n) in SINGLE_SHOT
            seconds = median_seconds(
                lambda metric=metric, P=P, Q=Q: metric(P, Q), 1 if single else repeats, warmup=not single
            )
            cells.append(1e3 * seconds)
            print(f"{name:12s} {n:5d}+{n:<5d} {1e3 * seconds:10.3f} ms", file=sys.stderr)
        rows.append((name + (" (1 run at 1000)" if (name, 1000) in SINGLE_SHOT else ""), cells))
    if "wasserstein" in METRICS:
        cells = []
        for n in SIZES:
            P, Q = clouds[n]
            seconds = median_seconds(lambda P=P, Q=Q: METRICS["wasserstein"](P, Q[:-1]), repeats)
            cells.append(1e3 * seconds)
            print(f"{'sliced W1':12s} {n:5d}+{n - 1:<5d} {1e3 * seconds:10.3f} ms", file=sys.stderr)
        rows.append(("wasserstein, sliced branch (n + n−1 points, 200 directions)", cells))
    return rows


def markdown(rows: list[tuple[str, list[float]]], repeats: int) -> str:
    versions = ", ".join(f"{pkg} {version(pkg)}" for pkg in ("numpy", "scipy", "giotto-ph", "torch"))
    lines = [
        f"## Metric cost per resample — {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        "`python benchmarks/metric_cost.py`: one call of each metric on one pair of L2-normalised Gaussian clouds "
        f"in {DIM} dimensions (seed {SEED}) = the cost of one bootstrap resample. Median wall time of {repeats} calls "
        "after a warm-up call; MTopDiv at 1000 + 1000 points: a single call.",
        "",
        f"- Machine: {machine()}",
        f"- Versions: {versions}",
        "",
        "| metric | 100+100 (ms) | 1000+1000 (ms) |",
        "|---|---:|---:|",
    ]
    for label, cells in rows:
        lines.append(f"| {label} | " + " | ".join(f"{ms:.3g}" if ms < 100 else f"{ms:.0f}" for ms in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="Markdown file to append to")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per metric and size (median reported)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    section = markdown(run(args.repeats), args.repeats)
    append_section(section, args.output)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
