"""The Ray Tune trainable: train one model on one class, embed every class, bootstrap every metric, log to MLflow.

Only the Tune glue lives here (restore from a checkpoint, run the stages of :mod:`sweeper.stages`, finish the run);
the run's params are :mod:`sweeper.trial_params`, the artifact layouts :mod:`sweeper.artifacts`.

A plain function of its Tune ``config`` (the grid point: model, train_class, augmentation, seed); the sweep's shared
settings come through ``tune.with_parameters``. It checkpoints every epoch (weights, optimizer, RNG state and the MLflow
run id), so a restarted trial continues its epochs and logs into the same child run.
"""

from __future__ import annotations

import logging
import socket
import traceback
from typing import Any

import ray
import torch
from mlflow.tracking import MlflowClient
from ray import tune

from experiments.precision import deterministic_mode, precision_name
from sweeper import checkpointing, timing, tracking
from sweeper.config import SweepConfig, TrialSpec
from sweeper.stages import TrialContext, run_stages
from sweeper.trial_params import trial_params

log = logging.getLogger(__name__)
timing.imported()


def run_trial(
    config: dict[str, Any], *, sweep: dict[str, Any], parent_run_id: str, experiment_id: str, tracking_uri: str
) -> None:
    """Tune trainable for one grid point ``config["trial"]`` (keys ``model, train_class, augmentation, seed``)."""
    timer = timing.TrialTimer()
    cfg = SweepConfig.model_validate(sweep)
    spec = TrialSpec.from_dict(config["trial"])
    client = MlflowClient(tracking_uri)
    run_id, state = checkpointing.restore(tune.get_checkpoint())
    resumed = run_id is not None
    if run_id is None:
        run_id = tracking.find_trial_run(client, experiment_id, parent_run_id, spec.key)
    if run_id is not None and client.get_run(run_id).info.status == "FINISHED":
        # The driver died after this trial closed its run and before Tune recorded the trial as done: running it
        # again would re-score and re-close a finished run.
        log.info("trial %s: its run %s is already FINISHED; nothing to do", spec.key, run_id)
        return
    node = {"sweeper.node_id": ray.get_runtime_context().get_node_id(), "sweeper.host": socket.gethostname()}
    if run_id is None:
        run_id = tracking.create_trial_run(
            client,
            experiment_id,
            parent_run_id,
            spec.key,
            run_name=spec.key.replace("/", " "),
            tags={tracking.SWEEP_NAME: cfg.name, **node},
        )
    else:  # a restart logs into the same run (from its checkpoint, or from scratch without one)
        client.update_run(run_id, status="RUNNING")
        resumed_from = {"sweeper.resumed_from_epoch": state.epoch if state else 0} if resumed else {}
        tracking.set_tags(client, run_id, {**resumed_from, **node})
    try:
        with deterministic_mode(cfg.train.deterministic):
            tracking.log_params(client, run_id, trial_params(cfg, spec))
            timer.lap("setup")
            torch.set_num_threads(max(1, int(cfg.resources.cpus_per_trial)))
            device = _device(cfg)
            # a tag, not a param: a trial resumed on another kind of node may resolve another precision
            tracking.set_tags(client, run_id, {"sweeper.precision": precision_name(cfg.train.amp, device)})
            ctx = TrialContext(cfg, spec, client, run_id, device, experiment_id, parent_run_id, timer)
            run_stages(ctx, state)
    except BaseException as exc:
        tracking.finish_run(
            client, run_id, ok=False, error="".join(traceback.format_exception_only(type(exc), exc)).strip()
        )
        raise
    tracking.log_metrics(client, run_id, timer.metrics())
    tracking.finish_run(client, run_id, ok=True)


def _device(cfg: SweepConfig) -> torch.device:
    if torch.cuda.is_available() and ray.is_initialized() and ray.get_gpu_ids():
        return torch.device("cuda")
    return torch.device("cpu")
