r"""Synthetic configurations on the sphere.

Pure functions of explicit PRNG keys, with static output shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._geometry import angle, random_rotation, vector_angle
from ._gradients import tangent_direction

__all__ = ["parametric_triplet", "triplet_angles"]

Array = jax.Array


def parametric_triplet(
    theta_ap: Array | float,
    theta_an: Array | float,
    psi: Array | float,
    *,
    dim: int = 3,
    key: Array | None = None,
    dtype=None,
) -> tuple[Array, Array, Array]:
    r"""The triplet with prescribed angles :math:`(\theta_{ap}, \theta_{an}, \psi)`.

    In the canonical frame :math:`e_1, e_2, e_3`:

    .. math::
       a = e_1,\quad
       p = \cos\theta_{ap}\,e_1 + \sin\theta_{ap}\,e_2,\quad
       n = \cos\theta_{an}\,e_1 + \sin\theta_{an}(\cos\psi\,e_2 + \sin\psi\,e_3),

    so :math:`\angle(a,p) = \theta_{ap}`, :math:`\angle(a,n) = \theta_{an}` and the
    tangent directions at :math:`a` toward :math:`p` and :math:`n` make the angle
    :math:`\psi`. With ``key`` the triplet is rotated by one Haar-random rotation
    (angles are rotation invariant). :func:`triplet_angles` is the inverse.

    Args:
      theta_ap, theta_an: angles in :math:`[0, \pi]` (scalars or broadcastable arrays).
      psi: angle in :math:`[0, \pi]` between the two tangent directions at the anchor.
      dim: ambient dimension :math:`d \ge 3` (static).
      key: optional PRNG key for a random rotation.
      dtype: floating dtype (default: that of the angles, else JAX's default float).

    Returns:
      ``(a, p, n)``, each of shape ``broadcast(theta_ap, theta_an, psi).shape + (dim,)``.
    """
    if not isinstance(dim, int) or dim < 3:
        raise ValueError(f"dim must be an integer >= 3 for a parametric triplet, got {dim!r}")
    if dtype is None:
        dtype = jnp.result_type(*(jnp.asarray(v).dtype if hasattr(v, "dtype") else float
                                  for v in (theta_ap, theta_an, psi)))
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.result_type(float)
    tp, tn, ps = jnp.broadcast_arrays(*(jnp.asarray(v, dtype=dtype) for v in (theta_ap, theta_an, psi)))
    zeros = jnp.zeros(tp.shape + (dim - 3,), dtype)
    one, zero = jnp.ones_like(tp), jnp.zeros_like(tp)
    a = jnp.concatenate([jnp.stack([one, zero, zero], -1), zeros], -1)
    p = jnp.concatenate([jnp.stack([jnp.cos(tp), jnp.sin(tp), zero], -1), zeros], -1)
    n = jnp.concatenate(
        [jnp.stack([jnp.cos(tn), jnp.sin(tn) * jnp.cos(ps), jnp.sin(tn) * jnp.sin(ps)], -1), zeros], -1
    )
    if key is not None:
        q = random_rotation(key, dim, dtype=dtype)
        a, p, n = a @ q.T, p @ q.T, n @ q.T
    return a, p, n


def triplet_angles(a: Array, p: Array, n: Array) -> tuple[Array, Array, Array]:
    r"""Measure :math:`(\theta_{ap}, \theta_{an}, \psi)` of triplets; inverse of :func:`parametric_triplet`.

    :math:`\psi = \angle(u_{a\to p}, u_{a\to n})`. Where a tangent direction is
    undefined (:math:`p` or :math:`n` equal or antipodal to :math:`a`), :math:`\psi`
    is :math:`\pi/2` by the convention of :func:`geotrip.angle` for zero vectors.

    Args:
      a, p, n: unit vectors of shape ``(..., d)``.

    Returns:
      Three arrays of shape ``(...)``.
    """
    return angle(a, p), angle(a, n), vector_angle(tangent_direction(a, p), tangent_direction(a, n))
