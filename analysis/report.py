"""A self-contained HTML report of a logged sweep: ``index.html`` with every table, and PNG figures next to it.

:func:`build_report` reads MLflow only. It returns the paths it wrote so that a caller (``sweeper report``) can log
the figures to the sweep's parent run; nothing is logged from here.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
from matplotlib.figure import Figure

from analysis import load, plots, tables

log = logging.getLogger(__name__)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: .5em 0 1.2em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f1f1f1; }
caption { caption-side: top; text-align: left; font-size: 13px; color: #444; padding-bottom: 4px; }
figure { margin: 1em 0 2em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 13px; color: #444; }
.meta td, .meta th { text-align: left; }
.toc { columns: 2; }
.note { color: #555; font-size: 14px; }
"""


def _slug(*parts: object) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", "_".join(str(p) for p in parts)).strip("-")


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


def _table_html(df: pd.DataFrame, caption: str | None = None, float_format: Any = None) -> str:
    flat = df.rename_axis(columns=None)
    if flat.index.name is not None:
        flat = flat.reset_index()
    out = flat.to_html(na_rep="–", float_format=float_format, border=0, escape=True, index=False)
    if caption:
        out = out.replace(">\n", f">\n  <caption>{html.escape(caption)}</caption>\n", 1)
    return out


class _Writer:
    """Collects HTML parts and figure files."""

    def __init__(self, out_dir: Path, dpi: int):
        self.out_dir = out_dir
        self.fig_dir = out_dir / "figures"
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        self.dpi = dpi
        self.parts: list[str] = []
        self.figures: list[Path] = []
        self.toc: list[tuple[str, str]] = []

    def h(self, level: int, text: str, anchor: str | None = None) -> None:
        if anchor:
            self.toc.append((anchor, text))
        a = f' id="{html.escape(anchor)}"' if anchor else ""
        self.parts.append(f"<h{level}{a}>{html.escape(text)}</h{level}>")

    def p(self, text: str, cls: str | None = None) -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{html.escape(text)}</p>")

    def raw(self, markup: str) -> None:
        self.parts.append(markup)

    def figure(self, fig: Figure, name: str, caption: str) -> None:
        path = self.fig_dir / f"{name}.png"
        fig.savefig(path, dpi=self.dpi)
        self.figures.append(path)
        rel = path.relative_to(self.out_dir).as_posix()
        self.parts.append(
            f'<figure><img src="{html.escape(rel)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )


def _trials_table(runs: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ["trial_key", "sweep", "epochs", "loss", "knn_auroc"] if c in runs.columns]
    cols += sorted(c for c in runs.columns if c.startswith("baseline_rank."))
    cols += ["run_id"]
    df = runs[cols].copy()
    df = df.rename(columns={"loss": "final loss", "knn_auroc": "mean knn_auroc"})
    return df.sort_values("trial_key").set_index("trial_key")


def _ordered(values: Iterable[Any]) -> list:
    return list(dict.fromkeys(values))


def build_report(
    experiment: str,
    out_dir: str | os.PathLike,
    tracking_uri: str | None = None,
    *,
    sweep: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    embedding_trials: int = 4,
    dpi: int = 110,
) -> dict[str, Any]:
    """Write ``out_dir/index.html`` and its figures (``out_dir/figures/*.png``) for the finished trials of
    ``experiment`` (optionally of one ``sweep`` name).

    The report holds: the sweeps and trials; proj18's table (rows = eval class, columns = model, cells = mean
    [95 % interval]) for every metric, training class, augmentation and seed; the separation tables (baseline rank
    and P(baseline < class)) per model, metric and augmentation; proj18's bootstrap distribution plot of every
    trial and cloud metric; a training class × eval class heatmap per model, metric and augmentation; the training
    curves; a 2-D PCA of the embeddings of up to ``embedding_trials`` trials (one per model and augmentation first).
    Figures are referenced relatively, so the folder can be moved or archived as a whole.

    Returns ``{"index": Path, "figures": [Path, …], "parent_run_ids": [str, …]}`` (the parent runs of the sweeps
    reported, where a caller may log the figures).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    client, uri = load._client(tracking_uri)
    found = load.trial_runs(experiment, uri, sweep=sweep)
    runs = load.runs_frame(found.runs)
    cache = load.ArtifactCache(uri, cache_dir)
    w = _Writer(out, dpi)

    w.h(1, f"Sweep report — {experiment}")
    parents = _ordered(runs["parent_run_id"].dropna()) if len(runs) else []
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
        return _finish(w, out, experiment, parents)

    scores = load.scores_of(found.runs, cache)
    bootstrap = load.bootstrap_of(found.runs, cache)
    history = load.history_of(client, found.runs)

    w.h(2, "Trials", "trials")
    w.raw(_table_html(_trials_table(runs), float_format=lambda x: f"{x:.4g}"))

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
        w.raw(_table_html(t, "anomaly clustering scores (mean over categories)"))

    # proj18's tables, one section per metric.
    w.h(2, "Score tables (proj18)", "scores")
    w.p(
        "Rows: eval class; columns: model; cells: bootstrap mean [95 % percentile interval] of the metric between "
        "the training class's training cloud and the eval class's held-out cloud. The training class's own row is "
        "the baseline (normal train vs normal test). knn_auroc: one-class k-NN AUROC of the training class's test "
        "images against each other class (BCa interval), higher = better separated.",
        "note",
    )
    for metric in _ordered(scores["metric"]):
        w.h(3, f"{metric} — {plots.metric_label(metric)}", f"scores-{_slug(metric)}")
        for key in tables.table_keys(scores[scores["metric"] == metric]):
            t = tables.score_table(scores, *key)
            w.raw(_table_html(t, t.attrs["caption"]))

    cloud_metrics = _ordered(bootstrap["metric"])
    if not bootstrap.empty:
        w.h(2, "Separation of the baseline", "separation")
        w.p(
            "Per model, metric and augmentation: rows = training class; rank = the training class's own test cloud "
            "among all eval classes by mean distance (1 = nearest, as it should be); class columns = P(baseline < "
            "class) over the bootstrap resamples (1 = the baseline is always nearer; 0.5 = indistinguishable).",
            "note",
        )
        for t in tables.separation_tables(bootstrap).values():
            w.raw(_table_html(t, t.attrs["caption"], float_format=lambda x: f"{x:.2f}"))

        w.h(2, "Bootstrap distributions (proj18)", "bootstrap")
        w.p(
            "One panel per eval class: the histogram of the metric between the training cloud and that class "
            "(blue) against the baseline, the training cloud against the training class's own held-out images "
            "(orange). Separated histograms mean the metric tells the class apart.",
            "note",
        )
        for metric in cloud_metrics:
            w.h(3, f"{metric} — {plots.metric_label(metric)}", f"bootstrap-{_slug(metric)}")
            sub = bootstrap[bootstrap["metric"] == metric]
            trials = sub[["model", "train_class", "augmentation", "seed"]].drop_duplicates()
            trials = trials.assign(
                _o=trials["train_class"].map(
                    {c: i for i, c in enumerate(tables.class_order(trials["train_class"], sub["eval_class"]))}
                )
            )
            for model, tc, aug, seed, _ in trials.sort_values(["model", "augmentation", "_o", "seed"]).itertuples(
                index=False
            ):
                try:
                    fig = plots.bootstrap_distributions(sub, model, tc, aug, metric, seed)
                except ValueError as exc:  # e.g. a trial without its baseline class
                    w.p(str(exc), "note")
                    continue
                w.figure(
                    fig,
                    _slug("bootstrap", model, tc, aug, metric, f"seed{seed}"),
                    f"{model}, train class {tc}, augmentation {aug}, seed {seed}: {metric}",
                )

    w.h(2, "Heatmaps: training class × eval class", "heatmaps")
    w.p(
        "Bootstrap mean per training class (rows) and eval class (columns); the baseline is outlined. For the "
        "distances each row is divided by its baseline (a cell above 1: that class lies farther from the training "
        "cloud than the training class's own held-out images).",
        "note",
    )
    keys = scores[["model", "metric", "augmentation", "seed"]].drop_duplicates()
    metric_pos = {m: i for i, m in enumerate(_ordered(scores["metric"]))}
    keys = keys.assign(_m=keys["metric"].map(metric_pos)).sort_values(["_m", "model", "augmentation", "seed"])
    for model, metric, aug, seed, _ in keys.itertuples(index=False):
        fig = plots.score_heatmap(scores, model, metric, aug, seed, relative=metric != "knn_auroc")
        w.figure(
            fig,
            _slug("heatmap", model, metric, aug, f"seed{seed}"),
            f"{model}, {metric}, augmentation {aug}, seed {seed}",
        )

    if not history.empty:
        w.h(2, "Training curves", "training")
        shown = [m for m in ("loss", "images_per_second") if m in set(history["metric"])]
        w.figure(
            plots.training_curves(history, shown),
            "training_curves",
            "per-epoch " + " and ".join(plots.HISTORY_LABELS.get(m, m) for m in shown) + " of every trial",
        )

    if embedding_trials > 0:
        w.h(2, "Embeddings (2-D PCA)", "embeddings")
        ordered = runs.assign(
            _o=runs["train_class"].map(
                {c: i for i, c in enumerate(tables.class_order(runs["train_class"], scores["eval_class"]))}
            )
        )
        ordered = ordered.sort_values(["model", "augmentation", "_o", "seed"])
        first = ordered.drop_duplicates(["model", "augmentation"])
        chosen = pd.concat([first, ordered.drop(first.index)]).head(embedding_trials)
        for r in chosen.itertuples(index=False):
            try:
                emb = load.load_embeddings(r.run_id, uri, cache_dir=cache.root)
            except Exception as exc:
                w.p(f"{r.trial_key}: no embeddings ({exc})", "note")
                continue
            w.figure(
                plots.embedding_pca(emb),
                _slug("pca", r.model, r.train_class, r.augmentation, f"seed{r.seed}"),
                f"{r.trial_key}: held-out images of every class (dots) and the training class's training "
                f"images (crosses)",
            )

    return _finish(w, out, experiment, parents)


def _finish(w: _Writer, out: Path, experiment: str, parents: list[str]) -> dict[str, Any]:
    toc = (
        (
            '<ul class="toc">'
            + "".join(f'<li><a href="#{html.escape(a)}">{html.escape(t)}</a></li>' for a, t in w.toc)
            + "</ul>"
        )
        if w.toc
        else ""
    )
    body = "\n".join(toc if part == "<!--TOC-->" else part for part in w.parts)
    page = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Sweep report — {html.escape(experiment)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    log.info("report of %s: %s (%d figures)", experiment, index, len(w.figures))
    return {"index": index, "figures": list(w.figures), "parent_run_ids": parents}
