"""The push-pull ratio of mined triplets against its closed forms, and its summaries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import geotrip as gt

CLOSED = {
    "chord_sq": lambda an, ap: np.sin(an) / np.sin(ap),
    "cosine": lambda an, ap: np.sin(an) / np.sin(ap),
    "chord": lambda an, ap: np.cos(an / 2) / np.cos(ap / 2),
    "geodesic": lambda an, ap: np.ones_like(an),
    "geodesic_sq": lambda an, ap: an / ap,
}


def _triplet_points(t_ap, t_an, phi):
    """a = e1; p at angle t_ap in the (e1, e2) plane; n at angle t_an, rotated by phi."""
    a = np.array([1.0, 0.0, 0.0])
    p = np.array([np.cos(t_ap), np.sin(t_ap), 0.0])
    n = np.array([np.cos(t_an), np.sin(t_an) * np.cos(phi), np.sin(t_an) * np.sin(phi)])
    return np.stack([a, p, n])


@pytest.mark.parametrize("name", list(CLOSED))
def test_push_pull_ratio_closed_form(name):
    rng = np.random.default_rng(0)
    t_ap, t_an, phi = rng.uniform(0.05, 3.0, 12), rng.uniform(0.05, 3.0, 12), rng.uniform(0, 6, 12)
    X = np.concatenate([_triplet_points(a, b, c) for a, b, c in zip(t_ap, t_an, phi)])
    t = jnp.asarray(np.arange(36).reshape(12, 3))
    got = gt.push_pull_ratio(jnp.asarray(X), t, distance=name)
    np.testing.assert_allclose(got, CLOSED[name](t_an, t_ap), rtol=1e-9)
    # any positive rescaling (reference units) gives the same ratio
    ref = gt.push_pull_ratio(jnp.asarray(X), t, distance=gt.reference_distance(name))
    np.testing.assert_allclose(ref, got, rtol=1e-9)


def test_push_pull_summary_against_numpy():
    rng = np.random.default_rng(1)
    X = gt.normalize(jnp.asarray(rng.normal(size=(10, 4))))
    t = jnp.asarray(np.stack([rng.choice(10, 3, replace=False) for _ in range(40)]))
    mask = jnp.asarray(rng.random(40) < 0.7)
    Xn, tn, m = np.asarray(X), np.asarray(t), np.asarray(mask)

    def ang(i, j):
        return np.arccos(np.clip(np.sum(Xn[i] * Xn[j], -1), -1, 1))

    t_ap, t_an = ang(tn[:, 0], tn[:, 1]), ang(tn[:, 0], tn[:, 2])
    w_ap, w_an = 2 * np.sin(t_ap), 2 * np.sin(t_an)
    pos = m & (w_ap > 1e-12) & (w_an > 1e-12)
    hard = m & (t_an < t_ap)
    s = gt.push_pull_summary(X, t, distance="chord_sq", mask=mask)
    np.testing.assert_allclose(s["log_ratio"], np.mean(np.log(w_an[pos] / w_ap[pos])), rtol=1e-7)
    np.testing.assert_allclose(s["hard_share"], hard.sum() / m.sum())
    np.testing.assert_allclose(s["pull_wins"], (hard & (w_an < w_ap)).sum() / hard.sum())


def test_push_pull_summary_finite_at_degenerate_points_and_jit():
    X = jnp.asarray(np.tile([1.0, 0.0, 0.0], (4, 1)))  # a collapsed batch: every weight is 0
    t = jnp.asarray([[0, 1, 2], [1, 2, 3]])
    s = jax.jit(lambda X: gt.push_pull_summary(X, t, distance="chord_sq"))(X)
    assert all(np.isfinite(float(v)) for v in s.values())
    assert float(s["log_ratio"]) == 0.0 and float(s["hard_share"]) == 0.0
    g = jax.grad(lambda X: gt.push_pull_summary(X, t, distance="geodesic_sq")["log_ratio"])(X)
    assert np.all(np.isfinite(np.asarray(g)))
