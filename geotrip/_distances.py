r"""The family of distances on the unit sphere that depend only on the angle.

A distance of the family is :math:`d(x, y) = g(\theta)` with
:math:`\theta = \angle(x, y)`. Its *profile* is :math:`g` and its *per-pair weight*
is :math:`g'(\theta)`: for one pair the Riemannian gradient of
:math:`d(\cdot, y)` at :math:`x` is :math:`-g'(\theta)\,u_{x\to y}`, with
:math:`u_{x\to y}` the unit tangent at :math:`x` pointing toward :math:`y`.

=============== ====================== ================== ==========================
name            :math:`d(x,y)`         :math:`g(\theta)`  :math:`g'(\theta)`
=============== ====================== ================== ==========================
``chord_sq``    :math:`\|x-y\|^2`      :math:`2-2\cos\theta` :math:`2\sin\theta`
``chord``       :math:`\|x-y\|`        :math:`2\sin(\theta/2)` :math:`\cos(\theta/2)`
``geodesic``    :math:`\arccos(x\cdot y)` :math:`\theta`  :math:`1`
``geodesic_sq`` :math:`\arccos(x\cdot y)^2` :math:`\theta^2` :math:`2\theta`
``cosine``      :math:`1-x\cdot y`     :math:`1-\cos\theta` :math:`\sin\theta`
=============== ====================== ================== ==========================

Each distance also has an *ambient* form, a function on :math:`\mathbb{R}^d`
whose Euclidean ("raw") gradient is what autodiff gives without projection:
``chord_sq`` is :math:`\|x-y\|^2`, ``chord`` is :math:`\|x-y\|`, ``cosine`` is
:math:`1 - x\cdot y` (all as FaceNet-style code writes them), while ``geodesic``
and ``geodesic_sq`` use the angle of :func:`geotrip.angle` (Kahan's formula), not
:math:`\arccos` of a clipped dot product: the values agree on the sphere, but
:math:`\arccos` is inaccurate near 0 and :math:`\pi` and its gradient is infinite
there. The angle is scale invariant, so the raw gradient of the geodesic distance
is already tangent; :math:`\arccos(x\cdot y)` would add a radial part
:math:`\cot\theta\,\hat x`-like term that the sphere ignores.

Conventions at singular points (finite gradients everywhere): at :math:`x = y`
and :math:`x = -y` the tangent direction toward the other point is undefined and
is taken as 0, so the Riemannian gradient of a pair there is 0 for every
distance (for ``chord`` and ``geodesic``, whose weight does not vanish at 0, this is
the subgradient 0 of a cone point).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Callable

import jax
import jax.numpy as jnp

from ._geometry import angle, pairwise_angles, safe_norm
from ._validate import as_float_array

__all__ = ["Distance", "DISTANCES", "distance", "lookup_distance", "make_distance", "pairwise_distances"]

Array = jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class Distance:
    r"""A sphere distance :math:`d(x, y) = g(\angle(x, y))`.

    Attributes:
      name: short name (``"chord_sq"``, ...).
      profile: :math:`g`, elementwise on angles in :math:`[0, \pi]`.
      weight: :math:`g'`, elementwise on angles; the per-pair gradient weight.
      ambient: :math:`d(x, y)` as a function on :math:`\mathbb{R}^d` with shapes
        ``(..., d), (..., d) -> (...)``; what "raw" gradients differentiate.
      formula: a human-readable formula, for plots and reports.

    Calling the object evaluates the ambient form: ``dist(x, y)``. Instances hash
    by identity, so they can be passed as static arguments to ``jit``.
    """

    name: str
    profile: Callable[[Array], Array]
    weight: Callable[[Array], Array]
    ambient: Callable[[Array, Array], Array]
    formula: str = ""

    def __call__(self, x: Array, y: Array) -> Array:
        return self.ambient(x, y)

    def __repr__(self) -> str:
        return f"Distance({self.name!r}, {self.formula!r})"


def _chord_sq_ambient(x, y):
    d = x - y
    return jnp.sum(d * d, axis=-1)


def _chord_ambient(x, y):
    return safe_norm(x - y)


def _cosine_ambient(x, y):
    return 1 - jnp.sum(x * y, axis=-1)


def _geodesic_ambient(x, y):
    return angle(x, y)


def _geodesic_sq_ambient(x, y):
    t = angle(x, y)
    return t * t


def _half_sin(t):
    return jnp.sin(t / 2)


_BUILTIN = (
    Distance(
        "chord_sq",
        profile=lambda t: 4 * _half_sin(t) ** 2,  # = 2 - 2 cos t, without cancellation near 0
        weight=lambda t: 2 * jnp.sin(t),
        ambient=_chord_sq_ambient,
        formula="||x - y||^2 = 2 - 2 cos(theta)",
    ),
    Distance(
        "chord",
        profile=lambda t: 2 * _half_sin(t),
        weight=lambda t: jnp.cos(t / 2),
        ambient=_chord_ambient,
        formula="||x - y|| = 2 sin(theta/2)",
    ),
    Distance(
        "geodesic",
        profile=lambda t: t,
        weight=lambda t: jnp.ones_like(t),
        ambient=_geodesic_ambient,
        formula="theta = arccos(x . y)",
    ),
    Distance(
        "geodesic_sq",
        profile=lambda t: t * t,
        weight=lambda t: 2 * t,
        ambient=_geodesic_sq_ambient,
        formula="theta^2",
    ),
    Distance(
        "cosine",
        profile=lambda t: 2 * _half_sin(t) ** 2,  # = 1 - cos t
        weight=lambda t: jnp.sin(t),
        ambient=_cosine_ambient,
        formula="1 - x . y = 1 - cos(theta)",
    ),
)

DISTANCES: types.MappingProxyType = types.MappingProxyType({d.name: d for d in _BUILTIN})
"""Read-only mapping from name to :class:`Distance` for the built-in family."""


def distance(name: str | Distance) -> Distance:
    """The :class:`Distance` called ``name`` (a :class:`Distance` passes through).

    Raises:
      ValueError: for an unknown name; the message lists the valid names.
      TypeError: for anything that is neither a string nor a :class:`Distance`.
    """
    return lookup_distance(name)


def lookup_distance(name: str | Distance) -> Distance:
    """Same as :func:`distance`; usable inside functions with a ``distance`` argument."""
    if isinstance(name, Distance):
        return name
    if not isinstance(name, str):
        raise TypeError(f"distance must be a name or a geotrip.Distance, got {type(name).__name__}")
    try:
        return DISTANCES[name]
    except KeyError:
        valid = ", ".join(sorted(DISTANCES))
        raise ValueError(f"unknown distance {name!r}; valid names: {valid}") from None


def make_distance(
    name: str,
    profile: Callable[[Array], Array],
    *,
    weight: Callable[[Array], Array] | None = None,
    ambient: Callable[[Array, Array], Array] | None = None,
    formula: str = "",
) -> Distance:
    r"""Build a user distance :math:`d(x, y) = g(\angle(x, y))` from its profile ``g``.

    Args:
      name: a short name for reports.
      profile: :math:`g`, an elementwise JAX function of the angle. It should be
        differentiable and non-decreasing on :math:`[0, \pi]` for the triplet loss
        to make sense (not enforced).
      weight: :math:`g'`; by default obtained from ``profile`` with ``jax.grad``.
      ambient: the form on :math:`\mathbb{R}^d` used for raw gradients; by default
        :math:`g(\angle(x, y))` with the accurate, scale-invariant angle.
      formula: a human-readable formula.

    Returns:
      A :class:`Distance` usable wherever a distance name is accepted.

    Example:
      >>> cubic = make_distance("geodesic_cube", lambda t: t ** 3)
      >>> triplet_loss(a, p, n, distance=cubic, margin=0.1)  # doctest: +SKIP
    """
    if not callable(profile):
        raise TypeError("profile must be a callable g(theta)")
    if weight is None:
        def weight(t, _g=profile):
            t = as_float_array(t, "theta")
            return jax.grad(lambda s: jnp.sum(_g(s)))(t)
    if ambient is None:
        def ambient(x, y, _g=profile):
            return _g(angle(x, y))
    return Distance(name, profile=profile, weight=weight, ambient=ambient, formula=formula or f"g(theta) for {name}")


def pairwise_distances(x: Array, y: Array | None = None, *, distance: str | Distance = "chord_sq") -> Array:
    r"""Matrix :math:`D_{ij} = g(\theta(x_i, y_j))` of a sphere distance.

    Computed from the accurate angle matrix (:func:`geotrip.pairwise_angles`) so
    that, e.g., ``chord_sq`` has no cancellation for near pairs.

    Args:
      x: unit vectors of shape ``(..., n, d)``.
      y: unit vectors of shape ``(..., m, d)``, or ``None`` for ``x``.
      distance: a name in :data:`DISTANCES` or a :class:`Distance`.

    Returns:
      Array of shape ``(..., n, m)``.
    """
    dist = lookup_distance(distance)
    return dist.profile(pairwise_angles(x, y))
