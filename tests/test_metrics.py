"""Metrics of embeddings against brute-force NumPy, and the collapse criterion."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import geotrip as gt
from geotrip.train import _metrics as M


def _unit(rng, n, d):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = _unit(rng, 13, 5)
    y = rng.integers(0, 3, size=13).astype(np.int32)
    return X, y


def test_mean_pairwise_cosine(data):
    X, _ = data
    ref = np.mean([X[i] @ X[j] for i, j in itertools.permutations(range(len(X)), 2)])
    np.testing.assert_allclose(M.mean_pairwise_cosine(jnp.asarray(X)), ref, rtol=1e-12)


def test_effective_rank(data):
    X, _ = data
    s = np.linalg.svd(X, compute_uv=False)
    p = s / s.sum()
    np.testing.assert_allclose(
        M.effective_rank(jnp.asarray(X)), np.exp(-np.sum(p * np.log(p))), rtol=1e-10
    )
    # all rows equal: rank 1; orthonormal rows: full rank
    c = X[0]
    np.testing.assert_allclose(M.effective_rank(jnp.asarray(np.tile(c, (7, 1)))), 1.0, rtol=1e-9)
    np.testing.assert_allclose(M.effective_rank(jnp.eye(4, dtype=jnp.float64)), 4.0, rtol=1e-12)


def test_alignment_uniformity(data):
    X, y = data
    n = len(X)
    pos = [(i, j) for i, j in itertools.permutations(range(n), 2) if y[i] == y[j]]
    ref_al = np.mean([np.sum((X[i] - X[j]) ** 2) for i, j in pos])
    ref_al1 = np.mean([np.linalg.norm(X[i] - X[j]) for i, j in pos])
    np.testing.assert_allclose(M.alignment(jnp.asarray(X), jnp.asarray(y)), ref_al, rtol=1e-10)
    np.testing.assert_allclose(
        M.alignment(jnp.asarray(X), jnp.asarray(y), alpha=1.0), ref_al1, rtol=1e-10
    )
    ref_un = np.log(
        np.mean(
            [
                np.exp(-2 * np.sum((X[i] - X[j]) ** 2))
                for i, j in itertools.permutations(range(n), 2)
            ]
        )
    )
    np.testing.assert_allclose(M.uniformity(jnp.asarray(X)), ref_un, rtol=1e-10)
    # a point collapse has uniformity 0 (its maximum)
    np.testing.assert_allclose(M.uniformity(jnp.asarray(np.tile(X[0], (5, 1)))), 0.0, atol=1e-12)


def test_recall_at_1(data):
    X, y = data
    G = X @ X.T
    np.fill_diagonal(G, -np.inf)
    ref = np.mean(y[np.argmax(G, axis=1)] == y)
    np.testing.assert_allclose(M.recall_at_1(jnp.asarray(X), jnp.asarray(y)), ref)
    rng = np.random.default_rng(1)
    Q, yq = _unit(rng, 6, 5), rng.integers(0, 3, 6).astype(np.int32)
    ref2 = np.mean(y[np.argmax(Q @ X.T, axis=1)] == yq)
    np.testing.assert_allclose(
        M.recall_at_1(jnp.asarray(Q), jnp.asarray(yq), jnp.asarray(X), jnp.asarray(y)), ref2
    )


def test_active_share_and_grad_norm(data):
    X, _ = data
    z = jnp.asarray([0.3, -0.1, 0.0, 0.5, 2.0])
    valid = jnp.asarray([True, True, True, True, False])
    np.testing.assert_allclose(M.active_share(z, valid), 2 / 4)
    np.testing.assert_allclose(M.active_share(z, jnp.zeros(5, bool)), 0.0)
    G = np.random.default_rng(2).normal(size=X.shape)
    P = G - np.sum(X * G, axis=1, keepdims=True) * X
    np.testing.assert_allclose(
        M.riemannian_grad_norm(jnp.asarray(X), jnp.asarray(G)), np.linalg.norm(P), rtol=1e-12
    )


def test_collapse_criterion():
    rng = np.random.default_rng(3)
    c = np.array([1.0, 0, 0, 0, 0, 0])
    # point collapse: tiny cap around c
    cap = c + 1e-3 * rng.normal(size=(20, 6))
    cap /= np.linalg.norm(cap, axis=1, keepdims=True)
    assert bool(M.is_collapsed(jnp.asarray(cap)))
    # uniform points: not collapsed
    assert not bool(M.is_collapsed(jnp.asarray(_unit(rng, 20, 6))))
    # line collapse: +-c (mean cosine about 0, effective rank 1)
    line = np.concatenate([np.tile(c, (10, 1)), np.tile(-c, (10, 1))])
    assert abs(float(M.mean_pairwise_cosine(jnp.asarray(line)))) < 0.1
    assert bool(M.is_collapsed(jnp.asarray(line)))

    # threshold on the mean cosine, both sides: a ring of 12 points at angle phi around c,
    # with phi chosen (bisection, in NumPy) so that the mean pairwise cosine is the target
    def ring(phi):
        t = 2 * np.pi * np.arange(12) / 12
        v = np.stack([np.ones(12), phi * np.cos(t), phi * np.sin(t), 0 * t], axis=1)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def mean_cos(P):
        G = P @ P.T
        return (G.sum() - np.trace(G)) / (len(P) * (len(P) - 1))

    for cos_target, expect in ((0.9905, True), (0.9895, False)):
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if mean_cos(ring(mid)) > cos_target else (lo, mid)
        pts = ring(lo)
        np.testing.assert_allclose(
            float(M.mean_pairwise_cosine(jnp.asarray(pts))), cos_target, rtol=1e-9
        )
        assert bool(M.is_collapsed(jnp.asarray(pts), rank_threshold=0.0)) == expect
    assert M.COLLAPSE_COS == 0.99 and M.COLLAPSE_RANK == 1.5


def test_embedding_metrics_jit_vmap_float32(data):
    X, y = data
    Xb = jnp.asarray(np.stack([X, X[::-1]]), jnp.float32)
    out = jax.jit(jax.vmap(gt.embedding_metrics, in_axes=(0, None)))(Xb, jnp.asarray(y))
    for k, v in out.items():
        assert v.shape == (2,), k
        assert v.dtype == jnp.float32, k
    np.testing.assert_allclose(
        out["mean_cos"][0], M.mean_pairwise_cosine(jnp.asarray(X)), rtol=1e-5
    )


def _map_at_r_brute(X, y):
    G, n, aps = X @ X.T, len(y), []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        R = sum(y[j] == y[i] for j in others)
        if R == 0:
            continue
        ranked = sorted(others, key=lambda j: (-G[i, j], j))[:R]
        hits, total = 0, 0.0
        for rank, j in enumerate(ranked, 1):
            if y[j] == y[i]:
                hits += 1
                total += hits / rank
        aps.append(total / R)
    return np.mean(aps)


def test_map_at_r_matches_the_numpy_reference():
    rng = np.random.default_rng(4)
    X = gt.normalize(jnp.asarray(rng.normal(size=(25, 3))))
    y = jnp.asarray(rng.integers(0, 4, 25).astype(np.int32))
    np.testing.assert_allclose(M.map_at_r(X, y), _map_at_r_brute(np.asarray(X), np.asarray(y)))
    clustered = jnp.asarray(np.repeat(np.eye(3), 4, axis=0))
    labels = jnp.asarray(np.repeat(np.arange(3), 4).astype(np.int32))
    np.testing.assert_allclose(M.map_at_r(clustered, labels), 1.0)
