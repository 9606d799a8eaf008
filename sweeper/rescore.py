"""``sweeper rescore``: add metrics to finished trials from their logged embeddings, in the same child runs.

Nothing is retrained and no run is created: for every FINISHED trial run of an experiment, the metrics it lacks are
computed (bootstrap resamples as Ray tasks, with the trial's own ``n_resamples``, ``sample_size`` and seed, so the
draws are the ones the original metrics used) and appended to its score tables and summary metrics. Running it
twice changes nothing.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field

import pandas as pd
from mlflow.tracking import MlflowClient

from analysis.load import finished_trial_runs
from experiments.models.family import FAMILIES
from sweeper import tracking
from sweeper.artifacts import (
    ANOMALY_EMBEDDINGS,
    BOOTSTRAP,
    SCORES,
    TEST_EMBEDDINGS,
    TRAIN_EMBEDDINGS,
    frame_clouds,
    frame_points,
)
from sweeper.config import CLASS_SET_SEPARATOR
from sweeper.scoring import ScoreSettings, metric_options_from_params
from sweeper.stages import Embedded, log, score

logger = logging.getLogger(__name__)


@dataclass
class RescoreReport:
    """Which runs got which metrics."""

    updated: dict[str, list[str]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)


def rescore(
    experiment: str, metrics: list[str], *, tracking_uri: str, workers: int = 1, cpus_per_task: float = 1.0
) -> RescoreReport:
    """Compute the ``metrics`` each finished trial of ``experiment`` lacks and append them to its run."""
    client = MlflowClient(tracking_uri)
    report = RescoreReport()
    for run in finished_trial_runs(experiment, tracking_uri):
        rid, p = run.info.run_id, run.data.params
        family = FAMILIES.get(p.get("family", ""))
        if family is not None and family.own_scores:  # scored by itself (clustering), no clouds to rescore
            report.unchanged.append(rid)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            table = pd.read_parquet(client.download_artifacts(rid, SCORES, tmp))
            raw = pd.read_parquet(client.download_artifacts(rid, BOOTSTRAP, tmp))
            missing = [m for m in metrics if m not in set(table["metric"])]
            if not missing:
                report.unchanged.append(rid)
                continue
            train = pd.read_parquet(client.download_artifacts(rid, TRAIN_EMBEDDINGS, tmp))
            test = pd.read_parquet(client.download_artifacts(rid, TEST_EMBEDDINGS, tmp))
            have = {f.path for f in client.list_artifacts(rid, "embeddings")}
            anomalies = (
                frame_clouds(pd.read_parquet(client.download_artifacts(rid, ANOMALY_EMBEDDINGS, tmp)))
                if ANOMALY_EMBEDDINGS in have
                else {}
            )
        train_class = p["train_class"]
        seen = json.loads(p["ood"])["seen_classes"] if "ood" in p else []
        settings = ScoreSettings(
            metrics=tuple(missing),
            n_resamples=int(p["n_resamples"]),
            sample_size=_sizes(p["sample_size"]),
            seed=int(p["score_seed"]),
            knn_k=int(p.get("knn_k", 5)),
            metric_options=metric_options_from_params(p),
            workers=workers,
            cpus_per_task=cpus_per_task,
        )
        labels = dict(zip(test["class_name"].astype(str), test["label"].astype(int), strict=True))
        embedded = Embedded(frame_points(train), frame_clouds(test), anomalies)
        scores = score(
            embedded, train["label"].to_numpy(), train_class.split(CLASS_SET_SEPARATOR), seen, labels, settings
        )
        label = str(table["model"].iloc[0]) if len(table) else p["model"]  # keeps a variant's label (odm[mining=True])
        log(client, rid, label, train_class, p["augmentation"], scores, previous=(table, raw), report=False)
        before = [m for m in run.data.tags.get("sweeper.rescored", "").split(",") if m]
        tracking.set_tags(client, rid, {"sweeper.rescored": ",".join(before + missing)})
        report.updated[rid] = missing
        logger.info("run %s (%s): added %s", rid, run.data.tags.get(tracking.TRIAL_KEY), ", ".join(missing))
    return report


def _sizes(param: str) -> int | tuple[int, ...]:
    """The logged ``sample_size`` param: ``"100"`` or a JSON list ``"[20, 40]"``."""
    v = json.loads(param)
    return int(v) if isinstance(v, int) else tuple(int(n) for n in v)
