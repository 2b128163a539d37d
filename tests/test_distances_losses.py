"""The distance family and the triplet losses, against closed forms and NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import geotrip as gt

# The table of BRIEF.md, written independently in NumPy.
TABLE = {
    "chord_sq": (lambda t: 2 - 2 * np.cos(t), lambda t: 2 * np.sin(t)),
    "chord": (lambda t: 2 * np.sin(t / 2), lambda t: np.cos(t / 2)),
    "geodesic": (lambda t: t, lambda t: np.ones_like(t)),
    "geodesic_sq": (lambda t: t**2, lambda t: 2 * t),
    "cosine": (lambda t: 1 - np.cos(t), lambda t: np.sin(t)),
}
NUMPY_AMBIENT = {
    "chord_sq": lambda x, y: np.sum((x - y) ** 2, -1),
    "chord": lambda x, y: np.linalg.norm(x - y, axis=-1),
    "geodesic": lambda x, y: np.arccos(np.clip(np.sum(x * y, -1), -1, 1)),
    "geodesic_sq": lambda x, y: np.arccos(np.clip(np.sum(x * y, -1), -1, 1)) ** 2,
    "cosine": lambda x, y: 1 - np.sum(x * y, -1),
}


def _unit(key, shape, dtype=jnp.float64):
    return gt.normalize(jax.random.normal(key, shape, dtype))


def test_family_names():
    assert set(gt.DISTANCES) == set(TABLE)
    with pytest.raises(TypeError):
        gt.DISTANCES["x"] = None  # read-only mapping


def test_unknown_distance_lists_valid_names():
    with pytest.raises(ValueError, match="chord_sq.*geodesic"):
        gt.distance("euclid")
    with pytest.raises(TypeError):
        gt.distance(3)
    a = _unit(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match="unknown distance 'arc'"):
        gt.triplet_loss(a, a, a, distance="arc")


@pytest.mark.parametrize("name", list(TABLE))
def test_profile_weight_and_ambient_match_the_table(name):
    dist = gt.distance(name)
    t = np.linspace(0, np.pi, 101)
    g, dg = TABLE[name]
    np.testing.assert_allclose(dist.profile(jnp.asarray(t)), g(t), atol=1e-14)
    np.testing.assert_allclose(dist.weight(jnp.asarray(t)), dg(t), atol=1e-14)
    # g' is the derivative of g: central differences in float64
    h = 1e-6
    tt = t[1:-1]
    fd = (g(tt + h) - g(tt - h)) / (2 * h)
    np.testing.assert_allclose(dist.weight(jnp.asarray(tt)), fd, atol=1e-8)
    # the ambient form equals the profile of the angle on the sphere
    k1, k2 = jax.random.split(jax.random.key(1))
    x, y = _unit(k1, (50, 6)), _unit(k2, (50, 6))
    np.testing.assert_allclose(
        dist(x, y), NUMPY_AMBIENT[name](np.asarray(x), np.asarray(y)), atol=1e-12
    )
    np.testing.assert_allclose(dist(x, y), dist.profile(gt.angle(x, y)), atol=1e-12)


def test_weights_vanish_where_the_table_says():
    zero_at_0 = {n for n in TABLE if abs(TABLE[n][1](np.array(0.0))) < 1e-15}
    zero_at_pi = {n for n in TABLE if abs(TABLE[n][1](np.array(np.pi))) < 1e-12}
    assert zero_at_0 == {"chord_sq", "geodesic_sq", "cosine"}
    assert zero_at_pi == {"chord_sq", "chord", "cosine"}
    for n in zero_at_0:
        assert float(gt.distance(n).weight(jnp.asarray(0.0))) == 0.0


def test_user_distance_from_profile():
    cube = gt.make_distance("geodesic_cube", lambda t: t**3)
    t = jnp.linspace(0, np.pi, 7)
    np.testing.assert_allclose(cube.weight(t), 3 * np.asarray(t) ** 2, atol=1e-13)
    a, p, n = gt.parametric_triplet(0.9, 0.7, 1.3, dim=4, key=jax.random.key(2))
    loss = gt.triplet_loss(a, p, n, distance=cube, margin=0.1)
    np.testing.assert_allclose(loss, 0.9**3 - 0.7**3 + 0.1, atol=1e-12)
    auto = gt.triplet_grads(a, p, n, distance=cube, margin=0.1)
    closed = gt.triplet_grads_closed_form(a, p, n, distance=cube, margin=0.1)
    for u, v in zip(auto, closed):
        np.testing.assert_allclose(u, v, atol=1e-12)
    with pytest.raises(TypeError):
        gt.make_distance("bad", 3.0)


def test_pairwise_distances_vs_bruteforce():
    X = _unit(jax.random.key(3), (6, 5))
    for name in TABLE:
        D = np.asarray(gt.pairwise_distances(X, distance=name))
        Xn = np.asarray(X)
        ref = np.array([[NUMPY_AMBIENT[name](Xn[i], Xn[j]) for j in range(6)] for i in range(6)])
        np.testing.assert_allclose(D, ref, atol=1e-7)


# ---------------------------------------------------------------- losses


def _np_loss(name, a, p, n, m, soft):
    z = NUMPY_AMBIENT[name](a, p) - NUMPY_AMBIENT[name](a, n) + m
    return np.log1p(np.exp(z)) if soft else np.maximum(z, 0)


@pytest.mark.parametrize("soft", [False, True])
def test_triplet_loss_vs_numpy(soft):
    k = jax.random.split(jax.random.key(4), 3)
    a, p, n = (_unit(kk, (40, 5)) for kk in k)
    for name in TABLE:
        got = gt.triplet_loss(a, p, n, distance=name, margin=0.3, soft=soft)
        ref = _np_loss(name, *(np.asarray(v) for v in (a, p, n)), 0.3, soft)
        np.testing.assert_allclose(got, ref, atol=1e-7)


def test_soft_margin_is_stable_for_large_arguments():
    z = jnp.asarray([-800.0, -40.0, 0.0, 40.0, 800.0])
    out = gt.hinge(z, soft=True)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[-1], 800.0)
    np.testing.assert_allclose(out[2], np.log(2.0))
    g = jax.grad(lambda u: jnp.sum(gt.hinge(u, soft=True)))(z)
    np.testing.assert_allclose(
        g, [0.0, 1 / (1 + np.exp(40.0)), 0.5, 1 / (1 + np.exp(-40.0)), 1.0], atol=1e-15
    )


def test_hinge_convention_at_zero():
    g = jax.grad(lambda z: gt.hinge(z))(jnp.asarray(0.0))
    assert float(g) == 0.0
    assert float(gt.hinge_slope(jnp.asarray(0.0))) == 0.0
    assert float(jax.grad(lambda z: gt.hinge(z))(jnp.asarray(1e-300))) == 1.0


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_losses_keep_dtype_and_match_under_jit_vmap(dtype):
    k = jax.random.split(jax.random.key(5), 3)
    a, p, n = (_unit(kk, (8, 4), dtype) for kk in k)
    f = lambda a_, p_, n_: gt.triplet_loss(a_, p_, n_, distance="geodesic", margin=0.5)
    eager = f(a, p, n)
    assert eager.dtype == dtype
    tol = 4 * float(jnp.finfo(dtype).eps)
    np.testing.assert_allclose(jax.jit(f)(a, p, n), eager, rtol=tol, atol=tol)
    np.testing.assert_allclose(jax.vmap(f)(a, p, n), eager, rtol=tol, atol=tol)


def test_batch_loss_reductions_and_mask_vs_loop():
    X = _unit(jax.random.key(6), (6, 3))
    T = np.array([[0, 1, 2], [1, 0, 3], [2, 4, 5], [5, 4, 0]])
    mask = np.array([True, False, True, True])
    for name in TABLE:
        Xn = np.asarray(X)
        per = np.array([_np_loss(name, Xn[a], Xn[p], Xn[n], 0.5, False) for a, p, n in T])
        kw = dict(distance=name, margin=0.5)
        np.testing.assert_allclose(gt.batch_loss(X, T, reduction="none", **kw), per, atol=1e-12)
        np.testing.assert_allclose(gt.batch_loss(X, T, **kw), per.sum(), atol=1e-12)
        np.testing.assert_allclose(
            gt.batch_loss(X, T, reduction="mean", **kw), per.mean(), atol=1e-12
        )
        np.testing.assert_allclose(
            gt.batch_loss(X, T, mask=mask, reduction="mean", **kw), per[mask].mean(), atol=1e-12
        )
    with pytest.raises(ValueError, match="reduction"):
        gt.batch_loss(X, T, reduction="max")


# ---------------------------------------------------------------- bad input


def test_bad_inputs_get_clear_errors():
    a, p, n = gt.parametric_triplet(0.5, 1.0, 1.0, dim=3)
    with pytest.raises(ValueError, match="shape mismatch"):
        gt.triplet_loss(a, p, jnp.zeros(4).at[0].set(1.0))
    with pytest.raises(ValueError, match="unit vectors"):
        gt.triplet_loss(2.0 * a, p, n)
    with pytest.raises(ValueError, match="non-finite"):
        gt.triplet_loss(a.at[0].set(jnp.nan), p, n)
    with pytest.raises(TypeError, match="floating"):
        gt.triplet_loss(jnp.asarray([1, 0, 0]), p, n)
    with pytest.raises(ValueError, match="pair"):
        gt.gradient_angles(a, p, n, distances=("chord_sq",))
    X = jnp.stack([a, p, n])
    with pytest.raises(TypeError, match="integer"):
        gt.batch_loss(X, np.array([[0.0, 1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"outside \[0, 2\]"):
        gt.batch_loss(X, np.array([[0, 1, 3]]))
    with pytest.raises(ValueError, match=r"outside"):
        gt.batch_loss(X, np.array([[0, 1, -1]]))
    with pytest.raises(ValueError, match=r"\(k, 3\)"):
        gt.batch_loss(X, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\(n_points, d\)"):
        gt.batch_loss(X[None], np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="mask"):
        gt.batch_loss(X, np.array([[0, 1, 2]]), mask=np.array([True, False]))
