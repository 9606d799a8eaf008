"""Train once per training configuration: trials of a sweep whose training is identical share one model.

Trials that differ only in what happens after training (e.g. ``augmentation_at: eval``, where the augmentation
touches only the evaluation images) have the same *training key*: a hash of everything that determines the trained
weights (model and its options, training settings and views, the training perturbation, the training class, the seed
and the data). The first trial of a key trains and logs its weights; the others load those logged weights (the MLflow
model of the first trial's run, tagged ``sweeper.weights_from`` in theirs) instead of training again.

Coordination: a Ray actor owned by the sweep driver records which run trains which key; a trial that finds the key
taken waits for the owner's weights to appear in MLflow and takes over the key if the owner's run fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import asdict
from typing import Any

import ray
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

TRAINING_KEY = "sweeper.training_key"
WEIGHTS_LOGGED = "sweeper.weights_logged"
WEIGHTS_FROM = "sweeper.weights_from"


@ray.remote(num_cpus=0)
class TrainingRegistry:
    """Which run trains which training key, for one sweep."""

    def __init__(self) -> None:
        self.owners: dict[str, str] = {}

    def claim(self, key: str, run_id: str) -> str:
        """The run that trains ``key``: ``run_id`` if the key was free (or already its own), else the owner."""
        return self.owners.setdefault(key, run_id)

    def release(self, key: str, run_id: str) -> None:
        if self.owners.get(key) == run_id:
            del self.owners[key]


def registry_name(parent_run_id: str) -> str:
    return f"sweeper-training-registry-{parent_run_id}"


def start_registry(parent_run_id: str) -> Any:
    """Create the sweep's registry (owned by the driver, so it lives exactly as long as the sweep)."""
    return TrainingRegistry.options(name=registry_name(parent_run_id), get_if_exists=True).remote()


def training_key(**parts: Any) -> str:
    """Stable hash of everything that determines trained weights (dataclasses and JSON-able values)."""
    norm = {k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in parts.items()}
    return hashlib.sha256(json.dumps(norm, sort_keys=True, default=str).encode()).hexdigest()[:24]


def find_weights(client: MlflowClient, experiment_id: str, parent_run_id: str, key: str) -> str | None:
    """A run of this sweep that logged weights for ``key``."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{TRAINING_KEY}` = '{key}' and tags.`{WEIGHTS_LOGGED}` = '1' "
            f"and tags.`mlflow.parentRunId` = '{parent_run_id}'"
        ),
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def weights_source(
    client: MlflowClient, experiment_id: str, parent_run_id: str, key: str, run_id: str, poll_s: float = 2.0
) -> str | None:
    """The run whose logged weights this trial should load, or ``None`` when this trial must train them.

    Blocks while another trial of the sweep is training the same key; takes the key over if that trial's run ends
    without weights (failed).
    """
    try:
        registry = ray.get_actor(registry_name(parent_run_id))
    except ValueError:  # no registry (trial run outside a sweep driver): no sharing
        return None
    while True:
        found = find_weights(client, experiment_id, parent_run_id, key)
        if found is not None:
            return found
        owner = ray.get(registry.claim.remote(key, run_id))
        if owner == run_id:
            return None
        status = client.get_run(owner).info.status
        if status in ("FAILED", "KILLED"):
            ray.get(registry.release.remote(key, owner))
            continue
        log.info("training key %s is being trained by run %s; waiting for its weights", key, owner)
        time.sleep(poll_s)


def release(parent_run_id: str, key: str, run_id: str) -> None:
    """Give up a key (the trial failed before logging weights) so a waiting trial can train it."""
    with contextlib.suppress(ValueError):
        ray.get(ray.get_actor(registry_name(parent_run_id)).release.remote(key, run_id))


def run_order(trials: list[Any], train: Any) -> list[Any]:
    """``trials`` reordered so that trials which will share a training come apart: with ``augmentation_at: eval``
    the trials that differ only in their augmentation train one model, and in grid order they are neighbours, so a
    second concurrent trial would wait for the first one's weights while its CPU idles. Here the first trial of every
    such group runs first (in grid order), then the second of every group, and so on. ``train`` is the sweep's
    ``train`` section (or its ``augmentation_at`` value); other settings keep the grid order."""
    if getattr(train, "augmentation_at", train) != "eval":
        return list(trials)
    rank: dict[tuple, int] = {}
    keyed = []
    for i, t in enumerate(trials):
        group = (t.model, t.train_class, t.seed, t.params)
        keyed.append((rank.get(group, 0), i, t))
        rank[group] = rank.get(group, 0) + 1
    return [t for _, _, t in sorted(keyed, key=lambda x: (x[0], x[1]))]
