r"""The push–pull mechanism of a mined triplet: how the anchor's pull and push are weighted.

For a triplet :math:`(a, p, n)` of unit vectors with angles :math:`\theta_{ap}`,
:math:`\theta_{an}`, the Riemannian gradient of the triplet loss (active hinge) at the
anchor is

.. math:: \operatorname{grad}_a L = -g'(\theta_{ap})\,u_{a\to p} + g'(\theta_{an})\,u_{a\to n},

a *pull* toward :math:`p` with weight :math:`g'(\theta_{ap})` and a *push* away from
:math:`n` with weight :math:`g'(\theta_{an})` (the directions :math:`u` are the unit
tangents, the same for every distance of the family). The *push–pull ratio*

.. math:: \rho = \frac{g'(\theta_{an})}{g'(\theta_{ap})}

is the only part that depends on the distance. On a hard triplet
(:math:`\theta_{an} < \theta_{ap} < \pi/2`), :math:`\rho < 1` for the distances whose
:math:`g'` increases on :math:`(0, \pi/2)` (``chord_sq``: :math:`\sin\theta_{an}/\sin\theta_{ap}`,
``cosine``: the same, ``geodesic_sq``: :math:`\theta_{an}/\theta_{ap}`): the pull wins.
The geodesic has :math:`\rho = 1`; the chord, :math:`\cos(\theta_{an}/2)/\cos(\theta_{ap}/2) > 1`:
the push wins. The prediction to test is that :math:`\rho < 1` on the mined triplets goes
with contraction (and collapse) under hardest-negative mining.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._numerics import safe_div, safe_log
from ..core._distances import Distance
from ..core._distances import distance as get_distance
from ..core._geometry import angle

__all__ = ["push_pull_ratio", "push_pull_summary"]

Array = jax.Array


def _weights(X, triplets, dist: Distance):
    a, p, n = X[triplets[:, 0]], X[triplets[:, 1]], X[triplets[:, 2]]
    t_ap, t_an = angle(a, p), angle(a, n)
    return dist.weight(t_ap), dist.weight(t_an), t_ap, t_an


def push_pull_ratio(X: Array, triplets: Array, *, distance: str | Distance = "chord_sq") -> Array:
    r"""Push–pull ratio :math:`\rho_k = g'(\theta_{a_k n_k}) / g'(\theta_{a_k p_k})` per triplet.

    Args:
      X: unit vectors ``(n_points, d)``.
      triplets: integer ``(k, 3)`` (anchor, positive, negative) row indices.
      distance: a name or :class:`geotrip.Distance` (any positive rescaling of it, such as
        :func:`geotrip.reference_distance`, gives the same ratios).

    Returns:
      ``(k,)`` ratios in the dtype of ``X``; ``inf`` where :math:`g'(\theta_{ap}) = 0`
      and :math:`g'(\theta_{an}) > 0`, and ``nan`` where both weights are 0.

    >>> import jax.numpy as jnp, geotrip as gt
    >>> X = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # theta_ap = pi/2 > theta_an
    >>> t = jnp.array([[0, 1, 2]])
    >>> round(float(gt.push_pull_ratio(X, t, distance="chord_sq")[0]), 6)  # sin(theta_an)
    0.8
    >>> round(float(gt.push_pull_ratio(X, t, distance="geodesic")[0]), 6)
    1.0
    """
    w_ap, w_an, _, _ = _weights(X, triplets, get_distance(distance))
    return w_an / w_ap


def push_pull_summary(
    X: Array,
    triplets: Array,
    *,
    distance: str | Distance = "chord_sq",
    mask: Array | None = None,
) -> dict[str, Array]:
    r"""Summaries of the push–pull ratio over the (masked) triplets of one batch.

    With :math:`K` the triplets of ``mask`` (all if ``None``) and :math:`K_+ \subseteq K`
    those whose two weights are positive (so :math:`\log\rho` is finite):

    * ``log_ratio``: :math:`\frac{1}{|K_+|}\sum_{K_+} \log\rho_k` (0 if :math:`K_+` is
      empty); :math:`e^{\text{log\_ratio}}` is the geometric-mean ratio;
    * ``hard_share``: share of :math:`K` with :math:`\theta_{an} < \theta_{ap}`;
    * ``pull_wins``: share of the hard triplets of :math:`K` with
      :math:`g'(\theta_{an}) < g'(\theta_{ap})` (the pull outweighs the push).

    Every value is finite, jittable and vmappable.
    """
    dist = get_distance(distance)
    w_ap, w_an, t_ap, t_an = _weights(X, triplets, dist)
    m = jnp.ones(triplets.shape[:1], X.dtype) if mask is None else jnp.asarray(mask).astype(X.dtype)
    pos = ((w_ap > 0) & (w_an > 0)).astype(X.dtype) * m
    log_r = safe_log(w_an) - safe_log(w_ap)
    hard = (t_an < t_ap).astype(X.dtype) * m
    pull = (w_an < w_ap).astype(X.dtype) * hard
    return {
        "log_ratio": safe_div(jnp.sum(log_r * pos), jnp.sum(pos)),
        "hard_share": safe_div(jnp.sum(hard), jnp.sum(m)),
        "pull_wins": safe_div(jnp.sum(pull), jnp.sum(hard)),
    }
