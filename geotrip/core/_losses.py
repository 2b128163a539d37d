r"""Triplet losses over sphere distances: hinge (FaceNet) and soft margin (Hermans et al.).

For a triplet of unit vectors (anchor :math:`a`, positive :math:`p`, negative :math:`n`)
and a distance :math:`d` of the family,

.. math::
   z = d(a, p) - d(a, n) + m, \qquad
   \ell_\text{hinge} = \max(0, z), \qquad \ell_\text{soft} = \log(1 + e^{z}).

References:
  Schroff, Kalenichenko, Philbin, "FaceNet", CVPR 2015 (hinge, :math:`m = 0.2`,
  ``chord_sq``). Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person
  Re-Identification", 2017 (soft margin, batch-hard mining).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._validate import check_margin, check_points, check_same_shape, check_triplets
from ._distances import Distance
from ._distances import distance as get_distance

__all__ = ["triplet_loss", "batch_loss", "hinge", "hinge_slope"]

Array = jax.Array


def hinge(z: Array, *, soft: bool = False) -> Array:
    r"""The triplet hinge :math:`\max(0, z)`, or :math:`\operatorname{softplus}(z)` with ``soft``.

    Convention: the hinge's derivative at :math:`z = 0` is 0 (the triplet is
    treated as inactive on the boundary), so gradients are finite and the active
    set is :math:`\{z > 0\}`. The softplus is evaluated stably as
    :math:`\operatorname{logaddexp}(z, 0)`. A NaN argument gives NaN (it is not
    an inactive hinge).
    """
    if soft:
        return jnp.logaddexp(z, jnp.zeros_like(z))
    return jnp.where(z <= 0, jnp.zeros_like(z), z)


def hinge_slope(z: Array, *, soft: bool = False) -> Array:
    r"""Derivative of :func:`hinge`: :math:`\mathbb 1[z > 0]`, or :math:`\sigma(z)` (``soft``).

    NaN for a NaN argument."""
    if soft:
        return jax.nn.sigmoid(z)
    slope = (z > 0).astype(z.dtype)
    return jnp.where(jnp.isnan(z), z, slope)


def _triplet_margin_value(a, p, n, dist: Distance, margin):
    return dist.ambient(a, p) - dist.ambient(a, n) + margin


def _triplet_loss(a, p, n, dist: Distance, margin, soft: bool):
    return hinge(_triplet_margin_value(a, p, n, dist, margin), soft=soft)


def check_triplet_inputs(a, p, n):
    """Validate three arrays of unit vectors of one shape ``(..., d)``."""
    a = check_points(a, "anchor a")
    p = check_points(p, "positive p")
    n = check_points(n, "negative n")
    check_same_shape(a=a, p=p, n=n)
    if not (a.dtype == p.dtype == n.dtype):
        raise TypeError(f"a, p, n must share one dtype, got {a.dtype}, {p.dtype}, {n.dtype}")
    return a, p, n


def triplet_loss(
    a: Array,
    p: Array,
    n: Array,
    *,
    distance: str | Distance = "chord_sq",
    margin: float | Array = 0.2,
    soft: bool = False,
) -> Array:
    r"""Per-triplet loss :math:`h(d(a,p) - d(a,n) + m)`.

    .. math:: \ell(a,p,n) = \max\big(0,\; d(a,p) - d(a,n) + m\big)

    or :math:`\log(1 + \exp(\cdot))` of the same with ``soft=True``. The distance is
    evaluated in its ambient form (see :mod:`geotrip.core._distances`), so ``jax.grad``
    gives the raw (Euclidean) gradient; project it with
    :func:`geotrip.project_tangent` or use :func:`geotrip.triplet_grads`.

    Singular points: finite value and gradient everywhere; at an inactive hinge
    (:math:`z \le 0`) the loss and its gradient are 0; at coincident or antipodal
    points the conventions of :func:`geotrip.angle` apply.

    Args:
      a, p, n: unit vectors of one shape ``(..., d)`` and dtype.
      distance: a name in :data:`geotrip.DISTANCES` or a :class:`geotrip.Distance`.
      margin: :math:`m`, a finite real scalar or an array broadcastable to ``(...)``.
      soft: use the soft margin :math:`\log(1+e^z)` instead of the hinge.

    Returns:
      Array of shape ``(...)``, dtype of the inputs.

    Raises:
      ValueError: on mismatched shapes, an unknown distance name, and (checked on
        concrete values; under ``jit`` see :func:`geotrip.checked`) non-finite values,
        non-unit rows or a non-finite margin.
      TypeError: a margin that is not a real number (e.g. the string ``"0.2"``).

    >>> import jax, geotrip as gt
    >>> a, p, n = gt.parametric_triplet(0.3, 0.5, 2.0, dim=8, key=jax.random.key(0))
    >>> round(float(gt.triplet_loss(a, p, n, distance="chord_sq", margin=0.2)), 6)
    0.044492

    >>> float(gt.triplet_loss(a, p, n, distance="geodesic", margin=0.1))  # 0.3 - 0.5 + 0.1 < 0
    0.0
    """
    dist = get_distance(distance)
    a, p, n = check_triplet_inputs(a, p, n)
    check_margin(margin)
    return _triplet_loss(a, p, n, dist, margin, soft)


def _gather_rows(X: Array, idx: Array) -> Array:
    n = X.shape[0]
    idx = jnp.where(idx < 0, jnp.full_like(idx, n), idx)  # negative: out of range, not wrapped
    return jnp.take(X, idx, axis=0, mode="fill", fill_value=jnp.nan)


def gather_triplets(X: Array, triplets: Array):
    """Rows ``(X[t[:,0]], X[t[:,1]], X[t[:,2]])`` of a point set for index triplets ``t``.

    An index outside ``[0, n_points)`` (possible only under a trace: concrete indices
    are checked first) gathers a row of NaN, never a clamped or wrapped row, so the
    affected losses and gradients are NaN; :func:`geotrip.checked` reports it.
    """
    return tuple(_gather_rows(X, triplets[:, i]) for i in range(3))


def check_batch_inputs(X, triplets, mask=None):
    """Validate points ``(n_points, d)``, index triplets ``(k, 3)``, an optional mask ``(k,)``."""
    X = check_points(X, "X", min_ndim=2)
    if X.ndim != 2:
        raise ValueError(f"X must have shape (n_points, d), got {X.shape}")
    t = check_triplets(triplets, X.shape[0])
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != (t.shape[0],):
            raise ValueError(
                f"mask must have shape ({t.shape[0]},) (one entry per triplet), got {mask.shape}"
            )
    return X, t, mask


def _batch_loss(X, t, dist, margin, soft, mask, reduction):
    a, p, n = gather_triplets(X, t)
    per = _triplet_loss(a, p, n, dist, margin, soft)
    if mask is not None:
        w = mask.astype(per.dtype)
        per = per * w
    if reduction == "none":
        return per
    if reduction == "sum":
        return jnp.sum(per)
    count = (
        jnp.asarray(per.shape[0], per.dtype) if mask is None else jnp.sum(mask.astype(per.dtype))
    )
    return jnp.sum(per) / jnp.maximum(count, jnp.ones_like(count))


_REDUCTIONS = ("sum", "mean", "none")


def batch_loss(
    X: Array,
    triplets: Array,
    *,
    distance: str | Distance = "chord_sq",
    margin: float | Array = 0.2,
    soft: bool = False,
    reduction: str = "sum",
    mask: Array | None = None,
) -> Array:
    r"""Triplet loss of index triplets over one point set (what online mining produces).

    .. math:: L(X) = \sum_{k} w_k\, h\big(d(x_{a_k}, x_{p_k}) - d(x_{a_k}, x_{n_k}) + m\big)

    Points may appear in several triplets and in several roles; ``jax.grad`` with
    respect to ``X`` sums their contributions.

    Args:
      X: unit vectors, shape ``(n_points, d)``.
      triplets: integer array ``(k, 3)`` of (anchor, positive, negative) row indices
        in ``[0, n_points)``: checked on concrete indices; under ``jit`` an index out
        of range makes its triplet's loss NaN (never clamped), and
        :func:`geotrip.checked` raises for it.
      distance, margin, soft: as in :func:`triplet_loss`.
      reduction: ``"sum"`` (scalar), ``"mean"`` (scalar; over the triplets with
        non-zero mask, or all ``k``), or ``"none"`` (shape ``(k,)``).
      mask: optional ``(k,)`` weights or booleans (e.g. the validity mask of a
        miner, which keeps shapes static); masked triplets contribute 0.

    Returns:
      A scalar, or an array of shape ``(k,)`` with ``reduction="none"``.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(_REDUCTIONS)}")
    dist = get_distance(distance)
    X, t, mask = check_batch_inputs(X, triplets, mask)
    check_margin(margin)
    return _batch_loss(X, t, dist, margin, soft, mask, reduction)
