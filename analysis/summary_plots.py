"""Figures of the sweep's answer (:mod:`analysis.summary`). Like :mod:`analysis.plots`, every function returns a
:class:`matplotlib.figure.Figure` without touching pyplot's global state.

- :func:`critical_difference` — the critical-difference diagram of Demšar ("Statistical Comparisons of Classifiers
  over Multiple Data Sets", JMLR 7, 2006, Fig. 1): the metrics on their mean-rank axis (rank 1 = best), the
  Nemenyi critical difference drawn above the axis, and thick bars joining the metrics whose post-hoc test does not
  tell them apart (drawn by ``scikit_posthocs.critical_difference_diagram``);
- :func:`robustness_plot` — the change of the separation AUROC under each augmentation, per metric, with its CI;
- :func:`sample_size_curve` — separation AUROC against cloud size, one line per metric, CI bands.
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import scikit_posthocs as sp
from matplotlib.figure import Figure

from analysis.summary import separation_summary


def _metric_colors(metrics: list[str]) -> dict[str, tuple]:
    cmap = matplotlib.colormaps["tab10" if len(metrics) <= 10 else "tab20"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(metrics)}


def critical_difference(ranking: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Demšar's CD diagram of :func:`analysis.summary.metric_ranking`'s result.

    Metrics sit at their mean rank (1 = best separation, on the left); a bar joins every group of metrics whose
    pairwise post-hoc p-values (``ranking.attrs["pvalues"]``) are all at least ``alpha``; the segment above the axis
    is the Nemenyi critical difference ``CD``. The title gives the Friedman p-value and the number of blocks.
    """
    a = ranking.attrs
    if "pvalues" not in a or ranking.empty:
        raise ValueError("critical_difference: pass the DataFrame of analysis.summary.metric_ranking")
    ranks = pd.Series(ranking["mean_rank"].to_numpy(float), index=ranking["metric"].astype(str))
    sig = pd.DataFrame(a["pvalues"], dtype=float).reindex(index=ranks.index, columns=ranks.index).fillna(1.0)
    k = len(ranks)
    sig = sig.where(~np.eye(k, dtype=bool), 1.0)
    fig = Figure(figsize=(7.5, 1.6 + 0.32 * k), layout="constrained")
    ax = fig.subplots()
    cd = a.get("cd")
    sp.critical_difference_diagram(
        ranks,
        sig,
        alpha=a.get("alpha", 0.05),
        ax=ax,
        cd=cd if cd is not None and np.isfinite(cd) and cd < k else None,
        label_fmt_left="{label} ({rank:.2f})",
        label_fmt_right="({rank:.2f}) {label}",
        label_props={"fontsize": 9},
    )
    p = a.get("friedman_p", float("nan"))
    ptxt = "n/a (fewer than 3 metrics or 2 blocks)" if not np.isfinite(p) else f"{p:.2g}"
    fig.suptitle(
        title
        or (
            f"Mean rank of the metrics by {a.get('by', 'auroc')} over {a.get('n_blocks')} blocks "
            f"(sample size {a.get('sample_size')})\nFriedman p = {ptxt}; bars: {a.get('posthoc', 'nemenyi')} "
            f"p ≥ {a.get('alpha', 0.05)} (not significantly different)"
        ),
        fontsize=9.5,
    )
    return fig


def robustness_plot(robustness: pd.DataFrame, *, sample_size: int | None = None) -> Figure:
    """Change of the separation AUROC against ``augmentation: none`` (:func:`analysis.summary.robustness`): one
    panel per model, a row per metric, one marker per augmentation with its CI; left of 0 = the augmentation
    hurts. With several cloud sizes, ``sample_size`` (default the largest) is shown."""
    if robustness.empty:
        raise ValueError("robustness plot: no augmented trial paired with an augmentation: none trial")
    sizes = sorted(set(robustness["sample_size"]))
    size = max(sizes) if sample_size is None else sample_size
    rob = robustness[robustness["sample_size"] == size]
    models = sorted(set(rob["model"]))
    metrics = list(dict.fromkeys(rob.sort_values("delta_mean")["metric"]))
    augs = list(dict.fromkeys(rob["augmentation"]))
    cmap = matplotlib.colormaps["tab10"]
    fig = Figure(figsize=(4.2 * len(models) + 1.6, 1.2 + 0.38 * len(metrics) * max(1, len(augs) / 2)))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, len(models), squeeze=False, sharey=True)[0]
    step = 0.7 / max(1, len(augs))
    for ax, model in zip(axes, models, strict=True):
        sub = rob[rob["model"] == model].set_index(["metric", "augmentation"])
        for j, aug in enumerate(augs):
            ys, xs, lo, hi = [], [], [], []
            for i, m in enumerate(metrics):
                if (m, aug) in sub.index:
                    r = sub.loc[(m, aug)]
                    ys.append(i + (j - (len(augs) - 1) / 2) * step)
                    xs.append(r["delta_mean"])
                    lo.append(r["delta_mean"] - r["delta_ci_low"])
                    hi.append(r["delta_ci_high"] - r["delta_mean"])
            ax.errorbar(xs, ys, xerr=[lo, hi], fmt="o", color=cmap(j % 10), capsize=2, markersize=4, label=aug)
        ax.axvline(0, color="gray", linewidth=1)
        ax.set_yticks(range(len(metrics)), metrics)
        ax.invert_yaxis()
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("Δ separation AUROC vs none")
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", title="augmentation", fontsize=8, frameon=False)
    fig.suptitle(f"Robustness: change of the separation AUROC (95 % CI), sample size {size}", fontsize=10)
    return fig


def sample_size_curve(scores: pd.DataFrame) -> Figure:
    """Separation AUROC against cloud size, one line per metric with its CI band; one panel per (model,
    augmentation). ``scores`` is the tidy score table (summarised with :func:`analysis.summary.separation_summary`)
    or that summary itself."""
    summary = scores if "auroc_mean" in scores.columns else separation_summary(scores)
    if summary.empty:
        raise ValueError("sample-size curve: no cloud-metric scores")
    panels = summary[["model", "augmentation"]].drop_duplicates().sort_values(["model", "augmentation"])
    metrics = list(dict.fromkeys(summary.sort_values("auroc_mean", ascending=False)["metric"]))
    colors = _metric_colors(metrics)
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(3.6 * ncols + 1.8, 2.9 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    for ax in axes[len(panels) :]:
        fig.delaxes(ax)
    sizes = sorted(set(summary["sample_size"].astype(int)))
    for ax, (model, aug) in zip(axes, panels.itertuples(index=False), strict=False):
        sub = summary[(summary["model"] == model) & (summary["augmentation"] == aug)]
        for m in metrics:
            g = sub[sub["metric"] == m].sort_values("sample_size")
            if g.empty:
                continue
            x = g["sample_size"].astype(float)
            ax.plot(x, g["auroc_mean"], marker="o", markersize=3, color=colors[m], label=m)
            ax.fill_between(x, g["auroc_ci_low"], g["auroc_ci_high"], color=colors[m], alpha=0.15, linewidth=0)
        ax.axhline(0.5, color="gray", linestyle=":", linewidth=1)
        if len(sizes) > 1 and sizes[-1] / sizes[0] >= 4:
            ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_title(f"{model} · augmentation {aug}", fontsize=9.5)
        ax.set_xlabel("points per cloud (sample size)")
        ax.set_ylabel("separation AUROC")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False, title="metric")
    fig.suptitle("Separation AUROC against cloud size (mean over trials, 95 % CI band; 0.5 = no separation)")
    return fig
