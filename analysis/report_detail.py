"""The report's per-(model, metric) detail pages: proj18's score tables (rows = eval class, columns = training
class), the separation tables and the training class × eval class heatmaps of every augmentation, seed and cloud
size; with ``detail="all"`` also proj18's bootstrap distribution plot of every trial."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from analysis import plots, tables
from analysis.figure_jobs import FigureJob
from analysis.report_html import Writer, ordered, slug, table_html


def page_name(model: str, metric: str) -> str:
    return f"detail_{slug(model, metric)}.html"


def _views(df: pd.DataFrame, cloud: bool) -> list[tuple[int | None, pd.DataFrame]]:
    """``(sample_size, rows)`` per cloud size for a cloud metric, one view of every row otherwise (``knn_auroc``'s
    sample size is each class's test-cloud size, not a bootstrap size)."""
    if not cloud or "sample_size" not in df.columns or df["sample_size"].isna().all():
        return [(None, df)]
    return [(int(n), g) for n, g in df.groupby("sample_size", sort=True)]


def _score_grid(sub: pd.DataFrame, metric: str, aug: str, seed: int) -> pd.DataFrame:
    """Rows = eval class, columns = training class, cells = mean [95 % interval] (:func:`analysis.tables.format_ci`,
    as proj18's table) of one model, metric, augmentation and seed."""
    part = sub[(sub["augmentation"] == aug) & (sub["seed"] == seed)]
    cells = [
        tables.format_ci(m, lo, hi) for m, lo, hi in zip(part["mean"], part["ci_low"], part["ci_high"], strict=True)
    ]
    grid = part.assign(cell=cells).pivot_table(
        index="eval_class", columns="train_class", values="cell", aggfunc="first"
    )
    grid = grid.reindex(
        index=tables.class_order(part["eval_class"]),
        columns=tables.class_order(part["train_class"], part["eval_class"]),
    )
    grid.columns = [f"train {c}" for c in grid.columns]
    grid.index.name = "eval_class"
    return grid.fillna("–")


def write_page(
    out: Path,
    model: str,
    metric: str,
    scores: pd.DataFrame,
    bootstrap: pd.DataFrame,
    *,
    detail: str,
    dpi: int,
    jobs: list[FigureJob],
) -> Writer:
    """The page of one (model, metric); its figures are appended to ``jobs``. ``scores`` / ``bootstrap``: the rows
    of that model and metric."""
    w = Writer(out, dpi, jobs)
    w.raw('<p><a href="index.html">← back to the summary</a></p>')
    w.h(1, f"{model} · {metric} — {plots.metric_label(metric)}")
    w.raw("<!--TOC-->")
    cloud = not bootstrap.empty
    for size, sub in _views(scores, cloud):
        what = f", {size} points per cloud" if size is not None else ""
        w.h(2, f"Score tables{what}", slug("scores", size))
        w.p(
            "Rows: eval class; columns: training class; cells: bootstrap mean [95 % interval] of the metric between "
            "the training class's training cloud and the eval class's held-out cloud (knn_auroc: one-class k-NN "
            "AUROC [BCa interval]). Each column's own row is its baseline.",
            "note",
        )
        for aug in ordered(sub["augmentation"]):
            for seed in sorted(set(sub.loc[sub["augmentation"] == aug, "seed"])):
                grid = _score_grid(sub, metric, aug, int(seed))
                w.raw(table_html(grid, f"{metric} — {model}, augmentation {aug}, seed {seed}{what}"))
                w.figure(
                    "score_heatmap",
                    (sub[(sub["augmentation"] == aug) & (sub["seed"] == seed)], model, metric, aug, int(seed)),
                    slug("heatmap", model, metric, aug, f"seed{seed}", f"n{size}" if size else ""),
                    f"{model}, {metric}, augmentation {aug}, seed {seed}{what}",
                    relative=metric != "knn_auroc",
                )
    if cloud:
        for size, boot in _views(bootstrap, True):
            what = f", {size} points per cloud" if size is not None else ""
            w.h(2, f"Separation of the baseline{what}", slug("separation", size))
            w.p(
                "Rows = training class; rank = the training class's own test cloud among all eval classes by mean "
                "(1 = nearest); class columns = P(baseline < class) over the bootstrap resamples.",
                "note",
            )
            for t in tables.separation_tables(boot).values():
                w.raw(table_html(t, t.attrs["caption"] + what, float_format=lambda x: f"{x:.2f}"))
            if detail != "all":
                continue
            w.h(2, f"Bootstrap distributions (proj18){what}", slug("bootstrap", size))
            trials = boot[["train_class", "augmentation", "seed"]].drop_duplicates()
            order = {c: i for i, c in enumerate(tables.class_order(trials["train_class"], boot["eval_class"]))}
            trials = trials.assign(_o=trials["train_class"].map(order)).sort_values(["augmentation", "_o", "seed"])
            for tc, aug, seed, _ in trials.itertuples(index=False):
                one = boot[(boot["train_class"] == tc) & (boot["augmentation"] == aug) & (boot["seed"] == seed)]
                w.figure(
                    "bootstrap_distributions",
                    (one, model, tc, aug, metric, int(seed)),
                    slug("bootstrap", model, tc, aug, metric, f"seed{seed}", f"n{size}" if size else ""),
                    f"{model}, train class {tc}, augmentation {aug}, seed {seed}: {metric}{what}",
                )
    elif detail == "all":
        w.p("No bootstrap resamples for this metric (not a cloud metric).", "note")
    return w


def links(pages: list[tuple[str, str]]) -> str:
    """The index's list of detail pages, one line per model with a link per metric."""
    by_model: dict[str, list[str]] = {}
    for model, metric in pages:
        by_model.setdefault(model, []).append(metric)
    return (
        "<ul>"
        + "".join(
            f"<li>{html.escape(model)}: "
            + ", ".join(f'<a href="{html.escape(page_name(model, m))}">{html.escape(m)}</a>' for m in metrics)
            + "</li>"
            for model, metrics in by_model.items()
        )
        + "</ul>"
    )
