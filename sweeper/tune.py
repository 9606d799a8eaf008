"""Driving a sweep with Ray Tune: resources, the grid, the parent MLflow run, resume."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import ray
import yaml
from mlflow.tracking import MlflowClient
from ray import tune

from sweeper import tracking
from sweeper.config import SweepConfig
from sweeper.trial import run_trial

log = logging.getLogger(__name__)

STATE_FILE = "sweeper.json"


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` (or ``RAY_ADDRESS``) or start a local Ray; no-op when Ray is already up."""
    # Tune warns whenever per-epoch checkpoints force an experiment-state snapshot; that is by design here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)


def gpus_per_trial(cfg: SweepConfig) -> float:
    """``resources.gpus_per_trial``; ``auto`` is 1 when the Ray cluster has a GPU, else 0."""
    g = cfg.resources.gpus_per_trial
    if g == "auto":
        return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return float(g)


def placement(cfg: SweepConfig) -> tune.PlacementGroupFactory:
    """One bundle for the trial (its CPUs and GPU) plus one per bootstrap worker, so the trial's Ray tasks always
    have room to start (Tune schedules a trial's child tasks inside its placement group)."""
    head: dict[str, float] = {"CPU": cfg.resources.cpus_per_trial}
    g = gpus_per_trial(cfg)
    if g > 0:
        head["GPU"] = g
    workers = [{"CPU": cfg.resources.cpus_per_bootstrap_worker}] * cfg.resources.bootstrap_workers
    return tune.PlacementGroupFactory([head] + workers)


def storage_path(*candidates: str | None) -> str:
    """The first given of ``candidates`` (``--storage-path``, the config's ``tune.storage_path``), else
    ``~/ray_results``; local paths absolute (Tune requires it)."""
    path = next((c for c in candidates if c), os.path.join(os.path.expanduser("~"), "ray_results"))
    return path if "://" in path else str(Path(path).resolve())


def _trainable(cfg: SweepConfig, parent_run_id: str, experiment_id: str, tracking_uri: str) -> Any:
    fn = tune.with_parameters(run_trial, sweep=cfg.model_dump(mode="json"), parent_run_id=parent_run_id,
                              experiment_id=experiment_id, tracking_uri=tracking_uri)
    return tune.with_resources(fn, placement(cfg))


def _run_config(cfg: SweepConfig, storage: str) -> tune.RunConfig:
    return tune.RunConfig(
        name=cfg.name,
        storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=cfg.tune.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        verbose=1,
    )


def run_sweep(cfg: SweepConfig, tracking_uri: str, *, storage: str | None = None) -> int:
    """Run every trial of ``cfg``; returns 0 when all finished, 1 when a trial failed. Ray must be initialised."""
    client = MlflowClient(tracking_uri)
    experiment_id = tracking.get_or_create_experiment(client, cfg.experiment)
    trials = cfg.trials()
    config_yaml = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    parent = tracking.start_sweep_run(client, experiment_id, cfg.name, config_yaml, len(trials))
    storage = storage_path(storage, cfg.tune.storage_path)
    exp_dir = Path(storage, cfg.name)
    if "://" not in storage:
        exp_dir.mkdir(parents=True, exist_ok=True)
        (exp_dir / STATE_FILE).write_text(json.dumps({
            "sweep": cfg.model_dump(mode="json"), "parent_run_id": parent, "experiment_id": experiment_id,
            "tracking_uri": tracking_uri}))
    log.info("sweep %s: %d trials, parent run %s", cfg.name, len(trials), parent)
    param_space = {
        "model": tune.grid_search(list(cfg.grid.model)),
        "train_class": tune.grid_search(cfg.train_classes()),
        "augmentation": tune.grid_search(list(cfg.grid.augmentation)),
        "seed": tune.grid_search(list(cfg.grid.seed)),
    }
    tuner = tune.Tuner(
        _trainable(cfg, parent, experiment_id, tracking_uri),
        param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=cfg.resources.max_concurrent_trials),
        run_config=_run_config(cfg, storage),
    )
    code = _finish(client, experiment_id, parent, tuner.fit(), cfg)
    log.info("sweep %r: %s; MLflow experiment %r, parent run %s; browse with: mlflow ui --backend-store-uri %s",
             cfg.name, "all trials finished" if code == 0 else "some trials FAILED", cfg.experiment, parent,
             tracking_uri)
    return code


def resume_sweep(name: str, *, storage: str | None = None) -> int:
    """Restore an interrupted sweep from Tune's state (errored trials are retried, finished ones kept)."""
    exp_dir = Path(storage_path(storage), name)
    state_file = exp_dir / STATE_FILE
    if not state_file.is_file():
        raise FileNotFoundError(f"no sweep named {name!r} under {exp_dir.parent} (missing {state_file})")
    state = json.loads(state_file.read_text())
    cfg = SweepConfig.model_validate(state["sweep"])
    trainable = _trainable(cfg, state["parent_run_id"], state["experiment_id"], state["tracking_uri"])
    tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_errored=True)
    client = MlflowClient(state["tracking_uri"])
    client.update_run(state["parent_run_id"], status="RUNNING")
    return _finish(client, state["experiment_id"], state["parent_run_id"], tuner.fit(), cfg)


def _finish(client: MlflowClient, experiment_id: str, parent: str, results: tune.ResultGrid, cfg: SweepConfig) -> int:
    failed = [r for r in results if r.error is not None]
    summary: dict[str, float] = {"n_trials": float(len(results)), "n_failed": float(len(failed))}
    for metric in cfg.score.metric_names:
        ranks = [r.metrics.get(f"baseline_rank.{metric}") for r in results if r.error is None and r.metrics]
        ranks = [x for x in ranks if x is not None]
        summary[f"baseline_nearest.{metric}"] = float(sum(1 for x in ranks if x == 1))
    tracking.log_metrics(client, parent, summary)
    for r in failed:
        log.error("trial %s failed: %s", r.config, r.error)
    tracking.finish_run(client, parent, ok=not failed,
                        error=f"{len(failed)} of {len(results)} trials failed" if failed else None)
    return 1 if failed else 0
