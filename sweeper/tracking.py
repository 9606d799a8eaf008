"""MLflow tracking: one parent run per sweep, one nested child run per trial found again by ``sweeper.trial_key``.

Everything goes through an explicit ``MlflowClient`` and run id (no fluent "active run" state), so concurrent trials in
separate Ray workers and a driver never step on each other. ``ray.air.integrations.mlflow.setup_mlflow`` and
``MLflowLoggerCallback`` are not used: the callback creates one top-level run per Tune trial without nesting, and
neither lets a restarted trial find its own run again by a deterministic key.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

TRIAL_KEY = "sweeper.trial_key"
SWEEP_NAME = "sweeper.sweep"
ROLE = "sweeper.role"
SWEEP_SETTINGS = "sweeper.settings"
PARENT = "mlflow.parentRunId"
VERSIONED_PACKAGES = (
    "embedding-sweeper",
    "torch",
    "torchvision",
    "lightly",
    "ray",
    "mlflow",
    "giotto-ph",
    "numpy",
    "scipy",
)


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message says which URI and why."""


SQLITE = "sqlite:///"


def sqlite_path(uri: str | None) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (as written, possibly relative); ``None`` otherwise."""
    return Path(uri[len(SQLITE) :]) if uri and uri.startswith(SQLITE) else None


def resolve_tracking_uri(uri: str | None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's default, with local paths made absolute.

    Tune runs trials in their own working directories, so a relative ``sqlite:///mlflow.db`` or ``./mlruns`` must be
    pinned to the driver's directory before it reaches them.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()
    uri = postgresql_driver(uri)
    db = sqlite_path(uri)
    if db is not None and not db.is_absolute():
        return SQLITE + str(db.resolve())
    if uri.startswith("file:"):
        return Path(urlparse(uri).path).resolve().as_uri()
    if "://" not in uri:
        return Path(uri).resolve().as_uri()
    return uri


def postgresql_driver(uri: str) -> str:
    """A ``postgresql://`` URI with its driver named: ``postgresql+psycopg://`` when psycopg2 is not installed.

    SQLAlchemy picks the driver of a bare ``postgresql://`` by its version (psycopg2 up to 2.0, psycopg 3 from 2.1),
    so the same URI fails with ``No module named 'psycopg2'`` on 2.0 when only psycopg 3 is installed.
    """
    if not uri.startswith("postgresql://"):
        return uri
    import importlib.util

    if importlib.util.find_spec("psycopg2") is not None:
        return uri
    return "postgresql+psycopg://" + uri[len("postgresql://") :]


def redact(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for logs and logged configs)."""
    parts = urlparse(uri)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()
    return uri


def check_tracking(uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast (before any trial starts) when the tracking store cannot be reached or written."""
    db = sqlite_path(uri)
    if db is not None:
        folder = db.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise TrackingError(f"MLflow store {uri}: folder {folder} does not exist or is not writable")
        init_sqlite_store(uri)
        return
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=timeout_s).raise_for_status()
        except Exception as exc:
            raise TrackingError(f"MLflow tracking server {redact(uri)} is unreachable: {type(exc).__name__}") from None


def init_sqlite_store(uri: str) -> None:
    """Create (or migrate) the MLflow schema of a sqlite store while holding an exclusive lock on
    ``.<db name>.lock`` beside it, so that two sweeps launched at once on a brand-new store do not both run MLflow's
    table creation (the second dies with ``table ... already exists``): the second waits, then finds the schema."""
    import fcntl

    db = sqlite_path(uri)
    if db is None:
        return
    with open(db.parent / f".{db.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            MlflowClient(uri).search_experiments(max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


#: MLflow's own experiment tag that picks the UI's view: ``custom_model_development`` opens the training-runs table
#: (MLflow 3 opens an untagged experiment on its GenAI overview of traces, which shows none of our runs).
EXPERIMENT_KIND = "mlflow.experimentKind"
TRAINING_RUNS_KIND = "custom_model_development"
#: MLflow's experiment description (shown above the runs table).
DESCRIPTION = "mlflow.note.content"


def get_or_create_experiment(
    client: MlflowClient, name: str, tracking_uri: str | None = None, description: str | None = None
) -> str:
    """The id of experiment ``name`` (restored if deleted, created if missing), tagged to open on MLflow's
    training-runs table (:data:`EXPERIMENT_KIND`), with ``description`` when it has none yet.

    On a local sqlite store a new experiment keeps its artifacts in ``mlruns/<run id>/`` beside the database file.
    MLflow's own default is ``./mlruns`` of whatever directory the sweep was launched from, which scatters one
    store's artifacts over every launch directory (the same place when the database is in that directory, as by
    default). Two sweeps creating the experiment at once both get its id (the loser of the race reads it back).
    """
    exp = client.get_experiment_by_name(name)
    if exp is None:
        db = sqlite_path(tracking_uri)
        location = (db.resolve().parent / "mlruns").as_uri() if db is not None else None
        try:
            client.create_experiment(name, artifact_location=location)
        except MlflowException:
            if client.get_experiment_by_name(name) is None:
                raise
        exp = client.get_experiment_by_name(name)
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    if EXPERIMENT_KIND not in exp.tags:
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND, TRAINING_RUNS_KIND)
    if description and DESCRIPTION not in exp.tags:
        client.set_experiment_tag(exp.experiment_id, DESCRIPTION, description)
    return exp.experiment_id


def git_commit() -> str | None:
    """The source tree's commit, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    versions = {}
    for pkg in VERSIONED_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return versions


def start_sweep_run(
    client: MlflowClient, experiment_id: str, sweep_name: str, config_yaml: str, n_trials: int, settings: dict[str, Any]
) -> str:
    """Create the sweep's parent run with the config as artifact, the git commit, package versions and the
    result-affecting ``settings`` (a tag, compared when the sweep is run again)."""
    tags = {
        ROLE: "sweep",
        SWEEP_NAME: sweep_name,
        "mlflow.runName": sweep_name,
        SWEEP_SETTINGS: json.dumps(settings, sort_keys=True),
    }
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    run = client.create_run(experiment_id, tags=tags, run_name=sweep_name)
    run_id = run.info.run_id
    params = {"sweep_name": sweep_name, "n_trials": n_trials}
    params.update({f"version.{k}": v for k, v in package_versions().items()})
    log_params(client, run_id, params)
    log_text(client, run_id, config_yaml, "config/sweep.yaml")
    return run_id


def find_sweep_run(client: MlflowClient, experiment_id: str, sweep_name: str) -> Any | None:
    """The newest parent run of the sweep called ``sweep_name``, or ``None``."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{ROLE}` = 'sweep' and tags.`{SWEEP_NAME}` = '{sweep_name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def find_trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, key: str) -> str | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TRIAL_KEY}` = '{key}' and tags.`{PARENT}` = '{parent_run_id}'",
        max_results=2,
    )
    return runs[0].info.run_id if runs else None


def trial_run(
    client: MlflowClient, experiment_id: str, parent_run_id: str, key: str, run_name: str, tags: dict[str, str]
) -> str:
    """The child run of ``key`` under ``parent_run_id``: found again if it exists, else created (never twice)."""
    existing = find_trial_run(client, experiment_id, parent_run_id, key)
    if existing is not None:
        client.update_run(existing, status="RUNNING")
        return existing
    return create_trial_run(client, experiment_id, parent_run_id, key, run_name, tags)


def create_trial_run(
    client: MlflowClient, experiment_id: str, parent_run_id: str, key: str, run_name: str, tags: dict[str, str]
) -> str:
    """A new child run of ``key`` under ``parent_run_id`` (the caller has made sure there is none)."""
    all_tags = {TRIAL_KEY: key, PARENT: parent_run_id, ROLE: "trial", **tags}
    return client.create_run(experiment_id, tags=all_tags, run_name=run_name).info.run_id


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    """Log params that are not yet on the run (a resumed trial re-logs nothing)."""
    have = client.get_run(run_id).data.params
    new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in have]
    for i in range(0, len(new), 100):
        client.log_batch(run_id, params=new[i : i + 100])


def metric_name(name: str) -> str:
    """``name`` with every character MLflow does not allow in metric names replaced by ``_`` (e.g. the ``+`` of a
    class set: ``score.hausdorff.0+1.mean`` → ``score.hausdorff.0_1.mean``)."""
    return re.sub(r"[^\w\-. :/]", "_", name)


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    ts = int(time.time() * 1000)
    items = [Metric(metric_name(k), float(v), ts, step) for k, v in metrics.items()]
    for i in range(0, len(items), 500):
        client.log_batch(run_id, metrics=items[i : i + 500])


def set_tags(client: MlflowClient, run_id: str, tags: dict[str, Any]) -> None:
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_text(client: MlflowClient, run_id: str, text: str, artifact_file: str) -> None:
    client.log_text(run_id, text, artifact_file)


def log_parquet(client: MlflowClient, run_id: str, df: pd.DataFrame, artifact_file: str) -> None:
    """Write ``df`` as parquet to ``artifact_file`` (e.g. ``scores/scores.parquet``) in the run's artifacts."""
    folder, name = os.path.split(artifact_file)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)
        df.to_parquet(path, index=False)
        client.log_artifact(run_id, path, folder or None)


def log_files(client: MlflowClient, run_id: str, files: dict[str, bytes], artifact_dir: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, blob in files.items():
            Path(tmp, name).write_bytes(blob)
        client.log_artifacts(run_id, tmp, artifact_dir)


def finish_run(client: MlflowClient, run_id: str, ok: bool, error: str | None = None) -> None:
    if error:
        set_tags(client, run_id, {"sweeper.error": error[:5000]})
    client.set_terminated(run_id, "FINISHED" if ok else "FAILED")


def torch_bytes(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True).encode()


def child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> Iterable[Any]:
    return client.search_runs([experiment_id], filter_string=f"tags.`{PARENT}` = '{parent_run_id}'", max_results=10000)


def log_figure(client: MlflowClient, run_id: str, figure: Any, artifact_file: str) -> None:
    """Save a matplotlib figure as ``artifact_file`` (PNG) in the run's artifacts."""
    folder, name = os.path.split(artifact_file)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)
        figure.savefig(path, dpi=110, bbox_inches="tight")
        client.log_artifact(run_id, path, folder or None)


def resolve_weights_run(client: MlflowClient, experiment_id: str | None, ref: str) -> str:
    """The run whose ``model/weights.pt`` a reference names: ``"run:<run id>"``, or ``"trial:<trial key>"`` (the
    newest FINISHED trial run with that ``sweeper.trial_key`` in the experiment).

    Raises:
        ValueError: no such run, or it has no logged weights.
    """
    kind, _, value = ref.partition(":")
    if kind == "run":
        try:
            run = client.get_run(value)
        except Exception:
            raise ValueError(f"backbone_weights {ref!r}: no run {value!r} in the tracking store") from None
        run_id = run.info.run_id
    else:
        runs = (
            client.search_runs(
                [experiment_id] if experiment_id else [],
                filter_string=f"tags.`{TRIAL_KEY}` = '{value}' and attributes.status = 'FINISHED'",
                order_by=["attributes.end_time DESC"],
                max_results=1,
            )
            if experiment_id
            else []
        )
        if not runs:
            raise ValueError(
                f"backbone_weights {ref!r}: no finished trial with that key in this experiment; run the "
                "sweep that trains it first"
            )
        run_id = runs[0].info.run_id
    names = {f.path for f in client.list_artifacts(run_id, "model")}
    if "model/weights.pt" not in names:
        raise ValueError(f"backbone_weights {ref!r}: run {run_id} logged no model/weights.pt")
    return run_id
