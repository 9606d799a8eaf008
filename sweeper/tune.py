"""Driving a sweep with Ray Tune: resources, the grid, the parent MLflow run, resume."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import yaml
from mlflow.tracking import MlflowClient
from ray import tune

from sweeper import progress, resources, tracking
from sweeper import storage as sweep_storage
from sweeper.bootstrap_plan import bootstrap_workers
from sweeper.checkpointing import RepointMissingCheckpoint
from sweeper.config import RESULT_SECTIONS, ConfigError, SweepConfig, TrialSpec
from sweeper.training_cache import run_order, start_registry
from sweeper.trial import run_trial

log = logging.getLogger(__name__)

STATE_FILE = "sweeper.json"


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` (or ``RAY_ADDRESS``) or start a new local Ray; no-op when Ray is already up.

    The new local Ray is asked for explicitly (``address="local"``): a bare ``ray.init()`` attaches to the cluster
    whose address the last ``ray start`` (or ``ray.cluster_utils.Cluster``) on this machine wrote to
    ``/tmp/ray/ray_current_cluster``, whoever started it and even while it is being torn down. ``--address auto``
    asks for that cluster."""
    # Tune warns whenever per-epoch checkpoints force an experiment-state snapshot; that is by design here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True, runtime_env=progress.worker_runtime_env())
    else:
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=True,
            runtime_env=progress.worker_runtime_env(),
        )


def gpus_per_trial(cfg: SweepConfig) -> float:
    """``resources.gpus_per_trial``; ``auto`` is 1 when the cluster can provide a GPU (the launcher's node types on a
    ``ray up`` head, else the live nodes), else 0 (see :mod:`sweeper.resources`)."""
    return resources.gpus_for(cfg.resources.gpus_per_trial)


def placement(cfg: SweepConfig) -> tune.PlacementGroupFactory:
    """One bundle for the trial (its CPUs and GPU) plus one per bootstrap worker, so the trial's Ray tasks always
    have room to start (Tune schedules a trial's child tasks inside its placement group); none when the trial
    scores in its own process (``bootstrap_workers: auto`` on a small bootstrap)."""
    head: dict[str, float] = {"CPU": cfg.resources.cpus_per_trial}
    g = gpus_per_trial(cfg)
    if g > 0:
        head["GPU"] = g
    workers = [{"CPU": cfg.resources.cpus_per_bootstrap_worker}] * bootstrap_workers(cfg)
    return tune.PlacementGroupFactory([head, *workers])


def storage_path(*candidates: str | None) -> str:
    """The first given of ``candidates`` (``--storage-path``, the config's ``tune.storage_path``), else
    ``SWEEPER_STORAGE_PATH`` (a cluster's shared storage, e.g. ``s3://bucket/prefix``), else ``~/ray_results``; local
    paths absolute (Tune requires it)."""
    candidates = (*candidates, os.environ.get(sweep_storage.STORAGE_ENV))
    path = next((c for c in candidates if c), os.path.join(os.path.expanduser("~"), "ray_results"))
    return path if "://" in path else str(Path(path).resolve())


def _trainable(cfg: SweepConfig, parent_run_id: str, experiment_id: str, tracking_uri: str) -> Any:
    fn = tune.with_parameters(
        run_trial,
        sweep=cfg.model_dump(mode="json"),
        parent_run_id=parent_run_id,
        experiment_id=experiment_id,
        tracking_uri=tracking_uri,
    )
    return tune.with_resources(fn, placement(cfg))


def _run_config(cfg: SweepConfig, storage: str, trials: list[TrialSpec] | None = None) -> tune.RunConfig:
    return tune.RunConfig(
        progress_reporter=progress.reporter([t.to_dict() for t in trials or []]),
        name=cfg.name,
        storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=cfg.tune.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[RepointMissingCheckpoint()],
        verbose=1,
    )


@dataclass
class SweepPlan:
    """What ``sweeper run`` will do: the trials to run and, when the sweep exists, its parent run and the trials
    that already FINISHED there (skipped)."""

    experiment_id: str | None
    parent_run_id: str | None
    trials: list[TrialSpec]
    skipped: list[TrialSpec] = field(default_factory=list)


def plan_sweep(cfg: SweepConfig, tracking_uri: str, *, force: bool = False) -> SweepPlan:
    """Find an existing sweep of the same name and decide which trials still have to run. Reads MLflow only.

    Raises:
        ConfigError: the sweep exists with different result-affecting settings (and ``force`` is off).
    """
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(cfg.experiment)
    if exp is None or force:
        return SweepPlan(exp.experiment_id if exp else None, None, cfg.trials())
    parent = tracking.find_sweep_run(client, exp.experiment_id, cfg.name)
    if parent is None:
        return SweepPlan(exp.experiment_id, None, cfg.trials())
    stored = json.loads(parent.data.tags.get(tracking.SWEEP_SETTINGS, "{}"))
    now = cfg.result_settings()
    changed = sorted(
        f"{section}.{key}"
        for section in RESULT_SECTIONS
        for key in set(stored.get(section, {})) | set(now[section])
        if stored.get(section, {}).get(key) != now[section].get(key)
    )
    if changed:
        raise ConfigError(
            f"sweep {cfg.name!r} already exists in experiment {cfg.experiment!r} with other settings "
            f"({', '.join(changed[:5])}); use --force to start it afresh, or give the sweep another name"
        )
    done = {
        r.data.tags.get(tracking.TRIAL_KEY)
        for r in tracking.child_runs(client, exp.experiment_id, parent.info.run_id)
        if r.info.status == "FINISHED"
    }
    trials = cfg.trials()
    return SweepPlan(
        exp.experiment_id,
        parent.info.run_id,
        [t for t in trials if t.key not in done],
        [t for t in trials if t.key in done],
    )


def _warn_if_unreachable_from_workers(tracking_uri: str) -> None:
    """A multi-node cluster needs a tracking URI every node reaches: not a local file, not this host's loopback."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    hosts = {n.get("NodeManagerAddress") for n in alive}
    local = tracking_uri.startswith(("sqlite:", "file:")) or any(
        h in tracking_uri for h in ("://localhost", "://127.0.0.1", "://[::1]")
    )
    if len(hosts) > 1 and local:
        log.warning(
            "tracking URI %s is local to this machine but the Ray cluster spans %d hosts: trials on other "
            "hosts cannot log there; use an MLflow server on the private network (see cluster.yaml)",
            tracking.redact(tracking_uri),
            len(hosts),
        )


def run_sweep(
    cfg: SweepConfig,
    tracking_uri: str,
    *,
    storage: str | None = None,
    force: bool = False,
    plan: SweepPlan | None = None,
) -> int:
    """Run the trials of ``cfg`` that have not FINISHED yet (all of them with ``force``); 0 when every trial of the
    sweep finished, 1 when one failed. Ray must be initialised."""
    resources.ensure_placeable(placement(cfg).bundles)  # before any MLflow run: an unplaceable trial pends forever
    plan = plan or plan_sweep(cfg, tracking_uri, force=force)
    _warn_if_unreachable_from_workers(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment_id = plan.experiment_id or tracking.get_or_create_experiment(
        client, cfg.experiment, tracking_uri, description=progress.experiment_description(cfg)
    )
    if plan.parent_run_id is None:
        dumped = cfg.model_dump(mode="json")
        if dumped["tracking"]["uri"]:
            dumped["tracking"]["uri"] = tracking.redact(dumped["tracking"]["uri"])
        config_yaml = yaml.safe_dump(dumped, sort_keys=False)
        parent = tracking.start_sweep_run(
            client, experiment_id, cfg.name, config_yaml, len(cfg.trials()), settings=cfg.result_settings()
        )
    else:
        parent = plan.parent_run_id
        client.update_run(parent, status="RUNNING")
        log.info(
            "sweep %r exists (parent run %s): %d trial(s) already finished are skipped, %d to run",
            cfg.name,
            parent,
            len(plan.skipped),
            len(plan.trials),
        )
    storage = storage_path(storage, cfg.tune.storage_path)
    if plan.trials:
        state = {
            "sweep": cfg.model_dump(mode="json"),
            "parent_run_id": parent,
            "experiment_id": experiment_id,
            "tracking_uri": tracking_uri,
        }
        sweep_storage.write_text(sweep_storage.join(storage, cfg.name, STATE_FILE), json.dumps(state))
        log.info("sweep %s: %d trials, parent run %s", cfg.name, len(plan.trials), parent)
        tuner = tune.Tuner(
            _trainable(cfg, parent, experiment_id, tracking_uri),
            param_space={"trial": tune.grid_search([t.to_dict() for t in run_order(plan.trials, cfg.train)])},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=cfg.resources.max_concurrent_trials,
                reuse_actors=cfg.tune.reuse_actors,
                trial_name_creator=progress.trial_name,
                trial_dirname_creator=progress.trial_dirname,
            ),
            run_config=_run_config(cfg, storage, plan.trials),
        )
        _fit(tuner, parent)
    code = _finish(client, experiment_id, parent, cfg)
    log.info(
        "sweep %r: %s; MLflow experiment %r, parent run %s; browse with: mlflow ui --backend-store-uri %s "
        "and open http://127.0.0.1:5000/%s (the runs table)",
        cfg.name,
        "all trials finished" if code == 0 else "some trials FAILED",
        cfg.experiment,
        parent,
        tracking.redact(tracking_uri),
        progress.ui_path(experiment_id),
    )
    return code


def load_state(name: str, storage: str | None = None) -> dict[str, Any]:
    """The ``sweeper.json`` beside Tune's state of sweep ``name`` (a local folder or a bucket URI); reads files only,
    so the CLI calls it before Ray starts (a typo in the name costs no cluster start).

    Raises:
        FileNotFoundError: there is no such sweep under the storage path.
    """
    state_file = sweep_storage.join(storage_path(storage), name, STATE_FILE)
    text = sweep_storage.read_text(state_file)
    if text is None:
        raise FileNotFoundError(f"no sweep named {name!r} under {storage_path(storage)} (missing {state_file})")
    return json.loads(text)


def resume_sweep(name: str, *, storage: str | None = None, state: dict[str, Any] | None = None) -> int:
    """Restore an interrupted sweep from Tune's state: unfinished and errored trials continue from their last
    checkpoint, in their own MLflow runs; finished trials are kept. ``state``: :func:`load_state`'s result, when
    the caller has read it already."""
    exp_dir = sweep_storage.join(storage_path(storage), name)
    state = state if state is not None else load_state(name, storage)
    cfg = SweepConfig.model_validate(state["sweep"])
    resources.ensure_placeable(placement(cfg).bundles)
    trainable = _trainable(cfg, state["parent_run_id"], state["experiment_id"], state["tracking_uri"])
    tuner = tune.Tuner.restore(exp_dir, trainable=trainable, resume_errored=True)
    client = MlflowClient(state["tracking_uri"])
    client.update_run(state["parent_run_id"], status="RUNNING")
    _fit(tuner, state["parent_run_id"])
    return _finish(client, state["experiment_id"], state["parent_run_id"], cfg)


def _fit(tuner: tune.Tuner, parent_run_id: str) -> None:
    """Run the trials with the sweep's training registry alive (trials with equal training share one model)."""
    registry = start_registry(parent_run_id)
    try:
        tuner.fit()
    finally:
        ray.kill(registry)


def _finish(client: MlflowClient, experiment_id: str, parent: str, cfg: SweepConfig) -> int:
    """Summarise the sweep from MLflow (all its trials, also those finished by earlier runs) and close the parent."""
    return finish_parent(client, experiment_id, parent, [t.key for t in cfg.trials()], cfg.score.metric_names)


def finish_parent(
    client: MlflowClient, experiment_id: str, parent: str, keys: list[str], metric_names: list[str]
) -> int:
    """Log a sweep's summary on its parent run and close it: ``n_trials``, ``n_finished``, ``n_failed`` over the
    trial ``keys`` (a key with no FINISHED child run counts as failed), and per metric ``baseline_nearest.<metric>``
    = the number of finished trials whose baseline ranks first. 1 when a trial failed, else 0."""
    runs = {r.data.tags.get(tracking.TRIAL_KEY): r for r in tracking.child_runs(client, experiment_id, parent)}
    finished = [runs[k] for k in keys if k in runs and runs[k].info.status == "FINISHED"]
    failed = [k for k in keys if k not in runs or runs[k].info.status != "FINISHED"]
    summary: dict[str, float] = {
        "n_trials": float(len(keys)),
        "n_finished": float(len(finished)),
        "n_failed": float(len(failed)),
    }
    for metric in metric_names:
        ranks = [r.data.metrics.get(f"baseline_rank.{metric}") for r in finished]
        if any(x is not None for x in ranks):
            summary[f"baseline_nearest.{metric}"] = float(sum(1 for x in ranks if x == 1))
    tracking.log_metrics(client, parent, summary)
    for key in failed:
        run = runs.get(key)
        reason = run.data.tags.get("sweeper.error") if run else "never started"
        if reason is None:  # the process ended before the trial could record why (Tune's error file says)
            reason = f"its run is {run.info.status} with no error recorded; see the trial's error.txt in Tune's output"
        log.error("trial %s failed: %s", key, reason.splitlines()[-1] if reason else "")
    tracking.finish_run(
        client, parent, ok=not failed, error=f"{len(failed)} of {len(keys)} trials failed" if failed else None
    )
    return 1 if failed else 0
