r"""The family of distances on the unit sphere that depend only on the angle.

A distance of the family is :math:`d(x, y) = g(\theta)` with
:math:`\theta = \angle(x, y)`. Its *profile* is :math:`g` and its *per-pair weight*
is :math:`g'(\theta)`: for one pair the Riemannian gradient of
:math:`d(\cdot, y)` at :math:`x` is :math:`-g'(\theta)\,u_{x\to y}`, with
:math:`u_{x\to y}` the unit tangent at :math:`x` pointing toward :math:`y`.

=============== =========================== ======================= ======================
name            :math:`d(x,y)`              :math:`g(\theta)`       :math:`g'(\theta)`
=============== =========================== ======================= ======================
``chord_sq``    :math:`\|x-y\|^2`           :math:`2-2\cos\theta`   :math:`2\sin\theta`
``chord``       :math:`\|x-y\|`             :math:`2\sin(\theta/2)` :math:`\cos(\theta/2)`
``geodesic``    :math:`\arccos(x\cdot y)`   :math:`\theta`          :math:`1`
``geodesic_sq`` :math:`\arccos(x\cdot y)^2` :math:`\theta^2`        :math:`2\theta`
``cosine``      :math:`1-x\cdot y`          :math:`1-\cos\theta`    :math:`\sin\theta`
=============== =========================== ======================= ======================

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
import functools
import math
import types
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import as_float_array
from ._geometry import angle, pairwise_angles, safe_norm

__all__ = [
    "AMBIENT_KINDS",
    "Distance",
    "DISTANCES",
    "distance",
    "make_distance",
    "pairwise_distances",
]

Array = jax.Array

AMBIENT_KINDS = ("angle", "chord_sq", "chord", "cosine", "custom")


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
      ambient_kind: which closed form the ambient form has, for code that writes raw
        gradients in closed form (:func:`geotrip.gradient_angles_closed_form`):
        ``"angle"`` (:math:`g` of the scale-invariant angle: the raw gradient is the
        Riemannian one), ``"chord_sq"`` (:math:`\|x-y\|^2`), ``"chord"``
        (:math:`\|x-y\|`), ``"cosine"`` (:math:`1-x\cdot y`), or ``"custom"`` (none known:
        raw gradients come from autodiff).

    Facts about the profile that code needs (instead of restating them per name) are
    derived from ``profile`` and ``weight`` once, in float64, and cached:
    :attr:`range_max` :math:`= g(\pi)`, :attr:`weight_at_zero` :math:`= g'(0)`,
    :attr:`weight_vanishes_at_zero`, and :meth:`weight_at` (e.g. :math:`g'(\pi/2)`).

    Calling the object evaluates the ambient form: ``dist(x, y)``. Instances hash
    by identity, so they can be passed as static arguments to ``jit``.
    """

    name: str
    profile: Callable[[Array], Array]
    weight: Callable[[Array], Array]
    ambient: Callable[[Array, Array], Array]
    formula: str = ""
    ambient_kind: str = "custom"

    def __post_init__(self):
        if self.ambient_kind not in AMBIENT_KINDS:
            raise ValueError(
                f"ambient_kind must be one of {', '.join(AMBIENT_KINDS)}, got {self.ambient_kind!r}"
            )

    def __call__(self, x: Array, y: Array) -> Array:
        return self.ambient(x, y)

    def _scalar(self, fn, theta: float) -> float:
        # float64 on the host (NumPy input; JAX computes in float32 unless x64 is on,
        # which is accurate to ~1e-7 relative: enough for these scale facts). Evaluated
        # eagerly even while a caller's jit/vmap/grad is tracing (a constant, not a tracer).
        with jax.ensure_compile_time_eval():
            return float(np.asarray(fn(np.asarray(theta, dtype=np.float64))))

    def weight_at(self, theta: float) -> float:
        """The per-pair weight :math:`g'(\theta)` at one angle, as a Python float."""
        return self._scalar(self.weight, theta)

    @functools.cached_property
    def range_max(self) -> float:
        r""":math:`g(\pi)`: the largest value of a non-decreasing profile on :math:`[0, \pi]`."""
        return self._scalar(self.profile, math.pi)

    @functools.cached_property
    def weight_at_zero(self) -> float:
        """:math:`g'(0)`: 0 for ``chord_sq``, ``geodesic_sq``, ``cosine``; 1 for ``chord``,
        ``geodesic``."""
        return self.weight_at(0.0)

    @functools.cached_property
    def weight_vanishes_at_zero(self) -> bool:
        r"""Whether :math:`g'(0) = 0` (relative to :math:`g'(\pi/2)`, to 1e-6): a collapsed
        batch (all angles near 0) then gets a vanishing gradient."""
        return abs(self.weight_at_zero) <= 1e-6 * max(1.0, abs(self.weight_at(math.pi / 2)))

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
        ambient_kind="chord_sq",
    ),
    Distance(
        "chord",
        profile=lambda t: 2 * _half_sin(t),
        weight=lambda t: jnp.cos(t / 2),
        ambient=_chord_ambient,
        formula="||x - y|| = 2 sin(theta/2)",
        ambient_kind="chord",
    ),
    Distance(
        "geodesic",
        profile=lambda t: t,
        weight=lambda t: jnp.ones_like(t),
        ambient=_geodesic_ambient,
        formula="theta = arccos(x . y)",
        ambient_kind="angle",
    ),
    Distance(
        "geodesic_sq",
        profile=lambda t: t * t,
        weight=lambda t: 2 * t,
        ambient=_geodesic_sq_ambient,
        formula="theta^2",
        ambient_kind="angle",
    ),
    Distance(
        "cosine",
        profile=lambda t: 2 * _half_sin(t) ** 2,  # = 1 - cos t
        weight=lambda t: jnp.sin(t),
        ambient=_cosine_ambient,
        formula="1 - x . y = 1 - cos(theta)",
        ambient_kind="cosine",
    ),
)

DISTANCES: types.MappingProxyType = types.MappingProxyType({d.name: d for d in _BUILTIN})
"""Read-only mapping from name to :class:`Distance` for the built-in family."""


def distance(name: str | Distance) -> Distance:
    """The :class:`Distance` called ``name`` (a :class:`Distance` passes through).

    Raises:
      ValueError: for an unknown name; the message lists the valid names.
      TypeError: for anything that is neither a string nor a :class:`Distance`.

    >>> import geotrip as gt
    >>> d = gt.distance("chord_sq")
    >>> d.range_max, d.weight_at_zero, d.weight_vanishes_at_zero
    (4.0, 0.0, True)
    >>> round(gt.distance("geodesic").weight_at(1.0), 6)
    1.0
    """
    if isinstance(name, Distance):
        return name
    if not isinstance(name, str):
        raise TypeError(f"distance must be a name or a geotrip.Distance, got {type(name).__name__}")
    try:
        return DISTANCES[name]
    except KeyError:
        valid = ", ".join(sorted(DISTANCES))
        raise ValueError(f"unknown distance {name!r}; valid names: {valid}") from None


_get_distance = distance  # for functions whose ``distance`` argument shadows the name


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

    >>> import jax, jax.numpy as jnp, geotrip as gt
    >>> cubic = gt.make_distance("geodesic_cube", lambda t: t ** 3)
    >>> round(cubic.weight_at(0.5), 6), cubic.weight_vanishes_at_zero   # 3 t^2
    (0.75, True)
    >>> a, p, n = gt.parametric_triplet(0.5, 0.4, 2.0, dim=3)
    >>> bool(gt.triplet_loss(a, p, n, distance=cubic, margin=0.1) > 0)
    True
    """
    if not callable(profile):
        raise TypeError("profile must be a callable g(theta)")
    if weight is None:

        def weight(t, _g=profile):
            t = as_float_array(t, "theta")
            return jax.grad(lambda s: jnp.sum(_g(s)))(t)

    kind = "angle" if ambient is None else "custom"
    if ambient is None:

        def ambient(x, y, _g=profile):
            return _g(angle(x, y))

    return Distance(
        name,
        profile=profile,
        weight=weight,
        ambient=ambient,
        formula=formula or f"g(theta) for {name}",
        ambient_kind=kind,
    )


def pairwise_distances(
    x: Array, y: Array | None = None, *, distance: str | Distance = "chord_sq"
) -> Array:
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
    dist = _get_distance(distance)
    return dist.profile(pairwise_angles(x, y))
