"""The report leads with the answer and scales: summary before trials, detail pages per (model, metric),
``detail`` levels, figures cached by run id and content. A real sqlite MLflow store filled by the logged-trials
generator of benchmarks/load_runs.py (no Ray, no training)."""

import re
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from analysis.figure_jobs import FigureJob
from analysis.report import build_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from load_runs import build_store

METRICS = ("hausdorff", "chamfer", "mmd")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    # 12 trials: simclr x 10 classes with augmentation none, then 2 with gaussian_noise (paired for robustness)
    experiment = build_store(
        uri, root, 12, n_resamples=30, train_rows=20, test_rows=10, dim=4, epochs=2, metrics=METRICS
    )
    client = MlflowClient(uri)
    runs = client.search_runs(client.get_experiment_by_name(experiment).experiment_id, "tags.`sweeper.role` = 'trial'")
    for i, r in enumerate(runs):
        client.log_metric(r.info.run_id, "embedding.std", 0.001 if i == 0 else 0.45)
        client.log_metric(r.info.run_id, "embedding.dim", 4.0)
        client.log_metric(r.info.run_id, "embedding.rankme", 1.0 if i == 0 else 3.9)
    return uri, experiment, runs[0].data.tags["sweeper.trial_key"], root


def _srcs(page: str) -> list[str]:
    return re.findall(r'src="([^"]+)"', page)


def test_index_leads_with_the_summary_and_links_detail_pages(store, tmp_path):
    uri, experiment, collapsed_key, root = store
    out = build_report(experiment, tmp_path / "r", uri, cache_dir=root / "cache", dpi=50, processes=2)
    page = out["index"].read_text(encoding="utf-8")
    assert page.index('id="summary"') < page.index('id="trials"')
    summary_part = page[page.index('id="summary"') : page.index('id="trials"')]
    assert 'src="figures/summary_cd.png"' in summary_part and 'src="figures/summary_robustness.png"' in summary_part
    assert "collapsed trial" in summary_part and collapsed_key in summary_part
    assert '<tr class="best">' in summary_part
    assert "ranks first" in summary_part
    names = {p.name for p in out["pages"]}
    expected = {f"detail_simclr_{m}.html" for m in (*METRICS, "knn_auroc")}
    assert names == {"index.html", *expected}
    for name in expected:
        assert f'href="{name}"' in page
        detail = (tmp_path / "r" / name).read_text(encoding="utf-8")
        assert any(s.startswith("figures/heatmap_") for s in _srcs(detail))
        assert not any(s.startswith("figures/bootstrap_") for s in _srcs(detail))
    for p in out["pages"]:
        for src in _srcs(p.read_text(encoding="utf-8")):
            assert (tmp_path / "r" / src).read_bytes()[:4] == b"\x89PNG"
    assert out["drawn"] == len(out["figures"]) and out["cached"] == 0

    again = build_report(experiment, tmp_path / "r", uri, cache_dir=root / "cache", dpi=50, processes=2)
    assert again["drawn"] == 0 and again["cached"] == len(out["figures"])
    (tmp_path / "r" / "figures" / "summary_cd.png").unlink()
    third = build_report(experiment, tmp_path / "r", uri, cache_dir=root / "cache", dpi=50, processes=1)
    assert third["drawn"] == 1


@pytest.mark.slow
def test_detail_levels(store, tmp_path):
    uri, experiment, _, root = store
    none = build_report(experiment, tmp_path / "n", uri, cache_dir=root / "cache", dpi=50, detail="none")
    assert [p.name for p in none["pages"]] == ["index.html"]
    assert {p.name for p in none["figures"]} == {"summary_cd.png", "summary_robustness.png"}
    full = build_report(experiment, tmp_path / "a", uri, cache_dir=root / "cache", dpi=50, detail="all")
    boot = [p for p in full["figures"] if p.name.startswith("bootstrap_")]
    assert len(boot) == 12 * len(METRICS)  # every trial and cloud metric
    assert sum(p.name.startswith("pca_") for p in full["figures"]) == 4
    with pytest.raises(ValueError, match="detail must be one of"):
        build_report(experiment, tmp_path / "x", uri, detail="some")


def test_figure_key_follows_run_id_and_content(tmp_path):
    df = pd.DataFrame({"run_id": ["a", "b"], "value": [1.0, 2.0]})
    key = FigureJob("score_heatmap", (df, "m"), tmp_path / "f.png").key()
    assert FigureJob("score_heatmap", (df.copy(), "m"), tmp_path / "f.png").key() == key
    assert FigureJob("score_heatmap", (df.assign(value=[1.0, 2.5]), "m"), tmp_path / "f.png").key() != key
    assert FigureJob("score_heatmap", (df.assign(run_id=["a", "c"]), "m"), tmp_path / "f.png").key() != key
    assert FigureJob("score_heatmap", (df, "m"), tmp_path / "f.png", dpi=50).key() != key
