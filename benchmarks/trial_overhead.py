"""Per-trial overhead of `sweeper run` on tiny trials; appends a section to BENCHMARKS.md.

Usage (from the repository root)::

    python benchmarks/trial_overhead.py [--trials 40] [--variant NAME=CODE_DIR[:key=value,...]] ... [--output FILE]

Workload (issue #21): digits, 16 training and 16 test images per class (10 classes), 1 epoch of batch 16, 4 resamples
of 8 points, Hausdorff only; a grid of ``simclr, barlow_twins`` x ``--trials / 4`` training classes x ``none,
gaussian_noise``. Each variant runs the sweep once through the ``sweeper run`` console script in a fresh directory
(its own local Ray and sqlite MLflow store), with ``PYTHONPATH=CODE_DIR`` (``.``: this checkout; another directory,
e.g. an exported older commit, to measure a "before") and the variant's ``key=value`` config overrides.

Where the numbers come from:

- the sweep's wall time: this script's clock around ``sweeper run --no-report`` (includes starting Ray and the
  driver's imports; not the HTML report, a separate step after the trials);
- every phase: the trial's own ``timing.*`` metrics (``sweeper.timing``: wall-clock timestamps taken in the trial
  process), training as the trial's ``epoch_seconds``;
- the trial totals from the records: MLflow's run start and end times, Tune's ``time_total_s`` (``result.json``).

Reported per variant: wall, the span from the first trial's start to the last trial's end, the mean number of trials
running at once, the amortised overhead per trial ``wall / trials - training`` (the issue's figure of merit), and a
breakdown (median per trial, and the sum over the sweep) of process start, imports, worker start-up before the trial,
MLflow run set-up, data loading, model set-up, training, checkpoint persistence, embedding, scoring, MLflow logging,
closing the run, and the gap from the previous trial's end to the trial's start.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_section, machine, version

ROOT = Path(__file__).resolve().parents[1]


def sweep_config(n_trials: int, storage: str) -> dict:
    """The issue's tiny sweep with ``n_trials`` trials (a multiple of 4, at most 40)."""
    if n_trials % 4 or not 4 <= n_trials <= 40:
        raise SystemExit(f"--trials must be a multiple of 4 between 4 and 40, got {n_trials}")
    return {
        "name": "overhead",
        "experiment": "overhead-exp",
        "dataset": {"name": "digits", "max_train_per_class": 16, "max_test_per_class": 16},
        "grid": {
            "model": ["simclr", "barlow_twins"],
            "train_class": [str(c) for c in range(n_trials // 4)],
            "augmentation": ["none", "gaussian_noise"],
            "seed": [0],
        },
        "augmentations": {"gaussian_noise": {"sigma": 0.1}},
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.01},
        "score": {"metrics": ["hausdorff"], "n_resamples": 4, "sample_size": 8, "seed": 0},
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
        "tune": {"storage_path": storage, "max_failures": 0},
    }


def parse_variant(text: str) -> tuple[str, Path, list[str]]:
    """``NAME=CODE_DIR[:key=value,...]`` -> (name, code dir, overrides)."""
    name, _, rest = text.partition("=")
    code, _, sets = rest.partition(":")
    return name, Path(code or ".").resolve(), [s for s in sets.split(",") if s]


def run_variant(code: Path, overrides: list[str], n_trials: int) -> dict:
    """Run the sweep once with the code under ``code``; the trials' records and the wall time."""
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        config = Path(tmp, "overhead.yaml")
        config.write_text(yaml.safe_dump(sweep_config(n_trials, str(Path(tmp, "ray_results")))))
        uri = f"sqlite:///{tmp}/mlflow.db"
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(MLFLOW_TRACKING_URI=uri, HOME=tmp, PYTHONPATH=str(code))
        cmd = [
            sys.executable,
            "-c",
            "from sweeper.cli import main; raise SystemExit(main())",
            "run",
            str(config),
            "--no-report",
        ]
        for o in overrides:
            cmd += ["--set", o]
        for _ in range(3):  # on a crowded machine Ray's node can miss its fixed 30 s start-up deadline: retry
            load = os.getloadavg()[0]
            start = time.time()
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
            wall = time.time() - start
            if "timed out during startup" not in proc.stderr:
                break
        if proc.returncode != 0:
            raise SystemExit(f"sweeper run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("overhead-exp")
        trials = []
        for run in client.search_runs([exp.experiment_id], max_results=1000):
            if run.data.tags.get("sweeper.role") != "trial":
                continue
            m = run.data.metrics
            training = sum(x.value for x in client.get_metric_history(run.info.run_id, "epoch_seconds"))
            trials.append(
                {
                    "start": run.info.start_time / 1000,
                    "end": run.info.end_time / 1000,
                    "training": training,
                    **{k.removeprefix("timing."): v for k, v in m.items() if k.startswith("timing.")},
                }
            )
        tune_total = []
        for result in Path(tmp, "ray_results", "overhead").glob("*/result.json"):
            lines = [json.loads(x) for x in result.read_text().splitlines() if x.strip()]
            if lines:
                tune_total.append(lines[-1]["time_total_s"])
    if len(trials) != n_trials:
        raise SystemExit(f"expected {n_trials} trial runs, found {len(trials)}")
    return {"wall": wall, "load": load, "trials": trials, "tune_total_s": tune_total}


def breakdown(rec: dict) -> dict[str, list[float]]:
    """Per trial, seconds in each phase (see the module docstring)."""
    trials = sorted(rec["trials"], key=lambda t: t["trial_started_at"])
    rows: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        rows.setdefault(name, []).append(max(value, 0.0))

    ends: list[float] = []
    for t in trials:
        first = t.get("first_in_process", 1.0) == 1.0
        proc = t.get("process_started_at")
        imp0, imp1 = t.get("imports_started_at"), t.get("imported_at")
        add("process start (to first import)", imp0 - proc if first and proc and imp0 else 0.0)
        add("imports (sweeper.trial, torch, mlflow, ...)", imp1 - imp0 if first and imp0 and imp1 else 0.0)
        add("worker start-up after imports", t["trial_started_at"] - imp1 if first and imp1 else 0.0)
        add("MLflow run set-up, params", t.get("setup", 0.0))
        add("data loading", t.get("data", 0.0))
        add("model set-up (train phase minus training)", t.get("train", 0.0) - t["training"])
        add("training (epoch_seconds)", t["training"])
        add("checkpoint persistence", t.get("checkpoint", 0.0))
        add("embedding", t.get("embed", 0.0))
        add("scoring", t.get("score", 0.0))
        add("MLflow logging", t.get("log", 0.0))
        add("closing the run", t["end"] - t["trial_ended_at"])
        before = [e for e in ends if e <= t["start"]]
        add("gap since the previous trial's end", t["start"] - max(before) if before else 0.0)
        ends.append(t["end"])
    return rows


def summary(rec: dict) -> dict[str, float]:
    trials = rec["trials"]
    n = len(trials)
    span = max(t["end"] for t in trials) - min(t["start"] for t in trials)
    busy = sum(t["end"] - t["start"] for t in trials)
    training = statistics.mean(t["training"] for t in trials)
    return {
        "trials": n,
        "wall": rec["wall"],
        "span": span,
        "concurrency": busy / span if span > 0 else 1.0,
        "per_trial": rec["wall"] / n,
        "training": training,
        "overhead": rec["wall"] / n - training,
        "in_run": statistics.median(t["end"] - t["start"] for t in trials),
        "tune_total": statistics.median(rec["tune_total_s"]) if rec["tune_total_s"] else float("nan"),
        "load": rec["load"],
        "workers": len({t.get("pid") for t in trials}),
    }


def report(results: dict[str, dict]) -> str:
    names = list(results)
    sums = {k: summary(v) for k, v in results.items()}
    rows = {k: breakdown(v) for k, v in results.items()}
    head = "| | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names)
    lines = [
        "## Per-trial overhead: tiny trials through `sweeper run` — "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC\n",
        f"- Machine: {machine()} (2 CPU cores, no GPU: local Ray with the machine's cores); "
        f"torch {version('torch')}, ray {version('ray')}, mlflow {version('mlflow')}",
        "- Workload: digits, 16 train / 16 test images per class, 1 epoch (batch 16), 4 resamples of 8 points, "
        "Hausdorff only; local sqlite store; `python benchmarks/trial_overhead.py`",
        "- The machine is shared: the 1-minute load average when each variant started is in the table.\n",
        head,
    ]
    fmt = [
        ("trials", "trials", "{:.0f}"),
        ("wall time of `sweeper run` (s)", "wall", "{:.0f}"),
        ("first trial start to last trial end (s)", "span", "{:.0f}"),
        ("trials running at once (mean)", "concurrency", "{:.2f}"),
        ("trial worker processes", "workers", "{:.0f}"),
        ("wall per trial (s)", "per_trial", "{:.2f}"),
        ("training per trial (s)", "training", "{:.2f}"),
        ("**overhead per trial: wall / trials - training (s)**", "overhead", "**{:.2f}**"),
        ("MLflow run start to end, median (s)", "in_run", "{:.2f}"),
        ("Tune `time_total_s`, median (s)", "tune_total", "{:.2f}"),
        ("load average at start", "load", "{:.1f}"),
    ]
    for label, key, f in fmt:
        lines.append(f"| {label} | " + " | ".join(f.format(sums[n][key]) for n in names) + " |")
    lines += [
        "",
        "Breakdown, seconds: median per trial / sum over the sweep (phases overlap when trials run at once).\n",
    ]
    lines.append(head)
    for phase in rows[names[0]]:
        cells = [f"{statistics.median(rows[n][phase]):.2f} / {sum(rows[n][phase]):.1f}" for n in names]
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="number of trials (multiple of 4, at most 40)")
    parser.add_argument(
        "--variant",
        action="append",
        help="NAME=CODE_DIR[:key=value,...] (repeatable; default: after=.); config overrides as `sweeper run --set`",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="Markdown file to append to")
    parser.add_argument("--json", type=Path, help="also write the raw records here")
    parser.add_argument(
        "--include", type=Path, action="append", default=[], help="records of an earlier run (its --json) to report too"
    )
    args = parser.parse_args(argv)
    results = {}
    for path in args.include:
        results.update(json.loads(path.read_text()))
    for text in args.variant or ([] if args.include else ["after=."]):
        name, code, overrides = parse_variant(text)
        print(f"variant {name}: code {code}, overrides {overrides}", flush=True)
        results[name] = run_variant(code, overrides, args.trials)
        print(json.dumps(summary(results[name])), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results))
    section = report(results)
    append_section(section, args.output)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
