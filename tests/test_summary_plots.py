"""The summary figures draw what the summary says: the CD diagram's labels and crossbars, the robustness plot's
points, the sample-size curve's lines."""

import numpy as np
import pandas as pd
import pytest

from analysis.summary import metric_ranking, robustness, separation_summary
from analysis.summary_plots import critical_difference, robustness_plot, sample_size_curve
from tests.test_summary import _random_scores


@pytest.fixture(scope="module")
def scores():
    a, _ = _random_scores(metrics=("a", "b", "c", "d"))
    b, _ = _random_scores(seed=1, metrics=("a", "b", "c", "d"))
    return pd.concat([a, b.assign(sample_size=80)], ignore_index=True)


def test_critical_difference_shows_every_metric_with_its_mean_rank(scores, tmp_path):
    ranking = metric_ranking(scores)
    fig = critical_difference(ranking)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    for m, r in zip(ranking["metric"], ranking["mean_rank"], strict=True):
        assert any(m in t and f"{r:.2f}" in t for t in texts), (m, r, texts)
    assert any(t.startswith("CD = ") for t in texts)
    fig.savefig(tmp_path / "cd.png")


def test_critical_difference_needs_a_ranking():
    with pytest.raises(ValueError, match="metric_ranking"):
        critical_difference(pd.DataFrame({"metric": ["a"], "mean_rank": [1.0]}))


def test_robustness_plot_points_are_the_deltas(scores, tmp_path):
    rob = robustness(scores, n_boot=200)
    fig = robustness_plot(rob)
    xs = np.concatenate([ln.get_xdata() for ax in fig.axes for ln in ax.lines if ln.get_marker() == "o"])
    expected = rob[rob["sample_size"] == 80]["delta_mean"].to_numpy()
    assert np.sort(xs) == pytest.approx(np.sort(expected))
    fig.savefig(tmp_path / "rob.png")


def test_sample_size_curve_has_one_line_per_metric_through_the_summary(scores, tmp_path):
    summary = separation_summary(scores, n_boot=200)
    fig = sample_size_curve(summary)
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.lines if not ln.get_label().startswith("_")}
    assert set(lines) == {"a", "b", "c", "d"}
    model, aug = ax.get_title().split(" · augmentation ")
    for m, ln in lines.items():
        g = summary[(summary.metric == m) & (summary.model == model) & (summary.augmentation == aug)]
        assert list(ln.get_xdata()) == [40.0, 80.0]
        assert list(ln.get_ydata()) == pytest.approx(list(g.sort_values("sample_size")["auroc_mean"]))
    fig.savefig(tmp_path / "curve.png")
