"""Geometry: accurate angles (vs mpmath), normalisation, tangent projection."""

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import geotrip as gt

DTYPES = [np.float32, np.float64]


def _mp_angle(x, y):
    """Angle between the directions of two float vectors, at 50 digits."""
    with mp.workdps(50):
        X = [mp.mpf(float(v)) for v in x]
        Y = [mp.mpf(float(v)) for v in y]
        nx = mp.sqrt(mp.fsum(v * v for v in X))
        ny = mp.sqrt(mp.fsum(v * v for v in Y))
        d = mp.sqrt(mp.fsum((a / nx - b / ny) ** 2 for a, b in zip(X, Y)))
        s = mp.sqrt(mp.fsum((a / nx + b / ny) ** 2 for a, b in zip(X, Y)))
        return 2 * mp.atan2(d, s)


def _pair_at(theta, dim, rng, dtype):
    u = rng.normal(size=dim)
    u /= np.linalg.norm(u)
    v = rng.normal(size=dim)
    v -= (v @ u) * u
    v /= np.linalg.norm(v)
    return u.astype(dtype), (np.cos(theta) * u + np.sin(theta) * v).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [3, 64])
def test_angle_accuracy_vs_mpmath(dtype, dim):
    """|err| <= 4 ulp(theta) over [1e-7, pi - 1e-7] (measured worst: about 2.2 ulp)."""
    rng = np.random.default_rng(1234 + dim)
    thetas = np.concatenate(
        [
            np.logspace(-7, 0, 15),
            np.pi - np.logspace(-7, 0, 15),
            rng.uniform(0, np.pi, 10),
        ]
    )
    pairs = [_pair_at(t, dim, rng, dtype) for t in thetas for _ in range(3)]
    x = jnp.asarray(np.stack([p[0] for p in pairs]))
    y = jnp.asarray(np.stack([p[1] for p in pairs]))
    got = np.asarray(gt.angle(x, y))
    assert got.dtype == dtype
    worst = 0.0
    for g, (a, b) in zip(got, pairs):
        ref = _mp_angle(a, b)
        ulp = float(np.spacing(dtype(float(ref))))
        worst = max(worst, abs(float(g) - float(ref)) / ulp)
    assert worst <= 4.0, f"worst error {worst:.2f} ulp"


def test_arccos_of_clipped_dot_is_not_accurate_float32():
    """Why the Kahan form: arccos(clip(x.y)) returns 0 for small angles in float32."""
    rng = np.random.default_rng(0)
    x, y = _pair_at(1e-4, 3, rng, np.float32)
    naive = float(jnp.arccos(jnp.clip(jnp.dot(x, y), -1, 1)))
    good = float(gt.angle(jnp.asarray(x), jnp.asarray(y)))
    ref = float(_mp_angle(x, y))
    assert abs(good - ref) / ref < 1e-6
    assert abs(naive - ref) / ref > 0.1


@pytest.mark.parametrize("dtype", DTYPES)
def test_angle_singular_points_values_and_gradients(dtype):
    x = jnp.asarray([0.6, 0.8, 0.0], dtype)
    z = jnp.zeros(3, dtype)
    cases = {
        "equal": (x, x, 0.0),
        "antipodal": (x, -x, np.pi),
        "zero": (x, z, np.pi / 2),
        "both zero": (z, z, np.pi / 2),
    }
    for name, (u, v, expected) in cases.items():
        val = gt.angle(u, v)
        assert val.dtype == dtype
        np.testing.assert_allclose(float(val), expected, rtol=1e-6, err_msg=name)
        gu, gv = jax.grad(gt.angle, argnums=(0, 1))(u, v)
        assert np.all(np.isfinite(gu)) and np.all(np.isfinite(gv)), name
        np.testing.assert_array_equal(np.asarray(gu), 0.0, err_msg=name)  # stated convention


def test_angle_gradient_closed_form_and_tangent():
    rng = np.random.default_rng(3)
    x, y = (jnp.asarray(v) for v in _pair_at(1.1, 5, rng, np.float64))
    g = jax.grad(gt.angle)(x, y)
    th = gt.angle(x, y)
    expected = -gt.project_tangent(x, y) / jnp.sin(th)
    np.testing.assert_allclose(g, expected, atol=1e-13)
    assert abs(float(jnp.dot(g, x))) < 1e-14


def test_angle_second_derivative_finite_near_zero():
    x = jnp.asarray([1.0, 0.0, 0.0])
    for eps in (1e-3, 1e-8, 0.0):
        y = gt.normalize(jnp.asarray([1.0, eps, 0.0]))
        h = jax.hessian(lambda u: gt.angle(u, y) ** 2)(x)
        assert np.all(np.isfinite(h))


@jax.jit
def _rotation_residuals(key):
    k1, k2, k3 = jax.random.split(key, 3)
    x = gt.normalize(jax.random.normal(k1, (4, 6)))
    y = gt.normalize(jax.random.normal(k2, (4, 6)))
    q = gt.random_rotation(k3, 6)
    th = gt.angle(x, y)
    return jnp.stack(
        [
            jnp.max(jnp.abs(gt.angle(x @ q.T, y @ q.T) - th)),
            jnp.max(jnp.abs(gt.angle(y, x) - th)),
            jnp.max(jnp.abs(gt.angle(3.0 * x, 0.5 * y) - th)),
        ]
    )


@given(st.integers(0, 2**31 - 1))
def test_angle_rotation_invariant_symmetric_scale_invariant(seed):
    r = np.asarray(_rotation_residuals(jax.random.key(seed)))
    assert r[0] < 1e-12 and r[1] == 0.0 and r[2] < 1e-12, r


@jax.jit
def _tangent_residuals(key):
    k1, k2 = jax.random.split(key)
    x = gt.normalize(jax.random.normal(k1, (5, 4)))
    v = jax.random.normal(k2, (5, 4))
    t = gt.project_tangent(x, v)
    return jnp.stack(
        [jnp.max(jnp.abs(jnp.sum(t * x, -1))), jnp.max(jnp.abs(gt.project_tangent(x, t) - t))]
    )


@given(st.integers(0, 2**31 - 1))
def test_project_tangent_is_tangent_and_idempotent(seed):
    r = np.asarray(_tangent_residuals(jax.random.key(seed)))
    assert np.all(r < 1e-13), r


@pytest.mark.parametrize("dtype", DTYPES)
def test_normalize_zero_vector_and_dtype(dtype):
    z = jnp.zeros((2, 4), dtype)
    out = gt.normalize(z)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, 0.0)
    g = jax.grad(lambda u: jnp.sum(gt.normalize(u) * jnp.arange(4, dtype=dtype)))(z[0])
    assert np.all(np.isfinite(g))
    x = jnp.asarray([[3.0, 4.0, 0.0, 0.0]], dtype)
    np.testing.assert_allclose(gt.normalize(x), [[0.6, 0.8, 0, 0]], rtol=1e-6)
    assert gt.safe_norm(x).dtype == dtype


def test_normalize_vjp_is_projected_gradient_over_norm():
    """The normalisation layer back-propagates (I - f f^T) g / ||z||."""
    k1, k2 = jax.random.split(jax.random.key(7))
    z = 3.0 * jax.random.normal(k1, (6, 5))
    ct = jax.random.normal(k2, (6, 5))
    auto = gt.normalize_vjp(z, ct)
    f = np.asarray(z) / np.linalg.norm(np.asarray(z), axis=-1, keepdims=True)
    ref = (np.asarray(ct) - np.sum(f * np.asarray(ct), -1, keepdims=True) * f) / np.linalg.norm(
        np.asarray(z), axis=-1, keepdims=True
    )
    np.testing.assert_allclose(auto, ref, atol=1e-13)
    np.testing.assert_allclose(gt.normalize_vjp_closed_form(z, ct), ref, atol=1e-13)
    zero = jnp.zeros(5)
    np.testing.assert_array_equal(gt.normalize_vjp(zero, ct[0]), 0.0)
    np.testing.assert_array_equal(gt.normalize_vjp_closed_form(zero, ct[0]), 0.0)


def test_pairwise_angles_vs_numpy():
    X = gt.normalize(jax.random.normal(jax.random.key(0), (7, 4)))
    P = np.asarray(gt.pairwise_angles(X))
    Xn = np.asarray(X)
    ref = np.arccos(np.clip(Xn @ Xn.T, -1, 1))
    off = ~np.eye(7, dtype=bool)
    np.testing.assert_allclose(P[off], ref[off], atol=1e-7)
    np.testing.assert_array_equal(np.diag(P), 0.0)
    np.testing.assert_allclose(P, P.T, atol=1e-15)


def test_random_rotation_is_special_orthogonal():
    for dim in (2, 3, 8):
        q = np.asarray(gt.random_rotation(jax.random.key(dim), dim))
        np.testing.assert_allclose(q @ q.T, np.eye(dim), atol=1e-12)
        assert np.linalg.det(q) == pytest.approx(1.0)


def test_vector_angle_ignores_norms():
    u = jnp.asarray([1e-30, 0.0, 0.0])
    v = jnp.asarray([1e30, 1e30, 0.0])
    assert float(gt.vector_angle(u, v)) == pytest.approx(np.pi / 4, rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_jit_and_vmap_match_eager(dtype):
    x = gt.normalize(jax.random.normal(jax.random.key(1), (5, 3), dtype))
    y = gt.normalize(jax.random.normal(jax.random.key(2), (5, 3), dtype))
    eager = gt.angle(x, y)
    np.testing.assert_allclose(jax.jit(gt.angle)(x, y), eager, rtol=4 * np.finfo(dtype).eps)
    np.testing.assert_allclose(jax.vmap(gt.angle)(x, y), eager, rtol=4 * np.finfo(dtype).eps)


def test_angle_rejects_bad_input():
    with pytest.raises(TypeError, match="floating"):
        gt.angle(jnp.asarray([1, 0]), jnp.asarray([0, 1]))
