r"""Exact triplet statistics of one labeled point set, from its angle matrix.

Everything here needs only the angle matrix :math:`\Theta` of the (unit) points, plus the
points themselves for the batch gradient. Counts never materialise the
:math:`n(n-1)^2` candidate triplets of ``batch_all``: per anchor :math:`a` with positives
:math:`P(a)` and negatives :math:`N(a)`, the triplets active under a hinge,
:math:`g(\theta_{an}) < g(\theta_{ap}) + m`, are for each positive a *prefix* of the
negatives sorted by angle (:math:`g` is increasing), so one sort and one
``searchsorted`` per anchor and distance count them, and two such prefixes intersect in
the shorter one. Cost :math:`O(n^2 \log n)` time, :math:`O(n)` extra memory per anchor.

The other strategies follow :func:`geotrip.mine_triplets` exactly (same rules, same
tie-breaking by lowest index; ``random`` draws from NumPy, not JAX), anchor by anchor,
without the :math:`(n(n-1), n)` intermediate that makes ``mine_triplets`` quadratic in
memory per pair; the tests check the two agree.

The batch gradient of the summed hinge loss :math:`L = \sum_t h(g(\theta_{a_tp_t}) -
g(\theta_{a_tn_t}) + m)` is written through pair coefficients: :math:`L` depends on the
pairs' angles only, :math:`\partial L/\partial \theta_{ij} = C_{ij}` with
:math:`C_{ap} \mathrel{+}= h'\,g'(\theta_{ap})` and :math:`C_{an} \mathrel{-}= h'\,g'(\theta_{an})`,
and the Riemannian gradient of :math:`\theta_{ij}` at :math:`x_i` is
:math:`-(x_j - \cos\theta_{ij}\,x_i)/\sin\theta_{ij}` (0 at :math:`\theta \in \{0, \pi\}`, the
convention of :mod:`geotrip.core`). With :math:`S = C + C^\top` and
:math:`W = S / \sin\Theta`:

.. math:: G = -W X + \operatorname{diag}\big((W \circ \cos\Theta)\,\mathbf 1\big)\, X,

:math:`O(n^2 d)` for any number of triplets (tested against
:func:`geotrip.batch_gradient_angle`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "angle_matrix",
    "Loss",
    "loss_matrices",
    "strategy_stats",
    "StrategyAccumulator",
    "map_at_r_from_angles",
]


def angle_matrix(U: np.ndarray) -> np.ndarray:
    r"""Angles :math:`\Theta_{ij}` of unit rows, float64, diagonal exactly 0.

    From the float64 Gram matrix with Kahan's form
    :math:`\theta = 2\operatorname{atan2}(\sqrt{2 - 2c}, \sqrt{2 + 2c})`: the absolute error
    is about :math:`10^{-8}` near 0 and :math:`\pi` (float64 cancellation in :math:`2 - 2c`),
    far below the float32 resolution of typical embeddings.
    """
    U = np.asarray(U, dtype=np.float64)
    c = U @ U.T  # in-place from here on: two n x n buffers at most
    np.clip(c, -1.0, 1.0, out=c)
    theta = np.multiply(c, -2.0)
    theta += 2.0
    np.maximum(theta, 0.0, out=theta)
    np.sqrt(theta, out=theta)
    c *= 2.0
    c += 2.0
    np.sqrt(c, out=c)
    np.arctan2(theta, c, out=theta)
    theta *= 2.0
    np.fill_diagonal(theta, 0.0)
    return theta


@dataclass(frozen=True)
class Loss:
    """A hinge triplet loss: profile ``g``, weight ``g'`` (NumPy callables) and margin."""

    name: str
    g: object
    dg: object
    margin: float

    @classmethod
    def of(cls, dist, margin: float) -> Loss:
        """From a :class:`geotrip.Distance`, evaluated in float64 whatever JAX's x64 flag."""
        g, dg = _jitted(dist.profile), _jitted(dist.weight)
        return cls(dist.name, g, dg, float(margin))


def _jitted(fn):
    import jax

    jfn = jax.jit(fn)

    def call(t):
        with _x64():
            return np.asarray(jfn(np.asarray(t, dtype=np.float64)), dtype=np.float64)

    return call


def _x64():
    import contextlib

    import jax

    ctx = getattr(jax, "enable_x64", None)
    return ctx(True) if ctx is not None else contextlib.nullcontext()


def loss_matrices(theta: np.ndarray, losses: dict) -> dict:
    """``{key: (g(Theta), g'(Theta))}`` for each loss, float64."""
    return {k: (L.g(theta), L.dg(theta)) for k, L in losses.items()}


def _explicit_triplets(D, codes, strategy, m: float, rng) -> np.ndarray:
    """(k, 3) int64 valid triplets of a non-``batch_all`` strategy, as ``mine_triplets``.

    ``D``: the ranking distance matrix; ``m``: its margin (``semihard``, ``easy``)."""
    n = D.shape[0]
    out = []
    idx = np.arange(n)
    for a in range(n):
        same = codes == codes[a]
        P = idx[same & (idx != a)]
        N = idx[~same]
        if P.size == 0 or N.size == 0:
            continue
        Dp, Dn = D[a, P], D[a, N]
        hard = N[np.argmin(Dn)]
        if strategy == "batch_hard":
            out.append(np.array([[a, P[np.argmax(Dp)], hard]]))
            continue
        A = np.full(P.size, a)
        if strategy == "hardest_negative":
            q = np.full(P.size, hard)
        elif strategy == "semihard":
            order = np.argsort(Dn, kind="stable")
            Ds = Dn[order]
            i = np.searchsorted(Ds, Dp, side="right")
            ok = i < Ds.size
            ok[ok] = Ds[i[ok]] < Dp[ok] + m
            q = np.where(ok, N[order[np.minimum(i, Ds.size - 1)]], hard)
        elif strategy == "easy":
            j = np.argmax(Dn)
            keep = Dn[j] >= Dp + m
            A, q, P = A[keep], np.full(int(keep.sum()), N[j]), P[keep]
        elif strategy == "random":
            q = N[rng.integers(0, N.size, size=P.size)]
        else:
            raise ValueError(f"unknown strategy {strategy!r}")
        out.append(np.stack([A, P, q], axis=1))
    if not out:
        return np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(out).astype(np.int64)


def _batch_gradient(X, theta, C) -> np.ndarray:
    S = C + C.T
    s = np.sin(theta)
    W = np.divide(S, s, out=np.zeros_like(S), where=s > 0)
    return -W @ X + (W * np.cos(theta)).sum(axis=1)[:, None] * X


def _vec_angle(u, v) -> float:
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return float("nan")
    u, v = u / nu, v / nv
    return float(2.0 * np.arctan2(np.linalg.norm(u - v), np.linalg.norm(u + v)))


def strategy_stats(X, theta, codes, strategy, losses, mats, *, rng, sample: int):
    """Exact counts of one strategy on one point set, its batch gradients, and a triplet sample.

    Args:
      X: unit rows ``(n, d)`` float64; theta: their angle matrix; codes: int labels.
      strategy: a name of :data:`geotrip.MINING_STRATEGIES`.
      losses: ``{"A": Loss, "B_same_number": Loss, "B_matched": Loss}``; the first one
        (the user's loss) ranks the candidates and gives the margin of the miners.
      mats: :func:`loss_matrices` of ``theta`` and ``losses``.
      rng: ``numpy.random.Generator`` (``random`` mining and the sample).
      sample: at most this many valid triplets, drawn uniformly, are returned.

    Returns:
      dict: ``count``, ``active`` ``{key: n}``, ``one_only`` ``{"same_number": n,
      "matched": n}``, ``batch_angle`` ``{"same_number": rad, "matched": rad}`` and
      ``sample`` (an int64 ``(s, 3)`` array of triplets).
    """
    keys = list(losses)
    active = dict.fromkeys(keys, 0)
    inter = dict.fromkeys(keys, 0)
    C = {k: np.zeros_like(theta) for k in keys}
    if strategy == "batch_all":
        n = theta.shape[0]
        idx = np.arange(n)
        count = 0
        weights = np.zeros(n)
        for a in range(n):
            same = codes == codes[a]
            P = idx[same & (idx != a)]
            N = idx[~same]
            if P.size == 0 or N.size == 0:
                continue
            count += P.size * N.size
            weights[a] = P.size * N.size
            cnt = {}
            for k in keys:
                gm, dgm = mats[k]
                vP, gN = gm[a, P] + losses[k].margin, gm[a, N]
                cnt[k] = np.searchsorted(np.sort(gN), vP, side="left")
                active[k] += int(cnt[k].sum())
                C[k][a, P] += dgm[a, P] * cnt[k]
                per_n = P.size - np.searchsorted(np.sort(vP), gN, side="right")
                C[k][a, N] -= dgm[a, N] * per_n
            for k in keys:
                inter[k] += int(np.minimum(cnt[keys[0]], cnt[k]).sum())
        s = min(sample, count)
        if s and count <= sample:  # every valid triplet
            trip = np.array(
                [
                    (a, p, q)
                    for a in np.flatnonzero(weights)
                    for p in idx[(codes == codes[a]) & (idx != a)]
                    for q in idx[codes != codes[a]]
                ],
                dtype=np.int64,
            )
        elif s:  # uniform over valid triplets, with replacement
            anchors = rng.choice(n, size=s, p=weights / weights.sum())
            rows = []
            for a, c in zip(*np.unique(anchors, return_counts=True), strict=True):
                same = codes == codes[a]
                P = idx[same & (idx != a)]
                N = idx[~same]
                rows.append(
                    np.stack(
                        [
                            np.full(c, a),
                            P[rng.integers(0, P.size, c)],
                            N[rng.integers(0, N.size, c)],
                        ],
                        axis=1,
                    )
                )
            trip = np.concatenate(rows).astype(np.int64)
        else:
            trip = np.zeros((0, 3), dtype=np.int64)
    else:
        T = _explicit_triplets(mats[keys[0]][0], codes, strategy, losses[keys[0]].margin, rng)
        count = T.shape[0]
        ap, an = (T[:, 0], T[:, 1]), (T[:, 0], T[:, 2])
        acts = {}
        for k in keys:
            gm, dgm = mats[k]
            acts[k] = gm[an] < gm[ap] + losses[k].margin
            active[k] = int(acts[k].sum())
            inter[k] = int((acts[k] & acts[keys[0]]).sum())
            w = acts[k].astype(np.float64)
            np.add.at(C[k], ap, w * dgm[ap])
            np.add.at(C[k], an, -w * dgm[an])
        trip = T if count <= sample else T[np.sort(rng.choice(count, size=sample, replace=False))]
    G = {k: _batch_gradient(X, theta, C[k]) for k in keys}
    a_key = keys[0]
    one_only, batch_angle = {}, {}
    for k in keys[1:]:
        tag = k.removeprefix("B_")
        one_only[tag] = active[a_key] + active[k] - 2 * inter[k]
        batch_angle[tag] = _vec_angle(G[a_key].ravel(), G[k].ravel())
    return {
        "count": count,
        "active": active,
        "one_only": one_only,
        "batch_angle": batch_angle,
        "sample": trip,
    }


@dataclass
class StrategyAccumulator:
    """Sums counts over point sets (batches) and collects per-triplet samples."""

    count: int = 0
    active: dict = field(default_factory=dict)
    one_only: dict = field(default_factory=dict)
    batch_angles: dict = field(default_factory=dict)
    per_triplet: dict = field(default_factory=dict)

    def add(self, stats: dict, per_triplet: dict) -> None:
        self.count += stats["count"]
        for k, v in stats["active"].items():
            self.active[k] = self.active.get(k, 0) + v
        for k, v in stats["one_only"].items():
            self.one_only[k] = self.one_only.get(k, 0) + v
        for k, v in stats["batch_angle"].items():
            self.batch_angles.setdefault(k, []).append(v)
        for k, v in per_triplet.items():
            self.per_triplet.setdefault(k, []).append(np.asarray(v, dtype=np.float64))

    def arrays(self) -> dict:
        return {k: np.concatenate(v) for k, v in self.per_triplet.items()}


def map_at_r_from_angles(theta: np.ndarray, codes: np.ndarray, *, chunk: int = 512) -> float:
    r"""MAP@R (Musgrave et al. 2020) from an angle matrix, leave-one-out.

    For query :math:`i` with :math:`R_i` other points of its class, rank the other points
    by angle (ties: lowest index first) and average
    :math:`\frac{1}{R_i}\sum_{k \le R_i} \mathrm{rel}_k\, P@k`. Queries without another
    point of their class are skipped; NaN if none remains.
    """
    n = theta.shape[0]
    codes = np.asarray(codes)
    class_size = np.bincount(codes)[codes]
    R = class_size - 1
    total, used = 0.0, 0
    for s in range(0, n, chunk):
        rows = np.arange(s, min(n, s + chunk))
        t = theta[rows].copy()
        t[np.arange(rows.size), rows] = np.inf  # the query itself goes last
        order = np.argsort(t, axis=1, kind="stable")
        rel = codes[order] == codes[rows][:, None]
        r = R[rows]
        k = np.arange(1, n + 1)[None, :]
        within = k <= r[:, None]
        hits = np.cumsum(rel, axis=1)
        prec = np.where(rel & within, hits / k, 0.0)
        ok = r > 0
        total += float((prec.sum(axis=1)[ok] / r[ok]).sum())
        used += int(ok.sum())
    return total / used if used else float("nan")
