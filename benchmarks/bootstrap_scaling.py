"""Bootstrap throughput vs number of workers (local Ray, 2 CPUs); appends a section to BENCHMARKS.md.

Usage (from the repository root)::

    python benchmarks/bootstrap_scaling.py [--resamples 200] [--repeats 2] [--output BENCHMARKS.md]

Workload: proj18's scoring shape -- a 5 000-point reference, 10 evaluated clouds of 1 000 points, 64-d,
L2-normalised (class centre + noise), ``--resamples`` resamples of 100 points per class, metrics
{hausdorff, euclidean, mtopdiv} (giotto-ph) -- scored by ``sweeper.bootstrap.bootstrap_scores``.

Workers are made real the way the sweeper makes them: a Tune trial reserves one 1-CPU bundle per bootstrap worker
in its placement group and its tasks run inside it. Here a placement group of ``w`` bundles ``{"CPU": 1}`` is created
on ``ray.init(num_cpus=2)`` and a driver task (0 CPUs) inside it, capturing its child tasks, calls
``bootstrap_scores(..., workers=w)``, so at most ``w`` tasks run at once. The Ray worker processes are started and
warmed up (imports) before any timing. Reported: wall time of the call (best of ``--repeats``), throughput in
resamples x metrics per second, speed-up ``t(1) / t(w)`` and efficiency ``speed-up / w``; the values of every run
are checked to be identical across worker counts (MTopDiv bit for bit, distances to 1e-12).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_section, machine, version

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["hausdorff", "euclidean", "mtopdiv"]
WORKERS = (1, 2)


def clouds(seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((10, 64))

    def cloud(c: int, n: int) -> np.ndarray:
        X = centres[c] + 1.5 * rng.standard_normal((n, 64))
        return X / np.linalg.norm(X, axis=1, keepdims=True)

    return cloud(0, 5000), {f"class{c}": cloud(c, 1000) for c in range(10)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="Markdown file to append to")
    parser.add_argument("--resamples", type=int, default=200, help="resamples per class")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per worker count (best reported)")
    parser.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="> 1: a multi-node local cluster (ray.cluster_utils.Cluster: a 0-CPU head and NODES "
        "worker nodes sharing the 2 CPUs, each its own raylet and object store); the workers' "
        "bundles are spread over the nodes",
    )
    args = parser.parse_args(argv)
    if args.resamples < 1 or args.repeats < 1:
        parser.error("--resamples and --repeats must be positive")

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from sweeper.bootstrap import bootstrap_scores, resamples_per_task

    reference, evaluated = clouds()
    cluster = None
    if args.nodes > 1:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        for _ in range(args.nodes):
            cluster.add_node(num_cpus=max(1, 2 // args.nodes))
        ray.init(address=cluster.address, log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)

    @ray.remote(num_cpus=0)
    def driver(reference, evaluated, n_resamples, workers):
        start = time.perf_counter()
        _, raw = bootstrap_scores(
            reference,
            evaluated,
            METRICS,
            n_resamples=n_resamples,
            sample_size=100,
            seed=0,
            workers=workers,
            metric_options={"mtopdiv": {"backend": "giotto"}},
        )
        return time.perf_counter() - start, raw

    def run(workers: int, n_resamples: int, data=None):
        pg = placement_group([{"CPU": 1}] * workers, strategy="SPREAD" if cluster else "PACK")
        ray.get(pg.ready())
        try:
            strategy = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
            ref, ev = data if data is not None else (reference, evaluated)
            return ray.get(driver.options(scheduling_strategy=strategy).remote(ref, ev, n_resamples, workers))
        finally:
            remove_placement_group(pg)

    try:
        run(2, 4, (reference[:300], {k: v[:200] for k, v in evaluated.items()}))  # start + warm both workers
        results: dict[int, tuple[float, object]] = {}
        loads: dict[int, str] = {}
        for workers in WORKERS:
            loads[workers] = f"{os.getloadavg()[0]:.2f}"
            best = None
            for _ in range(args.repeats):
                seconds, raw = run(workers, args.resamples)
                if best is None or seconds < best[0]:
                    best = (seconds, raw)
            results[workers] = best
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()

    base_raw = results[1][1]
    consistent = True
    for workers in WORKERS[1:]:
        raw = results[workers][1]
        for metric in METRICS:
            a = base_raw[base_raw.metric == metric]["value"].to_numpy()
            b = raw[raw.metric == metric]["value"].to_numpy()
            consistent &= bool(np.array_equal(a, b) if metric == "mtopdiv" else np.allclose(a, b, rtol=1e-12, atol=0))
    work = 10 * args.resamples * len(METRICS)
    t1 = results[1][0]
    lines = [
        "## Bootstrap scaling: throughput vs workers"
        + (f" (multi-node local cluster, {args.nodes} nodes)" if cluster else "")
        + " — "
        + dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "",
        f"`python benchmarks/bootstrap_scaling.py --resamples {args.resamples}"
        + (
            f" --nodes {args.nodes}`: `bootstrap_scores` on a local multi-node cluster (0-CPU head + {args.nodes} "
            "nodes, one raylet and object store each; bundles spread over the nodes), 10 classes x "
            if cluster
            else "`: `bootstrap_scores` on a local Ray (`ray.init(num_cpus=2)`), 10 classes x "
        )
        + f"{args.resamples} resamples of 100 points x {{hausdorff, euclidean, mtopdiv}}, 5 000-point reference, "
        "1 000-point eval clouds, 64-d. Workers = 1-CPU bundles of a placement group holding the call (as a Tune "
        f"trial's bootstrap workers), best of {args.repeats} runs, Ray workers warmed up first. Task granularity: "
        f"{resamples_per_task(args.resamples, 10, METRICS, 1, 4)} resamples per task with 1 worker, "
        f"{resamples_per_task(args.resamples, 10, METRICS, 2, 4)} with 2 (rule in `sweeper/bootstrap.py`).",
        "",
        f"- Machine: {machine()}",
        "- Versions: " + ", ".join(f"{p} {version(p)}" for p in ("ray", "torch", "giotto-ph", "numpy", "scipy")),
        "",
        "| workers | load before | wall time (s) | throughput (resample-metrics/s) | speed-up | efficiency |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    efficiencies = []
    for workers in WORKERS:
        seconds = results[workers][0]
        speedup = t1 / seconds
        efficiencies.append(speedup / workers)
        lines.append(
            f"| {workers} | {loads[workers]} | {seconds:.2f} | {work / seconds:.0f} | {speedup:.2f} "
            f"| {speedup / workers:.2f} |"
        )
    lines += [
        "",
        f"Values identical across worker counts: {'yes' if consistent else 'NO'}.",
        f"Target: efficiency >= 0.7 per added worker — {'met' if min(efficiencies) >= 0.7 else 'NOT met'} "
        f"({efficiencies[-1]:.2f} at {WORKERS[-1]} workers).",
    ]
    section = "\n".join(lines) + "\n"
    append_section(section, args.output)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
