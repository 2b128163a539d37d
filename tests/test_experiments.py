"""Training runners: units, mining inside training, determinism, collapse criterion, sweeps, CLI."""

import csv
import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import geotrip as gt
from geotrip.cli import main
from geotrip.train import _steps as E

# the setup of the "tiny" preset's features cell, so tests share its compiled runner
TINY = gt.COLLAPSE_PRESETS["tiny"]
SETUP = gt.TrainSetup(
    distances=TINY.distances, strategy="batch_hard", steps=40, eval_every=20, **TINY.setup
)


def _features_data():
    return gt.make_task_data("features", seed=0, **TINY.data["features"])


def test_reference_units():
    for name, dist in gt.DISTANCES.items():
        ref = gt.reference_distance(name)
        assert ref is gt.reference_distance(name)  # cached: one object, warm jit caches
        t = jnp.linspace(0.1, 3.0, 7)
        c = float(dist.weight(jnp.asarray(math.pi / 2)))
        np.testing.assert_allclose(ref.weight(jnp.asarray(math.pi / 2)), 1.0, rtol=1e-12)
        np.testing.assert_allclose(ref.profile(t), dist.profile(t) / c, rtol=1e-12)
    # g'(0): zero for chord_sq, geodesic_sq, cosine; positive for chord, geodesic
    w0 = {n: float(gt.reference_distance(n).weight(jnp.asarray(0.0))) for n in gt.DISTANCES}
    assert w0["chord_sq"] == w0["geodesic_sq"] == w0["cosine"] == 0.0
    assert w0["chord"] > 0 and w0["geodesic"] > 0
    with pytest.raises(ValueError, match="theta_ref"):
        gt.reference_distance("chord", 0.0)


def test_selected_distance_equals_member():
    rng = np.random.default_rng(0)
    x = gt.normalize(jnp.asarray(rng.normal(size=(5, 4))))
    y = gt.normalize(jnp.asarray(rng.normal(size=(5, 4))))
    setup = gt.TrainSetup(distances=("chord_sq", "chord", "geodesic"))
    for i, name in enumerate(setup.distances):
        sel = E._selected_distance(setup, jnp.asarray(i, jnp.int32))
        np.testing.assert_allclose(sel(x, y), gt.reference_distance(name)(x, y), rtol=1e-12)


@pytest.mark.parametrize(
    "strategy,didx",
    [("batch_hard", 0), pytest.param("semihard", 2, marks=pytest.mark.slow)],
)
def test_mining_inside_training_matches_independent_step(strategy, didx):
    """One Riemannian step of the runner = mine_triplets + batch_grads + retraction, by hand."""
    data = _features_data()
    setup = gt.TrainSetup(
        distances=TINY.distances, strategy=strategy, steps=20, eval_every=20, **TINY.setup
    )
    lr, margin = 0.3, 0.2
    for name in setup.distances[didx : didx + 1]:
        dist = gt.reference_distance(name)

        @jax.jit
        def runner_step(seed):
            st = E._init_state("features", setup, data, seed, jnp.asarray(0.5), jnp.float64)
            new, (loss, act, gn, _pp) = E._step(
                st,
                jnp.asarray(0, jnp.int32),
                jnp.asarray(lr),
                jnp.asarray(margin),
                "features",
                setup,
                data,
                E._selected_distance(setup, didx),
            )
            return st["X"], new["X"], loss, act, gn

        X0, X1, loss, act, gn = runner_step(jnp.asarray(7, jnp.uint32))
        t, valid = gt.mine_triplets(
            X0, data.y_train, strategy=strategy, distance=dist, margin=margin
        )
        cnt = float(np.sum(np.asarray(valid)))
        L = gt.batch_loss(X0, t, distance=dist, margin=margin, mask=valid, reduction="mean")
        G = gt.batch_grads(X0, t, distance=dist, margin=margin, mask=valid) / cnt
        np.testing.assert_allclose(loss, L, rtol=1e-10)
        np.testing.assert_allclose(X1, gt.normalize(X0 - lr * G), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gn, np.linalg.norm(np.asarray(G)), rtol=1e-10)
        per = np.asarray(
            gt.batch_loss(X0, t, distance=dist, margin=margin, mask=valid, reduction="none")
        )
        np.testing.assert_allclose(act, np.sum(per > 0) / cnt)


def test_determinism_batch_independence_and_collapse_criterion():
    data = _features_data()
    # 18 runs, the shape of the tiny preset's features cell (shared compilation)
    seeds = np.array([0, 1, 2, 3, 4, 5] * 3)
    lrs = np.array([1e-6] * 4 + [0.5] * 14)
    margins = np.array([0.2] * 4 + [0.0] * 2 + [0.2] * 12)
    spreads = np.array([1e-3] * 4 + [np.inf] * 2 + [0.01, 0.01, 0.5, 0.5, np.inf, np.inf] * 2)
    didx = np.array([0, 1, 2] * 6)
    h1 = gt.train_runs(
        "features",
        SETUP,
        data,
        seeds=seeds,
        lrs=lrs,
        margins=margins,
        spreads=spreads,
        distance_index=didx,
    )
    h2 = gt.train_runs(
        "features",
        SETUP,
        data,
        seeds=seeds,
        lrs=lrs,
        margins=margins,
        spreads=spreads,
        distance_index=didx,
    )
    for k in gt.TRAINING_METRICS:
        np.testing.assert_array_equal(h1[k], h2[k])  # bitwise deterministic
    # a run does not depend on which other runs share its batch: reverse the order
    r = slice(None, None, -1)
    h3 = gt.train_runs(
        "features",
        SETUP,
        data,
        seeds=seeds[r],
        lrs=lrs[r],
        margins=margins[r],
        spreads=spreads[r],
        distance_index=didx[r],
    )
    for k in gt.TRAINING_METRICS:
        np.testing.assert_allclose(h3[k][r], h1[k], rtol=1e-9, atol=1e-12)
    assert h1["mean_cos"].shape == (18, 3) and list(h1["step"]) == [0, 20, 40]
    # collapse flag = criterion on the final evaluation embeddings
    col = (h1["mean_cos"][:, -1] > 0.99) | (h1["erank"][:, -1] < 1.5)
    np.testing.assert_array_equal(h1["collapsed"][:, -1] > 0.5, col)
    # a start inside a 1e-3 cap with a negligible learning rate stays collapsed; a uniform start
    # with margin 0 (nothing to push) stays spread
    assert np.all(h1["collapsed"][:4, -1] == 1) and np.all(h1["collapsed"][:4, 0] == 1)
    assert np.all(h1["collapsed"][4:6, -1] == 0)
    # a collapsed start with the hinge: every mined triplet is active
    np.testing.assert_allclose(h1["active"][:4, 1], 1.0)
    assert np.all(np.isnan(h1["loss"][:, 0])) and np.all(np.isfinite(h1["loss"][:, 1:]))
    # the push-pull ratio is logged per evaluation; the geodesic (index 2) balances exactly
    pp = h1["push_pull"]
    assert np.all(np.isnan(pp[:, 0])) and np.all(pp[:, 1:] > 0)
    np.testing.assert_allclose(pp[didx == 2, 1:], 1.0, rtol=1e-12)
    assert np.all((h1["hard_share"][:, 1:] >= 0) & (h1["hard_share"][:, 1:] <= 1))
    assert np.all((h1["map_at_r"] >= 0) & (h1["map_at_r"] <= 1))


def test_train_runs_validation():
    data = _features_data()
    kw = dict(seeds=[0], lrs=[0.1], margins=[0.1], spreads=[0.1])
    with pytest.raises(ValueError, match="learning rates"):
        gt.train_runs("features", SETUP, data, **dict(kw, lrs=[0.0]))
    with pytest.raises(ValueError, match="spreads"):
        gt.train_runs("features", SETUP, data, **dict(kw, spreads=[-1.0]))
    with pytest.raises(ValueError, match="one length"):
        gt.train_runs("features", SETUP, data, **dict(kw, seeds=[0, 1]))
    with pytest.raises(ValueError, match="distance_index"):
        gt.train_runs("features", SETUP, data, distance_index=[3], **kw)
    with pytest.raises(ValueError, match="task"):
        gt.train_runs("clusters", SETUP, data, **kw)
    with pytest.raises(ValueError, match="strategy"):
        gt.TrainSetup(strategy="hardest")
    with pytest.raises(ValueError, match="multiple"):
        gt.TrainSetup(steps=30, eval_every=20)


def test_binomial_intervals_known_values():
    lo, hi = gt.wilson_interval(5, 10)
    np.testing.assert_allclose([lo, hi], [0.2366, 0.7634], atol=1e-4)
    lo, hi = gt.wilson_interval(0, 10)
    np.testing.assert_allclose([lo, hi], [0.0, 0.2775], atol=1e-4)
    lo, hi = gt.clopper_pearson_interval(0, 10)
    np.testing.assert_allclose([lo, hi], [0.0, 1 - 0.025**0.1], atol=1e-9)
    lo, hi = gt.clopper_pearson_interval(5, 10)
    np.testing.assert_allclose([lo, hi], [0.1871, 0.8129], atol=1e-4)
    lo, hi = gt.clopper_pearson_interval(10, 10)
    np.testing.assert_allclose([lo, hi], [0.025**0.1, 1.0], atol=1e-9)


def test_collapse_summary_paired_test():
    rows = []
    for seed in range(8):
        for d, col in (("chord_sq", seed < 6), ("chord", seed == 0)):
            rows.append(
                dict(
                    task="features",
                    strategy="batch_hard",
                    soft=False,
                    seed=seed,
                    lr=0.1,
                    margin=0.2,
                    spread=0.01,
                    distance=d,
                    collapsed=int(col),
                    init_collapsed=1.0,
                    final_recall_at_1=0.5,
                )
            )
    s = gt.collapse_summary(rows)
    e = [x for x in s["squared_vs_root"] if x["task"] == "all" and x["squared"] == "chord_sq"][0]
    assert (e["pairs"], e["both"], e["only_squared"], e["only_root"], e["neither"]) == (
        8,
        1,
        5,
        0,
        2,
    )
    np.testing.assert_allclose(e["mcnemar_p"], 2 * 0.5**5)
    # the independent unit is the cell: 8 replicates of one cell are one unit, p = 1
    c = [x for x in s["squared_vs_root_cells"] if x["task"] == "all"][0]
    assert (c["cells"], c["squared_more"], c["root_more"], c["sign_test_p"]) == (1, 1, 0, 1.0)
    g = s["gprime0"][0]
    assert g["zero"]["collapsed"] == 6 and g["positive"]["collapsed"] == 1
    tab = gt.collapse_phase_table(rows, by=("distance",))
    assert {r["distance"]: r["collapsed"] for r in tab} == {"chord_sq": 6, "chord": 1}


def test_cli_sweep_incremental_resume_and_figures(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "collapse",
                "--preset",
                "tiny",
                "--out",
                str(out),
                "--max-cells",
                "1",
                "--no-figures",
                "--no-progress",
                "--x64",
            ]
        )
        == 0
    )
    done = json.loads((out / "done.json").read_text())["cells"]
    assert done == ["features__batch_hard__hinge"]
    with (out / "runs.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 3 * 3 * 2  # distances x seeds x spreads
    assert (out / "history" / "features__batch_hard__hinge.npz").exists()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["parameters"]["spec"]["name"] == "tiny" and "git" in prov
    assert main(["collapse", "--preset", "nope", "--out", str(out)]) == 2
    assert "unknown preset" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_sweep_resume_and_figures(tmp_path):
    out = tmp_path / "run"
    args = ["collapse", "--preset", "tiny", "--out", str(out), "--no-progress", "--x64"]
    assert main(args + ["--max-cells", "1", "--no-figures"]) == 0
    # resume: the finished cell is skipped, the other one runs, figures are drawn
    assert main(["collapse", "--preset", "tiny", "--out", str(out), "--no-progress", "--x64"]) == 0
    rows = gt.read_collapse_runs(out / "runs.csv")
    assert len(rows) == 36 and {r["task"] for r in rows} == {"features", "clusters"}
    assert all(0.0 <= r["final_recall_at_1"] <= 1.0 for r in rows)
    for name in ("collapse_spread", "collapse_phase", "collapse_curves"):
        assert (out / f"{name}.png").exists() and (out / f"{name}.provenance.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["squared_vs_root"] and "criterion" in summary
    with (out / "phase.csv").open() as fh:
        phase = list(csv.DictReader(fh))
    assert len(phase) == 2 * 3 * 2 and all(
        float(r["wilson_lo"]) <= float(r["p"]) <= float(r["wilson_hi"]) for r in phase
    )


def test_train_grid_batches_with_padding_match_one_batch():
    data = _features_data()
    kw = dict(lrs=[0.5], margins=[0.2], spreads=[0.01, np.inf])
    # 3 distances x 5 seeds x 2 spreads = 30 runs in batches of 18 (the last padded from 12)
    rows, hist = gt.train_grid("features", SETUP, data, seeds=range(5), max_batch=18, **kw)
    ref, _ = gt.train_grid("features", SETUP, data, seeds=range(3), **kw)  # 18 runs, one batch
    assert len(rows) == 30 and hist["mean_cos"].shape == (30, 3)
    pick = {(r["distance"], r["seed"], r["spread"]): r for r in rows}
    for r in ref:
        other = pick[(r["distance"], r["seed"], r["spread"])]
        for k in ("final_mean_cos", "final_erank", "final_loss", "collapsed"):
            np.testing.assert_allclose(other[k], r[k], rtol=1e-9, atol=1e-12)


def test_training_benchmark_skips_pml_with_a_message(monkeypatch):
    import sys

    from geotrip.benchmarks import _training

    monkeypatch.setitem(sys.modules, "torch", None)
    msg = _training.pml_skip_reason()
    assert msg is not None and "skipped" in msg and "torch" in msg
    assert (
        "geotrip.benchmarks._training"
        in __import__("geotrip.benchmarks", fromlist=["_SUITES"])._SUITES
    )


def test_momentum_step_is_heavy_ball_sgd():
    """optimizer="momentum": p2 = p1 - lr (g1 + 0.9 g0), with g from plain SGD steps."""
    data = gt.make_task_data("clusters", seed=0, **TINY.data["clusters"])
    lr, margin = jnp.asarray(0.05), jnp.asarray(0.2)
    dist = gt.reference_distance("chord_sq")
    kw = dict(distances=("chord_sq",), strategy="batch_hard", steps=20, eval_every=20)
    kw.update(TINY.setup)
    mom, sgd = gt.TrainSetup(optimizer="momentum", **kw), gt.TrainSetup(optimizer="sgd", **kw)

    @functools.partial(jax.jit, static_argnums=0)
    def step(setup, st, i):
        new, _ = E._step(st, i, lr, margin, "clusters", setup, data, dist)
        return new

    s0 = E._init_state("clusters", mom, data, jnp.asarray(3, jnp.uint32), jnp.inf, jnp.float64)
    s0_sgd = dict(s0, opt=optax_empty())
    i0, i1 = jnp.asarray(0, jnp.int32), jnp.asarray(1, jnp.int32)
    m1 = step(mom, s0, i0)
    m2 = step(mom, m1, i1)
    g1_sgd = step(sgd, s0_sgd, i0)  # p0 - lr g0
    g2_sgd = step(sgd, dict(m1, opt=optax_empty()), i1)  # p1 - lr g1
    flat = jax.tree_util.tree_leaves
    for p0, p1, p2, q1, q2 in zip(
        flat(s0["params"]),
        flat(m1["params"]),
        flat(m2["params"]),
        flat(g1_sgd["params"]),
        flat(g2_sgd["params"]),
    ):
        np.testing.assert_allclose(p1, q1, rtol=1e-12, atol=1e-14)
        g0, g1 = (p0 - q1) / 0.05, (p1 - q2) / 0.05
        np.testing.assert_allclose(p2, p1 - 0.05 * (g1 + 0.9 * g0), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="optimizer"):
        gt.TrainSetup(optimizer="rmsprop")


def optax_empty():
    import optax

    return optax.EmptyState()
