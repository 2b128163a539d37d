"""Configuration generators: distributions (KS tests with fixed keys), shapes, dtypes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import geotrip as gt

# Stated tolerance for the KS tests below: with a fixed key the statistic is a fixed
# number; we require it below 0.02 (n = 20000 pairs, the 1% critical value is 0.0115)
# and the p-value above 1e-3.
KS_N = 20000
KS_MAX = 0.02


def _ks_angle(theta, dim):
    """KS test of angles against density ∝ sin^{d-2}θ: sin²(θ/2) ~ Beta((d-1)/2, (d-1)/2)."""
    x = np.sin(np.asarray(theta, np.float64) / 2) ** 2
    return stats.kstest(x, stats.beta((dim - 1) / 2, (dim - 1) / 2).cdf)


@pytest.mark.parametrize("dim", [2, 3, 10, 128])
def test_uniform_pair_angle_density(dim):
    k1, k2 = jax.random.split(jax.random.key(2026))
    x = gt.uniform_sphere(k1, KS_N, dim)
    y = gt.uniform_sphere(k2, KS_N, dim)
    assert x.shape == (KS_N, dim)
    np.testing.assert_allclose(np.linalg.norm(x, axis=-1), 1, atol=1e-12)
    res = _ks_angle(gt.angle(x, y), dim)
    assert res.statistic < KS_MAX and res.pvalue > 1e-3, res
    # the test can fail: a wrong dimension is rejected
    wrong = _ks_angle(gt.angle(x, y), 2 * dim + 1)
    assert wrong.statistic > KS_MAX


def test_uniform_sphere_dtype_and_shape():
    x = gt.uniform_sphere(jax.random.key(0), (2, 3), 5, dtype=jnp.float32)
    assert x.shape == (2, 3, 5) and x.dtype == jnp.float32
    with pytest.raises(ValueError, match="dim"):
        gt.uniform_sphere(jax.random.key(0), 3, 0)
    with pytest.raises(TypeError, match="floating"):
        gt.uniform_sphere(jax.random.key(0), 3, 4, dtype=jnp.int32)


@pytest.mark.parametrize("dim", [3, 20])
def test_spherical_cap(dim):
    c = gt.uniform_sphere(jax.random.key(1), (), dim)
    r = 0.3
    x = gt.spherical_cap(jax.random.key(2), KS_N, dim, radius=r, center=c)
    th = np.asarray(gt.angle(x, jnp.broadcast_to(c, x.shape)))
    assert th.max() <= r + 1e-9
    # polar angle density ∝ sin^{d-2} on [0, r]: compare with the truncated Beta law
    b = stats.beta((dim - 1) / 2, (dim - 1) / 2)
    xr = np.sin(r / 2) ** 2
    res = stats.kstest(np.sin(th / 2) ** 2, lambda s: b.cdf(s) / b.cdf(xr))
    assert res.statistic < KS_MAX, res
    # radius pi is the uniform distribution
    full = gt.spherical_cap(jax.random.key(3), KS_N, dim, radius=np.pi)
    e1 = jnp.zeros(dim).at[0].set(1.0)
    assert _ks_angle(gt.angle(full, jnp.broadcast_to(e1, full.shape)), dim).statistic < KS_MAX
    with pytest.raises(ValueError, match="radius"):
        gt.spherical_cap(jax.random.key(0), 4, dim, radius=0.0)


def test_clustered_batch_vmf_and_gaussian():
    K, m, d = 5, 400, 16
    for kind in gt.CLUSTER_KINDS:
        X, y = gt.clustered_batch(
            jax.random.key(7), n_classes=K, per_class=m, dim=d, concentration=200.0, kind=kind
        )
        assert X.shape == (K * m, d) and y.shape == (K * m,) and y.dtype == jnp.int32
        np.testing.assert_array_equal(y, np.repeat(np.arange(K), m))
        np.testing.assert_allclose(np.linalg.norm(X, axis=-1), 1, atol=1e-12)
        Xn = np.asarray(X).reshape(K, m, d)
        mean = Xn.mean(axis=1)
        centers = mean / np.linalg.norm(mean, axis=-1, keepdims=True)
        cos = np.einsum("kmd,kd->km", Xn, centers)
        # typical angle to the centre ≈ sqrt((d-1)/kappa) = 0.27 for both kinds
        ang = np.arccos(np.clip(cos, -1, 1))
        assert 0.2 < np.sqrt(np.mean(ang**2)) < 0.34, (kind, np.sqrt(np.mean(ang**2)))
    # vMF mean resultant length: E[mu.x] = I_{d/2}(k)/I_{d/2-1}(k)
    X, y = gt.clustered_batch(
        jax.random.key(8), n_classes=1, per_class=20000, dim=d, concentration=30.0
    )
    Xn = np.asarray(X)
    mean = Xn.mean(0)
    from scipy.special import ive

    expect = ive(d / 2, 30.0) / ive(d / 2 - 1, 30.0)
    assert abs(np.linalg.norm(mean) - expect) < 5e-3
    # tighter concentration -> smaller within-class angles
    X2, _ = gt.clustered_batch(
        jax.random.key(8), n_classes=1, per_class=2000, dim=d, concentration=3000.0
    )
    assert np.linalg.norm(np.asarray(X2).mean(0)) > np.linalg.norm(mean)


def test_clustered_center_spread_and_jit():
    f = jax.jit(
        lambda k, kap: gt.clustered_batch(
            k, n_classes=6, per_class=2, dim=32, concentration=kap, center_spread=0.05
        )
    )
    X, y = f(jax.random.key(0), 1e6)
    th = np.asarray(gt.pairwise_angles(X))
    assert th.max() < 0.1 + 0.02  # all classes in a tiny cap: a collapsed start
    with pytest.raises(ValueError, match="kind"):
        gt.clustered_batch(
            jax.random.key(0), n_classes=2, per_class=2, dim=3, concentration=1.0, kind="cauchy"
        )
    with pytest.raises(ValueError, match="concentration"):
        gt.clustered_batch(jax.random.key(0), n_classes=2, per_class=2, dim=3, concentration=0.0)
    with pytest.raises(ValueError, match="per_class"):
        gt.clustered_batch(jax.random.key(0), n_classes=2, per_class=0, dim=3, concentration=1.0)


@pytest.mark.parametrize("dtype", [jnp.float32])
def test_rotated_triplet_roundtrip(dtype):
    key = jax.random.key(4)
    tp = jax.random.uniform(jax.random.key(5), (200,), dtype, 0.01, 3.1)
    tn = jax.random.uniform(jax.random.key(6), (200,), dtype, 0.01, 3.1)
    ps = jax.random.uniform(jax.random.key(7), (200,), dtype, 0.01, 3.1)
    a, p, n = gt.rotated_triplet(key, tp, tn, ps, dim=64)
    assert a.shape == (200, 64) and a.dtype == dtype
    m = gt.triplet_angles(a, p, n)
    tol = 1e-4 if dtype == jnp.float32 else 1e-10
    for got, want in zip(m, (tp, tn, ps)):
        np.testing.assert_allclose(got, want, atol=tol)
    # frames differ between triplets, and are uniform: a's are uniform on the sphere
    assert _ks_angle(gt.angle(a[:100], a[100:]), 64).statistic < 0.2
    with pytest.raises(ValueError, match="dim"):
        gt.rotated_triplet(key, 0.1, 0.2, 0.3, dim=2)


def test_parametric_triplet_roundtrip_kept():
    a, p, n = gt.parametric_triplet(0.3, 0.5, 2.0, dim=5, key=jax.random.key(0))
    np.testing.assert_allclose(gt.triplet_angles(a, p, n), (0.3, 0.5, 2.0), atol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_near_degenerate_pairs(dtype):
    eps = jnp.asarray([1e-6, 1e-5, 1e-3, 0.1], dtype)
    x, y = gt.near_degenerate_pairs(jax.random.key(0), 4, 50, angle=eps, dtype=dtype)
    rel = 1e-4 if dtype == jnp.float32 else 1e-9
    th = gt.angle(x, y)
    np.testing.assert_allclose(th, eps, rtol=rel * 50)
    x, y = gt.near_degenerate_pairs(
        jax.random.key(0), 4, 50, angle=eps, antipodal=True, dtype=dtype
    )
    np.testing.assert_allclose(
        np.pi - np.asarray(gt.angle(x, y), np.float64),
        np.asarray(eps, np.float64),
        rtol=1e-6,
        atol=4e-7 if dtype == jnp.float32 else 1e-15,
    )
