"""Figures of a logged sweep (matplotlib). Every function takes a DataFrame from :mod:`analysis.load` and returns a
:class:`matplotlib.figure.Figure`; none touches pyplot's global state, so figures neither pile up nor show twice
in a notebook (a returned Figure displays itself as the last value of a cell), and ``fig.savefig(path)`` writes
it without a display.

- :func:`bootstrap_distributions` — proj18's plot: per eval class, the histogram of "train vs class X" over the
  bootstrap resamples against the baseline "train vs test of the training class";
- :func:`score_heatmap` — training class × eval class of one (model, metric, augmentation);
- :func:`training_curves` — per-epoch loss (or any logged per-epoch metric) of every trial;
- :func:`embedding_pca` — a 2-D PCA view of one trial's embeddings, coloured by class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from analysis.tables import class_order, decimals_for, format_number, p_below, select_rows
from experiments.metrics import METRIC_SPECS

#: Display label of every registered metric (``experiments.metrics.METRIC_SPECS``).
METRIC_LABELS = {name: spec.label for name, spec in METRIC_SPECS.items()}
HISTORY_LABELS = {
    "loss": "training loss",
    "images_per_second": "images / s",
    "lr": "learning rate",
    "epoch_seconds": "seconds per epoch",
}
BASELINE_COLOR, OTHER_COLOR = "#ff7f0e", "#1f77b4"  # proj18's colours: orange baseline, blue other class


def metric_label(metric: str) -> str:
    """The label plots and reports give ``metric``: its registry label, or the name itself."""
    return METRIC_LABELS.get(metric, metric)


def _title(chosen: dict[str, object], keys: Sequence[str]) -> str:
    return " · ".join(
        str(chosen[k]) if k in ("model", "metric") else f"{k.replace('_', ' ')} {chosen[k]}"
        for k in keys
        if k in chosen
    )


# ------------------------------------------------------------------------------------- bootstrap distributions


def bootstrap_distributions(
    bootstrap: pd.DataFrame,
    model: str | None = None,
    train_class: str | None = None,
    augmentation: str | None = None,
    metric: str | None = None,
    seed: int | None = None,
    *,
    bins: int = 25,
    ncols: int = 3,
) -> Figure:
    """proj18's bootstrap distribution plot for one trial and metric.

    One panel per eval class other than the training class: the histogram of ``metric(train sample, class X
    sample)`` over the resamples (blue) against the baseline ``metric(train sample, test sample of the training
    class)`` (orange, the same in every panel); the panel title gives ``P(baseline < X)`` (1 = the baseline is
    always nearer). Both histograms of a panel share their bins. Arguments may be left out when ``bootstrap`` holds
    one value only.
    """
    sub, chosen = select_rows(
        bootstrap,
        "bootstrap distributions",
        model=model,
        train_class=train_class,
        augmentation=augmentation,
        metric=metric,
        seed=seed,
    )
    tc = chosen["train_class"]
    values = {c: g["value"].to_numpy(float) for c, g in sub.groupby("eval_class", sort=False)}
    if tc not in values:
        raise ValueError(f"bootstrap distributions: no baseline rows (eval_class={tc!r}) for {chosen}")
    others = [c for c in class_order(values) if c != tc]
    if not others:
        raise ValueError(f"bootstrap distributions: only the baseline class for {chosen}")
    base = values[tc]
    ncols = max(1, min(ncols, len(others)))
    nrows = math.ceil(len(others) / ncols)
    fig = Figure(figsize=(3.9 * ncols, 3.0 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(others) :]:
        fig.delaxes(ax)
    label = metric_label(str(chosen["metric"]))
    for ax, c in zip(axes, others, strict=False):
        edges = np.histogram_bin_edges(np.concatenate([base, values[c]]), bins=bins)
        ax.hist(values[c], bins=edges, color=OTHER_COLOR, alpha=0.8, edgecolor="black", linewidth=0.5)
        ax.hist(base, bins=edges, color=BASELINE_COLOR, alpha=0.55, edgecolor="black", linewidth=0.5)
        ax.set_title(f"train {tc} vs class {c}\nP(baseline < {c}) = {p_below(base, values[c]):.2f}", fontsize=9.5)
        ax.set_xlabel(label, fontsize=9)
        ax.set_ylabel("resamples", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 5))
    handles = [
        Patch(facecolor=OTHER_COLOR, alpha=0.8, edgecolor="black", label=f"train {tc} vs class X (panel title)"),
        Patch(
            facecolor=BASELINE_COLOR,
            alpha=0.55,
            edgecolor="black",
            label=f"train {tc} vs test {tc} (baseline: normal train vs normal test)",
        ),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    fig.suptitle(
        f"Bootstrap distributions of {chosen['metric']} ({len(base)} resamples)\n"
        f"{_title(chosen, ['model', 'train_class', 'augmentation', 'seed'])}",
        fontsize=11,
    )
    return fig


# ------------------------------------------------------------------------------------------------- heatmap


def score_heatmap(
    scores: pd.DataFrame,
    model: str | None = None,
    metric: str | None = None,
    augmentation: str | None = None,
    seed: int | None = None,
    *,
    relative: bool = False,
    annotate: bool = True,
    cmap: str = "viridis",
) -> Figure:
    """Training class (rows) × eval class (columns) of the bootstrap mean of one (model, metric, augmentation).

    The diagonal (each training class's own test cloud, the baseline) is outlined. With ``relative`` each row is
    divided by its baseline, so a cell above 1 means that class lies farther from the training cloud than the
    training class's own test images; ``knn_auroc`` (no baseline) and metrics with a baseline of 0 or below
    (MTopDiv can be 0, unbiased MMD² negative) are shown as they are, and the title says which.
    """
    sub, chosen = select_rows(scores, "score heatmap", model=model, metric=metric, augmentation=augmentation, seed=seed)
    rows = class_order(sub["train_class"], sub["eval_class"])
    cols = class_order(sub["eval_class"])
    grid = sub.pivot_table(index="train_class", columns="eval_class", values="mean", aggfunc="first")
    grid = grid.reindex(index=rows, columns=cols)
    relative = relative and chosen["metric"] != "knn_auroc"
    if relative:
        base = pd.Series({tc: grid.loc[tc, tc] if tc in grid.columns else np.nan for tc in rows}, dtype=float)
        if (base > 0).all():
            grid = grid.div(base, axis=0)
        else:  # a baseline of 0 or below (MTopDiv 0, unbiased MMD² < 0): a ratio would mislead
            relative = False
    data = grid.to_numpy(float)
    w = 1.6 + 0.62 * len(cols) + 1.2
    h = 1.9 + 0.5 * len(rows)
    fig = Figure(figsize=(max(w, 5.2), max(h, 3.3)), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, aspect="auto")
    long_names = max(len(str(c)) for c in cols) > 4
    ax.set_xticks(
        range(len(cols)),
        [str(c) for c in cols],
        rotation=40 if long_names else 0,
        ha="right" if long_names else "center",
        rotation_mode="anchor",
    )
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel("eval class")
    ax.set_ylabel("training class")
    value = metric_label(str(chosen["metric"])) + (" / baseline" if relative else "")
    fig.colorbar(im, ax=ax, label=value)
    for i, r in enumerate(rows):
        if r in cols:
            j = cols.index(r)
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    if annotate and data.size <= 400:
        d = decimals_for(data[np.isfinite(data)].ravel().tolist(), 3)
        finite = data[np.isfinite(data)]
        mid = (finite.min() + finite.max()) / 2 if finite.size else 0
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                if np.isfinite(data[i, j]):
                    ax.text(
                        j,
                        i,
                        format_number(data[i, j], d),
                        ha="center",
                        va="center",
                        fontsize=8.5,
                        color="black" if data[i, j] > mid else "white",
                    )
    subtitle = (
        "AUROC against the training class's own test images"
        if chosen["metric"] == "knn_auroc"
        else f"{'mean / baseline mean' if relative else 'bootstrap mean'} (baseline outlined)"
    )
    ax.set_title(
        f"{_title(chosen, ['model', 'metric'])}\n{_title(chosen, ['augmentation', 'seed'])}\n{subtitle}", fontsize=10
    )
    return fig


# ----------------------------------------------------------------------------------------- training curves


def training_curves(history: pd.DataFrame, metrics: Sequence[str] = ("loss",), *, log_y: bool | None = None) -> Figure:
    """Per-epoch curves of every trial in ``history`` (the frame of :func:`analysis.load.load_history`).

    One row of panels per metric, one column per model (their losses have different scales); a line per trial,
    coloured by training class, dashed by augmentation. ``log_y`` defaults to a log scale for the loss when it
    spans more than two decades.
    """
    metrics = [m for m in metrics if m in set(history["metric"])]
    if not metrics:
        raise ValueError(
            f"training curves: none of the metrics in the history; it has {sorted(set(history['metric']))}"
        )
    models = sorted(set(history["model"]))
    classes = class_order(history["train_class"])
    augs = list(dict.fromkeys(history["augmentation"]))
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    colors = {c: cmap(i % cmap.N) for i, c in enumerate(classes)}
    styles = ["-", "--", ":", "-."]
    dashes = {a: styles[i % len(styles)] for i, a in enumerate(augs)}
    fig = Figure(figsize=(4.4 * len(models) + 1.8, 3.0 * len(metrics) + 0.5), layout="constrained")
    axes = fig.subplots(len(metrics), len(models), squeeze=False)
    for i, metric in enumerate(metrics):
        for j, model in enumerate(models):
            ax = axes[i, j]
            sub = history[(history["metric"] == metric) & (history["model"] == model)]
            for _, g in sub.groupby("run_id", sort=False):
                g = g.sort_values("epoch")
                first = g.iloc[0]
                ax.plot(
                    g["epoch"],
                    g["value"],
                    color=colors[first["train_class"]],
                    linestyle=dashes[first["augmentation"]],
                    marker="o" if len(g) <= 20 else None,
                    markersize=3,
                    linewidth=1.2,
                )
            values = sub["value"].to_numpy(float)
            use_log = (
                log_y
                if log_y is not None
                else (metric == "loss" and values.size and np.all(values > 0) and values.max() / values.min() > 100)
            )
            if use_log:
                ax.set_yscale("log")
            ax.set_title(f"{model}", fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel(HISTORY_LABELS.get(metric, metric))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if sub["epoch"].nunique() <= 1:
                e = float(sub["epoch"].max()) if len(sub) else 1.0
                ax.set_xlim(e - 1, e + 1)
            ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colors[c], marker="o", markersize=3, label=f"train class {c}") for c in classes]
    if len(augs) > 1 or augs != ["none"]:
        handles += [Line2D([], [], color="gray", linestyle=dashes[a], label=f"augmentation {a}") for a in augs]
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    fig.suptitle("Training curves", fontsize=11)
    return fig


# ------------------------------------------------------------------------------------------------------ PCA


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projection of the rows of ``x`` on its first two principal components, and their explained variance ratios."""
    x = np.asarray(x, float)
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    var = s**2
    ratio = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    k = min(2, vt.shape[0])
    proj = centred @ vt[:k].T
    if k < 2:
        proj = np.column_stack([proj, np.zeros(len(x))])
        ratio = np.concatenate([ratio, [0.0]])
    return proj, ratio[:2]


def embedding_pca(embeddings: pd.DataFrame, *, max_points_per_class: int | None = 500, seed: int = 0) -> Figure:
    """2-D PCA of one trial's embeddings (the frame of :func:`analysis.load.load_embeddings`), coloured by class.

    The PCA is fitted on all points shown; the held-out (``test``) points are dots coloured by class, the
    training class's training images (``train``, the reference cloud) black crosses. At most
    ``max_points_per_class`` points per (split, class) are drawn, chosen at random with ``seed``.
    """
    dims = [c for c in embeddings.columns if str(c).startswith("dim_")]
    if not dims:
        raise ValueError("embedding PCA: no dim_* columns in the frame")
    df = embeddings
    if "split" not in df.columns:
        df = df.assign(split="test")
    if max_points_per_class is not None:
        rng = np.random.default_rng(seed)
        keep = []
        for _, g in df.groupby(["split", "class_name"], sort=False):
            idx = g.index.to_numpy()
            keep.append(
                idx
                if len(idx) <= max_points_per_class
                else np.sort(rng.choice(idx, max_points_per_class, replace=False))
            )
        df = df.loc[np.concatenate(keep)]
    proj, ratio = pca_2d(df[dims].to_numpy(float))
    classes = class_order(df.loc[df["split"] != "train", "class_name"])
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    fig = Figure(figsize=(6.8, 5.0), layout="constrained")
    ax = fig.subplots()
    split = df["split"].to_numpy()
    names = df["class_name"].astype(str).to_numpy()
    for i, c in enumerate(classes):
        m = (split != "train") & (names == str(c))
        ax.scatter(
            proj[m, 0],
            proj[m, 1],
            s=12,
            alpha=0.7,
            color=cmap(i % cmap.N),
            label=f"class {c} (test)",
            edgecolors="none",
        )
    m = split == "train"
    if m.any():
        ref = ", ".join(dict.fromkeys(names[m]))
        ax.scatter(
            proj[m, 0],
            proj[m, 1],
            s=14,
            marker="x",
            color="black",
            linewidths=0.8,
            alpha=0.6,
            label=f"class {ref} (train, reference)",
        )
    ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.1f} % of variance)")
    ax.set_ylabel(f"PC 2 ({100 * ratio[1]:.1f} % of variance)")
    fig.legend(loc="outside right upper", fontsize=8, markerscale=1.5, frameon=False)
    a = embeddings.attrs
    info = (
        f"{a['model']} · train class {a['train_class']} · augmentation {a['trial_augmentation']}"
        if {"model", "train_class", "trial_augmentation"} <= set(a)
        else ""
    )
    ax.set_title(f"Embeddings, 2-D PCA of {len(dims)} dimensions{chr(10) + info if info else ''}", fontsize=10)
    ax.ticklabel_format(style="sci", scilimits=(-2, 3))
    ax.grid(alpha=0.3)
    return fig
