"""A finished sweep's answer as Markdown tables, for a results page such as ``docs/cifar10.md``.

``python benchmarks/study_summary.py EXPERIMENT [--tracking-uri URI] [--sweep NAME] [--size 100]`` prints, from what
the sweep logged (read through :mod:`analysis`, as the HTML report reads it):

- the separation AUROC of every (model, metric) with its 95 % interval over training classes, augmentation ``none``
  at ``--size`` points per cloud (:func:`analysis.summary.separation_summary`);
- the metric ranking (mean rank, Friedman p, Nemenyi CD; :func:`analysis.summary.metric_ranking`);
- the robustness: the change of the separation AUROC under each augmentation (:func:`analysis.summary.robustness`);
- the one-class k-NN AUROC of every trained model per training class (augmentation ``none``), its mean over the other
  classes and the hardest other class;
- collapse diagnostics (embedding std, RankMe) and the trial times.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import load_runs, load_scores
from analysis.summary import metric_ranking, robustness, separation_summary


def _ci(mean: float, low: float, high: float) -> str:
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def separation_markdown(sep: pd.DataFrame, size: int) -> str:
    """Models as columns, metrics as rows: mean separation AUROC [95 % CI] at ``size`` points, augmentation none."""
    sel = sep[(sep["augmentation"] == "none") & (sep["sample_size"] == size)]
    models = sorted(sel["model"].unique())
    lines = ["| metric | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for metric, g in sel.groupby("metric", sort=False):
        cells = []
        for m in models:
            r = g[g["model"] == m]
            cells.append(_ci(*r[["auroc_mean", "auroc_ci_low", "auroc_ci_high"]].iloc[0]) if len(r) else "–")
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def knn_markdown(scores: pd.DataFrame) -> str:
    """k-NN AUROC (training class against each other class) per model and training class, augmentation none."""
    knn = scores[(scores["metric"] == "knn_auroc") & (scores["augmentation"] == "none")]
    knn = knn[knn["eval_class"] != knn["train_class"]]
    lines = ["| model | training class | mean over the 9 others | hardest other class |", "|---|---|---:|---|"]
    for (model, tc), g in knn.groupby(["model", "train_class"]):
        worst = g.loc[g["mean"].idxmin()]
        lines.append(f"| {model} | {tc} | {g['mean'].mean():.3f} | {worst['eval_class']} ({worst['mean']:.3f}) |")
    return "\n".join(lines)


def collapse_markdown(runs: pd.DataFrame) -> str:
    """Embedding std and RankMe per model and training class (augmentation none), and the trials' wall times."""
    r = runs[runs["augmentation"] == "none"].copy()
    seconds = (runs["end_time"] - runs["start_time"]).dt.total_seconds()
    lines = ["| model | training class | embedding std | RankMe (of dim) | epoch s |", "|---|---|---:|---:|---:|"]
    for _, row in r.sort_values(["model", "train_class"]).iterrows():
        epoch = row.get("epoch_seconds", np.nan)
        lines.append(
            f"| {row['model']} | {row['train_class']} | {float(row['embedding.std']):.4f} | "
            f"{float(row['embedding.rankme']):.1f} of {int(float(row['embedding.dim']))} | "
            f"{float(epoch):.1f} |"
        )
    lines.append("")
    lines.append(
        f"Trials: {len(runs)}; trial wall time median {seconds.median():.0f} s, max {seconds.max():.0f} s; sweep "
        f"span {(runs['end_time'].max() - runs['start_time'].min()).total_seconds():.0f} s."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--sweep", default=None)
    p.add_argument("--size", type=int, default=100)
    args = p.parse_args(argv)
    scores = load_scores(args.experiment, tracking_uri=args.tracking_uri)
    runs = load_runs(args.experiment, tracking_uri=args.tracking_uri)
    if args.sweep:
        runs = runs[runs["sweep"] == args.sweep]
        scores = scores[scores["run_id"].isin(runs["run_id"])]
    sep = separation_summary(scores)
    print(f"## Separation AUROC [95 % CI], augmentation none, {args.size} points per cloud\n")
    print(separation_markdown(sep, args.size))
    ranking = metric_ranking(scores)
    print(
        f"\n## Ranking ({ranking.attrs.get('n_blocks')} blocks, sample size {ranking.attrs.get('sample_size')}, "
        f"Friedman p = {ranking.attrs.get('friedman_p', float('nan')):.3g}, CD = {ranking.attrs.get('cd', np.nan):.2f})\n"
    )
    print(ranking.to_markdown(index=False, floatfmt=".3g"))
    rob = robustness(scores)
    rob = rob[rob["sample_size"] == args.size].drop(columns=["sample_size"])
    print(f"\n## Robustness (change of separation AUROC against none, {args.size} points)\n")
    print(rob.to_markdown(index=False, floatfmt=".3f"))
    print("\n## One-class k-NN AUROC\n")
    print(knn_markdown(scores))
    print("\n## Collapse diagnostics and times\n")
    print(collapse_markdown(runs))


if __name__ == "__main__":
    main()
