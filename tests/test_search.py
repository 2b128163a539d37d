"""Counterexample search: structures, restarts, objectives, the k = 1 bound, simplification, CLI."""

import itertools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import geotrip as gt

# One budget for every descent search of the fast tests (and the CLI test): the compiled
# search is then reused within the process.
BUDGET = dict(restarts=32, steps=100)
FAST = dict(progress=False, **BUDGET)


def test_structures():
    t = gt.triplet_structure("shared_anchor", 3)
    assert t.tolist() == [[0, 1, 2], [0, 3, 4], [0, 5, 6]]
    assert gt.triplet_structure("chain", 2).tolist() == [[0, 1, 2], [2, 3, 4]]
    assert gt.triplet_structure("cycle", 2).tolist() == [[0, 1, 2], [2, 3, 0]]
    labels = [0, 0, 1, 1, 1]
    brute = sorted(
        (a, p, n)
        for a, p, n in itertools.product(range(5), repeat=3)
        if a != p and labels[a] == labels[p] and labels[n] != labels[a]
    )
    assert sorted(map(tuple, gt.triplet_structure("labeled", labels=labels).tolist())) == brute
    assert gt.triplet_structure(np.array([[2, 0, 1]])).tolist() == [[2, 0, 1]]
    with pytest.raises(ValueError, match="unknown structure"):
        gt.triplet_structure("star", 2)
    with pytest.raises(ValueError, match="three different points"):
        gt.triplet_structure(np.array([[0, 0, 1]]))
    with pytest.raises(ValueError, match="cycle needs"):
        gt.triplet_structure("cycle", 1)
    with pytest.raises(ValueError, match="positive integer"):
        gt.triplet_structure("chain", 0)


def test_restart_families_are_unit_and_deterministic():
    X1, fam = gt.draw_configurations(jax.random.key(4), 12, 5, 3)
    X2, _ = gt.draw_configurations(jax.random.key(4), 12, 5, 3)
    np.testing.assert_array_equal(np.asarray(X1), np.asarray(X2))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(X1), axis=-1), 1, atol=1e-12)
    assert [gt.RESTART_FAMILIES[i] for i in fam[:4]] == list(gt.RESTART_FAMILIES)
    # caps are collapsed: all points of a cap restart within a small angle of each other
    cap = np.asarray(X1[2])
    assert np.min(cap @ cap.T) > np.cos(1.5)
    with pytest.raises(ValueError, match="unknown restart families"):
        gt.draw_configurations(jax.random.key(0), 2, 3, 3, families=("gaussian",))


# The interface of issue 9: every triplet active under both hinges, slope-matched margins.
CLI_BOTH = "search --objective angle --triplets 2 --dim 3 --active both --match slope --seed 0"


def test_cli_search_active_both_matched(tmp_path, capsys):
    from geotrip.cli import main

    out = tmp_path / "c.json"
    argv = CLI_BOTH.split() + ["--restarts", "32", "--steps", "100", "--out", str(out)]
    rc = main(argv + ["--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "verified independently" in text and "angle: best" in text
    assert "certified value: Riemannian gradient angle" in text  # which number is certified
    assert "matched by slope" in text and "active=both" in text
    doc = json.loads(out.read_text())
    assert doc["provenance"]["seed"] == 0 and doc["claims"]["angle_deg"] > 90
    assert doc["active"] == "both" and doc["claims"]["pattern"] == ["both", "both"]
    # B's margin is A's times g_B'(pi/2) / g_A'(pi/2) = 0.2 * 1 / 2
    assert doc["losses"]["match"]["rule"] == "slope"
    assert float(doc["losses"]["B"]["margin"]) == pytest.approx(
        0.2
        * gt.distance("geodesic").weight_at(np.pi / 2)
        / gt.distance("chord_sq").weight_at(np.pi / 2)
    )
    for i in range(2):
        assert f"z_A[{i}] > 0.001" in doc["assertions"] and f"z_B[{i}] > 0.001" in doc["assertions"]
    # the weighting alone: the angle over the triplets active under both is the angle
    assert doc["claims"]["angle_both_deg"] == pytest.approx(doc["claims"]["angle_deg"], abs=1e-9)
    assert doc["claims"]["share_one_only_A"] == 0 and doc["claims"]["share_one_only_B"] == 0
    assert main(["search", "--objective", "nope", "--out", str(out)]) == 2
    assert main(["search", "--dim", "1", "--out", str(out)]) == 2
    with pytest.raises(SystemExit):
        main(["search", "--active", "some", "--out", str(out)])
    with pytest.raises(SystemExit):
        main(["search", "--match", "nope", "--out", str(out)])


@pytest.mark.slow
def test_cli_interface_under_a_minute(tmp_path):
    """Issue 9's interface, default budget, a fresh process (run on demand: pytest -m slow)."""
    import subprocess
    import sys

    out = tmp_path / "c.json"
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "geotrip", *CLI_BOTH.split(), "--out", str(out), "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"{' '.join(cmd[2:])}: {elapsed:.1f} s")
    assert json.loads(out.read_text())["claims"]["angle_deg"] > 90
    assert elapsed < 60


@pytest.mark.slow
@pytest.mark.parametrize("active", ["any", "disjoint"])
def test_cli_search_active_any_and_disjoint_same_number_margins(tmp_path, capsys, active):
    from geotrip.cli import main

    out = tmp_path / "c.json"
    argv = ["search", "--objective", "angle", "--active", active, "--margins", "0.2", "0.2"]
    argv += ["--restarts", "32", "--steps", "100", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "different units" in err and "would be 0.1" in err
    doc = json.loads(out.read_text())
    assert doc["active"] == active and "match" not in doc["losses"]
    if active == "disjoint":
        assert doc["claims"]["pattern"] == ["A", "B"]
        assert "angle_both_deg" not in doc["claims"]
        assert doc["claims"]["share_one_only_A"] == pytest.approx(1.0)
        assert "z_A[0] > 0.001" in doc["assertions"] and "z_B[0] < -0.001" in doc["assertions"]


def test_margins_are_matched_unless_both_given():
    from geotrip.counterexamples._margins import resolve_margins

    d = ("chord_sq", "geodesic")
    (mA, mB), rule, note = resolve_margins(d, None, match="slope", dim=3)
    assert (mA, rule) == (0.2, "slope")
    assert mB == pytest.approx(float(gt.match_margin(0.2, source=d[0], target=d[1], rule="slope")))
    assert mB == pytest.approx(0.1) and "matched" in note
    (mA, mB), rule, _ = resolve_margins(d, (0.3, None), match="reference", dim=3)
    assert mB == pytest.approx(
        float(gt.match_margin(0.3, source=d[0], target=d[1], rule="reference"))
    )
    (mA, mB), rule, _ = resolve_margins(d, (0.2, None), match="active_share", dim=8)
    assert rule == "active_share" and 0 < mB < 0.3
    (mA, mB), rule, note = resolve_margins(d, (0.2, 0.2), match="slope", dim=3)
    assert (mA, mB, rule) == (0.2, 0.2, None) and "different units" in note
    assert resolve_margins(("geodesic", "geodesic"), (0.2, 0.3), match=None, dim=3)[2] == ""
    with pytest.raises(ValueError, match="matching rule"):
        resolve_margins(d, None, match="nope", dim=3)
    with pytest.raises(ValueError, match="give it"):
        resolve_margins(d, (0.2, None), match=None, dim=3)


def test_pattern_constraints():
    """Validity under active='both' / 'disjoint' follows the hinge arguments, with the gap."""
    from geotrip.counterexamples._objectives import pattern_holds

    t = jnp.asarray(gt.triplet_structure("shared_anchor", 1))
    dists = (gt.distance("chord_sq"), gt.distance("geodesic"))
    a, p, n = gt.parametric_triplet(1.2, 1.0, 0.7, dim=3)  # theta_ap > theta_an: both active
    X = jnp.stack([a, p, n])
    assert bool(pattern_holds(X, t, dists, (0.2, 0.1), "both", 1e-3))
    assert not bool(pattern_holds(X, t, dists, (0.2, 0.1), "disjoint", 1e-3))
    assert not bool(pattern_holds(X, t, dists, (0.2, 0.1), "both", 1.0))  # gap too large
    # theta_an - theta_ap = 0.15 > 0.1: geodesic inactive; near 0 chord_sq's weight 2 sin(theta)
    # is small, so its hinge (margin 0.2) stays active: an "A only" triplet
    a, p, n = gt.parametric_triplet(0.3, 0.45, 0.7, dim=3)
    X = jnp.stack([a, p, n])
    assert bool(pattern_holds(X, t, dists, (0.2, 0.1), "disjoint", 1e-3))
    assert not bool(pattern_holds(X, t, dists, (0.2, 0.1), "both", 1e-3))
    with pytest.raises(ValueError, match="hard hinges"):
        gt.objective_function("angle", t, soft=True, active="both")
    with pytest.raises(ValueError, match="unknown active mode"):
        gt.search("angle", active="some")


def _degenerate():
    coincident = jnp.tile(jnp.array([[1.0, 0.0, 0.0]]), (5, 1))
    inactive = jnp.array([[1.0, 0, 0], [1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    return coincident, inactive


def _check_nan_free(obj, **kw):
    f, score, valid = gt.objective_function(obj, gt.triplet_structure("shared_anchor", 2), **kw)
    gf = jax.jit(jax.grad(f))
    for X in _degenerate():
        g = gf(X)
        assert np.all(np.isfinite(np.asarray(g))), obj
        assert np.isfinite(float(f(X))), obj
        assert not bool(valid(X))


def test_objectives_are_nan_free_at_degenerate_configurations():
    # "descent" shares the angle surrogate; "active" has no nested gradient; "raw": slow set
    _check_nan_free("angle", margins=(0.2, 0.1), active="both")
    # a search started from a fully collapsed configuration stays finite
    coincident, _ = _degenerate()
    r = gt.search("angle", k=2, dim=3, active="both", init=np.asarray(coincident), **FAST)
    assert np.all(np.isfinite(r.points))


@pytest.mark.slow
def test_raw_objective_is_nan_free_at_degenerate_configurations():
    _check_nan_free("raw")


def test_active_objective_scales_by_range_max():
    """The active-set score scales each hinge argument by the distance's g(pi), also for a
    user distance (it used to fall back silently to 1)."""
    cube = gt.make_distance("geodesic_cube", lambda t: t**3)
    t = gt.triplet_structure("shared_anchor", 2)
    X = np.asarray(gt.normalize(jax.random.normal(jax.random.key(3), (5, 3))))
    for dists, margins in (
        (("chord_sq", "geodesic"), (0.2, 0.1)),
        (("geodesic", cube), (0.3, 2.0)),
    ):
        _, score, _ = gt.objective_function("active", t, distances=dists, margins=margins)
        D = [gt.distance(d) for d in dists]
        theta = lambda i, j: np.arccos(np.clip(X[i] @ X[j], -1, 1))
        z = np.array(
            [
                [float(d.profile(theta(a, p)) - d.profile(theta(a, n))) + m for a, p, n in t]
                for d, m in zip(D, margins)
            ]
        )
        z = z / np.array([[D[0].range_max], [D[1].range_max]])
        r = np.maximum(np.minimum(z[0], -z[1]), np.minimum(-z[0], z[1]))
        expect = np.mean(np.minimum(r, 0.05)) / 0.05
        assert float(score(jnp.asarray(X))) == pytest.approx(expect, abs=1e-9)
    assert cube.range_max == pytest.approx(np.pi**3)


def test_objective_cache_is_bounded_and_clearable():
    from geotrip import _caches
    from geotrip.counterexamples._objectives import _cached_objective

    t = gt.triplet_structure("chain", 2)
    f1 = gt.objective_function("active", t, margins=(0.25, 0.1))
    assert gt.objective_function("active", t, margins=(0.25, 0.1)) is f1
    assert _cached_objective in _caches._REGISTRY  # emptied by gt.clear_caches()
    assert _cached_objective.cache_info().maxsize == 64
    _cached_objective.cache_clear()  # (gt.clear_caches() would also empty JAX's caches)
    assert gt.objective_function("active", t, margins=(0.25, 0.1)) is not f1


@pytest.fixture(scope="module")
def both_result():
    return gt.search("angle", k=2, dim=3, active="both", seed=0, **FAST)


def test_search_is_deterministic_and_agrees_with_core(both_result):
    r2 = gt.search("angle", k=2, dim=3, active="both", seed=0, **FAST)
    np.testing.assert_array_equal(both_result.points, r2.points)
    r = both_result
    assert r.margins == (0.2, 0.1) and r.match == "slope" and r.active == "both"
    assert r.value > 90  # weighting alone makes the two gradients obtuse
    X, t = jnp.asarray(r.points), jnp.asarray(r.triplets)
    ang = gt.batch_gradient_angle(X, t, margins=r.margins)
    assert np.degrees(float(ang)) == pytest.approx(r.value, abs=1e-9)
    assert r.angle_deg == pytest.approx(r.value, abs=1e-9)
    dd = gt.descent_disagreement(X, t, margins=r.margins)
    assert float(dd["slope/B_along_A"]) > 0
    for d, m in zip(r.distances, r.margins):  # every triplet active under both hinges
        a, p, n = X[t[:, 0]], X[t[:, 1]], X[t[:, 2]]
        z = gt.distance(d)(a, p) - gt.distance(d)(a, n) + m
        assert np.all(np.asarray(z) > r.gap)


@pytest.mark.slow
def test_k1_search_stays_below_the_bound():
    r"""For one triplet, cos(G_A, G_B) = (1+r) sqrt(2-c) / (2 sqrt(1+r^2-rc)) >= 1/2
    (r = w_n/w_p, c = cos psi),

    so the chord_sq-vs-geodesic angle is < 60 degrees, below the 90-degree theorem of the core.
    """
    # active="both": the certificate then asserts the active pattern (a certificate that
    # asserts nothing is not verified; an acute angle gets no "angle_deg > 90")
    r = gt.search("angle", k=1, dim=3, seed=1, active="both", progress=False, **BUDGET)
    assert 50 < r.value < 60
    assert np.nanmax(r.values) < 60
    c = gt.certify(r)
    assert c.verification.ok, c.verification.failures
    assert "angle_deg > 90" not in c.content["assertions"]
    assert c.verification.values["angle_deg"] < 60


def test_custom_objective():
    def spread(X, t):  # maximise the anchor-negative distance of the first triplet
        return -jnp.sum(X[t[0, 0]] * X[t[0, 2]])

    r = gt.search(spread, k=1, dim=3, restarts=8, steps=100, progress=False)
    assert r.value == pytest.approx(1.0, abs=1e-3)


@pytest.mark.slow
def test_active_and_raw_objectives():
    r = gt.search("active", k=2, dim=3, seed=0, restarts=32, steps=100, progress=False)
    assert r.value > 0.5
    c = gt.certify(r)
    assert c.verification.ok, c.verification.failures
    assert any(a.startswith("active_disagreement >") for a in c.content["assertions"])
    # Raw gradients add only radial parts (orthogonal to the tangent ones): <R_A, R_B> = <G_A, G_B>
    # for chord_sq vs geodesic and |R_A| >= |G_A|, so |cos| shrinks: an acute Riemannian angle
    # (always, for k = 1) looks *wider* in raw gradients. The raw objective (Riemannian minus raw
    # angle) is <= 0 here.
    r = gt.search("raw", k=1, dim=3, seed=0, restarts=32, steps=100, progress=False)
    assert -90 < r.value <= 1e-9
    c = gt.certify(r)
    assert c.verification.ok, c.verification.failures
    assert c.content["claims"]["raw_angle_deg"] >= c.content["claims"]["angle_deg"] - 1e-9


@pytest.mark.slow
def test_simplify_and_certify(both_result):
    s = gt.simplify(both_result, restarts=8, steps=50)
    assert s.k == 2  # one triplet can never disagree (k=1 bound)
    assert s.dim <= 3
    c = gt.certify(s)
    assert c.verification.ok, c.verification.failures
    assert c.decimals <= 6
    for a in ("angle_deg > 90", "step.delta_A < 0", "step.delta_B > 0"):
        assert a in c.content["assertions"]
    with jax.enable_x64(False):  # JAX's default: certify computes its claims in float64 itself
        c32 = gt.certify(s)
        assert not jax.config.jax_enable_x64  # and leaves the setting as it was
    assert c32.verification.ok and c32.content["claims"] == c.content["claims"]


def test_one_triplet_bound_table():
    """The proved suprema; the closed-form M_c angle of the edge rays; the quadrant bound
    over random weights (independent of the search)."""
    names = ("chord_sq", "chord", "geodesic", "geodesic_sq", "cosine")
    sups = {(a, b): gt.one_triplet_bound(a, b)[0] for a in names for b in names}
    assert all(sups[a, a] == 0 for a in names)
    assert sups["chord_sq", "cosine"] == sups["cosine", "chord_sq"] == 0
    assert all(sups[a, "geodesic"] == 60 for a in names if a != "geodesic")
    assert sups["chord_sq", "geodesic_sq"] == sups["chord", "cosine"] == 120
    rng = np.random.default_rng(0)
    worst = 0.0
    for a, b in [(x, y) for x in names for y in names if x < y]:
        A, B = gt.distance(a), gt.distance(b)
        th = rng.uniform(1e-3, np.pi - 1e-3, size=(2000, 2))
        th[:500] = [[1e-2, np.pi - 1e-5]] + rng.uniform(0, 1e-3, size=(500, 2)) * [1, -1]
        c = np.cos(rng.uniform(0, 1e-2, size=2000))
        wA = np.stack([np.asarray(A.weight(th[:, i])) for i in (0, 1)], 1)
        wB = np.stack([np.asarray(B.weight(th[:, i])) for i in (0, 1)], 1)

        def inner(u, v):
            return (
                2 * u[:, 0] * v[:, 0]
                + 2 * u[:, 1] * v[:, 1]
                - c * (u[:, 0] * v[:, 1] + u[:, 1] * v[:, 0])
            )

        cos = inner(wA, wB) / np.sqrt(inner(wA, wA) * inner(wB, wB))
        ang = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        assert ang.max() < sups[a, b] + 1e-9, (a, b, ang.max())
        worst = max(worst, ang.max())
    assert worst > 110  # the 120-degree family is approached


def test_dimension_embedding_keeps_the_gradients():
    """A zero coordinate appended keeps both gradients (so the largest angle is
    non-decreasing in d); more triplets: copies of the last positive and negative."""
    from geotrip.counterexamples._bounds import _embed_rows, _rows_points

    X = gt.normalize(jax.random.normal(jax.random.key(1), (5, 2)))
    rows = gt.format_decimal_points(np.asarray(X), 6)
    t2 = jnp.asarray(gt.triplet_structure("shared_anchor", 2))
    X2 = jnp.asarray(_rows_points(rows))
    X3 = jnp.asarray(_rows_points(_embed_rows(rows, 2, 2, 3)))
    for dist, m in (("chord_sq", 0.2), ("geodesic", 0.1)):
        G2 = gt.batch_grads(X2, t2, distance=dist, margin=m)
        G3 = gt.batch_grads(X3, t2, distance=dist, margin=m)
        np.testing.assert_allclose(np.asarray(G3[:, :2]), np.asarray(G2), atol=1e-15)
        np.testing.assert_allclose(np.asarray(G3[:, 2]), 0, atol=1e-15)
    warm = _embed_rows(rows, 2, 3, 2)
    assert len(warm) == 7 and warm[5:] == rows[3:5]


@pytest.mark.slow
def test_monotone_angle_bounds_small_grid(tmp_path):
    rows = gt.monotone_angle_bounds((1, 2), (2, 3), restarts=8, steps=40, cert_dir=tmp_path)
    val = {(r["k"], r["dim"]): r["angle_deg"] for r in rows}
    assert val[1, 2] <= val[1, 3] and val[2, 2] <= val[2, 3]  # monotone in d by construction
    assert all(r["pattern"] == ["both"] * r["k"] for r in rows)
    for f in tmp_path.glob("*.json"):
        assert gt.verify_certificate(f).ok
    # release=True (geotrip figures: each cell's compiled programs freed) changes no value
    again = gt.monotone_angle_bounds((1, 2), (2, 3), restarts=8, steps=40, release=True)
    for r, s in zip(rows, again, strict=True):
        assert (r["k"], r["dim"], r["angle_deg"], r["source"]) == (
            s["k"],
            s["dim"],
            s["angle_deg"],
            s["source"],
        )
