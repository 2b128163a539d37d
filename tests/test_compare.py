"""The fair-learning protocol: tuning never reads the test split; statistics against SciPy."""

import math

import numpy as np
import pytest
from scipy import stats

import geotrip as gt
from geotrip.train import _compare


def _data():
    return gt.make_task_data("clusters", seed=0, n_classes=4, cluster_size=24, dim=8)


def test_tuning_split_uses_the_training_split_only():
    data = _data()
    tune = gt.tuning_split(data, seed=0)
    train_rows = {tuple(np.round(np.asarray(r), 12)) for r in np.asarray(data.x_train)}
    test_rows = {tuple(np.round(np.asarray(r), 12)) for r in np.asarray(data.x_test)}
    fit = {tuple(np.round(r, 12)) for r in np.asarray(tune.x_train)}
    val = {tuple(np.round(r, 12)) for r in np.asarray(tune.x_test)}
    assert fit | val == train_rows and not fit & val
    assert not (fit | val) & test_rows
    assert len(fit) + len(val) == data.x_train.shape[0]
    assert set(np.asarray(tune.y_test).tolist()) == set(np.asarray(data.y_train).tolist())
    with pytest.raises(ValueError, match="MLP task"):
        gt.tuning_split(gt.make_task_data("features", seed=0))


def test_tune_distances_selects_on_validation_without_test_leakage(monkeypatch):
    """tune_distances trains on the tuning data only and picks the best mean validation score."""
    data = _data()
    tune = gt.tuning_split(data, seed=0)
    seen = []
    table = {  # mean validation MAP@R per (distance, lr, margin): the best is unique per distance
        ("chord_sq", 1e-3, 0.1): 0.5,
        ("chord_sq", 1e-2, 0.1): 0.7,
        ("chord", 1e-3, 0.1): 0.6,
        ("chord", 1e-2, 0.1): 0.6,  # a tie: the smaller learning rate wins
    }

    def fake_grid(task, setup, d, *, seeds, lrs, margins, spreads, **kw):
        seen.append(d)
        rows = []
        for (dist, lr, m), v in table.items():
            for s in seeds:
                rows.append(
                    dict(
                        distance=dist,
                        seed=s,
                        lr=lr,
                        margin=m,
                        final_map_at_r=v + 0.01 * (s - min(seeds)),
                        final_recall_at_1=v,
                    )
                )
        return rows, {}

    monkeypatch.setattr(_compare, "train_grid", fake_grid)
    spec = gt.CompareSpec(
        name="t",
        tasks=("clusters",),
        distances=("chord_sq", "chord"),
        lrs=(1e-3, 1e-2),
        margins=(0.1,),
        tune_seeds=2,
    )
    tuned, _ = gt.tune_distances(spec, tune)
    assert seen == [tune] and seen[0].x_test is tune.x_test
    assert (tuned["chord_sq"]["lr"], tuned["chord"]["lr"]) == (1e-2, 1e-3)
    np.testing.assert_allclose(tuned["chord_sq"]["validation"]["map_at_r"], 0.705)


def test_run_compare_tunes_on_validation_and_tests_on_test(monkeypatch, tmp_path):
    calls = []

    def fake_tune(spec, tune_data, *, seed0):
        calls.append(("tune", tune_data))
        return {
            d: {"lr": 1e-3, "margin": 0.1, "validation": {"recall_at_1": 0.5, "map_at_r": 0.4}}
            for d in spec.distances
        }, []

    def fake_retrain(spec, data, tuned, seeds):
        calls.append(("retrain", data))
        rng = np.random.default_rng(0)
        return {
            d: {
                "recall_at_1": rng.random(len(seeds)),
                "map_at_r": rng.random(len(seeds)),
                "collapsed": np.zeros(len(seeds)),
                "mean_cos": np.zeros(len(seeds)),
                "push_pull": np.ones(len(seeds)),
                "init_mean_cos": np.zeros(len(seeds)),
            }
            for d in spec.distances
        }

    monkeypatch.setattr(_compare, "tune_distances", fake_tune)
    monkeypatch.setattr(_compare, "_retrain", fake_retrain)
    spec = gt.COMPARE_PRESETS["tiny"]
    rep = gt.run_compare(spec, tmp_path)
    (kind1, tune_data), (kind2, final_data) = calls
    data = gt.make_task_data("clusters", seed=0, **spec.data["clusters"])
    assert kind1 == "tune" and kind2 == "retrain" and final_data is data
    # the tuning data's evaluation split is part of the training split, never the test split
    assert tune_data.x_test.shape[0] + tune_data.x_train.shape[0] == data.x_train.shape[0]
    e = rep["tasks"]["clusters"]["distances"]["chord"]
    assert set(e) >= {"tuned", "recall_at_1", "map_at_r"} and e["map_at_r"]["n_seeds"] == 3
    assert "chord" in rep["tasks"]["clusters"]["paired_vs_chord_sq"]
    assert (tmp_path / "compare.json").exists() and (tmp_path / "provenance.json").exists()


def test_mean_interval_matches_scipy():
    x = np.random.default_rng(0).normal(1.0, 2.0, 10)
    r = gt.mean_interval(x)
    lo, hi = stats.t.interval(0.95, 9, loc=x.mean(), scale=stats.sem(x))
    np.testing.assert_allclose(r["ci95"], [lo, hi], rtol=1e-12)
    assert r["n"] == 10 and math.isnan(gt.mean_interval([1.0])["ci95"][0])


@pytest.mark.parametrize("shift", [0.0, 0.4, 1.5])
def test_sign_flip_and_paired_comparison_match_scipy(shift):
    rng = np.random.default_rng(3)
    x = rng.normal(size=10)
    y = x - shift - rng.normal(scale=0.5, size=10)
    d = x - y
    ref = stats.permutation_test(
        (d,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
    )
    np.testing.assert_allclose(gt.sign_flip_test(d), ref.pvalue, rtol=1e-12)
    pc = gt.paired_comparison(x, y)
    np.testing.assert_allclose(pc["p_wilcoxon"], stats.wilcoxon(x, y).pvalue, rtol=1e-12)
    np.testing.assert_allclose(pc["mean_diff"], d.mean())
    np.testing.assert_allclose(pc["cohens_dz"], d.mean() / d.std(ddof=1))
    ci = stats.ttest_rel(x, y).confidence_interval(0.95)
    np.testing.assert_allclose(pc["ci95"], [ci.low, ci.high], rtol=1e-10)


def test_mcnemar_matches_scipy_binomtest():
    assert gt.mcnemar_exact(0, 0) == 1.0
    np.testing.assert_allclose(gt.mcnemar_exact(7, 2), stats.binomtest(7, 9, 0.5).pvalue)
    with pytest.raises(ValueError):
        gt.mcnemar_exact(-1, 2)


@pytest.mark.slow
def test_cli_compare_tiny(tmp_path):
    import json

    from geotrip.cli import main

    assert main(["compare", "--preset", "tiny", "--out", str(tmp_path), "--x64"]) == 0
    rep = json.loads((tmp_path / "compare.json").read_text())
    for d in ("chord_sq", "chord", "geodesic"):
        e = rep["tasks"]["clusters"]["distances"][d]
        assert e["recall_at_1"]["n_seeds"] == 3
        assert (
            e["recall_at_1"]["ci95"][0] <= e["recall_at_1"]["mean"] <= e["recall_at_1"]["ci95"][1]
        )
    assert (tmp_path / "compare.png").exists()
