"""Drawing a report's figures in parallel processes, with a cache keyed by run id and content.

A :class:`FigureJob` names a figure function of :mod:`analysis.plots` / :mod:`analysis.summary_plots` (by name, so
a job pickles to a worker process), its DataFrame arguments and its output file. :func:`draw_all` computes each
job's key -- SHA-256 of the function name, the sorted ``run_id`` values of its frames, the frames' content
(``pandas.util.hash_pandas_object``, column names and ``attrs``), the keyword arguments, the dpi and
``CACHE_VERSION`` -- and skips every job whose PNG exists with the same key in the folder's manifest
(``figures/.cache.json``). The rest are drawn by a process pool (one process per CPU core by default). So a second
``sweeper report`` of an unchanged experiment draws nothing, and one rescored trial redraws only its own figures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

#: Bump when a figure function changes its drawing, so that cached PNGs are redrawn.
CACHE_VERSION = "1"
MANIFEST = ".cache.json"


def _functions() -> dict[str, Any]:
    from analysis import plots, summary_plots

    return {
        "bootstrap_distributions": plots.bootstrap_distributions,
        "score_heatmap": plots.score_heatmap,
        "training_curves": plots.training_curves,
        "embedding_pca": plots.embedding_pca,
        "critical_difference": summary_plots.critical_difference,
        "robustness_plot": summary_plots.robustness_plot,
        "sample_size_curve": summary_plots.sample_size_curve,
    }


@dataclass
class FigureJob:
    """One PNG to draw: ``function(*args, **kwargs).savefig(path, dpi=dpi)``."""

    function: str
    args: tuple
    path: Path
    kwargs: dict[str, Any] = field(default_factory=dict)
    dpi: int = 110

    def key(self) -> str:
        """SHA-256 over the function, the run ids and content of the frames, the kwargs, dpi and version."""
        h = hashlib.sha256(f"{CACHE_VERSION}|{self.function}|{self.dpi}|{sorted(self.kwargs.items())!r}".encode())
        for a in self.args:
            if isinstance(a, pd.DataFrame):
                if "run_id" in a.columns:
                    h.update(",".join(sorted(set(a["run_id"].astype(str)))).encode())
                h.update(repr(list(a.columns)).encode())
                h.update(repr(sorted(a.attrs.items(), key=lambda kv: kv[0])).encode())
                h.update(pd.util.hash_pandas_object(a, index=False).to_numpy().tobytes())
            else:
                h.update(repr(a).encode())
        return h.hexdigest()


def _draw(job: FigureJob) -> tuple[Path, str | None]:
    """Draw one job; returns its path and an error message (None when it worked)."""
    try:
        fig = _functions()[job.function](*job.args, **job.kwargs)
        fig.savefig(job.path, dpi=job.dpi)
        return job.path, None
    except ValueError as exc:  # e.g. a trial without its baseline class: the page says so instead of a figure
        return job.path, str(exc)


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def draw_all(jobs: Sequence[FigureJob], fig_dir: Path, processes: int | None = None) -> dict[str, Any]:
    """Draw the jobs not in the cache of ``fig_dir``; returns ``{"drawn": n, "cached": n, "errors": {path: msg}}``.

    ``processes``: worker processes (default: the CPU count, at most the number of jobs; 1 draws in this
    process)."""
    manifest_path = fig_dir / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    keys = {job.path.name: job.key() for job in jobs}
    todo = [j for j in jobs if not (j.path.is_file() and manifest.get(j.path.name) == keys[j.path.name])]
    n = max(1, min(processes or os.cpu_count() or 1, len(todo)))
    if n == 1 or len(todo) < 4:
        results = [_draw(j) for j in todo]
    else:
        chunk = max(1, len(todo) // (4 * n))
        with ProcessPoolExecutor(max_workers=n, mp_context=_context()) as pool:
            results = list(pool.map(_draw, todo, chunksize=chunk))
    errors = {str(p): e for p, e in results if e is not None}
    fresh = {j.path.name: keys[j.path.name] for j in jobs if str(j.path) not in errors}
    manifest_path.write_text(json.dumps(fresh, indent=0, sort_keys=True))
    log.info(
        "figures: %d drawn, %d from the cache, %d failed", len(todo) - len(errors), len(jobs) - len(todo), len(errors)
    )
    return {"drawn": len(todo) - len(errors), "cached": len(jobs) - len(todo), "errors": errors}
