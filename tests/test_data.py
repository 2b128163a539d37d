"""Synthetic clusters, the scikit-learn digits loader, splits and PK batches."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import geotrip as gt


def test_make_clusters_shapes_and_determinism():
    x, y = gt.make_clusters(jax.random.key(0), n_classes=5, n_per_class=30, dim=7, noise=0.5)
    assert x.shape == (150, 7) and y.shape == (150,) and y.dtype == jnp.int32
    np.testing.assert_array_equal(np.bincount(np.asarray(y)), [30] * 5)
    x2, y2 = gt.make_clusters(jax.random.key(0), n_classes=5, n_per_class=30, dim=7, noise=0.5)
    np.testing.assert_array_equal(x, x2)
    # noise 0: every point sits on its class mean
    x0, y0 = gt.make_clusters(jax.random.key(1), n_classes=3, n_per_class=4, dim=2, noise=0.0)
    for c in range(3):
        assert np.ptp(np.asarray(x0)[np.asarray(y0) == c], axis=0).max() == 0


def test_make_clusters_label_noise():
    kw = dict(n_classes=4, n_per_class=2500, dim=3, noise=0.1)
    _, clean = gt.make_clusters(jax.random.key(2), **kw)
    _, noisy = gt.make_clusters(jax.random.key(2), label_noise=0.2, **kw)
    flipped = np.asarray(clean) != np.asarray(noisy)
    assert abs(flipped.mean() - 0.2) < 0.02  # every flip goes to a different class
    assert np.all((np.asarray(noisy) >= 0) & (np.asarray(noisy) < 4))
    with pytest.raises(ValueError, match="label_noise"):
        gt.make_clusters(jax.random.key(0), label_noise=1.5)
    with pytest.raises(ValueError, match="n_classes"):
        gt.make_clusters(jax.random.key(0), n_classes=1)


def test_load_digits_matches_sklearn():
    sk = pytest.importorskip("sklearn.datasets")
    x, y = gt.load_digits()
    raw = sk.load_digits()
    assert x.shape == (1797, 64) and y.shape == (1797,)
    np.testing.assert_array_equal(np.asarray(y), raw.target)
    np.testing.assert_allclose(np.asarray(x).mean(0), 0, atol=1e-12)
    sd = raw.data.std(0)
    np.testing.assert_allclose(
        np.asarray(x) * np.where(sd > 0, sd, 1) + raw.data.mean(0), raw.data, atol=1e-9
    )
    xr, _ = gt.load_digits(standardize=False, dtype=jnp.float32)
    assert xr.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(xr), raw.data.astype(np.float32))


def test_load_digits_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"geotrip\[data\]"):
        gt.load_digits()


def test_stratified_split():
    y = np.repeat(np.arange(4), [10, 3, 7, 2]).astype(np.int32)
    tr, te = gt.stratified_split(jax.random.key(0), y, test_fraction=0.3)
    assert len(np.intersect1d(tr, te)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(len(y)))
    for c in range(4):
        assert np.any(y[tr] == c) and np.any(y[te] == c)
    with pytest.raises(ValueError, match="test_fraction"):
        gt.stratified_split(jax.random.key(0), y, test_fraction=1.0)


def test_sample_pk():
    y = np.repeat(np.arange(6), [5, 9, 4, 6, 4, 8]).astype(np.int32)
    classes, table, counts = gt.class_table(y)
    f = jax.jit(lambda k: gt.sample_pk(k, table, counts, p=3, k=4))
    seen = set()
    for s in range(20):
        idx = np.asarray(f(jax.random.key(s)))
        assert idx.shape == (12,) and idx.min() >= 0
        groups = idx.reshape(3, 4)
        labs = y[groups]
        assert np.all(labs == labs[:, :1])  # k points of one class per group
        assert len(set(labs[:, 0])) == 3  # p distinct classes
        assert all(len(set(g)) == 4 for g in groups)  # without replacement
        seen |= set(idx.tolist())
    assert len(seen) > 25
    with pytest.raises(ValueError, match="at least k"):
        gt.sample_pk(jax.random.key(0), table, counts, p=2, k=5)
