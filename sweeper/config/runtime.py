"""The config sections that say where and how a sweep runs, not what it computes: per-trial resources, the MLflow
tracking URI, Tune's storage and retries (none of them in :data:`~sweeper.config.schema.RESULT_SECTIONS`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StrictModel(BaseModel):
    """A config section: unknown keys are errors (``extra="forbid"``), values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ResourcesConfig(StrictModel):
    """Per-trial resources. ``gpus_per_trial: auto`` is 1 when the cluster has GPUs, else 0; fractions share a GPU.
    ``bootstrap_workers: auto`` scores a small bootstrap in the trial's own process and otherwise reserves one worker
    (``sweeper.bootstrap_plan``); a number reserves that many workers, 0 always scores in the trial's process (a
    small machine whose cores are all busy training gains nothing from a worker that waits for them)."""

    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float | Literal["auto"] = "auto"
    bootstrap_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    cpus_per_bootstrap_worker: float = Field(1.0, gt=0)
    max_concurrent_trials: int | None = Field(None, ge=1)

    @field_validator("gpus_per_trial")
    @classmethod
    def _gpus_not_negative(cls, v: Any) -> Any:
        if v != "auto" and v < 0:
            raise ValueError("must be >= 0 or 'auto'")
        return v


class TrackingConfig(StrictModel):
    """MLflow tracking URI; ``null`` means ``MLFLOW_TRACKING_URI`` or MLflow's own default."""

    uri: str | None = None


class TuneRunConfig(StrictModel):
    """Where Tune keeps trial state (``null``: ``~/ray_results``), how often a failed trial is retried, and whether a
    trial worker process runs the next trial of the same resource shape (``reuse_actors``: no new process, imports,
    placement group per trial)."""

    storage_path: str | None = None
    max_failures: int = Field(1, ge=0)
    reuse_actors: bool = True
