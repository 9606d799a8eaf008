"""A self-contained HTML report of a logged sweep: ``index.html`` with every table, and PNG figures next to it.

:func:`build_report` reads MLflow only. It returns the paths it wrote so that a caller (``sweeper report``) can log
the figures to the sweep's parent run; nothing is logged from here.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from analysis import figure_jobs, load, plots, report_detail, summary, tables
from analysis.report_html import Writer, ordered, slug, table_html
from analysis.report_summary import write_summary

log = logging.getLogger(__name__)

DETAIL_LEVELS = ("none", "summary", "all")


def _safe_uri(uri: str) -> str:
    """The tracking URI without credentials (``https://user:pw@host`` → ``https://host``)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return uri


def _trials_table(runs: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ["trial_key", "sweep", "epochs", "loss", "knn_auroc"] if c in runs.columns]
    cols += [c for c in ["embedding.std", "embedding.rankme"] if c in runs.columns]
    cols += sorted(c for c in runs.columns if c.startswith("baseline_rank.") and ".n" not in c)
    cols += ["run_id"]
    df = runs[cols].copy()
    df = df.rename(columns={"loss": "final loss", "knn_auroc": "mean knn_auroc"})
    return df.sort_values("trial_key").set_index("trial_key")


def build_report(
    experiment: str,
    out_dir: str | os.PathLike,
    tracking_uri: str | None = None,
    *,
    sweep: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    embedding_trials: int = 4,
    dpi: int = 110,
    detail: str = "summary",
    processes: int | None = None,
) -> dict[str, Any]:
    """Write ``out_dir/index.html``, one ``detail_<model>_<metric>.html`` per (model, metric) and their figures
    (``out_dir/figures/*.png``) for the finished trials of ``experiment`` (optionally of one ``sweep`` name).

    ``index.html`` leads with the answer (section ``id="summary"``, :mod:`analysis.report_summary`: collapse
    warnings, separation summary, metric ranking and CD diagram, robustness, sample-size curves), then the trials
    (``id="trials"``), links to the detail pages, the anomaly-clustering table when there is one, and the training
    curves. ``detail`` chooses how much is drawn: ``"none"`` -- the index only; ``"summary"`` (default) -- plus the
    detail pages with proj18's score tables, the separation tables and the heatmaps; ``"all"`` -- plus proj18's
    bootstrap distribution plot of every trial and metric and a 2-D PCA of the embeddings of up to
    ``embedding_trials`` trials. Figures are drawn by ``processes`` worker processes and cached by run id and
    content (:mod:`analysis.figure_jobs`): a second report of the same runs redraws only what changed.

    Returns ``{"index": Path, "pages": [Path, …], "figures": [Path, …], "parent_run_ids": [str, …],
    "drawn": int, "cached": int}``.
    """
    if detail not in DETAIL_LEVELS:
        raise ValueError(f"detail must be one of {', '.join(DETAIL_LEVELS)}, not {detail!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    client, uri = load.tracking_client(tracking_uri)
    found = load.trial_runs(experiment, uri, sweep=sweep)
    runs = load.runs_frame(found.runs)
    cache = load.ArtifactCache(uri, cache_dir)
    jobs: list[figure_jobs.FigureJob] = []
    w = Writer(out, dpi, jobs)

    w.h(1, f"Sweep report — {experiment}")
    parents = ordered(runs["parent_run_id"].dropna()) if len(runs) else []
    meta = [
        ("experiment", experiment),
        ("tracking store", _safe_uri(uri)),
        ("generated", _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        (
            "sweeps",
            ", ".join(
                f"{s} (parent run {p})"
                for s, p in runs[["sweep", "parent_run_id"]].drop_duplicates().itertuples(index=False)
            )
            if len(runs)
            else "–",
        ),
        ("finished trials", str(len(runs))),
        ("detail", detail),
    ]
    if found.left_out:
        meta.append(("left out (not FINISHED)", ", ".join(f"{n} {s}" for s, n in found.left_out.items())))
    if found.superseded:
        meta.append(("left out (older run of a repeated trial)", str(found.superseded)))
    w.raw(
        '<table class="meta">'
        + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in meta)
        + "</table>"
    )
    w.raw("<!--TOC-->")

    if runs.empty:
        w.p("No finished trial runs: nothing to report.", "note")
        return _finish([(w, out / "index.html", f"Sweep report — {experiment}")], out, parents, processes)

    scores = summary.attach_collapse(load.scores_of(found.runs, cache), runs)
    bootstrap = load.bootstrap_of(found.runs, cache)
    history = load.history_of(client, found.runs) if detail != "none" else pd.DataFrame()

    w.h(2, "Summary: which metric sets the training class apart", "summary")
    write_summary(w, scores, runs)

    w.h(2, "Trials", "trials")
    w.raw(table_html(_trials_table(runs), float_format=lambda x: f"{x:.4g}"))

    if set(scores["metric"]) & set(tables.CLUSTERING_SCORES) and "clustering.backbone" in runs:
        w.h(2, "Anomaly clustering", "anomaly-clustering")
        w.p(
            "Sohn et al. (WACV 2023) table layout: rows = backbone; column groups = patch weighting (average / "
            "unsupervised / supervised) and category kind (object / texture); cells = mean NMI, ARI and F1 (micro, "
            "Hungarian-matched) over the categories.",
            "note",
        )
        t = tables.anomaly_clustering_table(scores, runs)
        t.columns = [" ".join(col) for col in t.columns]  # supervision kind score
        w.raw(table_html(t, "anomaly clustering scores (mean over categories)"))

    pages = [(w, out / "index.html", f"Sweep report — {experiment}")]
    if detail != "none":
        keys = scores[["model", "metric"]].drop_duplicates()
        metric_pos = {m: i for i, m in enumerate(ordered(scores["metric"]))}
        keys = keys.assign(_m=keys["metric"].map(metric_pos)).sort_values(["model", "_m"])
        pairs = [(m, k) for m, k, _ in keys.itertuples(index=False)]
        w.h(2, "Detail per model and metric", "detail")
        w.p(
            "One page per model and metric: proj18's score tables, the training class × eval class heatmaps and "
            "the separation tables"
            + (
                ", and proj18's bootstrap distributions of every trial."
                if detail == "all"
                else " (detail=all adds proj18's bootstrap distributions of every trial)."
            ),
            "note",
        )
        w.raw(report_detail.links(pairs))
        for model, metric in pairs:
            sel = (scores["model"] == model) & (scores["metric"] == metric)
            bsel = (bootstrap["model"] == model) & (bootstrap["metric"] == metric)
            page = report_detail.write_page(
                out, model, metric, scores[sel], bootstrap[bsel], detail=detail, dpi=dpi, jobs=jobs
            )
            pages.append((page, out / report_detail.page_name(model, metric), f"{experiment}: {model} · {metric}"))

    if not history.empty:
        w.h(2, "Training curves", "training")
        shown = [m for m in ("loss", "images_per_second") if m in set(history["metric"])]
        w.figure(
            "training_curves",
            (history, shown),
            "training_curves",
            "per-epoch " + " and ".join(plots.HISTORY_LABELS.get(m, m) for m in shown) + " of every trial",
        )

    if detail == "all" and embedding_trials > 0:
        _embeddings_section(w, runs, scores, uri, cache, embedding_trials)

    return _finish(pages, out, parents, processes)


def _embeddings_section(
    w: Writer, runs: pd.DataFrame, scores: pd.DataFrame, uri: str, cache: load.ArtifactCache, n: int
) -> None:
    w.h(2, "Embeddings (2-D PCA)", "embeddings")
    ordered_runs = runs.assign(
        _o=runs["train_class"].map(
            {c: i for i, c in enumerate(tables.class_order(runs["train_class"], scores["eval_class"]))}
        )
    )
    ordered_runs = ordered_runs.sort_values(["model", "augmentation", "_o", "seed"])
    first = ordered_runs.drop_duplicates(["model", "augmentation"])
    chosen = pd.concat([first, ordered_runs.drop(first.index)]).head(n)
    for r in chosen.itertuples(index=False):
        try:
            emb = load.load_embeddings(r.run_id, uri, cache_dir=cache.root)
        except Exception as exc:
            w.p(f"{r.trial_key}: no embeddings ({exc})", "note")
            continue
        w.figure(
            "embedding_pca",
            (emb.assign(run_id=r.run_id),),
            slug("pca", r.model, r.train_class, r.augmentation, f"seed{r.seed}"),
            f"{r.trial_key}: held-out images of every class (dots) and the training class's training images (crosses)",
        )


def _finish(
    pages: list[tuple[Writer, Path, str]], out: Path, parents: list[str], processes: int | None
) -> dict[str, Any]:
    jobs = pages[0][0].jobs
    result = figure_jobs.draw_all(jobs, out / "figures", processes)
    figures: list[Path] = []
    for writer, path, title in pages:
        html_text, shown = writer.render(title, result["errors"])
        path.write_text(html_text, encoding="utf-8")
        figures += shown
    log.info("report: %s (%d pages, %d figures)", pages[0][1], len(pages), len(figures))
    return {
        "index": pages[0][1],
        "pages": [p for _, p, _ in pages],
        "figures": list(dict.fromkeys(figures)),
        "parent_run_ids": parents,
        "drawn": result["drawn"],
        "cached": result["cached"],
    }
