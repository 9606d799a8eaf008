"""The sweep's answer: which cloud metric sets the training class apart, how surely, and what breaks it.

Plain pandas in, pandas out; no MLflow here. The input is the tidy score table of every trial
(:func:`analysis.load.load_scores`); a trial is one ``(model, train_class, augmentation, seed)`` and each of its
cloud metrics (the rows with a ``p_baseline_below``) gives, per cloud size ``sample_size``:

- the **separation AUROC** ``A = mean_c P(baseline < c)`` over the other classes ``c`` (``role == "other"`` when the
  table has a ``role`` column, else ``eval_class != train_class``). With the same number of resamples per class this
  is the one-vs-rest AUROC of "baseline resamples vs all other classes' resamples" (Mann–Whitney, ties half);
  1 = the training class's own held-out cloud is always nearer than any other class, 0.5 = no separation;
- the **baseline rank**: the baseline's place among the baseline and the other classes by bootstrap mean
  (1 = nearest; a tie counts against the baseline).

Functions:

- :func:`trial_separation` — those two numbers per (trial, metric, sample size), with the hardest other class;
- :func:`separation_summary` — per (model, metric, augmentation, sample size): mean ``A`` over trials with a
  cluster-bootstrap CI (training classes drawn with replacement, then seeds within each drawn class), the share of
  trials with baseline rank 1, the hardest (training class, other class) pair;
- :func:`metric_ranking` — ranks of the metrics within each block (model, training class, augmentation, seed),
  the Friedman test (``scipy.stats.friedmanchisquare``) and a post-hoc test (Nemenyi or Conover–Holm from
  ``scikit-posthocs``), with Demšar's (JMLR 2006) critical difference ``CD = q_alpha sqrt(k (k + 1) / (6 N))``;
- :func:`robustness` — per (model, metric, augmentation ≠ none): the change of ``A`` against ``augmentation: none``,
  paired by (model, training class, seed, sample size), with the same cluster-bootstrap CI;
- :func:`attach_collapse` / :func:`collapsed_trials` — the collapse diagnostics of :mod:`experiments.metrics.collapse`
  (logged run metrics ``embedding.std``, ``embedding.dim``) joined onto the scores; ``exclude_collapsed=True`` leaves
  collapsed trials out.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import scikit_posthocs as sp
import scipy.stats

from experiments.metrics.collapse import COLLAPSE_FRACTION

TRIAL = ["model", "train_class", "augmentation", "seed"]
BLOCK = ["model", "train_class", "augmentation", "seed"]
NONE = "none"


# ----------------------------------------------------------------------------------------------- trial level


def _roles(scores: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Masks of the baseline rows and of the "other class" rows (``role`` when present, else by class name)."""
    same = scores["eval_class"].astype(str) == scores["train_class"].astype(str)
    if "role" in scores.columns and scores["role"].notna().any():
        role = scores["role"].astype("string")
        return (role == "baseline").fillna(False) | (role.isna() & same), (role == "other").fillna(False) | (
            role.isna() & ~same
        )
    return same, ~same


def _collapse_filter(scores: pd.DataFrame, exclude_collapsed: bool, fraction: float) -> pd.DataFrame:
    if not exclude_collapsed:
        return scores
    if "embedding.std" not in scores.columns or "embedding.dim" not in scores.columns:
        raise ValueError(
            "exclude_collapsed=True needs the columns embedding.std and embedding.dim: "
            "scores = attach_collapse(scores, load_runs(...)) first"
        )
    keep = ~(scores["embedding.std"] < fraction / np.sqrt(scores["embedding.dim"].astype(float)))
    return scores[keep.fillna(True)]


def trial_separation(
    scores: pd.DataFrame, *, exclude_collapsed: bool = False, collapse_fraction: float = COLLAPSE_FRACTION
) -> pd.DataFrame:
    """One row per (model, train_class, augmentation, seed, sample_size, metric) of every cloud metric.

    Columns: those keys, ``run_id``, ``auroc`` (mean ``P(baseline < c)`` over the other classes), ``baseline_rank``,
    ``hardest_class`` (the other class with the lowest ``P(baseline < c)``) and ``hardest_p``. Metrics without
    ``p_baseline_below`` (``knn_auroc``, detection scores) and trials without their baseline row are left out.
    """
    scores = _collapse_filter(scores, exclude_collapsed, collapse_fraction)
    columns = [*TRIAL, "sample_size", "metric", "run_id", "auroc", "baseline_rank", "hardest_class", "hardest_p"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    base_mask, other_mask = _roles(scores)
    cloud = set(scores.loc[other_mask & scores["p_baseline_below"].notna(), "metric"])
    keep = scores["metric"].isin(cloud)
    df = scores.assign(seed=scores["seed"].fillna(0).astype(int) if "seed" in scores else 0)
    keys = [*TRIAL, "sample_size", "metric"]
    others = df[keep & other_mask].dropna(subset=["p_baseline_below"])
    base = df[keep & base_mask].groupby(keys, dropna=False)["mean"].first().rename("base_mean")
    if others.empty or base.empty:
        return pd.DataFrame(columns=columns)
    others = others.join(base, on=keys, how="inner")
    if "run_id" not in others:
        others["run_id"] = None
    others = others.assign(nearer=(others["mean"] <= others["base_mean"]).astype(int)).reset_index(drop=True)
    g = others.groupby(keys, dropna=False, sort=False)
    hardest = others.loc[g["p_baseline_below"].idxmin(), [*keys, "eval_class", "p_baseline_below"]]
    out = g.agg(run_id=("run_id", "first"), auroc=("p_baseline_below", "mean"), nearer=("nearer", "sum")).reset_index()
    out["baseline_rank"] = out.pop("nearer") + 1
    hardest = hardest.rename(columns={"eval_class": "hardest_class", "p_baseline_below": "hardest_p"})
    out = out.merge(hardest, on=keys, how="left")
    return out[columns].reset_index(drop=True)


# ------------------------------------------------------------------------------------------- cluster bootstrap


def cluster_bootstrap_mean(
    values: pd.Series, clusters: pd.Series, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` under a two-stage bootstrap: draw the clusters (training
    classes) with replacement, then, within each drawn cluster, its members (seeds) with replacement; the statistic
    is the mean over every drawn member. A single value gives the interval ``(v, v)``."""
    v = np.asarray(values, float)
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), float(v[0])
    codes, _ = pd.factorize(pd.Series(clusters).astype(str))
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    grouped = v[order]
    rng = np.random.default_rng(seed)
    c = len(sizes)
    drawn = rng.integers(0, c, size=(n_boot, c))  # clusters
    smax = int(sizes.max())
    u = rng.random(size=(n_boot, c, smax))
    size_d = sizes[drawn][..., None]
    member = np.minimum((u * size_d).astype(int), size_d - 1)  # members within each drawn cluster
    valid = np.arange(smax)[None, None, :] < size_d
    picked = grouped[starts[drawn][..., None] + member]
    stats = (picked * valid).sum(axis=(1, 2)) / valid.sum(axis=(1, 2))
    a = (1 - ci) / 2
    lo, hi = np.quantile(stats, [a, 1 - a])
    return float(lo), float(hi)


# ---------------------------------------------------------------------------------------------- the summary


def separation_summary(
    scores: pd.DataFrame,
    *,
    exclude_collapsed: bool = False,
    collapse_fraction: float = COLLAPSE_FRACTION,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (model, metric, augmentation, sample_size): how well the metric sets the training class apart.

    Columns: ``n_trials``; ``auroc_mean`` (mean separation AUROC over trials) with ``auroc_ci_low`` /
    ``auroc_ci_high`` (``ci`` percentile interval of :func:`cluster_bootstrap_mean` over training classes and
    seeds); ``share_rank1`` (share of trials whose baseline rank is 1); ``hardest_train_class``, ``hardest_class``
    and ``hardest_p`` (the (training class, other class) pair with the lowest mean ``P(baseline < class)``: "trained
    on cat, dog is the hardest"); ``best`` (True for the metric with the highest ``auroc_mean`` within its model,
    augmentation and sample size).
    """
    sc = _collapse_filter(scores, exclude_collapsed, collapse_fraction)
    trials = trial_separation(sc)
    _, other_mask = _roles(sc)
    pairs = sc[other_mask & sc["p_baseline_below"].notna()]
    keys = ["model", "metric", "augmentation", "sample_size"]
    rows = []
    for key, g in trials.groupby(keys, sort=False):
        lo, hi = cluster_bootstrap_mean(g["auroc"], g["train_class"], n_boot=n_boot, ci=ci, seed=seed)
        sel = pairs
        for k, v in zip(keys, key, strict=True):
            sel = sel[sel[k] == v]
        mean_p = sel.groupby(["train_class", "eval_class"])["p_baseline_below"].mean()
        (htc, hc), hp = (mean_p.idxmin(), float(mean_p.min())) if len(mean_p) else ((None, None), float("nan"))
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "n_trials": len(g),
                "auroc_mean": float(g["auroc"].mean()),
                "auroc_ci_low": lo,
                "auroc_ci_high": hi,
                "share_rank1": float((g["baseline_rank"] == 1).mean()),
                "hardest_train_class": htc,
                "hardest_class": hc,
                "hardest_p": hp,
            }
        )
    cols = [*keys, "n_trials", "auroc_mean", "auroc_ci_low", "auroc_ci_high", "share_rank1"]
    cols += ["hardest_train_class", "hardest_class", "hardest_p", "best"]
    if not rows:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame(rows)
    top = out.groupby(["model", "augmentation", "sample_size"])["auroc_mean"].transform("max")
    out["best"] = np.isclose(out["auroc_mean"], top, rtol=0, atol=1e-12)
    return out[cols].sort_values(["model", "sample_size", "augmentation", "auroc_mean"], ascending=[1, 1, 1, 0])


# ------------------------------------------------------------------------------------------------- ranking


def nemenyi_cd(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Demšar's (JMLR 2006, eq. after Table 5) critical difference of the Nemenyi test:
    ``CD = q_alpha sqrt(k (k + 1) / (6 N))`` with ``q_alpha`` the studentized range quantile over ``sqrt 2``."""
    q = scipy.stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n_blocks)))


def metric_ranking(
    scores: pd.DataFrame,
    by: str = "auroc",
    *,
    sample_size: int | None = None,
    alpha: float = 0.05,
    posthoc: str = "nemenyi",
    exclude_collapsed: bool = False,
    collapse_fraction: float = COLLAPSE_FRACTION,
) -> pd.DataFrame:
    """Rank the cloud metrics within each block (model, training class, augmentation, seed), rank 1 = best.

    ``by="auroc"``: by separation AUROC (higher is better); ``by="baseline_rank"``: by baseline rank (lower is
    better); ties share the average rank. Blocks missing a metric are dropped. With several cloud sizes, the
    ranking uses ``sample_size`` (default: the largest).

    Returns one row per metric, sorted by ``mean_rank``: ``metric``, ``mean_rank``, ``differs_from_best`` (post-hoc
    p below ``alpha`` against the first metric). ``attrs``: ``friedman_statistic`` and ``friedman_p``
    (``scipy.stats.friedmanchisquare``, needs at least 3 metrics and 2 blocks, else NaN), ``cd`` (Nemenyi critical
    difference, :func:`nemenyi_cd`), ``posthoc`` (``"nemenyi"``: ``scikit_posthocs.posthoc_nemenyi_friedman``;
    ``"conover"``: ``posthoc_conover_friedman`` with Holm's correction), ``pvalues`` (``{metric: {metric: p}}``),
    ``n_blocks``, ``k``, ``alpha``, ``by``, ``sample_size``.
    """
    if by not in ("auroc", "baseline_rank"):
        raise ValueError(f"metric_ranking: by must be 'auroc' or 'baseline_rank', not {by!r}")
    if posthoc not in ("nemenyi", "conover"):
        raise ValueError(f"metric_ranking: posthoc must be 'nemenyi' or 'conover', not {posthoc!r}")
    trials = trial_separation(scores, exclude_collapsed=exclude_collapsed, collapse_fraction=collapse_fraction)
    if trials.empty:
        raise ValueError("metric_ranking: no cloud-metric scores with a baseline and another class")
    sizes = sorted(set(trials["sample_size"].dropna().astype(int)))
    size = max(sizes) if sample_size is None else int(sample_size)
    if size not in sizes:
        raise ValueError(f"metric_ranking: no rows with sample_size={size}; present: {sizes}")
    trials = trials[trials["sample_size"] == size]
    wide = trials.pivot_table(index=BLOCK, columns="metric", values=by, aggfunc="first").dropna()
    wide.columns = [str(c) for c in wide.columns]
    ranks = wide.rank(axis=1, ascending=by == "baseline_rank", method="average")
    mean_rank = ranks.mean().sort_values(kind="stable")
    k, n = wide.shape[1], wide.shape[0]
    stat = p = float("nan")
    pvalues = pd.DataFrame(np.nan, index=mean_rank.index, columns=mean_rank.index)
    if k >= 2 and n >= 2:
        if k >= 3 and (ranks.nunique(axis=1) > 1).any():  # all ties: the statistic is 0/0
            stat, p = (float(x) for x in scipy.stats.friedmanchisquare(*[ranks[c].to_numpy() for c in ranks]))
        values = ranks.to_numpy()
        pv = (
            sp.posthoc_nemenyi_friedman(values)
            if posthoc == "nemenyi"
            else sp.posthoc_conover_friedman(values, p_adjust="holm")
        )
        pv.index = pv.columns = list(ranks.columns)
        pvalues = pv.loc[mean_rank.index, mean_rank.index]
    best = mean_rank.index[0]
    out = pd.DataFrame(
        {
            "metric": mean_rank.index,
            "mean_rank": mean_rank.to_numpy(),
            "differs_from_best": [bool(pvalues.loc[best, m] < alpha) for m in mean_rank.index],
        }
    )
    out.attrs.update(
        friedman_statistic=stat,
        friedman_p=p,
        cd=nemenyi_cd(k, n, alpha) if k >= 2 and n >= 1 else float("nan"),
        posthoc=posthoc,
        pvalues={a: {b: float(pvalues.loc[a, b]) for b in pvalues.columns} for a in pvalues.index},
        n_blocks=n,
        k=k,
        alpha=alpha,
        by=by,
        sample_size=size,
    )
    return out


# ---------------------------------------------------------------------------------------------- robustness


def robustness(
    scores: pd.DataFrame,
    *,
    exclude_collapsed: bool = False,
    collapse_fraction: float = COLLAPSE_FRACTION,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per (model, metric, augmentation ≠ none, sample_size): ``delta_mean`` = mean over pairs of
    ``A(augmentation) - A(none)``, the separation AUROC's change, each pair one (model, training class, seed,
    sample size); ``delta_ci_low`` / ``delta_ci_high`` by :func:`cluster_bootstrap_mean` over training classes and
    seeds; ``auroc_none`` and ``auroc_augmented`` (the two means) and ``n_pairs``. Negative = the augmentation hurts
    the metric's separation."""
    trials = trial_separation(scores, exclude_collapsed=exclude_collapsed, collapse_fraction=collapse_fraction)
    cols = ["model", "metric", "augmentation", "sample_size", "n_pairs", "delta_mean", "delta_ci_low"]
    cols += ["delta_ci_high", "auroc_none", "auroc_augmented"]
    pair = ["model", "train_class", "seed", "sample_size", "metric"]
    clean = trials[trials["augmentation"] == NONE].set_index(pair)["auroc"].rename("auroc_none")
    aug = trials[trials["augmentation"] != NONE].join(clean, on=pair, how="inner")
    if aug.empty:
        return pd.DataFrame(columns=cols)
    aug = aug.assign(delta=aug["auroc"] - aug["auroc_none"])
    rows = []
    for (model, metric, a, size), g in aug.groupby(["model", "metric", "augmentation", "sample_size"], sort=False):
        lo, hi = cluster_bootstrap_mean(g["delta"], g["train_class"], n_boot=n_boot, ci=ci, seed=seed)
        rows.append(
            {
                "model": model,
                "metric": metric,
                "augmentation": a,
                "sample_size": size,
                "n_pairs": len(g),
                "delta_mean": float(g["delta"].mean()),
                "delta_ci_low": lo,
                "delta_ci_high": hi,
                "auroc_none": float(g["auroc_none"].mean()),
                "auroc_augmented": float(g["auroc"].mean()),
            }
        )
    return pd.DataFrame(rows, columns=cols).sort_values(["model", "sample_size", "augmentation", "delta_mean"])


# ------------------------------------------------------------------------------------------------ collapse


def collapsed_trials(runs: pd.DataFrame, fraction: float = COLLAPSE_FRACTION) -> pd.DataFrame:
    """The trials of ``runs`` (:func:`analysis.load.load_runs`) whose reference cloud collapsed:
    ``embedding.std < fraction / sqrt(embedding.dim)`` (:func:`experiments.metrics.collapse.is_collapsed`).
    Columns ``trial_key, run_id, embedding.std, threshold, embedding.rankme, embedding.dim``."""
    cols = ["trial_key", "run_id", "embedding.std", "threshold", "embedding.rankme", "embedding.dim"]
    if runs.empty or "embedding.std" not in runs.columns or "embedding.dim" not in runs.columns:
        return pd.DataFrame(columns=cols)
    r = runs.assign(threshold=fraction / np.sqrt(runs["embedding.dim"].astype(float)))
    if "embedding.rankme" not in r.columns:
        r["embedding.rankme"] = np.nan
    return r.loc[r["embedding.std"] < r["threshold"], cols].sort_values("trial_key").reset_index(drop=True)


def attach_collapse(scores: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``scores`` with the run metrics ``embedding.std``, ``embedding.rankme`` and ``embedding.dim`` of ``runs``
    joined on ``run_id`` (NaN for runs that did not log them)."""
    wanted = [c for c in ("embedding.std", "embedding.rankme", "embedding.dim") if c in runs.columns]
    extra = runs.set_index("run_id")[wanted] if wanted else pd.DataFrame(index=runs["run_id"])
    extra = extra.reindex(columns=["embedding.std", "embedding.rankme", "embedding.dim"])
    return scores.drop(columns=[c for c in extra.columns if c in scores.columns]).join(extra, on="run_id")
