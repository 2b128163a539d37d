r"""Metrics of a set of embeddings on the unit sphere, and the collapse criterion.

All functions take unit vectors ``X`` of shape ``(n, d)`` (``n >= 2``), are pure,
jittable and vmappable, and keep the dtype of ``X``. Pairwise quantities use the
Gram matrix :math:`G = X X^\top` (cosines) and :math:`\|x_i - x_j\|^2 = 2 - 2G_{ij}`.

Collapse criterion (:func:`is_collapsed`): a set of embeddings is *collapsed* when

.. math:: \bar c = \frac{1}{n(n-1)}\sum_{i \ne j} x_i\cdot x_j > 0.99
          \quad\text{or}\quad \operatorname{erank}(X) < 1.5,

i.e. the points sit (on average) within about :math:`8^\circ` of each other (point
collapse), or the embedding is essentially one-dimensional (line collapse: for
three or more classes at most two clusters, :math:`\pm c`, are then separable).
The experiments apply it to held-out embeddings at the end of training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._numerics import safe_div, safe_log
from .._validate import as_float_array
from ..core._geometry import project_tangent, safe_norm

__all__ = [
    "COLLAPSE_COS",
    "COLLAPSE_RANK",
    "mean_pairwise_cosine",
    "effective_rank",
    "alignment",
    "uniformity",
    "recall_at_1",
    "active_share",
    "riemannian_grad_norm",
    "is_collapsed",
    "embedding_metrics",
]

Array = jax.Array

COLLAPSE_COS = 0.99
"""Threshold on the mean pairwise cosine above which embeddings count as collapsed."""
COLLAPSE_RANK = 1.5
"""Threshold on the effective rank below which embeddings count as collapsed."""


def _off_diag(n, dtype):
    return 1 - jnp.eye(n, dtype=dtype)


def mean_pairwise_cosine(X: Array) -> Array:
    r"""Mean cosine over ordered pairs :math:`i \neq j`.

    .. math:: \bar c = \frac{\|\sum_i x_i\|^2 - \sum_i \|x_i\|^2}{n(n-1)}

    >>> import jax.numpy as jnp, geotrip as gt
    >>> X = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    >>> round(float(gt.mean_pairwise_cosine(X)), 6)  # pairs (1,3), (3,1) have cosine 1
    0.333333
    """
    X = as_float_array(X, "X")
    n = X.shape[-2]
    s = jnp.sum(X, axis=-2)
    tot = jnp.sum(s * s, axis=-1) - jnp.sum(X * X, axis=(-2, -1))
    return tot / (n * (n - 1))


def effective_rank(X: Array) -> Array:
    r"""Effective rank (Roy & Vetterli 2007) of the uncentred matrix ``X``.

    .. math:: \operatorname{erank}(X) = \exp\Big(-\sum_k p_k \log p_k\Big), \qquad
              p_k = \sigma_k / \textstyle\sum_j \sigma_j,

    with :math:`\sigma_k` the singular values (:math:`0 \log 0 = 0`). It is 1 when all
    rows are parallel (a collapsed embedding) and :math:`\min(n, d)` for equal
    singular values. Uncentred on purpose: on the sphere a point collapse is rank 1.
    A zero matrix gives 1 by convention.

    >>> import jax.numpy as jnp, geotrip as gt
    >>> round(float(gt.effective_rank(jnp.eye(3))), 6)
    3.0
    >>> round(float(gt.effective_rank(jnp.ones((4, 3)))), 6)  # all rows parallel
    1.0
    """
    X = as_float_array(X, "X")
    s = jnp.linalg.svd(X, compute_uv=False)
    tot = jnp.sum(s, axis=-1, keepdims=True)
    p = safe_div(s, tot)
    return jnp.exp(-jnp.sum(p * safe_log(p), axis=-1))


def alignment(X: Array, labels: Array, *, alpha: float = 2.0) -> Array:
    r"""Alignment of Wang & Isola (2020): mean of :math:`\|x_i - x_j\|^\alpha` over positive pairs.

    .. math:: \mathcal L_\text{align} = \mathbb E_{i \ne j,\ y_i = y_j}\, \|x_i - x_j\|^\alpha

    (lower is better), over ordered pairs of distinct points with the same label;
    0 if there are none.
    """
    X = as_float_array(X, "X")
    n = X.shape[-2]
    G = X @ jnp.swapaxes(X, -1, -2)
    d2 = jnp.maximum(2 - 2 * G, jnp.zeros_like(G))
    pos = (labels[..., :, None] == labels[..., None, :]).astype(X.dtype) * _off_diag(n, X.dtype)
    if alpha == 2.0:
        da = d2
    else:
        # d2^(alpha/2) = exp((alpha/2) log d2), 0 at d2 = 0 (safe_log keeps the gradient finite)
        da = jnp.where(d2 > 0, jnp.exp((alpha / 2) * safe_log(d2)), jnp.zeros_like(d2))
    cnt = jnp.sum(pos, axis=(-2, -1))
    return jnp.sum(da * pos, axis=(-2, -1)) / jnp.maximum(cnt, jnp.ones_like(cnt))


def uniformity(X: Array, *, t: float = 2.0) -> Array:
    r"""Uniformity of Wang & Isola (2020): :math:`\log \mathbb E_{i \ne j} e^{-t\|x_i - x_j\|^2}`.

    Over ordered pairs of distinct points, computed with ``logsumexp`` (lower is
    more uniform; 0 for a point collapse, about :math:`-2t` for uniform points in
    high dimension).
    """
    X = as_float_array(X, "X")
    n = X.shape[-2]
    G = X @ jnp.swapaxes(X, -1, -2)
    e = -t * (2 - 2 * G)
    e = jnp.where(jnp.eye(n, dtype=bool), jnp.full_like(e, -jnp.inf), e)
    return jax.nn.logsumexp(e, axis=(-2, -1)) - jnp.log(jnp.asarray(n * (n - 1), X.dtype))


def recall_at_1(
    X: Array, labels: Array, X_ref: Array | None = None, labels_ref: Array | None = None
) -> Array:
    r"""Recall@1: share of queries whose nearest neighbour (largest cosine) has the same label.

    Without a reference set it is the leave-one-out Recall@1 within ``X`` (each point
    queries all the others), the usual protocol on a held-out set. Ties go to the
    lowest index.
    """
    X = as_float_array(X, "X")
    if X_ref is None:
        X_ref, labels_ref = X, labels
        G = X @ jnp.swapaxes(X_ref, -1, -2)
        n = X.shape[-2]
        G = jnp.where(jnp.eye(n, dtype=bool), jnp.full_like(G, -jnp.inf), G)
    else:
        G = X @ jnp.swapaxes(X_ref, -1, -2)
    nn = jnp.argmax(G, axis=-1)
    hit = jnp.take_along_axis(labels_ref, nn, axis=-1) == labels
    return jnp.mean(hit.astype(X.dtype), axis=-1)


def map_at_r(X: Array, labels: Array) -> Array:
    r"""MAP@R (Musgrave, Belongie & Lim 2020), leave-one-out within ``X`` of shape ``(n, d)``.

    For query :math:`i` with :math:`R_i` other points of its class, rank the other points
    by cosine (ties to the lowest index) and average the precision at the ranks of the
    relevant ones among the first :math:`R_i`:

    .. math:: \mathrm{MAP@R} = \frac{1}{|Q|}\sum_{i \in Q} \frac{1}{R_i}
              \sum_{k=1}^{R_i} P_i(k)\,\mathrm{rel}_i(k),

    with :math:`P_i(k)` the precision among the first :math:`k` and :math:`Q` the queries
    with :math:`R_i > 0` (0 if there are none). 1 for perfectly clustered classes.
    Jittable and vmappable (the training runner evaluates it on the held-out split).

    >>> import jax.numpy as jnp
    >>> X = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> float(map_at_r(X, jnp.array([0, 0, 1, 1])))
    1.0
    """
    X = as_float_array(X, "X")
    n = X.shape[-2]
    G = X @ jnp.swapaxes(X, -1, -2)
    G = jnp.where(jnp.eye(n, dtype=bool), jnp.full_like(G, -jnp.inf), G)
    order = jnp.argsort(-G, axis=-1, stable=True)[..., : n - 1]  # self (-inf) sorts last
    rel = (labels[order] == labels[:, None]).astype(X.dtype)
    R = jnp.sum(rel, axis=-1)  # the same-class points other than the query
    k = jnp.arange(1, n, dtype=X.dtype)
    prec = jnp.cumsum(rel, axis=-1) / k[None, :]
    within = (k[None, :] <= R[:, None]).astype(X.dtype)
    ap = safe_div(jnp.sum(prec * rel * within, axis=-1), R)
    has = (R > 0).astype(X.dtype)
    return safe_div(jnp.sum(ap * has), jnp.sum(has))


def active_share(z: Array, valid: Array) -> Array:
    r"""Share of valid triplets whose hinge is active, :math:`z > 0`.

    Args:
      z: margin values :math:`d(a,p) - d(a,n) + m`, shape ``(k,)``.
      valid: boolean mask ``(k,)`` (e.g. from the miner).

    Returns:
      :math:`\#\{z_k > 0,\ \text{valid}_k\} / \max(1, \#\text{valid})`.
    """
    v = valid.astype(z.dtype)
    cnt = jnp.sum(v)
    return jnp.sum((z > 0).astype(z.dtype) * v) / jnp.maximum(cnt, jnp.ones_like(cnt))


def riemannian_grad_norm(X: Array, G: Array) -> Array:
    r"""Frobenius norm of the Riemannian gradient over all rows.

    .. math:: \Big(\sum_i \|(I - x_i x_i^\top) g_i\|^2\Big)^{1/2}
    """
    return safe_norm(project_tangent(X, G).reshape(G.shape[:-2] + (-1,)))


def is_collapsed(
    X: Array, *, cos_threshold: float = COLLAPSE_COS, rank_threshold: float = COLLAPSE_RANK
) -> Array:
    r"""The collapse criterion: mean pairwise cosine > ``cos_threshold`` or effective rank
    < ``rank_threshold``.

    >>> import jax.numpy as jnp, geotrip as gt
    >>> bool(gt.is_collapsed(jnp.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])))
    True
    >>> bool(gt.is_collapsed(jnp.eye(3)))
    False
    """
    return (mean_pairwise_cosine(X) > cos_threshold) | (effective_rank(X) < rank_threshold)


def embedding_metrics(X: Array, labels: Array) -> dict[str, Array]:
    r"""The label-aware metrics of one embedding set, as a dict of scalars.

    Keys: ``mean_cos``, ``erank``, ``alignment``, ``uniformity``, ``recall_at_1`` and
    ``map_at_r`` (leave-one-out within ``X``), ``collapsed`` (:func:`is_collapsed`, as 0/1 in the
    dtype of ``X``).
    """
    mc = mean_pairwise_cosine(X)
    er = effective_rank(X)
    return {
        "mean_cos": mc,
        "erank": er,
        "alignment": alignment(X, labels),
        "uniformity": uniformity(X),
        "recall_at_1": recall_at_1(X, labels),
        "map_at_r": map_at_r(X, labels),
        "collapsed": ((mc > COLLAPSE_COS) | (er < COLLAPSE_RANK)).astype(X.dtype),
    }
