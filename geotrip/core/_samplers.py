r"""Synthetic configurations on the sphere.

Pure functions of explicit PRNG keys, with static output shapes.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import float_dtype
from .._validate import check_in_range
from ._geometry import angle, normalize, random_rotation, vector_angle
from ._gradients import tangent_direction

__all__ = ["parametric_triplet", "triplet_angles", "CLUSTER_KINDS"]

Array = jax.Array


def _triplet_angle_arrays(theta_ap, theta_an, psi, dtype):
    """Broadcast the three angles to one floating dtype (theirs, else JAX's default float).

    Each angle must lie in [0, pi] (NaN fails): a ValueError on concrete values, a
    recorded check under a trace (see :func:`geotrip.checked`).
    """
    if dtype is None:
        dtype = jnp.result_type(
            *(
                jnp.asarray(v).dtype if hasattr(v, "dtype") else float
                for v in (theta_ap, theta_an, psi)
            )
        )
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.result_type(float)
    arrays = []
    for name, v in (("theta_ap", theta_ap), ("theta_an", theta_an), ("psi", psi)):
        if isinstance(v, (str, bytes, bool)) or v is None:
            raise TypeError(f"{name} must be a real angle in [0, pi] (radians), got {v!r}")
        arr = jnp.asarray(v, dtype=dtype)
        check_in_range(arr, name, 0.0, np.pi, interval="[0, pi] (radians)")
        arrays.append(arr)
    try:
        tp, tn, ps = jnp.broadcast_arrays(*arrays)
    except ValueError:
        shapes = ", ".join(
            f"{k} {a.shape}" for k, a in zip(("theta_ap", "theta_an", "psi"), arrays)
        )
        raise ValueError(
            f"theta_ap, theta_an and psi must broadcast together, got {shapes}"
        ) from None
    return tp, tn, ps, dtype


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
        Angles outside :math:`[0, \pi]` (or NaN) raise ``ValueError`` naming the
        argument (they would silently build another triplet: :math:`\theta_{ap} = -1`
        gives the angle 1); under ``jit`` see :func:`geotrip.checked`.
      dim: ambient dimension :math:`d \ge 3` (static).
      key: optional PRNG key for a random rotation.
      dtype: floating dtype (default: that of the angles, else JAX's default float).

    Returns:
      ``(a, p, n)``, each of shape ``broadcast(theta_ap, theta_an, psi).shape + (dim,)``.
    """
    if not isinstance(dim, int) or dim < 3:
        raise ValueError(f"dim must be an integer >= 3 for a parametric triplet, got {dim!r}")
    tp, tn, ps, dtype = _triplet_angle_arrays(theta_ap, theta_an, psi, dtype)
    zeros = jnp.zeros(tp.shape + (dim - 3,), dtype)
    one, zero = jnp.ones_like(tp), jnp.zeros_like(tp)
    a = jnp.concatenate([jnp.stack([one, zero, zero], -1), zeros], -1)
    p = jnp.concatenate([jnp.stack([jnp.cos(tp), jnp.sin(tp), zero], -1), zeros], -1)
    n = jnp.concatenate(
        [jnp.stack([jnp.cos(tn), jnp.sin(tn) * jnp.cos(ps), jnp.sin(tn) * jnp.sin(ps)], -1), zeros],
        -1,
    )
    if key is not None:
        q = random_rotation(key, dim, dtype=dtype)
        a, p, n = a @ q.T, p @ q.T, n @ q.T
    return a, p, n


def triplet_angles(a: Array, p: Array, n: Array) -> tuple[Array, Array, Array]:
    r"""Measure :math:`(\theta_{ap}, \theta_{an}, \psi)` of triplets.

    The inverse of :func:`parametric_triplet`.

    :math:`\psi = \angle(u_{a\to p}, u_{a\to n})`. Where a tangent direction is
    undefined (:math:`p` or :math:`n` equal or antipodal to :math:`a`), :math:`\psi`
    is :math:`\pi/2` by the convention of :func:`geotrip.angle` for zero vectors.

    Args:
      a, p, n: unit vectors of shape ``(..., d)``.

    Returns:
      Three arrays of shape ``(...)``.
    """
    return angle(a, p), angle(a, n), vector_angle(tangent_direction(a, p), tangent_direction(a, n))


# --------------------------------------------------------------------------------------
# Random generators (issue 3). Pure functions of a PRNG key with static shapes.
# --------------------------------------------------------------------------------------

__all__ += [
    "uniform_sphere",
    "spherical_cap",
    "clustered_batch",
    "rotated_triplet",
    "near_degenerate_pairs",
    "sample_polar_angle",
]


def _check_dim(dim, minimum=2):
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < minimum:
        raise ValueError(f"dim must be an integer >= {minimum}, got {dim!r}")
    return int(dim)


def _shape(shape):
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"shape must be non-negative, got {shape}")
    return shape


def uniform_sphere(key: Array, shape, dim: int, *, dtype=None) -> Array:
    r"""Points i.i.d. uniform on :math:`S^{d-1}`: normalised standard Gaussians.

    .. math:: x = g/\|g\|,\quad g \sim \mathcal N(0, I_d).

    The angle between two independent uniform points has density
    :math:`\propto \sin^{d-2}\theta` on :math:`[0, \pi]`
    (equivalently :math:`\sin^2(\theta/2) \sim \mathrm{Beta}(\tfrac{d-1}2, \tfrac{d-1}2)`).

    Args:
      key: PRNG key.
      shape: leading shape (an int or a tuple; static).
      dim: ambient dimension :math:`d \ge 1` (static).
      dtype: floating dtype (default: JAX's default float).

    Returns:
      Array of shape ``shape + (dim,)``.
    """
    dim = _check_dim(dim, 1)
    g = jax.random.normal(key, _shape(shape) + (dim,), dtype=float_dtype(dtype))
    return normalize(g)


def _tangent_unit(key, centers):
    """A uniformly random unit tangent vector at each (unit) centre, shape of ``centers``."""
    g = jax.random.normal(key, centers.shape, dtype=centers.dtype)
    v = g - jnp.sum(g * centers, axis=-1, keepdims=True) * centers
    return normalize(v)


def sample_polar_angle(
    key: Array, shape, log_density, theta_max, *, dtype=None, grid: int = 4097
) -> Array:
    r"""Draw angles :math:`\theta \in [0, \theta_\max]` from a log-density, by inverse CDF.

    The density :math:`f(\theta) \propto \exp(\text{log\_density}(\theta))` is
    tabulated on ``grid`` points of :math:`[0, \theta_\max]`, integrated by the
    trapezoid rule (after subtracting its maximum, so any scale is safe), and
    inverted by linear interpolation. The error is that of the tabulation, of
    order :math:`(\theta_\max/\text{grid})^2 f''`. Jittable; ``theta_max`` may be traced.

    Args:
      key: PRNG key.
      shape: output shape (static).
      log_density: elementwise function :math:`\log f` on a grid (may return ``-inf``).
      theta_max: upper end of the support, :math:`0 < \theta_\max \le \pi`.
      dtype: floating dtype.
      grid: number of grid points (static).
    """
    dtype = float_dtype(dtype)
    if not isinstance(theta_max, jax.core.Tracer):
        tm = float(np.asarray(theta_max))
        if not (0 < tm <= np.pi):
            raise ValueError(f"theta_max must lie in (0, pi], got {tm:g}")
    t = jnp.linspace(0.0, 1.0, grid, dtype=dtype) * jnp.asarray(theta_max, dtype)
    lf = log_density(t)
    lf = jnp.where(jnp.isnan(lf), -jnp.inf, lf)
    f = jnp.exp(lf - jnp.max(lf))
    cdf = jnp.concatenate([jnp.zeros((1,), dtype), jnp.cumsum((f[1:] + f[:-1]) / 2)])
    cdf = cdf / cdf[-1]
    u = jax.random.uniform(key, _shape(shape), dtype=dtype)
    return jnp.interp(u, cdf, t)


def _around(key, centers, log_density, theta_max, grid=4097):
    """Points at a polar angle with the given density from each centre, direction uniform."""
    k1, k2 = jax.random.split(key)
    th = sample_polar_angle(
        k1, centers.shape[:-1], log_density, theta_max, dtype=centers.dtype, grid=grid
    )
    v = _tangent_unit(k2, centers)
    x = jnp.cos(th)[..., None] * centers + jnp.sin(th)[..., None] * v
    return normalize(x)


def _sin_power(dim):
    def logf(t):
        return (dim - 2) * jnp.log(jnp.sin(t)) if dim > 2 else jnp.zeros_like(t)

    return logf


def spherical_cap(
    key: Array, n, dim: int, *, radius, center: Array | None = None, dtype=None
) -> Array:
    r"""Points uniform in the spherical cap :math:`\{x: \angle(x, c) \le r\}` (collapsed starts).

    The polar angle from the centre has density :math:`\propto \sin^{d-2}\theta` on
    :math:`[0, r]` (drawn by a tabulated inverse CDF, :func:`sample_polar_angle`),
    the direction in the tangent space at :math:`c` is uniform. With
    :math:`r = \pi` this is the uniform distribution on the sphere.

    Args:
      key: PRNG key.
      n: number of points (int or shape tuple; static).
      dim: dimension :math:`d \ge 2` (static).
      radius: angular radius :math:`r \in (0, \pi]` (may be traced).
      center: unit vector ``(dim,)``; default :math:`e_1`.
      dtype: floating dtype (default: that of ``center``, else JAX's default float).

    Returns:
      Array of shape ``(n, dim)`` (or ``shape + (dim,)``).
    """
    dim = _check_dim(dim)
    if not isinstance(radius, jax.core.Tracer):
        r = float(np.asarray(radius))
        if not (0 < r <= np.pi):
            raise ValueError(f"radius must be in (0, pi], got {r}")
    if center is None:
        dtype = float_dtype(dtype)
        center = jnp.zeros((dim,), dtype).at[0].set(1)
    else:
        center = jnp.asarray(center)
        if center.shape != (dim,):
            raise ValueError(f"center must have shape ({dim},), got {center.shape}")
        dtype = float_dtype(dtype if dtype is not None else center.dtype)
        center = normalize(center.astype(dtype))
    return _cap_impl(key, center, jnp.asarray(radius, dtype), shape=_shape(n), dim=dim)


@partial(jax.jit, static_argnames=("shape", "dim"))
def _cap_impl(key, center, radius, *, shape, dim):
    c = jnp.broadcast_to(center, shape + (dim,))
    return _around(key, c, _sin_power(dim), radius)


def _vmf_log_density(dim, kappa):
    def logf(t):
        base = (dim - 2) * jnp.log(jnp.sin(t)) if dim > 2 else jnp.zeros_like(t)
        return kappa * jnp.cos(t) + base

    return logf


CLUSTER_KINDS = ("vmf", "gaussian")


def clustered_batch(
    key: Array,
    *,
    n_classes: int,
    per_class: int,
    dim: int,
    concentration,
    kind: str = "vmf",
    center_spread=None,
    dtype=None,
) -> tuple[Array, Array]:
    r"""A labeled PK batch: ``n_classes`` clusters of ``per_class`` unit points each.

    Class centres :math:`\mu_k` are uniform on the sphere (``center_spread=None``) or
    uniform in a cap of angular radius ``center_spread`` around a random pole (small
    spreads give nearly collapsed classes). Points of class :math:`k`:

    * ``kind="vmf"``: von Mises--Fisher, density :math:`\propto \exp(\kappa\,\mu_k\cdot x)`;
      the polar angle has density :math:`\propto e^{\kappa\cos\theta}\sin^{d-2}\theta`
      (tabulated inverse CDF on :math:`[0, \min(\pi, (\sqrt d + 10)/\sqrt\kappa)]`,
      beyond which the mass is negligible), the direction is uniform;
    * ``kind="gaussian"``: projected Gaussian :math:`x = \mathrm{normalize}(\mu_k + g/\sqrt\kappa)`,
      :math:`g \sim \mathcal N(0, I_d)`.

    Larger :math:`\kappa` (``concentration``) gives tighter classes; for the vMF the
    typical angle to the centre is :math:`\approx\sqrt{(d-1)/\kappa}` when it is small.

    Args:
      key: PRNG key.
      n_classes, per_class: :math:`K \ge 1` and :math:`m \ge 1` (static).
      dim: dimension :math:`d \ge 2` (static).
      concentration: :math:`\kappa > 0` (may be traced).
      kind: ``"vmf"`` or ``"gaussian"``.
      center_spread: ``None`` or an angular radius in :math:`(0, \pi]`.
      dtype: floating dtype.

    Returns:
      ``(X, labels)``: ``X`` of shape ``(K m, d)``, ``labels`` int32 ``(K m,)`` with
      rows grouped by class (``labels = [0]*m + [1]*m + ...``).
    """
    dim = _check_dim(dim)
    for name, v in (("n_classes", n_classes), ("per_class", per_class)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if kind not in CLUSTER_KINDS:
        raise ValueError(f"unknown cluster kind {kind!r}; valid: {', '.join(CLUSTER_KINDS)}")
    if not isinstance(concentration, jax.core.Tracer) and not float(np.asarray(concentration)) > 0:
        raise ValueError(f"concentration must be > 0, got {concentration!r}")
    dtype = float_dtype(dtype)
    spread = None if center_spread is None else jnp.asarray(center_spread, dtype)
    return _clustered_impl(
        key,
        jnp.asarray(concentration, dtype),
        spread,
        n_classes=int(n_classes),
        per_class=int(per_class),
        dim=dim,
        kind=kind,
        dtype=dtype,
    )


@partial(jax.jit, static_argnames=("n_classes", "per_class", "dim", "kind", "dtype"))
def _clustered_impl(key, concentration, center_spread, *, n_classes, per_class, dim, kind, dtype):
    kc, kp, kx = jax.random.split(key, 3)
    if center_spread is None:
        centers = uniform_sphere(kc, n_classes, dim, dtype=dtype)
    else:
        pole = uniform_sphere(kp, (), dim, dtype=dtype)
        centers = spherical_cap(kc, n_classes, dim, radius=center_spread, center=pole, dtype=dtype)
    mu = jnp.repeat(centers, per_class, axis=0)
    labels = jnp.repeat(jnp.arange(n_classes, dtype=jnp.int32), per_class)
    kappa = jnp.asarray(concentration, dtype)
    if kind == "vmf":
        tmax = jnp.minimum(jnp.asarray(np.pi, dtype), (np.sqrt(dim) + 10) / jnp.sqrt(kappa))
        X = _around(kx, mu, _vmf_log_density(dim, kappa), tmax)
    else:
        g = jax.random.normal(kx, mu.shape, dtype=dtype)
        X = normalize(mu + g / jnp.sqrt(kappa))
    return X, labels


def _random_frame(key, shape, dim, dtype):
    """Three orthonormal vectors per leading index (a uniformly random 3-frame), by Gram-Schmidt."""
    g = jax.random.normal(key, _shape(shape) + (3, dim), dtype=dtype)
    e1 = normalize(g[..., 0, :])
    v = g[..., 1, :] - jnp.sum(g[..., 1, :] * e1, -1, keepdims=True) * e1
    e2 = normalize(v)
    w = g[..., 2, :]
    w = w - jnp.sum(w * e1, -1, keepdims=True) * e1
    w = w - jnp.sum(w * e2, -1, keepdims=True) * e2
    e3 = normalize(w)
    return e1, e2, e3


def rotated_triplet(key: Array, theta_ap, theta_an, psi, *, dim: int, dtype=None):
    r"""Triplets with prescribed :math:`(\theta_{ap}, \theta_{an}, \psi)`, each in a random frame.

    Same construction as :func:`parametric_triplet`, but the canonical frame
    :math:`(e_1, e_2, e_3)` is replaced, independently for every triplet of the
    broadcast shape, by a uniformly random orthonormal 3-frame (the image of the
    canonical frame under a Haar rotation, so the distribution is the same as
    rotating with :func:`geotrip.random_rotation`), at :math:`O(d)` instead of
    :math:`O(d^3)` cost per triplet. Suited to sweeps over many triplets.

    Args:
      key: PRNG key.
      theta_ap, theta_an, psi: broadcastable arrays of angles in :math:`[0, \pi]`.
      dim: :math:`d \ge 3` (static).
      dtype: floating dtype (default: that of the angles).

    Returns:
      ``(a, p, n)`` each of shape ``broadcast(...).shape + (dim,)``.
    """
    dim = _check_dim(dim, 3)
    tp, tn, ps, dtype = _triplet_angle_arrays(theta_ap, theta_an, psi, dtype)
    e1, e2, e3 = _random_frame(key, tp.shape, dim, dtype)
    c = lambda x: x[..., None]
    a = e1
    p = c(jnp.cos(tp)) * e1 + c(jnp.sin(tp)) * e2
    n = c(jnp.cos(tn)) * e1 + c(jnp.sin(tn) * jnp.cos(ps)) * e2 + c(jnp.sin(tn) * jnp.sin(ps)) * e3
    return a, p, n


def near_degenerate_pairs(key: Array, n, dim: int, *, angle, antipodal: bool = False, dtype=None):
    r"""Pairs :math:`(x, y)` of unit vectors at a tiny, controlled angle from coincidence.

    Or from antipodality, with ``antipodal=True``.

    .. math:: y = \pm(\cos\varepsilon\, x + \sin\varepsilon\, v),\quad v \perp x,\ \|v\| = 1,

    so :math:`\angle(x, y) = \varepsilon` (``antipodal=False``) or :math:`\pi - \varepsilon`
    (``antipodal=True``), for :math:`\varepsilon` down to :math:`10^{-6}` and below
    (exact to rounding of the construction; measure with :func:`geotrip.angle`).

    Args:
      key: PRNG key.
      n: number of pairs (int or shape; static).
      dim: :math:`d \ge 2`.
      angle: :math:`\varepsilon \ge 0`, scalar or broadcastable to the shape.
      antipodal: build near-antipodal instead of near-coincident pairs.
      dtype: floating dtype.

    Returns:
      ``(x, y)`` each of shape ``shape + (dim,)``.
    """
    dim = _check_dim(dim)
    dtype = float_dtype(dtype)
    check_in_range(jnp.asarray(angle, dtype), "angle", 0.0, np.pi, interval="[0, pi] (radians)")
    k1, k2 = jax.random.split(key)
    x = uniform_sphere(k1, n, dim, dtype=dtype)
    v = _tangent_unit(k2, x)
    eps = jnp.broadcast_to(jnp.asarray(angle, dtype), x.shape[:-1])[..., None]
    y = jnp.cos(eps) * x + jnp.sin(eps) * v
    return x, (-y if antipodal else y)
