"""``sweeper status NAME``: where a sweep stands, from MLflow and Tune's state folder, without starting Ray.

The sweep's trial list comes from the state file ``sweeper run`` writes into Tune's folder
(``<storage>/<NAME>/sweeper.json``: the config, the parent run and the tracking URI), or, with ``--experiment``, from
the config logged to the sweep's parent run (``config/sweep.yaml``). Each trial's state is its child run (found by
``sweeper.trial_key``): FINISHED, FAILED (first line of its ``sweeper.error``), RUNNING at the last epoch it logged
(``loss`` with ``step=epoch``), or pending when it has no run yet.

ETA: the mean wall time of the finished trials, times the work left (a pending trial counts 1, a running one the
fraction of its epochs still to do), divided by the trials running at once (at least 1).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from sweeper import tracking
from sweeper.config import ConfigError, SweepConfig

STATE_FILE = "sweeper.json"  # the same name as ``sweeper.tune.STATE_FILE`` (that module imports Ray)


@dataclass(frozen=True)
class TrialStatus:
    """One trial: ``state`` is finished | running | failed | pending; ``epoch``/``epochs`` when known; ``seconds``
    the run's wall time so far (or in all, when it ended); ``error`` the first line of a failure."""

    key: str
    state: str
    epoch: int | None = None
    epochs: int | None = None
    seconds: float | None = None
    error: str | None = None

    def line(self) -> str:
        """``finished  model=…  (93 s)`` and the like, one line."""
        if self.state == "running":
            at = f"at epoch {self.epoch} of {self.epochs}" if self.epoch is not None else "(no epoch reported yet)"
            if self.epoch is not None and self.epochs is not None and self.epoch >= self.epochs:
                at += ", scoring"
            what = f"running {at}"
        elif self.state == "failed":
            what = f"failed: {self.error or 'no error recorded'}"
        else:
            what = self.state
        took = f"  ({self.seconds:.0f} s)" if self.seconds is not None and self.state != "pending" else ""
        return f"{self.key}  {what}{took}"


def _from_tune_state(name: str, storage: str | None) -> tuple[SweepConfig, str, str, str] | None:
    root = storage or os.path.join(os.path.expanduser("~"), "ray_results")
    state_file = Path(root, name, STATE_FILE)
    if not state_file.is_file():
        return None
    state = json.loads(state_file.read_text())
    cfg = SweepConfig.model_validate(state["sweep"])
    return cfg, state["tracking_uri"], state["experiment_id"], state["parent_run_id"]


def _from_mlflow(name: str, experiment: str, uri: str) -> tuple[SweepConfig, str, str, str]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ConfigError(f"no MLflow experiment named {experiment!r} at {tracking.redact(uri)}")
    parent = tracking.find_sweep_run(client, exp.experiment_id, name)
    if parent is None:
        raise ConfigError(f"no sweep named {name!r} in experiment {experiment!r}")
    with tempfile.TemporaryDirectory() as tmp:
        raw = yaml.safe_load(Path(client.download_artifacts(parent.info.run_id, "config/sweep.yaml", tmp)).read_text())
    return SweepConfig.model_validate(raw), uri, exp.experiment_id, parent.info.run_id


def sweep_status(
    name: str, *, experiment: str | None = None, tracking_uri: str | None = None, storage: str | None = None
) -> tuple[list[TrialStatus], str]:
    """Every trial of sweep ``name`` with its state, and the parent run's status. Reads files and MLflow only.

    Raises:
        ConfigError: the sweep is neither in Tune's folder nor (with ``experiment``) in MLflow.
    """
    found = None if experiment else _from_tune_state(name, storage)
    if found is None:
        if not experiment:
            where = Path(storage or os.path.join(os.path.expanduser("~"), "ray_results"), name, STATE_FILE)
            raise ConfigError(f"no sweep named {name!r} (missing {where}); give --experiment to look it up in MLflow")
        found = _from_mlflow(name, experiment, tracking.resolve_tracking_uri(tracking_uri))
    cfg, uri, experiment_id, parent_id = found
    client = MlflowClient(uri)
    runs = {r.data.tags.get(tracking.TRIAL_KEY): r for r in tracking.child_runs(client, experiment_id, parent_id)}
    out = []
    for spec in cfg.trials():
        run = runs.get(spec.key)
        epochs = None if cfg.is_clustering else cfg.settings_for(spec).epochs
        if run is None:
            out.append(TrialStatus(spec.key, "pending", epochs=epochs))
            continue
        info = run.info
        end = info.end_time if info.end_time else None
        seconds = ((end or _now_ms()) - info.start_time) / 1000 if info.start_time else None
        if info.status == "FINISHED":
            out.append(TrialStatus(spec.key, "finished", epochs, epochs, seconds))
        elif info.status in ("FAILED", "KILLED"):
            error = run.data.tags.get("sweeper.error", info.status).strip().splitlines()
            out.append(
                TrialStatus(spec.key, "failed", epochs=epochs, seconds=seconds, error=error[0] if error else None)
            )
        else:
            steps = [m.step for m in client.get_metric_history(info.run_id, "loss")]
            out.append(TrialStatus(spec.key, "running", max(steps) if steps else None, epochs, seconds))
    return out, client.get_run(parent_id).info.status


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def eta_seconds(trials: list[TrialStatus]) -> float | None:
    """Seconds left by the rule in the module docstring; ``None`` before any trial finished."""
    done = [t.seconds for t in trials if t.state == "finished" and t.seconds is not None]
    if not done:
        return None
    running = [t for t in trials if t.state == "running"]
    left = sum(t.state == "pending" for t in trials) + sum(
        1 - min(1.0, (t.epoch or 0) / t.epochs) if t.epochs else 1.0 for t in running
    )
    return sum(done) / len(done) * left / max(1, len(running))


def format_status(name: str, trials: list[TrialStatus], parent_status: str) -> str:
    """The report ``sweeper status`` prints: one line per trial, then the totals and the ETA."""
    lines = [t.line() for t in trials]
    counts = {s: sum(t.state == s for t in trials) for s in ("finished", "running", "failed", "pending")}
    totals = ", ".join(f"{n} {s}" for s, n in counts.items())
    lines.append(f"sweep {name!r} ({parent_status.lower()}): {len(trials)} trials: {totals}")
    eta = eta_seconds(trials)
    if counts["running"] + counts["pending"] == 0:
        lines.append("nothing left to run")
    elif eta is None:
        lines.append("ETA: unknown until a trial finishes")
    else:
        lines.append(f"ETA: ~{eta / 60:.1f} min (mean of {counts['finished']} finished trial(s))")
    return "\n".join(lines)
