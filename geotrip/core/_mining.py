r"""Online triplet mining from a labeled batch of unit embeddings.

Every miner takes a batch ``X`` of shape ``(n, d)`` (unit vectors) with integer
labels ``(n,)`` and returns index triplets ``(k, 3)`` of (anchor, positive,
negative) rows with a boolean validity mask ``(k,)``. The number of triplets
``k`` depends only on ``n`` and the strategy, never on the labels or the values,
so every miner works under ``jit`` (with ``strategy`` and ``distance`` static).
Invalid rows (no positive or no valid negative for that anchor/pair) hold a
harmless in-range triplet and ``valid = False``; pass the mask on, as in
``batch_loss(X, t, mask=ok, reduction="mean")`` (example in :func:`mine_triplets`).

With :math:`D_{ij} = g(\theta_{ij})` the pairwise distance of the chosen family
member, :math:`P(a) = \{j \ne a: y_j = y_a\}` the positives and
:math:`N(a) = \{j: y_j \ne y_a\}` the negatives of anchor :math:`a`:

==================== ======== ==========================================================
strategy             k        triplets
==================== ======== ==========================================================
``batch_all``        n(n-1)²  every :math:`(a, p, n)` with :math:`p \in P(a)`, :math:`n \in N(a)`
``batch_hard``       n        per anchor: :math:`\arg\max_{P(a)} D_{a\cdot}` and
                              :math:`\arg\min_{N(a)} D_{a\cdot}`
``semihard``         n(n-1)   per pair :math:`(a, p)`: the closest negative in the semi-hard band
                              :math:`D_{ap} < D_{an} < D_{ap} + m`; if the band is empty, the
                              hardest negative :math:`\arg\min_{N(a)} D_{a\cdot}`
``hardest_negative`` n(n-1)   per pair :math:`(a, p)`: :math:`\arg\min_{N(a)} D_{a\cdot}`
``easy``             n(n-1)   per pair :math:`(a, p)`: the farthest negative; valid only when
                              it is outside the margin, :math:`D_{an} \ge D_{ap} + m`
``random``           n(n-1)   per pair :math:`(a, p)`: a uniformly random negative (needs ``key``)
==================== ======== ==========================================================

Ties are broken by the lowest row index. Pairs are enumerated as
``(a, p)`` for ``a`` in ``range(n)`` and ``p`` over the other rows in increasing
order (``p = j + (j >= a)`` for ``j`` in ``range(n - 1)``).

**Rankings versus margins.** For distances that are increasing functions of the
angle (the whole built-in family), ``batch_hard``, ``hardest_negative``,
``batch_all`` and ``random`` select the same triplets whatever the distance:
they only compare distances from one anchor. ``semihard`` and ``easy`` compare a
difference of distances to a margin, so they (like the hinge's active set)
depend on the distance *and* on the margin's units: a ``chord_sq`` margin of 0.2
and a ``geodesic`` margin of 0.2 select different triplets (see
:mod:`geotrip.sweeps._matching` for the rules that convert margins).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import check_margin, check_points
from ._distances import Distance, pairwise_distances
from ._distances import distance as get_distance

__all__ = ["MINING_STRATEGIES", "mine_triplets", "num_mined"]

Array = jax.Array

MINING_STRATEGIES = ("batch_all", "batch_hard", "semihard", "hardest_negative", "easy", "random")


def num_mined(n: int, strategy: str) -> int:
    """The static number of triplets ``k`` a strategy returns for a batch of ``n`` points."""
    _check_strategy(strategy)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer (the batch size), got {n!r}")
    if strategy == "batch_all":
        return n * (n - 1) * (n - 1)
    if strategy == "batch_hard":
        return n
    return n * (n - 1)


def _check_strategy(strategy):
    if strategy not in MINING_STRATEGIES:
        raise ValueError(
            f"unknown mining strategy {strategy!r}; valid: {', '.join(MINING_STRATEGIES)}"
        )


def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Static (anchor, other) index arrays of length n(n-1), others in increasing order."""
    a = np.repeat(np.arange(n), n - 1)
    j = np.tile(np.arange(n - 1), n)
    return a.astype(np.int32), (j + (j >= a)).astype(np.int32)


def _masked_argmin(values, mask):
    big = jnp.full_like(values, jnp.inf)
    return jnp.argmin(jnp.where(mask, values, big), axis=-1).astype(jnp.int32)


def _masked_argmax(values, mask):
    small = jnp.full_like(values, -jnp.inf)
    return jnp.argmax(jnp.where(mask, values, small), axis=-1).astype(jnp.int32)


@partial(jax.jit, static_argnames=("strategy", "dist"))
def _mine(X, labels, margin, key, *, strategy: str, dist: Distance):
    n = X.shape[0]
    D = pairwise_distances(X, distance=dist)
    same = labels[:, None] == labels[None, :]
    eye = jnp.eye(n, dtype=bool)
    pos = same & ~eye
    neg = ~same
    if strategy == "batch_hard":
        anchors = jnp.arange(n, dtype=jnp.int32)
        p = _masked_argmax(D, pos)
        q = _masked_argmin(D, neg)
        valid = jnp.any(pos, axis=1) & jnp.any(neg, axis=1)
        return jnp.stack([anchors, p, q], axis=1), valid
    a_idx, o_idx = _pairs(n)
    a_idx, o_idx = jnp.asarray(a_idx), jnp.asarray(o_idx)
    pair_ok = pos[a_idx, o_idx]
    if strategy == "batch_all":
        # every (a, p, q) with p != a and q != a: k = n (n-1)^2
        k_pairs = a_idx.shape[0]
        aa = jnp.repeat(a_idx, n - 1)
        pp = jnp.repeat(o_idx, n - 1)
        qq = o_idx.reshape(n, n - 1)[aa, jnp.tile(jnp.arange(n - 1), k_pairs)]
        valid = pos[aa, pp] & neg[aa, qq]
        return jnp.stack([aa, pp, qq], axis=1).astype(jnp.int32), valid
    Dan = D[a_idx]  # (n(n-1), n): distances from each pair's anchor
    Dap = D[a_idx, o_idx][:, None]
    negs = neg[a_idx]
    has_neg = jnp.any(negs, axis=1)
    hardest = _masked_argmin(Dan, negs)
    if strategy == "hardest_negative":
        q, ok = hardest, has_neg
    elif strategy == "semihard":
        band = negs & (Dan > Dap) & (Dan < Dap + margin)
        q = jnp.where(jnp.any(band, axis=1), _masked_argmin(Dan, band), hardest)
        ok = has_neg
    elif strategy == "easy":
        q = _masked_argmax(Dan, negs)
        far = jnp.take_along_axis(Dan, q[:, None], axis=1)[:, 0]
        ok = has_neg & (far >= Dap[:, 0] + margin)
    elif strategy == "random":
        g = jax.random.gumbel(key, Dan.shape, dtype=X.dtype)
        q = _masked_argmax(g, negs)
        ok = has_neg
    else:  # pragma: no cover - checked by the caller
        raise ValueError(strategy)
    return jnp.stack([a_idx, o_idx, q], axis=1), pair_ok & ok


def mine_triplets(
    X: Array,
    labels: Array,
    *,
    strategy: str,
    distance: str | Distance = "chord_sq",
    margin: float | Array = 0.2,
    key: Array | None = None,
) -> tuple[Array, Array]:
    r"""Mine index triplets from a labeled batch (see the module docstring for each strategy).

    Args:
      X: unit embeddings, shape ``(n, d)``, float32 or float64.
      labels: integer class labels, shape ``(n,)``.
      strategy: one of :data:`MINING_STRATEGIES` (static under ``jit``).
      distance: the distance that ranks candidates, a name in
        :data:`geotrip.DISTANCES` or a :class:`geotrip.Distance` (static).
      margin: :math:`m` in the units of ``distance``, a finite real number; used by
        ``"semihard"`` and ``"easy"`` only.
      key: PRNG key; required by ``"random"``, ignored otherwise.

    Returns:
      ``(triplets, valid)``: ``int32`` array ``(k, 3)`` of (anchor, positive,
      negative) row indices and a ``bool`` array ``(k,)``; ``k = num_mined(n, strategy)``.
      Rows with ``valid = False`` are placeholders to be masked.

    Raises:
      ValueError: unknown strategy (the message lists the valid ones), ``"random"``
        without a key, bad shapes, a non-finite margin, or non-finite or non-unit rows
        (checked on concrete values; under ``jit``, :func:`geotrip.checked`).
      TypeError: non-integer labels, a margin that is not a real number.

    >>> import jax, geotrip as gt
    >>> X, y = gt.clustered_batch(
    ...     jax.random.key(0), n_classes=3, per_class=2, dim=16, concentration=20.0)
    >>> t, valid = gt.mine_triplets(X, y, strategy="batch_hard", distance="chord_sq", margin=0.2)
    >>> t.shape, valid.shape, gt.num_mined(6, "batch_hard")
    ((6, 3), (6,), 6)

    >>> round(float(gt.batch_loss(X, t, mask=valid, reduction="mean")), 6)
    0.226889
    """
    _check_strategy(strategy)
    dist = get_distance(distance)
    X = check_points(X, "X", min_ndim=2)
    if X.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {X.shape}")
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be an integer array, got dtype {labels.dtype}")
    if labels.shape != (X.shape[0],):
        raise ValueError(
            f"labels must have shape ({X.shape[0]},) (one per row of X), got {labels.shape}"
        )
    if X.shape[0] < 2:
        raise ValueError(f"mining needs at least 2 points, got {X.shape[0]}")
    if strategy == "random":
        if key is None:
            raise ValueError('strategy "random" requires a PRNG key (key=jax.random.key(seed))')
    else:
        key = jax.random.key(0)  # unused; keeps one traced signature
    margin = jnp.asarray(check_margin(margin), dtype=X.dtype)
    return _mine(X, labels, margin, key, strategy=strategy, dist=dist)
