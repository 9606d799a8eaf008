"""Loading a logged sweep back: first (cold cache) and second (warm cache) ``load_runs`` / ``load_scores`` /
``load_bootstrap`` on 100 trials; appends a section to BENCHMARKS.md.

Usage (from the repository root)::

    python benchmarks/load_runs.py [--trials 100] [--output BENCHMARKS.md]

It builds a temporary sqlite MLflow store (artifacts in a folder beside it) holding one sweep in the format
``sweeper`` logs: a parent run (``sweeper.role`` = ``sweep``) and ``--trials`` child runs tagged like
``sweeper.trial`` does (``sweeper.role`` = ``trial``, ``sweeper.trial_key``, ``mlflow.parentRunId``,
``sweeper.sweep``), each FINISHED with the trial's params, per-epoch ``loss`` / ``images_per_second`` / ``lr`` /
``epoch_seconds``, the summary metrics, and the artifacts at proj18's sizes: ``scores/scores.parquet`` (10 eval
classes x 3 cloud metrics + 9 k-NN AUROC rows), ``scores/bootstrap.parquet`` (10 x 3 x 1 000 resamples),
``embeddings/train.parquet`` (5 000 x 64) and ``embeddings/test.parquet`` (10 x 1 000 x 64). The values are random
(what is measured is reading them). Then, with an empty artifact cache, it times each loader twice in a row: the
first call downloads every artifact it needs into the cache, the second reads the cache (one artifact listing per
run, no download). Wall time by ``time.perf_counter``; the store's own start-up is paid before the first timing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests
from common import append_section, machine
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from analysis.load import load_bootstrap, load_runs, load_scores

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("simclr", "barlow_twins")
AUGMENTATIONS = ("none", "gaussian_noise", "gaussian_blur", "non_rigid")
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CLOUD_METRICS = ("hausdorff", "euclidean", "mtopdiv")
TARGET_SECONDS = 10.0


def _log_parquet(client: MlflowClient, run_id: str, df: pd.DataFrame, artifact: str, tmp: Path) -> None:
    folder, name = os.path.split(artifact)
    path = tmp / name
    df.to_parquet(path, index=False)
    client.log_artifact(run_id, str(path), folder)
    path.unlink()


def fake_trial(
    rng: np.random.Generator,
    model: str,
    train_class: str,
    augmentation: str,
    n_resamples: int,
    sample_size: int,
    train_rows: int,
    test_rows: int,
    dim: int,
    metrics: tuple[str, ...] = CLOUD_METRICS,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """A trial's score table, raw resamples, embeddings and summary metrics in the logged format."""
    raw, rows, summary = [], [], {}
    for metric in metrics:
        scale = {"hausdorff": 1.0, "euclidean": 5500.0, "mtopdiv": 0.5}.get(metric, 1.0)
        means = {c: scale * (1.0 if c == train_class else 1.0 + 0.1 * rng.random()) for c in CLASSES}
        values = {c: rng.normal(means[c], 0.03 * scale, n_resamples) for c in CLASSES}
        base = values[train_class]
        for c in CLASSES:
            v = values[c]
            p = np.nan if c == train_class else float(np.mean(base[:, None] < v[None, :]))
            raw.append(
                pd.DataFrame({"eval_class": c, "metric": metric, "resample": np.arange(n_resamples), "value": v})
            )
            rows.append(
                {
                    "eval_class": c,
                    "metric": metric,
                    "mean": v.mean(),
                    "std": v.std(ddof=1),
                    "ci_low": np.percentile(v, 2.5),
                    "ci_high": np.percentile(v, 97.5),
                    "n_resamples": n_resamples,
                    "sample_size": sample_size,
                    "p_baseline_below": p,
                }
            )
            summary[f"score.{metric}.{c}.mean"] = float(v.mean())
            if c != train_class:
                summary[f"p_baseline_below.{metric}.{c}"] = p
        order = sorted(CLASSES, key=lambda c: (values[c].mean(), c == train_class))
        summary[f"baseline_rank.{metric}"] = float(order.index(train_class) + 1)
        summary[f"baseline_auroc.{metric}"] = float(rng.random())
    for c in CLASSES:
        if c != train_class:
            a = float(rng.uniform(0.5, 1.0))
            rows.append(
                {
                    "eval_class": c,
                    "metric": "knn_auroc",
                    "mean": a,
                    "std": 0.02,
                    "ci_low": a - 0.04,
                    "ci_high": min(1.0, a + 0.04),
                    "n_resamples": n_resamples,
                    "sample_size": test_rows,
                    "p_baseline_below": np.nan,
                }
            )
            summary[f"score.knn_auroc.{c}.mean"] = a
    summary["knn_auroc"] = float(np.mean([r["mean"] for r in rows if r["metric"] == "knn_auroc"]))
    scores = pd.DataFrame(rows).assign(model=model, train_class=train_class, augmentation=augmentation)
    scores = scores[
        [
            "model",
            "train_class",
            "augmentation",
            "eval_class",
            "metric",
            "mean",
            "std",
            "ci_low",
            "ci_high",
            "n_resamples",
            "sample_size",
            "p_baseline_below",
        ]
    ]

    def embeddings(n: int, names: list[str], aug: str) -> pd.DataFrame:
        z = rng.standard_normal((n, dim)).astype(np.float32)
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        meta = pd.DataFrame(
            {
                "index": np.arange(n),
                "label": [CLASSES.index(c) for c in names],
                "class_name": names,
                "augmentation": aug,
            }
        )
        return pd.concat([meta, pd.DataFrame(z, columns=[f"dim_{i}" for i in range(dim)])], axis=1)

    train = embeddings(train_rows, [train_class] * train_rows, "none")
    test = embeddings(test_rows * len(CLASSES), [c for c in CLASSES for _ in range(test_rows)], augmentation)
    return scores, pd.concat(raw, ignore_index=True), train, test, summary


def build_store(
    uri: str,
    root: Path,
    n_trials: int,
    *,
    n_resamples: int,
    train_rows: int,
    test_rows: int,
    dim: int,
    epochs: int,
    artifact_location: str | None = None,
    seed: int = 0,
    metrics: tuple[str, ...] = CLOUD_METRICS,
) -> str:
    """One sweep of ``n_trials`` finished trials in the store at ``uri`` (``root``: scratch folder); returns the
    experiment name."""
    client = MlflowClient(uri)
    experiment = "bench-load"
    exp_id = client.create_experiment(experiment, artifact_location=artifact_location)
    parent = client.create_run(
        exp_id, tags={"sweeper.role": "sweep", "sweeper.sweep": "bench", "mlflow.runName": "bench"}
    ).info.run_id
    client.log_batch(parent, params=[Param("sweep_name", "bench"), Param("n_trials", str(n_trials))])
    rng = np.random.default_rng(seed)
    grid = [
        (m, c, a, s)
        for s in range(1 + n_trials // (len(MODELS) * len(CLASSES) * len(AUGMENTATIONS)))
        for m in MODELS
        for a in AUGMENTATIONS
        for c in CLASSES
    ][:n_trials]
    tmp = root / "tmp"
    tmp.mkdir()
    for i, (model, tc, aug, s) in enumerate(grid):
        key = f"model={model}/train_class={tc}/augmentation={aug}/seed={s}"
        run_id = client.create_run(
            exp_id,
            run_name=key.replace("/", " "),
            tags={
                "sweeper.trial_key": key,
                "mlflow.parentRunId": parent,
                "sweeper.role": "trial",
                "sweeper.sweep": "bench",
            },
        ).info.run_id
        params = {
            "model": model,
            "train_class": tc,
            "augmentation": aug,
            "seed": s,
            "dataset": "cifar10",
            "image_size": 32,
            "epochs": epochs,
            "batch_size": 256,
            "optimizer": "sgd",
            "lr": 0.006,
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "schedule": "cosine",
            "augmentation_at": "both",
            "augmentation_params": "{}",
            "model_options": "{}",
            "embed_layer": "backbone",
            "l2_normalize": True,
            "metrics": ",".join((*metrics, "knn_auroc")),
            "n_resamples": n_resamples,
            "sample_size": 100,
            "score_seed": 0,
            "knn_k": 5,
            "mtopdiv_backend": "auto",
            "max_train_per_class": None,
            "max_test_per_class": None,
        }
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        ts = int(time.time() * 1000)
        history = [
            Metric(name, float(v), ts, e)
            for e in range(1, epochs + 1)
            for name, v in (
                ("loss", 6.0 / e),
                ("images_per_second", 900 + rng.normal(0, 20)),
                ("lr", 0.006),
                ("epoch_seconds", 5.5),
            )
        ]
        for j in range(0, len(history), 500):
            client.log_batch(run_id, metrics=history[j : j + 500])
        scores, raw, train, test, summary = fake_trial(
            rng, model, tc, aug, n_resamples, 100, train_rows, test_rows, dim, metrics
        )
        for name, df in (
            ("embeddings/train.parquet", train),
            ("embeddings/test.parquet", test),
            ("scores/scores.parquet", scores),
            ("scores/bootstrap.parquet", raw),
        ):
            _log_parquet(client, run_id, df, name, tmp)
        items = [Metric(k, v, ts, 0) for k, v in summary.items()]
        client.log_batch(run_id, metrics=items)
        client.set_tag(run_id, "mlflow.runName", key.replace("/", " "))
        client.set_terminated(run_id, "FINISHED")
        if (i + 1) % 20 == 0:
            print(f"  {i + 1}/{len(grid)} trials logged", file=sys.stderr)
    client.set_terminated(parent, "FINISHED")
    tmp.rmdir()
    return experiment


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(root: Path):
    """``mlflow server`` on loopback: sqlite backend, artifacts served (proxied) from ``root/served``."""
    port = free_port()
    log = (root / "server.log").open("w")
    exe = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [
            str(exe),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'server.db'}",
            "--serve-artifacts",
            "--artifacts-destination",
            str(root / "served"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if requests.get(f"{uri}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()


def measure(uri: str, root: Path, args: argparse.Namespace, artifact_location: str | None) -> dict:
    t_build, experiment = timed(
        build_store,
        uri,
        root,
        args.trials,
        n_resamples=args.resamples,
        train_rows=args.train_rows,
        test_rows=args.test_rows,
        dim=args.dim,
        epochs=args.epochs,
        artifact_location=artifact_location,
    )
    print(f"{uri}: store built in {t_build:.1f} s", file=sys.stderr)
    cache = root / "cache"
    MlflowClient(uri).search_experiments()  # the store's start-up (schema check) is not what is measured
    results = {}
    for name, fn in (("load_runs", load_runs), ("load_scores", load_scores), ("load_bootstrap", load_bootstrap)):
        kwargs = {} if fn is load_runs else {"cache_dir": cache}
        first, df1 = timed(fn, experiment, uri, **kwargs)
        second, df2 = timed(fn, experiment, uri, **kwargs)
        pd.testing.assert_frame_equal(df1, df2)
        results[name] = (first, second, len(df1))
        print(f"  {name:15s} first {first:7.3f} s  second {second:7.3f} s  ({len(df1)} rows)", file=sys.stderr)
    cached = sum(1 for _ in cache.rglob("*.parquet"))
    assert cached == 2 * args.trials, f"expected {2 * args.trials} cached artifacts, found {cached}"
    return results


def run(args: argparse.Namespace) -> str:
    measured = {}
    mib = 0.0
    for store in args.stores:
        with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
            root = Path(tmp)
            if store == "local":
                measured[store] = measure(f"sqlite:///{root / 'mlflow.db'}", root, args, (root / "artifacts").as_uri())
                folder = root / "artifacts"
            else:
                with mlflow_server(root) as uri:
                    measured[store] = measure(uri, root, args, None)
                folder = root / "served"
            mib = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("mlflow", "pandas", "pyarrow"))
    where = {
        "local": "sqlite store, local artifact folder",
        "server": "`mlflow server` on loopback (same sqlite backend, artifacts proxied over HTTP)",
    }
    lines = [
        f"## Loading a logged sweep: {args.trials} trials — "
        f"{dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        f"`python benchmarks/load_runs.py`: a temporary MLflow store with one sweep of {args.trials} finished trials "
        f"in the logged format (parent + tagged child runs, {args.epochs} epochs of per-epoch metrics, "
        f"`scores/scores.parquet`, `scores/bootstrap.parquet` with 10 classes x 3 metrics x {args.resamples} "
        f"resamples, embeddings {args.train_rows} + 10 x {args.test_rows} rows x {args.dim} dims; {mib:.0f} MiB of "
        f"artifacts). Each loader is called twice in a row, the artifact cache empty at first: the first call "
        f"downloads into the cache, the second reads it (one artifact listing per run, no download). Wall time of "
        f"one call each. Stores: " + "; ".join(f"{s}: {where[s]}" for s in args.stores) + ".",
        "",
        f"- Machine: {machine()}",
        f"- Versions: {versions}",
        "",
        "| store | call | rows | first (s) | second (s) | first / second |",
        "|---|---|---:|---:|---:|---:|",
    ]
    verdicts = []
    for store, results in measured.items():
        for name, (first, second, rows) in results.items():
            lines.append(f"| {store} | `{name}` | {rows} | {first:.2f} | {second:.2f} | {first / second:.1f} |")
        first_total = results["load_runs"][0] + results["load_scores"][0]
        second_total = results["load_runs"][1] + results["load_scores"][1]
        lines.append(
            f"| {store} | `load_runs` + `load_scores` | | {first_total:.2f} | {second_total:.2f} | "
            f"{first_total / second_total:.1f} |"
        )
        verdicts.append(f"{store} {'met' if second_total < TARGET_SECONDS else 'NOT met'} ({second_total:.2f} s)")
    lines += [
        "",
        f"Target: the second `load_runs` + `load_scores` under {TARGET_SECONDS:.0f} s — " + ", ".join(verdicts) + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per (class, metric)")
    parser.add_argument("--train-rows", type=int, default=5000, help="rows of embeddings/train.parquet")
    parser.add_argument("--test-rows", type=int, default=1000, help="rows per class of embeddings/test.parquet")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=100, help="epochs of per-epoch metrics per trial")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="Markdown file to append to")
    parser.add_argument(
        "--stores",
        nargs="+",
        choices=["local", "server"],
        default=["local", "server"],
        help="local: sqlite store with a local artifact folder; server: mlflow server on loopback",
    )
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    section = run(args)
    if not args.no_write:
        append_section(section, args.output)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
