"""Online mining against a brute-force NumPy reference, jit, static shapes, distance dependence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import geotrip as gt

DIST_NP = {
    "chord_sq": lambda t: 2 - 2 * np.cos(t),
    "chord": lambda t: 2 * np.sin(t / 2),
    "geodesic": lambda t: t,
    "geodesic_sq": lambda t: t * t,
    "cosine": lambda t: 1 - np.cos(t),
}


def _np_dist(X, name):
    X = np.asarray(X, np.float64)
    t = np.arccos(np.clip(X @ X.T, -1, 1))
    np.fill_diagonal(t, 0.0)
    return DIST_NP[name](t)


def brute_force(X, y, strategy, name, margin):
    """Reference miner written with Python loops; returns {(a, p): n} or list of triplets."""
    D = _np_dist(X, name)
    y = np.asarray(y)
    n = len(y)
    out = []
    if strategy == "batch_hard":
        for a in range(n):
            P = [j for j in range(n) if j != a and y[j] == y[a]]
            N = [j for j in range(n) if y[j] != y[a]]
            if P and N:
                out.append((a, max(P, key=lambda j: D[a, j]), min(N, key=lambda j: D[a, j])))
        return out
    if strategy == "batch_all":
        return [
            (a, p, q)
            for a in range(n)
            for p in range(n)
            for q in range(n)
            if p != a and y[p] == y[a] and y[q] != y[a]
        ]
    for a in range(n):
        for p in range(n):
            if p == a or y[p] != y[a]:
                continue
            N = [j for j in range(n) if y[j] != y[a]]
            if not N:
                continue
            hardest = min(N, key=lambda j: D[a, j])
            if strategy == "hardest_negative":
                out.append((a, p, hardest))
            elif strategy == "semihard":
                band = [j for j in N if D[a, p] < D[a, j] < D[a, p] + margin]
                out.append((a, p, min(band, key=lambda j: D[a, j]) if band else hardest))
            elif strategy == "easy":
                far = max(N, key=lambda j: D[a, j])
                if D[a, far] >= D[a, p] + margin:
                    out.append((a, p, far))
    return out


def _batch(seed, n_classes=4, per_class=4, dim=6, kappa=8.0):
    return gt.clustered_batch(
        jax.random.key(seed), n_classes=n_classes, per_class=per_class, dim=dim, concentration=kappa
    )


@pytest.mark.parametrize(
    "strategy", ["batch_all", "batch_hard", "semihard", "hardest_negative", "easy"]
)
@pytest.mark.parametrize("name", ["chord_sq", "geodesic"])
def test_against_brute_force(strategy, name):
    margin = 0.3
    for seed in range(2):
        X, y = _batch(seed)
        t, ok = gt.mine_triplets(X, y, strategy=strategy, distance=name, margin=margin)
        assert t.shape == (gt.num_mined(X.shape[0], strategy), 3) and t.dtype == jnp.int32
        assert ok.shape == (t.shape[0],) and ok.dtype == jnp.bool_
        got = sorted(map(tuple, np.asarray(t)[np.asarray(ok)].tolist()))
        ref = sorted(brute_force(X, y, strategy, name, margin))
        assert got == ref
        # placeholders are still in range, so batch_loss accepts them
        assert np.asarray(t).min() >= 0 and np.asarray(t).max() < X.shape[0]


def test_random_negatives_are_valid_and_cover():
    X, y = _batch(3)
    t, ok = gt.mine_triplets(X, y, strategy="random", key=jax.random.key(0))
    t, ok = np.asarray(t), np.asarray(ok)
    y = np.asarray(y)
    assert ok.sum() == sum(1 for a in range(16) for p in range(16) if p != a and y[p] == y[a])
    v = t[ok]
    assert (
        np.all(y[v[:, 0]] == y[v[:, 1]])
        and np.all(y[v[:, 0]] != y[v[:, 2]])
        and np.all(v[:, 0] != v[:, 1])
    )
    # every negative of anchor 0's class gets picked at some point over a few keys
    seen = set()
    for s in range(40):
        t2, ok2 = gt.mine_triplets(X, y, strategy="random", key=jax.random.key(s))
        seen |= set(np.asarray(t2)[np.asarray(ok2) & (np.asarray(t2)[:, 0] == 0), 2].tolist())
    assert seen == set(np.flatnonzero(y != y[0]).tolist())
    t3, _ = gt.mine_triplets(X, y, strategy="random", key=jax.random.key(0))
    np.testing.assert_array_equal(t3, t)  # deterministic given the key


def test_jit_static_shapes_and_loss():
    X, y = _batch(1)

    @jax.jit
    def f(X, y, key):
        t, ok = gt.mine_triplets(
            X, y, strategy="semihard", distance="geodesic", margin=0.1, key=key
        )
        return gt.batch_loss(X, t, mask=ok, reduction="mean", distance="geodesic", margin=0.1)

    val = f(X, y, jax.random.key(0))
    t, ok = gt.mine_triplets(X, y, strategy="semihard", distance="geodesic", margin=0.1)
    np.testing.assert_allclose(
        val, gt.batch_loss(X, t, mask=ok, reduction="mean", distance="geodesic", margin=0.1)
    )
    # same k for a batch with a different label pattern
    y2 = jnp.zeros_like(y)
    t2, ok2 = gt.mine_triplets(X, y2, strategy="batch_hard")
    assert t2.shape == (16, 3) and not bool(ok2.any())  # no negatives anywhere
    assert float(gt.batch_loss(X, t2, mask=ok2, reduction="mean")) == 0.0


def test_float32_kept():
    X, y = _batch(0)
    X32 = X.astype(jnp.float32)
    t, ok = gt.mine_triplets(X32, y, strategy="random", key=jax.random.key(1))
    assert t.dtype == jnp.int32


def test_rankings_agree_margins_do_not():
    """Hardness rankings are the same for every monotone distance; 'inside the margin' is not."""
    X, y = _batch(5, n_classes=4, per_class=4, dim=6, kappa=6.0)
    for strategy in ("batch_hard", "hardest_negative", "batch_all"):
        ref = gt.mine_triplets(X, y, strategy=strategy, distance="chord_sq")
        for name in ("chord", "geodesic", "geodesic_sq", "cosine"):
            got = gt.mine_triplets(X, y, strategy=strategy, distance=name)
            np.testing.assert_array_equal(got[0], ref[0])
            np.testing.assert_array_equal(got[1], ref[1])
    # semi-hard with the same *number* 0.2 in different units selects different triplets
    sh_c = gt.mine_triplets(X, y, strategy="semihard", distance="chord_sq", margin=0.2)
    sh_g = gt.mine_triplets(X, y, strategy="semihard", distance="geodesic", margin=0.2)
    assert np.any(np.asarray(sh_c[0]) != np.asarray(sh_g[0]))
    # and so does the hinge's active set on the same triplets
    t, ok = gt.mine_triplets(X, y, strategy="batch_all")
    lc = gt.batch_loss(X, t, distance="chord_sq", margin=0.2, reduction="none", mask=ok)
    lg = gt.batch_loss(X, t, distance="geodesic", margin=0.2, reduction="none", mask=ok)
    assert np.any((np.asarray(lc) > 0) != (np.asarray(lg) > 0))


def test_errors():
    X, y = _batch(0)
    with pytest.raises(ValueError, match="batch_all, batch_hard, semihard"):
        gt.mine_triplets(X, y, strategy="hard")
    with pytest.raises(ValueError, match="requires a PRNG key"):
        gt.mine_triplets(X, y, strategy="random")
    with pytest.raises(TypeError, match="integer"):
        gt.mine_triplets(X, y.astype(jnp.float64), strategy="batch_hard")
    with pytest.raises(ValueError, match="labels must have shape"):
        gt.mine_triplets(X, y[:-1], strategy="batch_hard")
    with pytest.raises(ValueError, match="unit vectors"):
        gt.mine_triplets(2 * X, y, strategy="batch_hard")
    with pytest.raises(ValueError, match="unknown distance"):
        gt.mine_triplets(X, y, strategy="batch_hard", distance="manhattan")
    assert gt.MINING_STRATEGIES == (
        "batch_all",
        "batch_hard",
        "semihard",
        "hardest_negative",
        "easy",
        "random",
    )
