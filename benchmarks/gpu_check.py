"""One-command GPU check: the CUDA paths that the CPU test suite cannot reach, in one run, with a table.

``python benchmarks/gpu_check.py`` (< 8 minutes on one GPU) runs, prints and appends to ``BENCHMARKS.md``:

1. the demo sweep (``sweeper demo``, every trial on the GPU): wall time and every trial FINISHED;
2. training throughput in img/s, same run, same model: proj18-style per-image pipeline (fp32) against ours batched
   fp32 and batched bf16 autocast + ``channels_last`` (+ ``torch.compile`` with ``--compile``), by
   ``benchmarks/train_throughput.py``'s configurations;
3. MTopDiv by ripser++ against giotto-ph on the same clouds: equal within 1e-4 relative, and the speed ratio;
4. Hausdorff on the GPU against ``scipy.spatial.distance.directed_hausdorff`` (both directions): equal values (to
   float64 round-off, 1e-9 relative) and the speed ratio;
5. the GPU-readiness checks of ``benchmarks/gpu_readiness.py`` (metrics on the trial's GPU equal the CPU values, a
   CUDA resume equals the uninterrupted run with CPU checkpoints, bf16 autocast losses equal their fp32 criterion).

On a machine without CUDA it runs the CPU half — the demo on the CPU, the CPU pipelines, giotto-ph alone, our CPU
Hausdorff against scipy — and names every part it skipped. ``--ci`` shrinks everything (a 2-trial sweep of one epoch,
a few hundred images and points) so that the test suite runs it on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import BENCHMARKS, append_section, machine

CI_DEMO = [
    "grid.train_class=[0]",
    "grid.augmentation=[none]",
    "dataset.classes=[0,1,2]",
    "dataset.max_train_per_class=40",
    "dataset.max_test_per_class=20",
    "train.epochs=1",
    "score.n_resamples=4",
    "score.sample_size=10",
    "score.metrics=[hausdorff,euclidean,mtopdiv]",
]


def check_demo(ci: bool, cuda: bool, tmp: Path) -> tuple[str, str, bool]:
    """``sweeper demo`` into a fresh sqlite store: (what, result, ok) with the wall time and the FINISHED count."""
    import ray
    from mlflow.tracking import MlflowClient

    from sweeper import tracking
    from sweeper.cli import main

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    sets = [f"tracking.uri={uri}", f"resources.gpus_per_trial={1 if cuda else 0}", *(CI_DEMO if ci else [])]
    argv = ["demo", "--no-report", "--storage-path", str(tmp / "ray_results")]
    argv += [a for s in sets for a in ("--set", s)]
    start = time.perf_counter()
    code = main(argv)
    wall = time.perf_counter() - start
    ray.shutdown()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("sweeper-demo")
    runs = client.search_runs([exp.experiment_id], f"tags.`{tracking.ROLE}` = 'trial'") if exp else []
    finished = sum(r.info.status == "FINISHED" for r in runs)
    ok = code == 0 and finished == len(runs) > 0
    where = "GPU" if cuda else "CPU"
    return f"demo sweep on the {where}", f"{finished}/{len(runs)} trials FINISHED in {wall:.0f} s (exit {code})", ok


def check_throughput(ci: bool, cuda: bool, compile_too: bool) -> list[tuple[str, str, bool]]:
    """img/s of every pipeline of ``train_throughput.configurations`` (best epoch after the first), and × proj18."""
    import torch

    from benchmarks.train_throughput import configurations, run_once
    from experiments.models import TRAIN_DEFAULTS
    from experiments.train import TrainSettings

    device = torch.device("cuda" if cuda else "cpu")
    n, epochs, batch = (256, 2, 64) if ci else (4096, 3, 256)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    settings = TrainSettings(**{**TRAIN_DEFAULTS["simclr"], "epochs": epochs, "batch_size": batch})
    configs = configurations(device, compile_too)
    if ci:  # the in-process per-image variant only attributes the CPU ratio; not needed for the check
        configs = {k: v for k, v in configs.items() if "in-process" not in k}
    best = {}
    for name, options in configs.items():
        results = run_once(images, settings, device, options)
        best[name] = max(r.images_per_second for r in results[1:])
    base = best[next(iter(configs))]
    return [
        (f"training img/s, {name}", f"{v:.0f} img/s ({v / base:.2f}× proj18-style)", v > 0) for name, v in best.items()
    ]


def _clouds(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(0.3, 1.0, size=(n, d))


def _timed(fn, repeats: int = 3) -> tuple[float, float]:
    """(value, best seconds of ``repeats`` calls after one warm-up call)."""
    value = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return value, min(times)


def check_mtopdiv(ci: bool, cuda: bool, has_rpp: bool) -> tuple[str, str, bool]:
    """ripser++ vs giotto-ph MTopDiv on the same clouds (only giotto-ph without CUDA or ripser++)."""
    from experiments.metrics import mtopdiv

    P, Q = _clouds(80 if ci else 600, 16, 1)
    ref, t_ref = _timed(lambda: mtopdiv(P, Q, backend="giotto"), 1)
    if not (cuda and has_rpp):
        return f"MTopDiv giotto-ph ({len(P)}+{len(Q)} points)", f"{ref:.6g} in {t_ref:.2f} s (ripser++ skipped)", True
    got, t_got = _timed(lambda: mtopdiv(P, Q, backend="ripserplusplus"), 1)
    rel = abs(got - ref) / max(abs(ref), 1e-12)
    return (
        f"MTopDiv ripser++ vs giotto-ph ({len(P)}+{len(Q)} points)",
        f"{got:.6g} vs {ref:.6g} (rel. diff {rel:.1e}), {t_ref / t_got:.2f}× giotto-ph's speed",
        rel <= 1e-4,
    )


def check_hausdorff(ci: bool, cuda: bool) -> tuple[str, str, bool]:
    """Our Hausdorff (on the GPU, or the CPU without CUDA) against scipy's directed_hausdorff in both directions."""
    from scipy.spatial.distance import directed_hausdorff

    from experiments.metrics import hausdorff

    P, Q = _clouds(1000 if ci else 20000, 64, 2)
    ref, t_ref = _timed(lambda: max(directed_hausdorff(P, Q)[0], directed_hausdorff(Q, P)[0]), 1)
    device = "cuda" if cuda else "cpu"
    got, t_got = _timed(lambda: hausdorff(P, Q, device=device))
    rel = abs(got - ref) / ref
    return (
        f"Hausdorff on the {device.upper()} vs scipy ({len(P)} x {len(Q)} x {P.shape[1]})",
        f"{got:.10g} vs {ref:.10g} (rel. diff {rel:.1e}), {t_ref / t_got:.2f}× scipy's speed",
        rel <= 1e-9,
    )


def check_readiness() -> list[tuple[str, str, bool]]:
    """``benchmarks/gpu_readiness.py``'s CUDA checks, one row each (CUDA only)."""
    from benchmarks import gpu_readiness as g

    rows = []
    for label, check in [
        ("metrics on the trial's GPU equal the CPU", g.check_metrics),
        ("CUDA resume equals the uninterrupted run, CPU checkpoints", g.check_resume_and_cpu_checkpoints),
        ("bf16 autocast loss equals the fp32 criterion", g.check_autocast),
    ]:
        try:
            rows.append((label, check(), True))
        except Exception as exc:
            rows.append((label, f"{type(exc).__name__}: {exc}", False))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ci", action="store_true", help="tiny sizes (the test suite runs this on 2 CPU cores)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (CUDA)")
    p.add_argument("--out", type=Path, default=BENCHMARKS, help="file the section is appended to")
    args = p.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    try:
        import ripserplusplus  # noqa: F401

        has_rpp = True
    except ImportError:
        has_rpp = False
    skipped = []
    if not cuda:
        skipped += [
            "the demo sweep on a GPU (ran on the CPU)",
            "bf16 autocast + channels_last and torch.compile on CUDA (CPU pipelines timed instead)",
            "ripser++ MTopDiv (giotto-ph alone)",
            "GPU Hausdorff (CPU Hausdorff against scipy instead)",
            "the GPU-readiness checks of benchmarks/gpu_readiness.py (metric device, CUDA resume, bf16 autocast)",
        ]
    elif not has_rpp:
        skipped.append("ripser++ MTopDiv: ripserplusplus is not installed (pip install 'embedding-sweeper[gpu]')")
    started = time.perf_counter()
    rows: list[tuple[str, str, bool]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(check_demo(args.ci, cuda, Path(tmp)))
    rows += check_throughput(args.ci, cuda, args.compile and cuda)
    rows.append(check_mtopdiv(args.ci, cuda, has_rpp))
    rows.append(check_hausdorff(args.ci, cuda))
    if cuda:
        rows += check_readiness()
    wall = time.perf_counter() - started

    table = ["| check | result | ok |", "|---|---|---|"]
    table += [f"| {what} | {result} | {'yes' if ok else 'NO'} |" for what, result, ok in rows]
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = [
        f"## GPU check{' (CI-sized)' if args.ci else ''} — {now}",
        "",
        f"`python benchmarks/gpu_check.py{' --ci' if args.ci else ''}`; machine: {machine()}; wall time {wall:.0f} s.",
        "",
        *table,
        "",
        ("Skipped: " + "; ".join(skipped) + ".") if skipped else "Nothing skipped.",
    ]
    text = "\n".join(section)
    print(text)
    append_section(text, args.out)
    print(f"appended to {args.out}")
    return 0 if all(ok for _, _, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
