"""proj18's tables from the tidy score table and the raw bootstrap resamples (plain pandas in, pandas out).

- :func:`score_table` — proj18's table: rows = eval class, columns = model, cells = bootstrap mean with its 95 %
  interval, one table per (metric, training class, augmentation[, seed]); :func:`score_tables` makes all of them.
- :func:`separation` / :func:`separation_table` — how far the baseline ("normal train vs normal test": the training
  class's own held-out cloud) stands apart from the other classes, per (model, metric, augmentation): the baseline's
  rank among all eval classes by mean value (1 = nearest) and, for each other class ``c``,
  ``P(baseline < c) = P(X_b < X_c) + ½ P(X_b = X_c)`` over independent bootstrap resamples (the Mann–Whitney
  probability; 1 = the baseline is always nearer, 0.5 = no separation).

The inputs are the frames of :func:`analysis.load.load_scores` and :func:`analysis.load.load_bootstrap` (any subset
of their rows). Every table is an ordinary DataFrame with a flat index and string column labels, ready for
``to_markdown()`` / ``to_html()``; ``DataFrame.attrs["caption"]`` says what it shows.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable

import numpy as np
import pandas as pd

from analysis.roles import role_of

TRIAL_COLUMNS = ["model", "train_class", "augmentation", "seed"]


# ------------------------------------------------------------------------------------------------- helpers


def class_order(names: Iterable[Hashable], reference: Iterable[Hashable] = ()) -> list:
    """Distinct class names, numerically sorted when all are integers (``"2" < "10"``), else in the order they
    first appear in ``reference`` (pass the ``eval_class`` column: every trial lists the eval classes in the
    dataset's own order), then in first-seen order."""
    seen = list(dict.fromkeys(names))
    try:
        return sorted(seen, key=lambda c: int(str(c)))
    except ValueError:
        pass
    ref = {c: i for i, c in enumerate(dict.fromkeys(reference))}
    return sorted(seen, key=lambda c: (ref.get(c, len(ref)), seen.index(c)))


def format_number(x: float, decimals: int) -> str:
    """``x`` with ``decimals`` decimals; a negative ``decimals`` means scientific notation with ``-decimals``
    decimals in the mantissa; NaN/inf as ``–``."""
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:.{-decimals}e}" if decimals < 0 else f"{x:.{decimals}f}"


def decimals_for(values: Iterable[float], digits: int = 3) -> int:
    """Decimals that show ``digits`` significant digits of the largest of ``values``; ``-digits`` (meaning
    scientific notation) for magnitudes below 1e-4 or of 1e6 and above."""
    finite = [abs(v) for v in values if v is not None and np.isfinite(v) and v != 0]
    if not finite:
        return 0
    mag = math.floor(math.log10(max(finite)))
    if mag < -4 or mag >= 6:
        return -(digits - 1)
    return max(0, digits - 1 - mag)


def format_ci(mean: float, low: float, high: float, digits: int = 3) -> str:
    """``"mean [low, high]"`` with ``digits`` significant digits of the mean (the bounds with as many decimals;
    a mean of 0 takes its decimals from the bounds)."""
    if mean is None or not np.isfinite(mean):
        return "–"
    d = decimals_for([mean] if mean != 0 else [low, high], digits)
    return f"{format_number(mean, d)} [{format_number(low, d)}, {format_number(high, d)}]"


def _choose(df: pd.DataFrame, column: str, value: object, what: str) -> object:
    """``value`` when given, else the only value of ``df[column]``; a clear error otherwise."""
    present = list(dict.fromkeys(df[column].dropna().tolist())) if column in df.columns else []
    present = class_order(present) if column in ("train_class", "eval_class") else sorted(present)
    if value is None:
        if len(present) == 1:
            return present[0]
        raise ValueError(
            f"{what}: several {column} values {present}; pass {column}=… to choose one"
            if present
            else f"{what}: no rows"
        )
    if column == "seed":
        value = int(value)
    elif column in ("train_class", "eval_class"):
        value = str(value)
    if value not in present:
        raise ValueError(f"{what}: no rows with {column}={value!r}; present: {present}")
    return value


def select_rows(df: pd.DataFrame, what: str, **choice: object) -> tuple[pd.DataFrame, dict[str, object]]:
    """The rows of ``df`` matching every ``column=value`` of ``choice`` (``None``: the column's only value, see
    :func:`_choose`; ``what`` names the table in errors), and the chosen values."""
    chosen = {}
    for column, value in choice.items():
        chosen[column] = _choose(df, column, value, what)
        df = df[df[column] == chosen[column]]
    return df, chosen


# ------------------------------------------------------------------------------------------ proj18's table


def score_table(
    scores: pd.DataFrame,
    metric: str,
    train_class: str | None = None,
    augmentation: str | None = None,
    seed: int | None = None,
    *,
    formatted: bool = True,
    digits: int = 3,
) -> pd.DataFrame:
    """proj18's table for one metric, training class and augmentation: rows = eval class, columns = model.

    With ``formatted`` (default) each cell is ``"mean [ci_low, ci_high]"`` (bootstrap mean and 95 % interval;
    for ``knn_auroc`` the one-class AUROC and its BCa interval); otherwise the columns are
    ``<model> mean``, ``<model> ci_low``, ``<model> ci_high`` as floats. ``train_class``, ``augmentation`` and
    ``seed`` may be left out when the frame holds only one of each. The training class's own row is the baseline.
    """
    sub = scores[scores["metric"] == metric]
    if sub.empty:
        raise ValueError(f"no rows with metric={metric!r}; metrics: {sorted(set(scores['metric']))}")
    sub, chosen = select_rows(
        sub, f"score table of {metric}", train_class=train_class, augmentation=augmentation, seed=seed
    )
    dup = sub.duplicated(["model", "eval_class"], keep=False)
    if dup.any():
        raise ValueError(
            f"score table of {metric}: several trials per (model, eval class) "
            f"(runs {sorted(set(sub.loc[dup, 'run_id']))}); load with all_runs=False or filter first"
        )
    rows = class_order(sub["eval_class"])
    models = sorted(set(sub["model"]))
    frame = sub.set_index(["eval_class", "model"])
    if formatted:
        cells = {
            m: [
                format_ci(*frame.loc[(c, m), ["mean", "ci_low", "ci_high"]]) if (c, m) in frame.index else "–"
                for c in rows
            ]
            for m in models
        }
        table = pd.DataFrame(cells, index=pd.Index(rows, name="eval_class"))
    else:
        table = pd.DataFrame(index=pd.Index(rows, name="eval_class"))
        for m in models:
            for stat in ("mean", "ci_low", "ci_high"):
                table[f"{m} {stat}"] = [frame.loc[(c, m), stat] if (c, m) in frame.index else np.nan for c in rows]
    table.columns.name = "model"
    n = sub["n_resamples"].dropna().unique()
    k = sub["sample_size"].dropna().unique()
    what = (
        "one-class k-NN AUROC (training class's test images vs the class) [BCa 95 % interval]"
        if metric == "knn_auroc"
        else f"mean [95 % interval] over {', '.join(map(str, n))} bootstrap resamples of "
        f"{', '.join(map(str, k))} points; baseline = row {chosen['train_class']}"
    )
    table.attrs["caption"] = (
        f"{metric} — train class {chosen['train_class']}, augmentation "
        f"{chosen['augmentation']}, seed {chosen['seed']}: {what}"
    )
    table.attrs.update(metric=metric, **chosen)
    return table


def table_keys(scores: pd.DataFrame) -> list[tuple[str, str, str, int]]:
    """Every ``(metric, train_class, augmentation, seed)`` present, metrics in first-seen order."""
    keys = []
    for metric in dict.fromkeys(scores["metric"]):
        sub = scores[scores["metric"] == metric]
        for tc in class_order(sub["train_class"], scores["eval_class"]):
            s2 = sub[sub["train_class"] == tc]
            for aug in dict.fromkeys(s2["augmentation"]):
                for seed in sorted(set(s2.loc[s2["augmentation"] == aug, "seed"])):
                    keys.append((metric, tc, aug, int(seed)))
    return keys


def score_tables(
    scores: pd.DataFrame, *, formatted: bool = True, digits: int = 3
) -> dict[tuple[str, str, str, int], pd.DataFrame]:
    """:func:`score_table` for every ``(metric, train_class, augmentation, seed)`` of ``scores``."""
    return {key: score_table(scores, *key, formatted=formatted, digits=digits) for key in table_keys(scores)}


# ------------------------------------------------------------------------------------------------ separation


def p_below(baseline: np.ndarray, other: np.ndarray) -> float:
    """``P(b < o) + ½ P(b = o)`` for independent draws ``b`` of ``baseline`` and ``o`` of ``other`` (all pairs)."""
    b = np.asarray(baseline, float)
    o = np.sort(np.asarray(other, float))
    if len(b) == 0 or len(o) == 0:
        return float("nan")
    lo = np.searchsorted(o, b, side="left")
    hi = np.searchsorted(o, b, side="right")
    greater = len(o) - hi
    ties = hi - lo
    return float((greater.sum() + 0.5 * ties.sum()) / (len(b) * len(o)))


def separation(bootstrap: pd.DataFrame) -> pd.DataFrame:
    """Baseline separation of every trial and metric, from the raw resamples.

    Uses the rows of ``role`` ``baseline`` and ``other`` only (``role`` from :func:`analysis.roles.role_of` when the
    frame has no such column): with several training classes their own test clouds (``in_distribution``) are
    subsets of the baseline and are neither ranked nor compared. Returns one row per (model, train_class,
    augmentation, seed, metric, eval_class) of those roles with ``value_mean`` (mean over resamples),
    ``baseline_rank`` (rank of the baseline among the baseline and the ``other`` classes by mean value, 1 = nearest;
    a tie counts against the baseline) and ``p_baseline_below`` = P(baseline < this class), NaN on the baseline's
    own row. Trials without a baseline cloud are left out.
    """
    rows = []
    if "role" not in bootstrap.columns:
        roles = [role_of(*ct) for ct in zip(bootstrap["eval_class"], bootstrap["train_class"], strict=True)]
        bootstrap = bootstrap.assign(role=roles)
    bootstrap = bootstrap[bootstrap["role"].isin(["baseline", "other"])]
    for (model, tc, aug, seed, metric), g in bootstrap.groupby(
        ["model", "train_class", "augmentation", "seed", "metric"], sort=False
    ):
        values = {c: v["value"].to_numpy() for c, v in g.groupby("eval_class", sort=False)}
        base = set(g.loc[g["role"] == "baseline", "eval_class"])
        if len(base) != 1 or len(values) < 2:
            continue
        b = base.pop()  # the training key's own cloud: b == tc by the role rule
        means = {c: float(np.mean(v)) for c, v in values.items()}
        order = sorted(means, key=lambda c: (means[c], c == b))
        rank = order.index(b) + 1
        for c in class_order(values):
            rows.append(
                {
                    "model": model,
                    "train_class": tc,
                    "augmentation": aug,
                    "seed": seed,
                    "metric": metric,
                    "eval_class": c,
                    "value_mean": means[c],
                    "baseline_rank": rank,
                    "p_baseline_below": np.nan if c == b else p_below(values[b], values[c]),
                }
            )
    columns = [
        "model",
        "train_class",
        "augmentation",
        "seed",
        "metric",
        "eval_class",
        "value_mean",
        "baseline_rank",
        "p_baseline_below",
    ]
    return pd.DataFrame(rows, columns=columns)


def _separation_wide(sep: pd.DataFrame, chosen: dict[str, object]) -> pd.DataFrame:
    train = class_order(sep["train_class"], sep["eval_class"])
    evals = class_order(sep["eval_class"])
    rank = sep.groupby("train_class")["baseline_rank"].first()
    p = sep.pivot(index="train_class", columns="eval_class", values="p_baseline_below")
    table = pd.DataFrame({"rank": rank.reindex(train).astype(int)})
    for c in evals:
        table[str(c)] = p[c].reindex(train) if c in p.columns else np.nan
    table.index = pd.Index(train, name="train_class")
    table.columns.name = "eval_class"
    n = len(evals)
    table.attrs["caption"] = (
        f"separation of the baseline — {chosen['model']}, {chosen['metric']}, augmentation "
        f"{chosen['augmentation']}, seed {chosen['seed']}: rank = the training class's own "
        f"test cloud among the {n} eval classes by mean (1 = nearest); class columns = "
        f"P(baseline < class) over bootstrap resamples (1 = always nearer, 0.5 = no "
        f"separation)"
    )
    table.attrs.update(chosen)
    return table


def separation_table(
    bootstrap: pd.DataFrame,
    model: str | None = None,
    metric: str | None = None,
    augmentation: str | None = None,
    seed: int | None = None,
) -> pd.DataFrame:
    """Separation of the baseline for one (model, metric, augmentation[, seed]): one row per training class.

    Columns: ``rank`` (the training class's own test cloud among all eval classes by mean value, 1 = nearest),
    then one column per eval class with ``P(baseline < that class)`` over the bootstrap resamples (NaN where the
    eval class is the training class). Arguments may be left out when the frame holds only one value.
    """
    sub, chosen = select_rows(
        bootstrap, "separation table", model=model, metric=metric, augmentation=augmentation, seed=seed
    )
    sep = separation(sub)
    if sep.empty:
        raise ValueError(f"separation table {chosen}: no trial has its training class among its eval classes")
    return _separation_wide(sep, chosen)


def separation_tables(bootstrap: pd.DataFrame) -> dict[tuple[str, str, str, int], pd.DataFrame]:
    """:func:`separation_table` for every ``(model, metric, augmentation, seed)`` of ``bootstrap``."""
    sep = separation(bootstrap)
    out = {}
    for (model, metric, aug, seed), g in sep.groupby(["model", "metric", "augmentation", "seed"], sort=False):
        out[(model, metric, aug, int(seed))] = _separation_wide(
            g, {"model": model, "metric": metric, "augmentation": aug, "seed": int(seed)}
        )
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0], list(dict.fromkeys(sep["metric"])).index(kv[0][1]))))


#: Column groups of the published anomaly-clustering table (Sohn et al., WACV 2023, Table 2).
CLUSTERING_SUPERVISIONS = ("average", "unsupervised", "supervised")
CLUSTERING_SCORES = ("nmi", "ari", "f1_micro")


def anomaly_clustering_table(scores: pd.DataFrame, runs: pd.DataFrame, *, digits: int = 3) -> pd.DataFrame:
    """The published table layout of anomaly clustering: one row per backbone, column groups
    ``(supervision, kind, score)`` with ``supervision`` in average / unsupervised / supervised, ``kind`` object /
    texture (the MVTec grouping of the categories; other categories as ``other``) and ``score`` NMI, ARI, F1; each
    cell is the mean over the categories of that kind (and over seeds).

    Args:
        scores: :func:`analysis.load.load_scores` of an anomaly-clustering experiment (metrics ``nmi``, ``ari``,
            ``f1_micro``; ``train_class`` = the category).
        runs: :func:`analysis.load.load_runs` of the same experiment (params ``clustering.backbone``,
            ``clustering.supervision`` and tag-derived ``category_kind`` as logged by the trial).
    """
    from experiments.anomaly_clustering import category_kind

    df = scores[scores["metric"].isin(CLUSTERING_SCORES)]
    if df.empty:
        raise ValueError("no anomaly-clustering scores (metrics nmi, ari, f1_micro) in this experiment")
    meta = runs.set_index("run_id")[["clustering.backbone", "clustering.supervision"]]
    df = df.join(meta, on="run_id")
    df = df.assign(kind=df["train_class"].map(category_kind))
    cells = (
        df.groupby(["clustering.backbone", "clustering.supervision", "kind", "metric"])["mean"]
        .mean()
        .unstack(["clustering.supervision", "kind", "metric"])
    )
    order = [
        (s, k, m)
        for s in CLUSTERING_SUPERVISIONS
        for k in ("object", "texture", "other")
        for m in CLUSTERING_SCORES
        if (s, k, m) in cells.columns
    ]
    table = cells[order].round(digits)
    table.index.name = "backbone"
    table.columns = pd.MultiIndex.from_tuples(order, names=["supervision", "kind", "score"])
    return table
