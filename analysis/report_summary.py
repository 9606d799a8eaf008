"""The report's first section, ``id="summary"``: the sweep's answer (:mod:`analysis.summary`) in a few tables and
figures -- the collapse warnings, the separation summary (best metric per augmentation in bold), the metric ranking
with Demšar's CD diagram, the robustness plot and, with several cloud sizes, the sample-size curves."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from analysis import summary
from analysis.report_html import Writer
from experiments.metrics.collapse import COLLAPSE_FRACTION


def _collapse_box(w: Writer, runs: pd.DataFrame) -> None:
    collapsed = summary.collapsed_trials(runs)
    if "embedding.std" not in runs.columns:
        w.p("No trial logged collapse diagnostics (embedding.std, embedding.rankme).", "note")
        return
    if collapsed.empty:
        w.p(
            f"No collapsed trial: every reference cloud has embedding.std ≥ {COLLAPSE_FRACTION}/√d "
            "(std_of_l2_normalized; about 1/√d when healthy, 0 when collapsed).",
            "note",
        )
        return
    items = "".join(
        f"<li>{html.escape(str(r['trial_key']))}: embedding.std = {r['embedding.std']:.4g} &lt; threshold "
        f"{r['threshold']:.4g}, RankMe = {r['embedding.rankme']:.3g} of d = {int(r['embedding.dim'])}</li>"
        for r in collapsed.to_dict("records")
    )
    w.raw(
        f'<div class="warning"><b>{len(collapsed)} collapsed trial(s)</b> (embedding.std below {COLLAPSE_FRACTION}/√d): '
        f"their distances are small because the embeddings are nearly constant, not because the classes are alike. "
        f"<code>separation_summary(..., exclude_collapsed=True)</code> leaves them out.<ul>{items}</ul></div>"
    )


def _pivot_tables(sep: pd.DataFrame) -> str:
    """Per cloud size: rows = metric, columns = model · augmentation, cells = separation AUROC [95 % CI]; the best
    metric of each column in bold."""
    out = []
    for size, g in sep.groupby("sample_size", sort=True):
        cols = list(dict.fromkeys(zip(g["model"], g["augmentation"], strict=True)))
        order = g.groupby("metric")["auroc_mean"].mean().sort_values(ascending=False).index
        cell = {(r.metric, r.model, r.augmentation): r for r in g.itertuples(index=False)}
        rows = []
        for m in order:
            tds = []
            for model, aug in cols:
                r = cell.get((m, model, aug))
                ci = f"<br><small>[{r.auroc_ci_low:.3f}, {r.auroc_ci_high:.3f}]</small>" if r else ""
                text = f"{r.auroc_mean:.3f}" if r else "–"
                tds.append(f"<td><b>{text}</b>{ci}</td>" if r and r.best else f"<td>{text}{ci}</td>")
            rows.append(f"<tr><th>{html.escape(str(m))}</th>{''.join(tds)}</tr>")
        caption = (
            f"Separation AUROC [95 % CI over training classes and seeds], {int(size)} points per cloud: rows = "
            "metric (best on average first), columns = model · augmentation; bold = the best metric of its column. "
            "1 = the training class's own held-out cloud is always the nearest, 0.5 = no separation."
        )
        head = "".join(f"<th>{html.escape(f'{m} · {a}')}</th>" for m, a in cols)
        out.append(
            f"<table><caption>{html.escape(caption)}</caption><thead><tr><th>metric</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    return "".join(out)


def _summary_table(sep: pd.DataFrame) -> str:
    head = [
        "model",
        "augmentation",
        "sample size",
        "metric",
        "trials",
        "separation AUROC [95 % CI]",
        "share rank 1",
        "hardest pair: P(baseline &lt; class)",
    ]
    rows = []
    for r in sep.itertuples(index=False):
        hard = f"train {r.hardest_train_class} vs {r.hardest_class}: {r.hardest_p:.2f}" if r.hardest_class else "–"
        cells = [
            r.model,
            r.augmentation,
            int(r.sample_size),
            r.metric,
            r.n_trials,
            f"{r.auroc_mean:.3f} [{r.auroc_ci_low:.3f}, {r.auroc_ci_high:.3f}]",
            f"{r.share_rank1:.2f}",
            hard,
        ]
        cls = ' class="best"' if r.best else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    caption = (
        "Separation summary: per model, augmentation and cloud size, the mean over trials of the one-vs-rest "
        "separation AUROC (mean P(baseline < other class); 1 = the training class's own test cloud is always the "
        "nearest, 0.5 = no separation), its cluster-bootstrap CI over training classes and seeds, the share of "
        "trials whose baseline ranks first, and the hardest (training class, other class) pair. Bold: the best "
        "metric of its model, augmentation and size."
    )
    return (
        f"<table><caption>{html.escape(caption)}</caption><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def answer_sentences(ranking: pd.DataFrame, rob: pd.DataFrame) -> list[str]:
    """The answer in words: the first metric, whether the first two differ, the augmentation that hurts most."""
    a = ranking.attrs
    out = []
    if len(ranking):
        first = ranking["metric"].iloc[0]
        out.append(
            f"{first} ranks first (mean rank {ranking['mean_rank'].iloc[0]:.2f} of {a['k']} metrics over "
            f"{a['n_blocks']} blocks, sample size {a['sample_size']}; Friedman p = {a['friedman_p']:.3g})."
        )
    if len(ranking) > 1:
        second = ranking["metric"].iloc[1]
        p = a["pvalues"][ranking["metric"].iloc[0]][second]
        gap = ranking["mean_rank"].iloc[1] - ranking["mean_rank"].iloc[0]
        verdict = "differ significantly" if p < a["alpha"] else "do not differ significantly"
        out.append(
            f"The first two, {ranking['metric'].iloc[0]} and {second}, {verdict} ({a['posthoc']} p = {p:.3g}; "
            f"rank gap {gap:.2f} against CD = {a['cd']:.2f})."
        )
    if not rob.empty:
        size = rob["sample_size"].max()
        per_aug = rob[rob["sample_size"] == size].groupby("augmentation")["delta_mean"].mean().sort_values()
        worst = per_aug.index[0]
        out.append(
            f"The augmentation that hurts most is {worst}: the separation AUROC changes by {per_aug.iloc[0]:+.3f} "
            "on average over models and metrics against augmentation none."
        )
    return out


def write_summary(w: Writer, scores: pd.DataFrame, runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Append the summary section to ``w`` (its heading is the caller's); returns the frames it showed."""
    _collapse_box(w, runs)
    sep = summary.separation_summary(scores)
    if sep.empty:
        w.p("No cloud-metric scores with a baseline and another class: no separation summary.", "note")
        return {}
    rob = summary.robustness(scores)
    try:
        ranking = summary.metric_ranking(scores)
    except ValueError as exc:
        ranking = pd.DataFrame(columns=["metric", "mean_rank"])
        w.p(str(exc), "note")
    if len(ranking):
        w.raw('<div class="answer">' + " ".join(html.escape(s) for s in answer_sentences(ranking, rob)) + "</div>")
    w.raw(_pivot_tables(sep))
    w.raw(
        "<details><summary>Every row of the separation summary (share of trials with baseline rank 1, hardest "
        f"pair)</summary>{_summary_table(sep)}</details>"
    )
    if len(ranking) >= 2 and ranking.attrs.get("n_blocks", 0) >= 2:
        w.h(3, "Which metric separates best: ranks and critical difference", "summary-ranking")
        w.p(
            "Each block (model, training class, augmentation, seed) ranks the metrics by separation AUROC (1 = "
            "best). The Friedman test asks whether the mean ranks differ at all; the Nemenyi post-hoc test which "
            "pairs do. In the diagram (Demšar, JMLR 2006) metrics joined by a bar are not significantly different; "
            "CD is the critical difference of mean ranks.",
            "note",
        )
        table = ranking.assign(
            p_vs_first=[ranking.attrs["pvalues"][ranking["metric"].iloc[0]][m] for m in ranking["metric"]]
        )
        w.raw(
            table.to_html(
                index=False, border=0, float_format=lambda x: f"{x:.3g}" if np.isfinite(x) else "–", na_rep="–"
            )
        )
        w.figure("critical_difference", (ranking,), "summary_cd", "critical-difference diagram of the metrics")
    if not rob.empty:
        w.h(3, "Robustness: what each augmentation does to the separation", "summary-robustness")
        w.figure(
            "robustness_plot",
            (rob,),
            "summary_robustness",
            "change of the separation AUROC against augmentation none, per metric (95 % CI); left of 0 = hurts",
        )
    if sep["sample_size"].nunique() > 1:
        w.h(3, "Separation against cloud size", "summary-sample-size")
        w.figure("sample_size_curve", (sep,), "summary_sample_size", "separation AUROC against points per cloud")
    return {"separation": sep, "ranking": ranking, "robustness": rob}
