"""Margin matching rules and hinge active-set disagreement, against closed forms and NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import geotrip as gt


def test_slope_rule_closed_form():
    # chord_sq -> geodesic: m_B = m_A * 1 / (2 sin theta_ref)
    for tr in (0.3, np.pi / 2, 2.5):
        got = gt.match_margin(0.2, source="chord_sq", target="geodesic", rule="slope", theta_ref=tr)
        np.testing.assert_allclose(got, 0.2 / (2 * np.sin(tr)), rtol=1e-12)
    np.testing.assert_allclose(
        gt.match_margin(jnp.asarray([0.1, 0.2]), rule="slope"), [0.05, 0.1], rtol=1e-12
    )
    with pytest.raises(ValueError, match="zero slope"):
        flat = gt.make_distance("flat_then_linear", lambda t: jnp.where(t < 1, 0 * t, t - 1))
        gt.match_margin(0.2, source=flat, target="chord", rule="slope", theta_ref=0.5)


@pytest.mark.parametrize("tr", [0.4, np.pi / 2, 2.0])
def test_reference_rule_closed_form(tr):
    m = np.array([0.05, 0.2, 0.8])
    got = np.asarray(
        gt.match_margin(m, source="chord_sq", target="geodesic", rule="reference", theta_ref=tr)
    )
    # chord_sq boundary: 4 sin^2(t*/2) = 4 sin^2(tr/2) + m
    tstar = 2 * np.arcsin(np.sqrt(np.minimum(np.sin(tr / 2) ** 2 + m / 4, 1.0)))
    np.testing.assert_allclose(got, tstar - tr, atol=1e-12)
    # round trip back to chord_sq
    back = gt.match_margin(
        got, source="geodesic", target="chord_sq", rule="reference", theta_ref=tr
    )
    np.testing.assert_allclose(back, np.where(tstar < np.pi, m, back), atol=1e-10)
    # the two hinges switch on at the same theta_an for theta_ap = tr
    for mi, gi in zip(m, got):
        d = gt.active_set_disagreement(
            jnp.full((2,), tr),
            jnp.asarray([tr + gi - 1e-6, tr + gi + 1e-6]),
            margins=(float(mi), float(gi)),
        )
        assert float(d["disagreement"]) == 0.0


def test_active_share_rule_equalises_shares():
    X, y = gt.clustered_batch(
        jax.random.key(0), n_classes=6, per_class=5, dim=32, concentration=80.0
    )
    t, ok = gt.mine_triplets(X, y, strategy="batch_all")
    t = np.asarray(t)[np.asarray(ok)]
    tap = gt.angle(X[t[:, 0]], X[t[:, 1]])
    tan = gt.angle(X[t[:, 0]], X[t[:, 2]])
    for mA in (0.05, 0.2, 0.5):
        mB = gt.match_margin(mA, rule="active_share", theta_ap=tap, theta_an=tan)
        d = gt.active_set_disagreement(tap, tan, margins=(mA, float(mB)))
        assert abs(float(d["active/A"]) - float(d["active/B"])) < 1e-12
        # matched shares, different sets: some triplets still disagree (for these families)
        assert 0.0 <= float(d["disagreement"]) < 0.5
    with pytest.raises(ValueError, match="needs samples"):
        gt.match_margin(0.2, rule="active_share")


def test_disagreement_against_numpy():
    rng = np.random.default_rng(0)
    tap = rng.uniform(0, np.pi, 500)
    tan = rng.uniform(0, np.pi, 500)
    mask = rng.uniform(size=500) < 0.7
    d = gt.active_set_disagreement(
        jnp.asarray(tap),
        jnp.asarray(tan),
        distances=("chord_sq", "geodesic"),
        margins=(0.2, 0.2),
        mask=jnp.asarray(mask),
    )
    A = (2 - 2 * np.cos(tap)) - (2 - 2 * np.cos(tan)) + 0.2 > 0
    B = tap - tan + 0.2 > 0
    w = mask
    np.testing.assert_allclose(d["active/A"], A[w].mean())
    np.testing.assert_allclose(d["active/B"], B[w].mean())
    np.testing.assert_allclose(d["only_A"], (A & ~B)[w].mean())
    np.testing.assert_allclose(d["disagreement"], (A ^ B)[w].mean())
    assert float(d["count"]) == w.sum()
    assert float(d["disagreement"]) > 0
    same = gt.active_set_disagreement(
        jnp.asarray(tap), jnp.asarray(tan), distances=("cosine", "cosine"), margins=(0.1, 0.1)
    )
    assert float(same["disagreement"]) == 0.0
    # cosine = chord_sq / 2, so halving the margin matches it exactly (every rule agrees)
    exact = gt.active_set_disagreement(
        jnp.asarray(tap), jnp.asarray(tan), distances=("chord_sq", "cosine"), margins=(0.2, 0.1)
    )
    assert float(exact["disagreement"]) == 0.0
    for rule in ("slope", "reference"):
        np.testing.assert_allclose(
            gt.match_margin(0.2, target="cosine", rule=rule, theta_ref=1.0), 0.1, rtol=1e-9
        )


def test_errors():
    with pytest.raises(ValueError, match="reference, slope, active_share"):
        gt.match_margin(0.2, rule="median")
    with pytest.raises(ValueError, match="theta_ref"):
        gt.match_margin(0.2, theta_ref=0.0)
    with pytest.raises(ValueError, match="pair"):
        gt.active_set_disagreement(jnp.zeros(3), jnp.zeros(3), margins=(0.2,))
    with pytest.raises(ValueError, match="one shape"):
        gt.active_set_disagreement(jnp.zeros(3), jnp.zeros(4))
    with pytest.raises(ValueError, match="unknown distance"):
        gt.match_margin(0.2, target="arc")


def test_default_margins_are_slope_matched():
    """margins=(0.2, None), the default of the two-loss functions, gives B the margin of
    gt.match_margin's slope rule (computed apart, with jnp weights) for every pair of the family."""
    from geotrip.core._margins import slope_matched_margin

    for A in gt.DISTANCES:
        for B in gt.DISTANCES:
            ref = float(gt.match_margin(0.2, source=A, target=B, rule="slope"))
            got = slope_matched_margin(0.2, gt.distance(A), gt.distance(B))
            assert got == pytest.approx(ref, rel=1e-6), (A, B)
    a, p, n = gt.parametric_triplet(0.4, 0.45, 1.0, dim=3)
    default, explicit = gt.gradient_angles(a, p, n), gt.gradient_angles(a, p, n, margins=(0.2, 0.1))
    for k in gt.GRADIENT_ANGLE_KEYS:
        assert float(default[k]) == float(explicit[k])
    s = gt.active_set_disagreement(jnp.array([0.4]), jnp.array([0.45]))
    assert float(s["active/B"]) == 1.0  # geodesic margin 0.1: 0.4 - 0.45 + 0.1 > 0


def test_default_margins_inside_a_users_jit_and_grad():
    """The default margins (B's slope-matched at trace time) work inside a caller's jax.jit and
    jax.grad: the weights g'(pi/2) are evaluated as constants, not traced (this raised
    TracerArrayConversionError before)."""
    a, p, n = gt.parametric_triplet(0.4, 0.45, 1.0, dim=3)
    eager = gt.gradient_angles(a, p, n)
    jitted = jax.jit(lambda a, p, n: gt.gradient_angles(a, p, n))(a, p, n)
    for k in gt.GRADIENT_ANGLE_KEYS:
        assert float(jitted[k]) == pytest.approx(float(eager[k]), abs=1e-12), k
    g = jax.grad(lambda t: gt.active_set_disagreement(t, jnp.array([0.45]))["active/B"])(
        jnp.array([0.4])
    )
    assert jnp.all(jnp.isfinite(g))


def test_margin_matching_figure_shortcuts_equal_the_public_functions():
    """The margin_matching figure's two shortcuts give, bit for bit, what the public functions
    give: the uniform angles drawn in chunks (gt.uniform_sphere + gt.angle) and the
    disagreement shares from profile differences computed once (gt.active_set_disagreement)."""
    import numpy as np

    from geotrip.figures._sweeps import _disagreements, _uniform_angles

    key = jax.random.key(3)
    ap, an = _uniform_angles(key, 50, 8, chunk=16)
    a, p, n = gt.uniform_sphere(key, (3, 50), 8)
    assert ap.tobytes() == np.asarray(gt.angle(a, p)).tobytes()
    assert an.tobytes() == np.asarray(gt.angle(a, n)).tobytes()
    tap, tan = jnp.asarray(ap), jnp.asarray(an)
    mA = np.linspace(0.01, 1.0, 6)
    mB = np.asarray(gt.match_margin(jnp.asarray(mA), rule="slope", theta_ref=np.pi / 2))
    ref = [
        float(gt.active_set_disagreement(tap, tan, margins=(float(m), float(b)))["disagreement"])
        for m, b in zip(mA, mB)
    ]
    assert _disagreements(tap, tan, mA, mB) == ref
    assert 0 < max(ref)  # the comparison covers margins where the two hinges disagree
