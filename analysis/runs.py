"""The trial runs of a logged sweep, read back from MLflow: which runs count (FINISHED, the newest per trial key)
and the one-row-per-trial frame of their tags, typed params and metrics (read-only; re-exported by
:mod:`analysis.load`)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

log = logging.getLogger("analysis.load")

TRIAL_COLUMNS = ["model", "train_class", "augmentation", "seed"]
# Tags written by sweeper.tracking (repeated here so that reading a store does not import the orchestration package).
ROLE, TRIAL_KEY, SWEEP_NAME, PARENT, RESCORED = (
    "sweeper.role",
    "sweeper.trial_key",
    "sweeper.sweep",
    "mlflow.parentRunId",
    "sweeper.rescored",
)

#: Params kept as strings even when they look like numbers (class names such as ``"0"`` are names, not numbers).
STRING_PARAMS = frozenset(
    {
        "model",
        "train_class",
        "augmentation",
        "dataset",
        "optimizer",
        "schedule",
        "augmentation_at",
        "augmentation_params",
        "model_options",
        "embed_layer",
        "metrics",
        "mtopdiv_backend",
        "metric_options",
    }
)


def tracking_client(tracking_uri: str | None) -> tuple[MlflowClient, str]:
    """A client of ``tracking_uri`` (``None``: MLflow's current URI) and that URI."""
    uri = tracking_uri or mlflow.get_tracking_uri()
    return MlflowClient(uri), uri


def _experiment_id(client: MlflowClient, experiment: str) -> str:
    exp = client.get_experiment_by_name(experiment)
    if exp is None or exp.lifecycle_stage == "deleted":
        names = sorted(e.name for e in client.search_experiments())
        raise ValueError(f"no MLflow experiment named {experiment!r}; experiments: {', '.join(names) or '(none)'}")
    return exp.experiment_id


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=5000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


@dataclass
class TrialRuns:
    """The finished trial runs read from an experiment and what was left out."""

    runs: list[Run]
    left_out: dict[str, int]  # status -> count of trial runs not FINISHED
    superseded: int = 0  # older finished runs of a repeated trial key (dropped unless all_runs)


def trial_runs(
    experiment: str, tracking_uri: str | None = None, *, sweep: str | None = None, all_runs: bool = False
) -> TrialRuns:
    """The FINISHED trial runs of ``experiment`` (optionally of one ``sweep`` name), newest first.

    Runs in any other state are counted in ``left_out`` and reported in one warning. Unless ``all_runs``, only the
    newest finished run of each ``sweeper.trial_key`` is kept (older ones are counted in ``superseded``, with a
    warning).
    """
    client, _ = tracking_client(tracking_uri)
    runs = _search_all(client, _experiment_id(client, experiment), f"tags.`{ROLE}` = 'trial'")
    if sweep is not None:  # filtered here rather than in the search string: a name may hold quotes
        runs = [r for r in runs if r.data.tags.get(SWEEP_NAME) == sweep]
    runs.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id), reverse=True)
    done = [r for r in runs if r.info.status == "FINISHED"]
    left_out = dict(sorted(Counter(r.info.status for r in runs if r.info.status != "FINISHED").items()))
    if left_out:
        log.warning(
            "left out %d trial run(s) that are not FINISHED (%s)",
            sum(left_out.values()),
            ", ".join(f"{n} {s}" for s, n in left_out.items()),
        )
    superseded = 0
    if not all_runs:
        seen: set[str] = set()
        kept = []
        for r in done:
            key = r.data.tags.get(TRIAL_KEY, r.info.run_id)
            if key not in seen:
                seen.add(key)
                kept.append(r)
        superseded = len(done) - len(kept)
        if superseded:
            log.warning(
                "left out %d older finished run(s) of a repeated trial key (kept the newest run of each "
                "sweeper.trial_key; all_runs=True keeps them all)",
                superseded,
            )
        done = kept
    return TrialRuns(done, left_out, superseded)


def finished_trial_runs(experiment: str, tracking_uri: str | None = None) -> list[Run]:
    """Every FINISHED trial run of ``experiment``; others (FAILED, RUNNING…) are left out with one warning."""
    return trial_runs(experiment, tracking_uri, all_runs=True).runs


def _typed_param(name: str, values: pd.Series) -> pd.Series:
    values = values.where(values != "None")
    if name in STRING_PARAMS:
        return values
    present = values.dropna()
    if len(present) and present.isin(["True", "False"]).all():
        return values.map({"True": True, "False": False})
    numbers = pd.to_numeric(present, errors="coerce")
    if len(present) == 0 or numbers.isna().any():
        return values
    out = pd.to_numeric(values, errors="coerce")
    if (numbers == numbers.round()).all() and not present.str.contains(r"[.eE]", regex=True).any():
        return out.astype("Int64")
    return out


def trial_info(run: Run) -> dict[str, Any]:
    """The trial columns of ``run``: ``model, train_class, augmentation, seed`` (its params), ``run_id``, ``trial_key``."""
    p = run.data.params
    seed = p.get("seed")
    return {
        "model": p.get("model"),
        "train_class": p.get("train_class"),
        "augmentation": p.get("augmentation"),
        "seed": int(seed) if seed not in (None, "None") else pd.NA,
        "run_id": run.info.run_id,
        "trial_key": run.data.tags.get(TRIAL_KEY),
    }


def runs_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """:func:`load_runs` of the given runs."""
    rows = []
    for r in runs:
        tags = r.data.tags
        rows.append(
            {
                "run_id": r.info.run_id,
                "trial_key": tags.get(TRIAL_KEY),
                "sweep": tags.get(SWEEP_NAME),
                "parent_run_id": tags.get(PARENT),
                "status": r.info.status,
                "start_time": pd.to_datetime(r.info.start_time, unit="ms", utc=True),
                "end_time": pd.to_datetime(r.info.end_time, unit="ms", utc=True) if r.info.end_time else pd.NaT,
                "rescored": tags.get(RESCORED, ""),
            }
        )
    meta = pd.DataFrame(
        rows, columns=["run_id", "trial_key", "sweep", "parent_run_id", "status", "start_time", "end_time", "rescored"]
    )
    params = pd.DataFrame([r.data.params for r in runs], index=meta.index, dtype=object)
    for name in params.columns:
        params[name] = _typed_param(name, params[name])
    first = [c for c in TRIAL_COLUMNS if c in params.columns]
    params = params[first + sorted(c for c in params.columns if c not in first)]
    metrics = pd.DataFrame([r.data.metrics for r in runs], index=meta.index, dtype=float)
    metrics = metrics[sorted(c for c in metrics.columns if c not in params.columns and c not in meta.columns)]
    return pd.concat([meta, params, metrics], axis=1)


def load_runs(
    experiment: str, tracking_uri: str | None = None, *, sweep: str | None = None, all_runs: bool = False
) -> pd.DataFrame:
    """One row per finished trial of ``experiment``.

    Columns: ``run_id, trial_key, sweep, parent_run_id, status, start_time, end_time, rescored``, then the params
    (``model, train_class, augmentation, seed`` first; numbers as numbers, class names as strings), then the run's
    metrics (latest value of each: ``score.<metric>.<eval_class>.mean``, ``baseline_rank.<metric>``, ``knn_auroc``,
    the last epoch's ``loss``…). Newest trial first.
    """
    return runs_frame(trial_runs(experiment, tracking_uri, sweep=sweep, all_runs=all_runs).runs)
