"""Benchmark (f): end-to-end wall time of `sweeper demo` (fresh directory, MLflow's default store, local Ray).

    python benchmarks/demo_sweep.py

Appends a section to BENCHMARKS.md with the machine, versions, the wall time and what the demo found
(per metric: in how many trials the training class's own test cloud was the nearest).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from common import append_section, machine


def main() -> None:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
        env["HOME"] = tmp
        start = time.perf_counter()
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("sweeper")), "demo"], cwd=tmp, env=env, capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"sweeper demo failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
        exp = client.get_experiment_by_name("sweeper-demo")
        parent = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("sweeper.role") == "sweep")
        nearest = {
            k.split(".", 1)[1]: int(v) for k, v in parent.data.metrics.items() if k.startswith("baseline_nearest.")
        }
        n_trials = int(parent.data.metrics["n_trials"])
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("torch", "ray", "mlflow", "lightly"))
    lines = [
        f"\n## End-to-end `sweeper demo` — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC\n",
        f"- Machine: {machine()}; load average before the run: {os.getloadavg()[0]:.2f}",
        f"- Versions: {versions}",
        f"- Wall time: **{wall:.0f} s** for {n_trials} trials (includes starting Ray and MLflow)",
        "- Baseline nearest (training class's own test cloud ranked 1 of 10 by mean distance), trials out of "
        f"{n_trials}: " + ", ".join(f"{m} {c}" for m, c in nearest.items()),
    ]
    append_section("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
