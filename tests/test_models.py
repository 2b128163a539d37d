"""The MLP embedding model, the initial-spread knob, and free features in a cap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import geotrip as gt


def _x(n=40, d=6, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, d)))


def test_mlp_shapes_unit_and_dtype():
    params = gt.init_mlp(jax.random.key(0), (6, 16, 16, 4))
    assert [p["w"].shape for p in params] == [(6, 16), (16, 16), (16, 4)]
    f = gt.mlp_embed(params, _x())
    assert f.shape == (40, 4)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=1e-12)
    p32 = gt.init_mlp(jax.random.key(0), (6, 8, 3), dtype=jnp.float32)
    assert gt.mlp_embed(p32, _x().astype(jnp.float32)).dtype == jnp.float32
    with pytest.raises(ValueError, match="sizes"):
        gt.init_mlp(jax.random.key(0), (6,))


def test_mlp_gradient_is_riemannian_through_normalisation():
    # d loss / d z equals (I - f f^T) dL/df / |z|
    # (checked through the last bias, whose gradient is dL/dz)
    params = gt.init_mlp(jax.random.key(1), (6, 8, 5))
    x = _x(1)[0]
    v = jnp.asarray(np.random.default_rng(5).normal(size=5))
    g = jax.grad(lambda p: jnp.sum(gt.mlp_embed(p, x) * v))(params)
    z = gt.mlp_features(params, x)
    f = z / jnp.linalg.norm(z)
    ref = (v - (f @ v) * f) / jnp.linalg.norm(z)
    np.testing.assert_allclose(g[-1]["b"], ref, rtol=1e-10)


@pytest.mark.parametrize("spread", [1e-3, 0.1, 1.0])
def test_cap_last_layer_exact_radius(spread):
    x = _x()
    params = gt.init_mlp(jax.random.key(2), (6, 16, 8))
    capped = gt.cap_last_layer(params, x, spread, key=jax.random.key(3))
    f = np.asarray(gt.mlp_embed(capped, x))
    c = np.asarray(capped[-1]["b"])
    ang = np.asarray(gt.angle(jnp.asarray(f), jnp.asarray(c)[None, :]))
    np.testing.assert_allclose(ang.max(), spread, rtol=1e-9)
    assert np.all(ang <= spread * (1 + 1e-9))
    assert np.asarray(gt.pairwise_angles(jnp.asarray(f))).max() <= 2 * spread * (1 + 1e-9)


def test_cap_last_layer_inf_is_identity_and_vmaps():
    x = _x()
    params = gt.init_mlp(jax.random.key(2), (6, 16, 8))
    same = gt.cap_last_layer(params, x, jnp.inf, key=jax.random.key(3))
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(same)):
        np.testing.assert_array_equal(a, b)
    spreads = jnp.asarray([0.01, 0.2])
    out = jax.vmap(
        lambda r: gt.mean_pairwise_cosine(
            gt.mlp_embed(gt.cap_last_layer(params, x, r, key=jax.random.key(3)), x)
        )
    )(spreads)
    assert out[0] > out[1] > 0.9


def test_init_features_cap_and_uniform():
    X = gt.init_features(jax.random.key(0), 50, 7, 0.3)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-12)
    c = gt.normalize(jnp.sum(X, axis=0))
    assert float(jnp.max(gt.pairwise_angles(X))) <= 0.6 + 1e-9
    # the same shape as X (one compilation): mean pairwise cosine of 50 uniform points in d = 7
    # has standard deviation about 1 / (7 * 1225) ** 0.5 = 0.011
    U = gt.init_features(jax.random.key(1), 50, 7, jnp.inf)
    assert abs(float(gt.mean_pairwise_cosine(U))) < 0.05  # uniform: mean cosine ~ 0
    assert float(gt.mean_pairwise_cosine(X)) > 0.9
    X32 = gt.init_features(jax.random.key(0), 50, 7, 0.1, dtype=jnp.float32)
    assert X32.dtype == jnp.float32
    del c
