"""The artifact layouts of a trial run, in one place: the embeddings frames, the score tables, ``model/`` (weights and
``model.json``) and a family's extra artifacts.

- ``embeddings/train.parquet`` (the reference cloud), ``embeddings/test.parquet`` (the evaluation clouds),
  ``embeddings/anomaly.parquet`` (the anomaly sets): :func:`embeddings_frame` rows, one per image;
- ``scores/scores.parquet`` (the tidy score table, :data:`~sweeper.scoring.SCORE_COLUMNS`), ``scores/bootstrap.parquet``
  (raw resamples), ``scores/scores_table.json`` (the MLflow table): :func:`log_scores`;
- ``model/weights.pt`` (a CPU state dict) and ``model/model.json`` (:func:`model_info`): :func:`log_model`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from torch import nn

from experiments.checkpointing import cpu_state_dict
from sweeper import tracking
from sweeper.scoring import SCORE_COLUMNS, TrialScores

TRAIN_EMBEDDINGS = "embeddings/train.parquet"
TEST_EMBEDDINGS = "embeddings/test.parquet"
ANOMALY_EMBEDDINGS = "embeddings/anomaly.parquet"
SCORES = "scores/scores.parquet"
BOOTSTRAP = "scores/bootstrap.parquet"
WEIGHTS = "model/weights.pt"


def embeddings_frame(z: np.ndarray, labels: list[int], class_names: list[str], augmentation: str) -> pd.DataFrame:
    """The embeddings artifact layout: ``index, label, class_name, augmentation, dim_0 … dim_{d-1}``."""
    meta = pd.DataFrame(
        {"index": np.arange(len(z)), "label": labels, "class_name": class_names, "augmentation": augmentation}
    )
    dims = pd.DataFrame(z, columns=[f"dim_{i}" for i in range(z.shape[1])])
    return pd.concat([meta, dims], axis=1)


def log_artifacts(client: MlflowClient, run_id: str, artifacts: dict[str, Any]) -> None:
    """Log a family's extra artifacts: ``bytes`` as the file at its path, anything else as a figure (PNG)."""
    for path, item in artifacts.items():
        if isinstance(item, bytes):
            folder, name = path.rsplit("/", 1) if "/" in path else ("", path)
            tracking.log_files(client, run_id, {name: item}, folder or None)
        else:
            tracking.log_figure(client, run_id, item, path)


def log_scores(
    client: MlflowClient,
    run_id: str,
    model: str,
    train_class: str,
    augmentation: str,
    scores: TrialScores,
    previous: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> None:
    """Log a trial's score table (parquet + MLflow table), raw resamples and summary metrics; with ``previous``
    (the run's existing table and resamples) the new rows are appended to them."""
    new = scores.table.assign(model=model, train_class=train_class, augmentation=augmentation)[SCORE_COLUMNS]
    table, raw = new, scores.raw
    if previous is not None:
        table = pd.concat([previous[0], new], ignore_index=True)
        raw = pd.concat([previous[1], raw], ignore_index=True)
    tracking.log_parquet(client, run_id, table, SCORES)
    tracking.log_parquet(client, run_id, raw, BOOTSTRAP)
    client.log_table(run_id, data=new, artifact_file="scores/scores_table.json")  # MLflow appends to a table
    tracking.log_metrics(client, run_id, scores.summary)


def frame_clouds(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The clouds of an :func:`embeddings_frame`, by ``class_name`` in order of appearance."""
    dims = [c for c in frame.columns if c.startswith("dim_")]
    return {str(c): g[dims].to_numpy() for c, g in frame.groupby("class_name", sort=False)}


def frame_points(frame: pd.DataFrame) -> np.ndarray:
    """All the points of an :func:`embeddings_frame` (its ``dim_*`` columns), in row order."""
    return frame[[c for c in frame.columns if c.startswith("dim_")]].to_numpy()


def model_info(model: str, family: str, options: dict[str, Any], mean: Any, std: Any, image_size: int) -> dict:
    """``model/model.json``: what rebuilds the logged weights (``build_model(model, mean, std, image_size=…,
    **options)``) and the family that trained them."""
    return {"model": model, "family": family, "options": options, "mean": mean, "std": std, "image_size": image_size}


def log_model(client: MlflowClient, run_id: str, model: nn.Module, info: dict[str, Any]) -> None:
    """Log ``model/weights.pt`` (CPU tensors: loadable without a GPU) and ``model/model.json``."""
    files = {"weights.pt": tracking.torch_bytes(cpu_state_dict(model)), "model.json": tracking.json_bytes(info)}
    tracking.log_files(client, run_id, files, "model")
