"""Reading logged sweeps back from MLflow into tidy pandas DataFrames (read-only: nothing is ever logged from here).

A sweep (see ``sweeper.tracking``) is one MLflow experiment holding a parent run per sweep (tag ``sweeper.role`` =
``sweep``) and one child run per trial (``sweeper.role`` = ``trial``, ``sweeper.trial_key`` =
``model=…/train_class=…/augmentation=…/seed=…``). The loaders here return:

- :func:`load_runs` (:mod:`analysis.runs`, re-exported here) — one row per trial: ids, tags, params (typed), summary metrics;
- :func:`load_scores` — every trial's ``scores/scores.parquet`` concatenated (the tidy score table plus ``seed``,
  ``run_id``, ``trial_key``): one row per (trial, eval class, metric);
- :func:`load_bootstrap` — every trial's raw resamples, ``scores/bootstrap.parquet``;
- :func:`load_history` — per-epoch metrics (``loss``, ``images_per_second``, ``lr``…), one row per (trial, metric, epoch);
- :func:`load_embeddings` — one trial's ``embeddings/{train,test}.parquet``.

Only FINISHED trials are read; the others (FAILED, RUNNING, KILLED) are left out with one warning that counts them.
When several finished runs share a trial key (the same sweep run twice into one experiment) the newest is kept, with a
warning; ``all_runs=True`` keeps them all.

Artifacts are cached on disk (``cache_dir=``, else ``$SWEEPER_CACHE_DIR``, else
``~/.cache/embedding-sweeper/artifacts``) as ``<run_id>/<artifact path>`` with a version stamp in the file name made
of the artifact's size (from the artifact store's listing) and the run's ``sweeper.rescored`` tag: ``sweeper rescore``
rewrites ``scores/*.parquet`` in place and sets that tag, so a rewritten artifact gets a new stamp and is downloaded
again, while an unchanged one is read from disk. Listings and downloads run in a thread pool.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Run
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from analysis.roles import role_of
from analysis.runs import (
    PARENT,
    RESCORED,
    ROLE,
    STRING_PARAMS,
    SWEEP_NAME,
    TRIAL_COLUMNS,
    TRIAL_KEY,
    TrialRuns,
    finished_trial_runs,
    load_runs,
    runs_frame,
    tracking_client,
    trial_info,
    trial_runs,
)

__all__ = [
    "BOOTSTRAP_COLUMNS",
    "HISTORY_METRICS",
    "PARENT",
    "RESCORED",
    "ROLE",
    "SCORE_COLUMNS",
    "STRING_PARAMS",
    "SWEEP_NAME",
    "TRIAL_COLUMNS",
    "TRIAL_KEY",
    "ArtifactCache",
    "TrialRuns",
    "bootstrap_of",
    "default_cache_dir",
    "finished_trial_runs",
    "history_of",
    "load_bootstrap",
    "load_embeddings",
    "load_history",
    "load_runs",
    "load_scores",
    "runs_frame",
    "scores_of",
    "tracking_client",
    "trial_info",
    "trial_runs",
]

log = logging.getLogger(__name__)

SCORE_COLUMNS = [
    "model",
    "train_class",
    "augmentation",
    "eval_class",
    "metric",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "n_resamples",
    "sample_size",
    "p_baseline_below",
    "median",
    "role",
    "full",
]
BOOTSTRAP_COLUMNS = ["eval_class", "metric", "sample_size", "resample", "value"]  # sample_size NaN in old runs
HISTORY_METRICS = ("loss", "images_per_second", "lr", "epoch_seconds")

MAX_WORKERS = 16


# -------------------------------------------------------------------------------------------------- artifacts


def default_cache_dir() -> Path:
    """``$SWEEPER_CACHE_DIR``, else ``$XDG_CACHE_HOME/embedding-sweeper/artifacts`` (``~/.cache/…``)."""
    if os.environ.get("SWEEPER_CACHE_DIR"):
        return Path(os.environ["SWEEPER_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "embedding-sweeper" / "artifacts"


class ArtifactCache:
    """Run artifacts on local disk, keyed by run id, artifact path and a version stamp.

    The stamp is ``<size>-<h>``: the artifact's size in bytes as the artifact store lists it, and a short hash of the
    run's ``sweeper.rescored`` tag. ``sweeper rescore`` rewrites ``scores/*.parquet`` (appending rows, so the size
    changes) and extends that tag, so either change gives the artifact a new cache file; an unchanged artifact costs
    one directory listing per run and no download. Files are written atomically (download to a temporary folder,
    then rename), so concurrent readers never see a partial file; older versions of the same artifact are removed.
    """

    def __init__(self, tracking_uri: str, cache_dir: str | os.PathLike | None = None):
        self.tracking_uri = tracking_uri
        self.root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.downloads = 0  # artifacts fetched from the store by this instance (the rest came from disk)
        self._repos: dict[str, Any] = {}

    def _repo(self, run: Run) -> Any:
        uri = run.info.artifact_uri
        if uri not in self._repos:
            self._repos[uri] = get_artifact_repository(uri, tracking_uri=self.tracking_uri)
        return self._repos[uri]

    def sizes(self, run: Run, folder: str) -> dict[str, int | None]:
        """``{path: size}`` of the files in ``folder`` of the run's artifacts."""
        return {f.path: f.file_size for f in self._repo(run).list_artifacts(folder) if not f.is_dir}

    def path(self, run: Run, artifact: str, sizes: dict[str, int | None] | None = None) -> Path:
        """Local path of ``artifact`` (e.g. ``scores/scores.parquet``) of ``run``, downloaded when not cached."""
        if sizes is None:
            sizes = self.sizes(run, os.path.dirname(artifact))
        if artifact not in sizes:
            raise FileNotFoundError(
                f"run {run.info.run_id} ({run.data.tags.get(TRIAL_KEY, '')}) has no artifact "
                f"{artifact!r}; it has {sorted(sizes) or 'none in that folder'}"
            )
        size = sizes[artifact]
        tag = hashlib.sha1(run.data.tags.get(RESCORED, "").encode()).hexdigest()[:8]
        stamp = f"{size if size is not None else 'unknown'}-{tag}"
        if size is None:  # a store that does not list sizes: fall back on the run's end time as well
            stamp += f"-{run.info.end_time}"
        folder = self.root / run.info.run_id / os.path.dirname(artifact)
        stem, ext = os.path.splitext(os.path.basename(artifact))
        target = folder / f"{stem}.{stamp}{ext}"
        if target.is_file():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
            # ``_download_file`` is the one method every artifact repository implements; unlike the public
            # ``download_artifacts`` it neither lists the path again nor draws a progress bar per file.
            got = os.path.join(tmp, os.path.basename(artifact))
            self._repo(run)._download_file(remote_file_path=artifact, local_path=got)
            os.replace(got, target)
        self.downloads += 1
        for old in folder.glob(f"{stem}.*{ext}"):
            if old != target:
                old.unlink(missing_ok=True)
        return target

    def clear(self) -> None:
        """Remove every cached artifact."""
        shutil.rmtree(self.root, ignore_errors=True)


def _parallel(fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    items = list(items)
    if len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(items))) as pool:
        return list(pool.map(fn, items))


def _load_artifact_tables(runs: Sequence[Run], artifact: str, columns: list[str], cache: ArtifactCache) -> pd.DataFrame:
    def one(run: Run) -> pd.DataFrame:
        df = pd.read_parquet(cache.path(run, artifact))
        info = trial_info(run)
        for c in TRIAL_COLUMNS:
            if c not in df.columns:
                df[c] = info[c]
        df = df.reindex(columns=columns)
        if "role" in columns:  # runs logged before the role column: the same rule (analysis.roles)
            df["role"] = df["role"].where(
                df["role"].notna(), [role_of(*ct) for ct in zip(df.eval_class, df.train_class, strict=True)]
            )
        return df.assign(seed=info["seed"], run_id=info["run_id"], trial_key=info["trial_key"])

    frames = _parallel(one, runs)
    out_columns = [*columns, "seed", "run_id", "trial_key"]
    if not frames:
        return pd.DataFrame(columns=out_columns)
    out = pd.concat(frames, ignore_index=True)[out_columns]
    out["seed"] = out["seed"].astype("Int64")
    return out


def load_scores(
    experiment: str,
    tracking_uri: str | None = None,
    *,
    sweep: str | None = None,
    all_runs: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """All finished trials' score tables (``scores/scores.parquet``) concatenated: one row per (trial, eval class,
    metric).

    Columns: ``model, train_class, augmentation, eval_class, metric, mean, std, ci_low, ci_high, n_resamples,
    sample_size, p_baseline_below, median, role`` (the tidy score table of DESIGN.md; ``role`` by
    :func:`analysis.roles.role_of` for runs logged without it), then ``seed, run_id, trial_key``. Rows of
    metric ``knn_auroc`` are one-class AUROCs (training class's test images vs that class) rather than distances:
    the training class has no row of its own there and no resamples in :func:`load_bootstrap`.
    """
    _, uri = tracking_client(tracking_uri)
    runs = trial_runs(experiment, uri, sweep=sweep, all_runs=all_runs).runs
    return scores_of(runs, ArtifactCache(uri, cache_dir))


def scores_of(runs: Sequence[Run], cache: ArtifactCache) -> pd.DataFrame:
    """:func:`load_scores` of the given runs."""
    return _load_artifact_tables(runs, "scores/scores.parquet", SCORE_COLUMNS, cache)


def load_bootstrap(
    experiment: str,
    tracking_uri: str | None = None,
    *,
    sweep: str | None = None,
    all_runs: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """All finished trials' raw bootstrap resamples (``scores/bootstrap.parquet``) concatenated.

    Columns: ``model, train_class, augmentation, eval_class, metric, resample, value, role, seed, run_id,
    trial_key``; ``value`` is ``metric(reference sample, eval_class sample)`` of resample ``resample``; ``role``
    (:func:`analysis.roles.role_of`): ``baseline`` ("normal train vs normal test"), ``in_distribution``
    or ``other``.
    """
    _, uri = tracking_client(tracking_uri)
    runs = trial_runs(experiment, uri, sweep=sweep, all_runs=all_runs).runs
    return bootstrap_of(runs, ArtifactCache(uri, cache_dir))


def bootstrap_of(runs: Sequence[Run], cache: ArtifactCache) -> pd.DataFrame:
    """:func:`load_bootstrap` of the given runs."""
    columns = ["model", "train_class", "augmentation", *BOOTSTRAP_COLUMNS, "role"]
    return _load_artifact_tables(runs, "scores/bootstrap.parquet", columns, cache)


def load_embeddings(
    run_id: str,
    tracking_uri: str | None = None,
    *,
    splits: Sequence[str] = ("train", "test"),
    cache_dir: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """One trial's embeddings: ``embeddings/<split>.parquet`` for each of ``splits``, concatenated.

    Columns: ``split`` (``train``: the training class's clean training images, the reference cloud; ``test``: every
    class's held-out images under the trial's augmentation), ``index, label, class_name, augmentation, dim_0 …``.
    ``DataFrame.attrs`` holds the trial (``run_id, trial_key, model, train_class, trial_augmentation, seed``).
    """
    client, uri = tracking_client(tracking_uri)
    run = client.get_run(run_id)
    cache = ArtifactCache(uri, cache_dir)
    sizes = cache.sizes(run, "embeddings")
    paths = _parallel(lambda s: cache.path(run, f"embeddings/{s}.parquet", sizes), splits)
    frames = [pd.read_parquet(p).assign(split=s) for s, p in zip(splits, paths, strict=False)]
    df = pd.concat(frames, ignore_index=True)
    df = df[["split"] + [c for c in df.columns if c != "split"]]
    info = trial_info(run)
    df.attrs = {
        "run_id": run_id,
        "trial_key": info["trial_key"],
        "model": info["model"],
        "train_class": info["train_class"],
        "trial_augmentation": info["augmentation"],
        "seed": None if pd.isna(info["seed"]) else int(info["seed"]),
    }
    return df


def load_history(
    experiment: str,
    tracking_uri: str | None = None,
    *,
    metrics: Sequence[str] = HISTORY_METRICS,
    sweep: str | None = None,
    all_runs: bool = False,
) -> pd.DataFrame:
    """Per-epoch metrics of every finished trial: one row per (trial, metric, epoch).

    Columns: ``model, train_class, augmentation, seed, run_id, trial_key, metric, epoch, value`` (``epoch`` is the
    MLflow step, 1-based).
    """
    client, uri = tracking_client(tracking_uri)
    return history_of(client, trial_runs(experiment, uri, sweep=sweep, all_runs=all_runs).runs, metrics)


def history_of(client: MlflowClient, runs: Sequence[Run], metrics: Sequence[str] = HISTORY_METRICS) -> pd.DataFrame:
    """:func:`load_history` of the given runs."""
    jobs = [(r, m) for r in runs for m in metrics if m in r.data.metrics]

    def one(job: tuple[Run, str]) -> list[dict[str, Any]]:
        run, metric = job
        info = trial_info(run)
        history = sorted(client.get_metric_history(run.info.run_id, metric), key=lambda m: (m.step, m.timestamp))
        latest = {m.step: m for m in history}  # a retried epoch logged twice: its last value counts
        return [{**info, "metric": metric, "epoch": m.step, "value": m.value} for m in latest.values()]

    rows = [row for rows in _parallel(one, jobs) for row in rows]
    columns = [*TRIAL_COLUMNS, "run_id", "trial_key", "metric", "epoch", "value"]
    df = pd.DataFrame(rows, columns=columns)
    df["seed"] = df["seed"].astype("Int64")
    return df.sort_values(
        ["model", "train_class", "augmentation", "seed", "run_id", "metric", "epoch"], kind="stable"
    ).reset_index(drop=True)
