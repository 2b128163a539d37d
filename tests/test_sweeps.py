"""Closed-form gradient angles, the sweep engine (chunk/device invariance), summaries, CLI."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import geotrip as gt
from geotrip.cli import main

# user distances: of the angle (ambient_kind "angle": raw gradients in closed form), and with
# an ambient form of their own (ambient_kind "custom": raw gradients by autodiff)
CUBE = gt.make_distance("cube", lambda t: t**3)
CUBE_CUSTOM = gt.make_distance(
    "cube_custom", lambda t: t**3, ambient=lambda x, y: gt.angle(x, y) ** 3
)
assert (CUBE.ambient_kind, CUBE_CUSTOM.ambient_kind) == ("angle", "custom")
PAIRS = [
    ("chord_sq", "geodesic"),
    ("chord", "cosine"),
    ("geodesic_sq", "chord_sq"),
    (CUBE, "geodesic"),
    (CUBE_CUSTOM, "chord_sq"),
]


# every pair at d = 3; at d = 16 the first pair by default, the others in the slow set
@pytest.mark.parametrize(
    "dists, dim",
    [(d, 3) for d in PAIRS]
    + [(PAIRS[0], 16)]
    + [pytest.param(d, 16, marks=pytest.mark.slow) for d in PAIRS[1:]],
)
def test_closed_form_matches_autodiff(dim, dists):
    # 200 rows: below the blocked path's threshold (tested separately), so the eager
    # operations compiled for one pair serve the next
    a, p, n = gt.uniform_sphere(jax.random.key(dim), (3, 200), dim)
    margins = (0.5, 0.4)
    r1 = gt.gradient_angles(a, p, n, distances=dists, margins=margins, method="autodiff")
    r2 = gt.gradient_angles_closed_form(a, p, n, distances=dists, margins=margins)
    assert set(r1) == set(r2)
    np.testing.assert_array_equal(r1["active/A"], r2["active/A"])
    for k in gt.GRADIENT_ANGLE_KEYS:
        np.testing.assert_array_equal(r1["defined/" + k], r2["defined/" + k])
        np.testing.assert_allclose(r2[k], r1[k], atol=1e-9, equal_nan=True)
        assert np.any(np.isfinite(np.asarray(r2[k])))
    if all(gt.distance(d).ambient_kind == "angle" for d in dists):
        # scale-invariant ambient forms: the raw gradients are the Riemannian ones
        for b in ("anchor", "positive", "negative", "joint"):
            np.testing.assert_array_equal(r2[f"raw/{b}"], r2[f"riemannian/{b}"])


def test_closed_form_blocked_path():
    # the blocked evaluation (two passes in a loop over row blocks, in the Gram basis), under
    # jit, with a batch shape, gives the values of the small-input path (gradients as d-vectors)
    # on each half (the shapes of the test above)
    from geotrip.core._closed_form import _closed_form

    A, B = (gt.distance(d) for d in PAIRS[0])
    run = jax.jit(lambda a, p, n: _closed_form(a, p, n, A, B, 0.5, 0.4, False, block=128))
    uniform = gt.uniform_sphere(jax.random.key(3), (3, 2, 200), 3)
    # nearly on one great circle (psi down to 1e-10): the Gram matrix is nearly singular and
    # these triplets are recomputed (_repair: 40 of them gathered; all 400: every one)
    psi = jnp.tile(jnp.geomspace(1e-10, 1e-6, 20), 20)
    tp, tn = (jnp.repeat(jnp.linspace(lo, hi, 20), 20) for lo, hi in ((0.4, 2.6), (2.7, 0.3)))
    coplanar = [
        x.reshape(2, 200, 3) for x in gt.rotated_triplet(jax.random.key(5), tp, tn, psi, dim=3)
    ]
    mixed = [jnp.concatenate([x[:, :20], y[:, 20:]], axis=1) for x, y in zip(coplanar, uniform)]
    for (a, p, n), atol in ((uniform, 1e-12), (mixed, 1e-7), (coplanar, 1e-7)):
        blocked = run(a, p, n)
        for half in range(2):
            flat = gt.gradient_angles_closed_form(
                a[half], p[half], n[half], distances=PAIRS[0], margins=(0.5, 0.4)
            )
            assert set(blocked) == set(flat)
            for k, v in flat.items():
                assert blocked[k].shape == (2, 200)
                if v.dtype == bool:
                    np.testing.assert_array_equal(blocked[k][half], v)
                else:
                    np.testing.assert_allclose(blocked[k][half], v, atol=atol, equal_nan=True)


def test_closed_form_near_degenerate_float32():
    """float32 closed form near coincident/antipodal pairs against the float64 autodiff path."""
    # 200 triplets in d = 16: the float64 autodiff reference reuses the eager compilations of
    # test_closed_form_matches_autodiff
    eps = jnp.repeat(jnp.asarray([1e-6, 3e-6, 1e-5, 1e-4]), 25)
    tp = jnp.concatenate([eps, np.pi - eps])  # near-coincident and near-antipodal positives
    tn = jnp.tile(jnp.linspace(0.3, 2.8, 25), 8)
    ps = jnp.tile(jnp.linspace(0.2, 3.0, 25), 8)
    a, p, n = gt.rotated_triplet(jax.random.key(3), tp, tn, ps, dim=16)
    a32, p32, n32 = (x.astype(jnp.float32) for x in (a, p, n))
    # reference: float64 autodiff on the very float32 triplet (rounding moves p by ~6e-8,
    # a relative change of the tangent directions of ~6e-8/eps), re-normalised in float64
    a64, p64, n64 = (gt.normalize(x.astype(jnp.float64)) for x in (a32, p32, n32))
    ref = gt.gradient_angles(a64, p64, n64, margins=(4.5, 3.5), method="autodiff")
    got = gt.gradient_angles_closed_form(a32, p32, n32, margins=(4.5, 3.5))
    for k in ("riemannian/anchor", "riemannian/joint", "raw/joint", "raw/negative"):
        for half in (slice(0, 100), slice(100, 200)):
            ok = np.asarray(ref["defined/" + k])[half] & np.asarray(got["defined/" + k])[half]
            assert ok.mean() > 0.9
        ok = np.asarray(ref["defined/" + k]) & np.asarray(got["defined/" + k])
        assert got[k].dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got[k])[ok], np.asarray(ref[k])[ok], atol=2e-4)


@pytest.mark.slow
def test_closed_form_blocked_near_antipodal_float32():
    """The blocked path's five fast sums (of p - a, n - a) give the sigma = -1 Gram entries
    only to a few eps absolutely; near-antipodal pairs are recomputed from the twelve sums
    (_repair). float32, 400 rows (blocked) against the small-input path on each half."""
    from geotrip.core._closed_form import _antipodal, _closed_form, _pass1

    eps = jnp.repeat(jnp.asarray([1e-3, 1e-2, 0.05, 0.3]), 50)
    tp = jnp.concatenate([np.pi - eps, eps])  # near-antipodal, then near-coincident positives
    tn = jnp.tile(jnp.linspace(0.3, 2.8, 25), 16)
    ps = jnp.tile(jnp.linspace(0.2, 3.0, 20), 20)
    trip = gt.rotated_triplet(jax.random.key(4), tp, tn, ps, dim=16)
    a, p, n = (x.astype(jnp.float32).reshape(2, 200, 16) for x in trip)
    A, B = (gt.distance(d) for d in PAIRS[0])
    base = _pass1(a, p, n, A, B, 4.5, 3.5, False, fast=True)[0]
    assert 100 <= int(jnp.sum(_antipodal(base))) < 200  # the repair has work to do
    blocked = jax.jit(lambda a, p, n: _closed_form(a, p, n, A, B, 4.5, 3.5, False))(a, p, n)
    for half in range(2):
        flat = gt.gradient_angles_closed_form(a[half], p[half], n[half], margins=(4.5, 3.5))
        for k, v in flat.items():
            if v.dtype == bool:
                np.testing.assert_array_equal(blocked[k][half], v)
            else:
                np.testing.assert_allclose(blocked[k][half], v, atol=2e-4, equal_nan=True)


@pytest.mark.slow
def test_closed_form_near_coplanar_float32():
    """float32, d = 3, a, p, n nearly on one great circle (psi ~ 1e-5 .. 1e-2): the Gram
    matrix is nearly singular and its quadratic forms lost up to 1.57 rad in the anchor angles
    before these triplets were repaired (_repair); against float64 autodiff on the same points."""
    psi = jnp.tile(jnp.geomspace(1e-5, 1e-2, 20), 20)
    tp, tn = (jnp.repeat(jnp.linspace(lo, hi, 20), 20) for lo, hi in ((0.4, 2.6), (2.7, 0.3)))
    few = gt.rotated_triplet(jax.random.key(5), tp, tn, psi, dim=3)
    rest = gt.uniform_sphere(jax.random.key(6), (3, 360), 3)
    mixed = [jnp.concatenate([x[:40], y]) for x, y in zip(few, rest)]  # 40 of 400 repaired
    for triplets in (mixed, few):  # gathered, and all of them (more than the gather bound)
        a32, p32, n32 = (x.astype(jnp.float32).reshape(2, 200, 3) for x in triplets)
        got = gt.gradient_angles_closed_form(a32, p32, n32, margins=(4.5, 3.5))
        for half in range(2):
            # the 200-row float64 reference reuses the compilations of the tests above
            x64 = (gt.normalize(x[half].astype(jnp.float64)) for x in (a32, p32, n32))
            ref = gt.gradient_angles(*x64, margins=(4.5, 3.5), method="autodiff")
            for k in gt.GRADIENT_ANGLE_KEYS:
                ok = np.asarray(ref["defined/" + k]) & np.asarray(got["defined/" + k][half])
                assert ok.mean() > 0.95
                err = np.abs(np.asarray(got[k][half])[ok] - np.asarray(ref[k])[ok])
                assert err.max() < 2e-2, (k, float(err.max()))


def test_sweep_prefix_property_and_progress(capsys):
    # chunk-size, device-count and process-count invariance: tests/test_distributed.py (and
    # the slow test below); here one compilation: a shorter sweep is a prefix of a longer one
    fn = gt.triplet_metric(gt.family_sampler("uniform", dim=5))
    r1 = gt.sweep(fn, 300, key=jax.random.key(0), chunk_size=64, progress=True)
    r3 = gt.sweep(fn, 100, key=jax.random.key(0), chunk_size=64)
    for k in r1:
        assert r1[k].shape[0] == 300
        np.testing.assert_array_equal(r1[k][:100], r3[k])  # keys by global index
    assert "sweep 300 configs" in capsys.readouterr().err
    with pytest.raises(ValueError, match="num"):
        gt.sweep(fn, 0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="chunk_size"):
        gt.sweep(fn, 5, key=jax.random.key(0), chunk_size=0)


_SHARD_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    import geotrip as gt
    assert len(jax.devices()) == 4, jax.devices()
    fn = gt.triplet_metric(gt.family_sampler("uniform", dim=6))
    out = {}
    for ndev, chunk in ((4, 64), (4, 20), (1, 50)):
        r = gt.sweep(fn, 130, key=jax.random.key(7), chunk_size=chunk, devices=jax.devices()[:ndev],
                     progress=False)
        out[f"{ndev}/{chunk}"] = {k: np.asarray(v, np.float64).tolist() for k, v in r.items()}
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_sweep_invariant_to_device_count():
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    res = subprocess.run(
        [sys.executable, "-c", _SHARD_SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    ref = out["1/50"]
    for tag, r in out.items():
        for k in ref:
            np.testing.assert_array_equal(
                np.asarray(r[k]), np.asarray(ref[k]), err_msg=f"{tag} {k}"
            )


def test_summarize_values():
    th = np.radians(np.array([10.0, 40.0, 70.0, 100.0, np.nan]))
    res = {
        "riemannian/joint": th,
        "defined/riemannian/joint": np.isfinite(th),
        "active/A": np.array([True, False, True, True, True]),
        "config/theta_ap": np.arange(5.0),
    }
    s = gt.summarize(res)
    e = s["riemannian/joint"]
    assert e["count"] == 4 and e["defined_share"] == 0.8
    assert e["share_above"] == {"30": 0.75, "60": 0.5, "90": 0.25}
    assert e["quantiles"]["0.5"] == pytest.approx(55.0)
    assert sum(e["histogram"]["counts"]) == 4
    assert s["active/A"]["share"] == 0.8
    json.dumps(s)


def test_families_errors():
    with pytest.raises(ValueError, match="valid: uniform, parametric"):
        gt.family_sampler("gaussian", dim=3)
    with pytest.raises(ValueError, match="unknown parameter"):
        gt.family_sampler("uniform", dim=3, radius=0.1)
    with pytest.raises(ValueError, match="dim >= 3"):
        gt.family_sampler("parametric", dim=2)
    with pytest.raises(ValueError, match="radius"):
        gt.family_sampler("cap", dim=3, radius=4.0)
    with pytest.raises(ValueError, match="mining strategy"):
        gt.family_sampler("clustered", dim=3, strategy="hard")
    with pytest.raises(ValueError, match="method"):
        gt.triplet_metric(gt.family_sampler("uniform", dim=3), method="fd")


def test_cli_sweep(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "sweep",
            "--family",
            "parametric",
            "--dim",
            "4",
            "--samples",
            "200",
            "--seed",
            "1",
            "--out",
            str(out),
            "--param",
            "theta_ap=(0, 0.2)",
            "--distances",
            "chord_sq",
            "geodesic",
            "--margins",
            "0.2",
            "0.1",
            "--save-arrays",
            "--x64",
        ]
    )
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert set(s["by_dim"]) == {"4"} and list(s["params"]["theta_ap"]) == [0, 0.2]
    assert s["by_dim"]["4"]["num"] == 200 and "riemannian/joint" in s["by_dim"]["4"]
    assert s["provenance"]["seed"] == 1 and s["margins"] == [0.2, 0.1]
    # --platform auto is the default: JAX's choice, recorded in the provenance
    assert s["provenance"]["device"]["backend"] == jax.default_backend()
    from geotrip.cli import build_parser

    assert (
        build_parser("sweep")
        .parse_args(["sweep", "--family", "uniform", "--dim", "3", "--out", "x"])
        .platform
        == "auto"
    )
    arr = np.load(out / "arrays_d4.npz")
    assert arr["riemannian/joint"].shape == (200,)
    assert np.all(arr["config/theta_ap"] <= 0.2 + 1e-9)
    printed = capsys.readouterr().out
    assert "d=4" in printed
    # bad arguments: one line, exit status 2
    for argv, msg in (
        (["--family", "nope"], "family"),
        (["--samples", "0"], "samples"),
        (["--param", "radius"], "KEY=VALUE"),
        (["--param", "colour=1"], "unknown parameter"),
        (["--distances", "chord_sq", "arc"], "distance"),
        (["--dim", "1"], "dim"),
    ):
        base = [
            "sweep",
            "--family",
            "cap",
            "--dim",
            "3",
            "--samples",
            "10",
            "--out",
            str(tmp_path / "x"),
        ]
        argv2 = base + argv
        rc = main(argv2)
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and err.count("\n") == 1, (argv, err)


def test_masked_summaries_count_each_valid_triplet_once():
    """(N, k) results with a mask: streaming (any chunking) and in-memory summaries equal those
    of the valid values alone, laid out one per configuration; invalid values never count."""
    from geotrip.sweeps._streaming import QUANTILE_ERROR_DEG, StreamingSummary

    rng = np.random.default_rng(1)
    n, k = 200, 5
    valid = rng.uniform(size=(n, k)) < 0.6
    valid[3] = False  # a batch without a valid triplet
    th = rng.uniform(0, np.pi, (n, k))
    th[~valid] = -1.0  # garbage under the mask (outside [0, pi])
    th[valid & (rng.uniform(size=(n, k)) < 0.1)] = np.nan  # undefined yet valid
    act = rng.uniform(size=(n, k)) < 0.3
    res = {"riemannian/joint": th, "active/A": act, "config/theta_ap": th, "valid": valid}
    flat = {"riemannian/joint": th[valid], "active/A": act[valid], "config/theta_ap": th[valid]}
    ref, exact = gt.summarize(flat), gt.summarize(res)
    empty = int((~valid.any(axis=1)).sum())
    assert exact["num"] == n and exact["triplets"] == int(valid.sum()) and exact["empty"] == empty
    got = []
    for cs in (64, 128, 200):
        s = StreamingSummary()
        for a in range(0, n, cs):
            s.update({key: v[a : a + cs] for key, v in res.items()})
        got.append(s.result())
    assert got[0] == got[1] == got[2]
    g = got[0]
    assert (g["num"], g["triplets"], g["empty"]) == (n, int(valid.sum()), empty)
    assert g["active/A"] == ref["active/A"] == exact["active/A"]
    for e in (g["riemannian/joint"], exact["riemannian/joint"]):
        r = ref["riemannian/joint"]
        assert e["count"] == r["count"] and e["defined_share"] == r["defined_share"] < 1
        assert e["share_above"] == r["share_above"] and e["quantiles"]["0"] >= 0
        assert e["histogram"]["counts"] == r["histogram"]["counts"]
        assert e["mean"] == pytest.approx(r["mean"], rel=1e-12)
        for q, v in r["quantiles"].items():
            assert abs(e["quantiles"][q] - v) <= QUANTILE_ERROR_DEG + 1e-12, q
    with pytest.raises(ValueError, match="valid"):
        StreamingSummary().update({"active/A": act, "valid": valid[:, :2]})


@pytest.mark.slow  # about 10 s (compiles the clustered run); masked summaries by default
def test_clustered_sweep_every_mined_triplet(tmp_path, monkeypatch):
    """geotrip.run_sweep on the clustered family (one compilation): every triplet of
    mine_triplets that can be valid, with the miner's mask, each with the angles of
    gt.gradient_angles on the same points; --samples counts batches, the summary the valid
    triplets."""
    from geotrip.sweeps._families import _possible_rows

    K, m, dim, seed = 3, 2, 3, 1
    # easy: the mask depends on the batch (farthest negative outside the margin); k = 6 rows
    # in blocks of 4 (the last one padded), as batch_all's 2688 rows go in blocks of 128
    monkeypatch.setattr("geotrip.sweeps._families._ROW_BLOCK", 4)
    params = dict(strategy="easy", n_classes=K, per_class=m, concentration=2.0)
    s = gt.run_sweep(
        "clustered", dims=(dim,), samples=150, seed=seed, progress=False, params=params,
        out=tmp_path, save_arrays=True, margins=(4.0, 3.0),
    )  # fmt: skip
    e = s["by_dim"][str(dim)]
    arr = np.load(tmp_path / f"arrays_d{dim}.npz")
    valid = arr["valid"]
    assert valid.shape == arr["riemannian/joint"].shape == (150, 6)
    assert e["num"] == 150 and e["triplets"] == int(valid.sum()) < 150 * 6
    assert e["empty"] == int((~valid.any(axis=1)).sum()) < 150
    # margins above every distance: both hinges active, the angles defined (almost always)
    assert e["active/A"]["share"] == 1.0 and e["riemannian/joint"]["defined_share"] > 0.9
    assert s["samples_unit"] == "batch" and "counts once" in s["weighting"]
    assert e["triplets_per_second"] > 0
    # independent: batch i from its key (fold_in(fold_in(key(seed), dim), i)), mined, every
    # row of mine_triplets, the public angles
    key = jax.random.fold_in(jax.random.key(seed), dim)
    for i in (0, 1):
        kb, km = jax.random.split(jax.random.fold_in(key, i), 3)[:2]
        X, y = gt.clustered_batch(kb, n_classes=K, per_class=m, dim=dim, concentration=2.0)
        t, ok = gt.mine_triplets(X, y, strategy="easy", distance="chord_sq", margin=0.2, key=km)
        ref = gt.gradient_angles(X[t[:, 0]], X[t[:, 1]], X[t[:, 2]], margins=(4.0, 3.0))
        ok = np.asarray(ok)
        assert int(valid[i].sum()) == int(ok.sum())  # the rows dropped are never valid
        # the rows kept for the other strategies: n (m-1) (n-m) for batch_all, n (m-1) for
        # the per-pair ones, n for batch_hard; every valid row among them (on this batch)
        for strategy, k in (("batch_all", 24), ("semihard", 6), ("batch_hard", 6)) * (i == 0):
            rows = _possible_rows(strategy, K, m)
            _, ok2 = gt.mine_triplets(X, y, strategy=strategy, distance="chord_sq", margin=0.2)
            assert len(rows) == k and int(np.asarray(ok2)[rows].sum()) == int(ok2.sum()) > 0
        for name in ("config/theta_ap", "raw/joint", "riemannian/anchor", "active/B"):
            a = arr[name][i][valid[i]]
            if name.startswith("config/"):
                b = np.asarray(gt.angle(X[t[:, 0]], X[t[:, 1]]))[ok]
            else:
                b = np.asarray(ref[name])[ok]
            np.testing.assert_allclose(a, b, atol=2e-3, equal_nan=True)
            assert np.isfinite(a).mean() > 0.5
    assert not valid.all()  # a mask that matters
