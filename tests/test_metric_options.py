"""The metric registry (``experiments.metrics.METRIC_SPECS``) and ``score.metric_options``: accepted, checked
against each metric's options with a one-line error before Ray starts, the deprecated ``score.mtopdiv_backend``
mapped with a warning, and the options reaching the computation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.spatial.distance import cdist, directed_hausdorff

from experiments.metrics import METRIC_SPECS, METRICS, MetricOption, MetricSpec, metric_label, metrics_of_kind
from experiments.metrics.detection import DETECTION_METRIC_NAMES, aupr_in, aupr_out, detection_metrics
from sweeper.cli import main
from sweeper.config import ConfigError, bundled_config, known_scores, parse_config
from sweeper.scoring import ScoreSettings, metric_options_from_params, score_clouds

DEMO = bundled_config("demo")


def minimal(**score):
    return {"name": "t", "experiment": "e", "grid": {"model": ["simclr"], "train_class": [0]}, "score": score}


def test_registry_kinds_and_the_names_configs_know():
    assert {n: s.function for n, s in METRIC_SPECS.items() if s.kind == "cloud"} == METRICS
    assert known_scores() == [*METRICS, "knn_auroc", *DETECTION_METRIC_NAMES]
    assert metrics_of_kind("clustering") == ["nmi", "ari", "f1_micro"]
    assert {s.kind for s in METRIC_SPECS.values()} == {"cloud", "detection", "clustering"}
    assert metric_label("mtopdiv") == "MTopDiv" and metric_label("not_registered") == "not_registered"
    with pytest.raises(ValueError, match="unknown metric kind 'image'"):
        MetricSpec(len, "image", "x")


def test_batched_forms_match_an_independent_computation():
    rng = np.random.default_rng(3)
    P, Q = rng.normal(size=(40, 5)), rng.normal(0.5, 1.0, size=(30, 5))
    ri, ei = rng.integers(0, 40, (6, 12)), rng.integers(0, 30, (6, 12))
    haus = [
        max(directed_hausdorff(P[a], Q[b])[0], directed_hausdorff(Q[b], P[a])[0]) for a, b in zip(ri, ei, strict=True)
    ]
    np.testing.assert_allclose(METRIC_SPECS["hausdorff"].batched(P, Q, ri, ei), haus, rtol=1e-12)
    summed = [cdist(P[a], Q[b]).sum() for a, b in zip(ri, ei, strict=True)]
    np.testing.assert_allclose(METRIC_SPECS["euclidean"].batched(P, Q, ri, ei), summed, rtol=1e-12)
    assert METRIC_SPECS["energy"].batched is None


def _average_precision(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """AP by hand: the mean over positives of the precision among the scores at least as high (no ties)."""
    allscores = np.r_[positive_scores, negative_scores]
    return float(
        np.mean(
            [np.mean(positive_scores >= t) * len(positive_scores) / np.sum(allscores >= t) for t in positive_scores]
        )
    )


def test_aupr_functions_are_the_average_precision_of_each_side():
    rng = np.random.default_rng(0)
    ins, outs = rng.normal(0, 1, 50), rng.normal(1, 1, 40)
    assert aupr_out(ins, outs) == pytest.approx(_average_precision(outs, ins), rel=1e-12)
    assert aupr_in(ins, outs) == pytest.approx(_average_precision(-ins, -outs), rel=1e-12)
    d = detection_metrics(ins, outs)
    assert (d["aupr_in"], d["aupr_out"]) == (aupr_in(ins, outs), aupr_out(ins, outs))


def test_metric_options_are_accepted_and_checked_against_the_spec():
    cfg = parse_config(minimal(metric_options={"mtopdiv": {"backend": "giotto"}, "mmd": {"bandwidth": 0.5}}))
    assert cfg.score.metric_options == {"mtopdiv": {"backend": "giotto"}, "mmd": {"bandwidth": 0.5}}
    assert cfg.score.mtopdiv_backend == "giotto"
    bad = [
        ({"mtopdiv": {"backend": "cuda"}}, "score.metric_options.mtopdiv: unknown backend 'cuda'; valid: auto, giotto"),
        ({"mtopdiv": {"threads": 2}}, "score.metric_options.mtopdiv: unknown option(s) ['threads']; valid: backend"),
        ({"hausdorff": {"p": 1}}, "score.metric_options.hausdorff: unknown option(s) ['p']; valid: none"),
        ({"cosine": {}}, "unknown metric in score.metric_options 'cosine'; valid: hausdorff"),
        ({"wasserstein": {"n_projections": 0}}, "n_projections must be an integer >= 1, not 0"),
        ({"mmd": {"bandwidth": -1.0}}, "bandwidth must be a number > 0 or null (median), not -1.0"),
    ]
    for options, message in bad:
        with pytest.raises(ConfigError) as info:
            parse_config(minimal(metric_options=options))
        assert message in str(info.value) and "\n" not in str(info.value)


def test_option_check_of_a_spec_of_its_own():
    spec = MetricSpec(len, "cloud", "n", options={"k": MetricOption(1, check=lambda v: v in (1, 2), rule="1 or 2")})
    assert spec.check_options({"k": 2}) == {"k": 2}
    with pytest.raises(ValueError, match=r"^k must be 1 or 2, not 3$"):
        spec.check_options({"k": 3})


def test_deprecated_backend_is_mapped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        cfg = parse_config(minimal(mtopdiv_backend="ripser"))
    assert any("score.mtopdiv_backend is deprecated" in r.getMessage() for r in caplog.records)
    assert cfg.score.metric_options == {"mtopdiv": {"backend": "ripser"}}
    assert cfg.score.mtopdiv_backend == "ripser"
    # the dumped config (the sweep state workers read) has no deprecated key, and reads back the same
    assert "mtopdiv_backend" not in cfg.model_dump(mode="json")["score"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = parse_config(cfg.model_dump(mode="json"))
    assert again.score.model_dump() == cfg.score.model_dump() and not caplog.records
    with pytest.raises(ConfigError, match=r"unknown score\.mtopdiv_backend 'cuda'; valid: auto, giotto, ripser"):
        parse_config(minimal(mtopdiv_backend="cuda"))
    with pytest.raises(ConfigError, match=r"deprecated score\.mtopdiv_backend, not both"):
        parse_config(minimal(mtopdiv_backend="giotto", metric_options={"mtopdiv": {"backend": "ripser"}}))


def test_result_settings_keep_the_stored_layout_of_existing_sweeps():
    """A sweep stored before metric_options compares equal to the same config now (resume is not refused)."""
    old_layout = {
        "metrics": "all",
        "n_resamples": 1000,
        "sample_size": 100,
        "seed": 0,
        "knn_k": 5,
        "mtopdiv_backend": "auto",
        "full_cloud": "auto",
    }
    assert parse_config(minimal()).result_settings()["score"] == old_layout
    legacy = parse_config(minimal(mtopdiv_backend="giotto")).result_settings()["score"]
    new = parse_config(minimal(metric_options={"mtopdiv": {"backend": "giotto"}})).result_settings()["score"]
    assert legacy == new == {**old_layout, "mtopdiv_backend": "giotto"}
    more = parse_config(minimal(metric_options={"mmd": {"bandwidth": 2.0}})).result_settings()["score"]
    assert more == {**old_layout, "metric_options": {"mmd": {"bandwidth": 2.0}}}


def test_run_params_round_trip_the_options():
    assert parse_config(minimal(metric_options={"mtopdiv": {"backend": "giotto"}})).score.option_params() == {}
    options = {"mtopdiv": {"backend": "giotto"}, "wasserstein": {"n_projections": 50}}
    score = parse_config(minimal(metric_options=options)).score
    params = {"mtopdiv_backend": score.mtopdiv_backend, **score.option_params()}
    assert params == {"mtopdiv_backend": "giotto", "metric_options": '{"wasserstein": {"n_projections": 50}}'}
    assert metric_options_from_params(params) == options
    assert metric_options_from_params({}) == {"mtopdiv": {"backend": "auto"}}


def _mmd_u(P: np.ndarray, Q: np.ndarray, sigma: float) -> float:
    """Unbiased MMD² with an RBF kernel, by explicit double loops over the pairs (Gretton et al. 2012, eq. 3)."""
    k = lambda x, y: np.exp(-np.sum((x - y) ** 2) / (2 * sigma**2))  # noqa: E731
    n, m = len(P), len(Q)
    pp = sum(k(P[i], P[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    qq = sum(k(Q[i], Q[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    pq = sum(k(P[i], Q[j]) for i in range(n) for j in range(m)) / (n * m)
    return pp + qq - 2 * pq


def test_a_metric_option_reaches_the_computation():
    rng = np.random.default_rng(1)
    reference, other = rng.normal(size=(25, 3)), rng.normal(0.3, 1.2, size=(20, 3))
    clouds = {"0": reference[:18], "1": other}
    base = {"metrics": ("mmd",), "n_resamples": 4, "sample_size": 6, "workers": 0}
    narrow = score_clouds(reference, clouds, "0", ScoreSettings(**base, metric_options={"mmd": {"bandwidth": 0.3}}))
    default = score_clouds(reference, clouds, "0", ScoreSettings(**base))
    full = narrow.table.set_index("eval_class")["full"]
    assert full["1"] == pytest.approx(_mmd_u(reference, other, 0.3), rel=1e-9)
    assert not np.allclose(narrow.raw["value"], default.raw["value"])


@pytest.mark.parametrize(
    "setting, needle",
    [
        ("score.metric_options.mtopdiv.threads=2", "score.metric_options.mtopdiv: unknown option(s) ['threads']"),
        ("score.metric_options.mtopdiv.backend=cuda", "score.metric_options.mtopdiv: unknown backend 'cuda'"),
    ],
)
def test_cli_refuses_a_bad_metric_option_with_exit_2_before_ray(
    setting, needle, tmp_path, monkeypatch, capsys, ray_starts
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["run", str(DEMO), "--set", setting]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and err.startswith("sweeper: error:")
    assert ray_starts == []
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_cli_validate_accepts_the_deprecated_key_with_a_warning(caplog):
    """The console script prints the warning on stderr through its logging set-up (``WARNING sweeper.config...``);
    under pytest the record is captured instead."""
    with caplog.at_level(logging.WARNING):
        assert main(["validate", str(DEMO), "--set", "score.mtopdiv_backend=giotto"]) == 0
    (record,) = [r for r in caplog.records if "deprecated" in r.getMessage()]
    assert record.levelno == logging.WARNING and record.name.startswith("sweeper.config")
    assert "score.metric_options: {mtopdiv: {backend: giotto}}" in record.getMessage()
