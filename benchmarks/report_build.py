"""Building the HTML report of a large sweep: 80 logged trials (proj18's grid: 2 models x 10 classes x 4
augmentations) with 8 cloud metrics, at the default ``detail="summary"``; appends a section to BENCHMARKS.md.

Usage (from the repository root)::

    python benchmarks/report_build.py [--trials 80] [--output BENCHMARKS.md]

The trials come from the logged-trials generator of ``benchmarks/load_runs.py`` (a sqlite MLflow store holding one
sweep in the format ``sweeper`` logs; random values, 10 eval classes, ``--resamples`` bootstrap resamples per class
and metric). Timed, each in the same run, by ``time.perf_counter``: ``build_report`` with ``detail="none"`` (the
index only: the baseline), then with the default ``detail="summary"`` from an empty artifact cache and an empty
report folder (cold: every artifact downloaded, every figure drawn), then the same call again (warm: the figure
cache of :mod:`analysis.figure_jobs` redraws nothing). Target: the cold default build within 60 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import append_section, machine, version
from load_runs import build_store

from analysis.report import build_report

METRICS = ("hausdorff", "euclidean", "mtopdiv", "chamfer", "mmd", "energy", "wasserstein", "euclidean_mean")
TARGET_SECONDS = 60.0


def timed_report(experiment: str, out: Path, uri: str, cache: Path, **kw) -> tuple[float, dict]:
    start = time.perf_counter()
    result = build_report(experiment, out, uri, cache_dir=cache, **kw)
    return time.perf_counter() - start, result


def run(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        start = time.perf_counter()
        experiment = build_store(
            uri, root, args.trials, n_resamples=args.resamples, train_rows=200, test_rows=100, dim=16, epochs=5,
            metrics=METRICS,
        )  # fmt: skip
        print(f"store of {args.trials} trials built in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        t_none, r_none = timed_report(experiment, root / "none", uri, root / "cache-none", detail="none")
        t_cold, r_cold = timed_report(experiment, root / "summary", uri, root / "cache-summary")
        t_warm, r_warm = timed_report(experiment, root / "summary", uri, root / "cache-summary")
    ok = "meets" if t_cold <= TARGET_SECONDS else "misses"
    return (
        f"## Report build: {args.trials} trials x {len(METRICS)} cloud metrics (benchmarks/report_build.py)\n\n"
        f"Machine: {machine()} (2 CPU cores, no GPU where the harness runs it). matplotlib "
        f"{version('matplotlib')}, pandas {version('pandas')}, mlflow {version('mlflow')}.\n"
        f"Trials from `benchmarks/load_runs.py`'s logged-trials generator (10 eval classes, {args.resamples} "
        f"resamples per class and metric, + knn_auroc); sqlite store.\n\n"
        "| build | seconds | ratio to detail=none | pages | figures drawn | figures from cache |\n"
        "|---|---:|---:|---:|---:|---:|\n"
        f"| detail=none (index only, baseline) | {t_none:.1f} | 1.00 | {len(r_none['pages'])} | "
        f"{r_none['drawn']} | {r_none['cached']} |\n"
        f"| detail=summary (default), cold | {t_cold:.1f} | {t_cold / t_none:.2f} | {len(r_cold['pages'])} | "
        f"{r_cold['drawn']} | {r_cold['cached']} |\n"
        f"| detail=summary, second build (warm) | {t_warm:.1f} | {t_warm / t_none:.2f} | "
        f"{len(r_warm['pages'])} | {r_warm['drawn']} | {r_warm['cached']} |\n\n"
        f"The cold default build {ok} the target of {TARGET_SECONDS:.0f} s "
        f"({t_cold / TARGET_SECONDS:.2f} of it). The previous report drew every bootstrap histogram on the index "
        f"(the demo: 125 figures, 116 s for 8 trials, about 14.5 s a trial); those now need `--detail all`.\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=80)
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--output", default=None, help="append the section here (default: print only)")
    args = ap.parse_args(argv)
    section = run(args)
    print(section)
    if args.output:
        append_section(section, Path(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
