r"""Geometry of the unit sphere :math:`S^{d-1} \subset \mathbb{R}^d`.

Every function here is pure, batches over leading axes (with NumPy broadcasting
between its arguments), works under ``jit``, ``vmap`` and ``grad``, keeps the
floating dtype of its inputs, and has a finite gradient everywhere, including at
zero vectors and at coincident or antipodal points (the conventions are stated in
each docstring). NaN or inf entries are never replaced by a convention: they give NaN
(see :func:`angle`); shapes are checked (vectors of one length ``d >= 1``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import safe_div, safe_norm, safe_sqrt
from .._validate import check_vector_pair, check_vectors

__all__ = [
    "safe_norm",
    "normalize",
    "project_tangent",
    "angle",
    "vector_angle",
    "pairwise_angles",
    "random_rotation",
]


def normalize(x: jax.Array) -> jax.Array:
    r"""Project onto the sphere: :math:`x \mapsto x / \|x\|`, and :math:`0 \mapsto 0`.

    The zero vector maps to the zero vector with a zero gradient (convention), so
    ``grad`` through ``normalize`` is finite everywhere. Its vector-Jacobian
    product is :math:`v \mapsto (I - \hat x \hat x^\top) v / \|x\|`, the tangent
    projection scaled by :math:`1/\|x\|` (see :func:`geotrip.normalize_vjp`).
    A vector with a NaN entry maps to NaN (not to 0), and so does one with an infinite
    entry (:math:`\infty/\infty`).

    Args:
      x: array of shape ``(..., d)``, ``d >= 1``.

    Returns:
      Array of shape ``(..., d)``, dtype of ``x``.

    Raises:
      TypeError: for a non-floating input. ValueError: for a scalar or ``d = 0``.

    >>> import jax.numpy as jnp, geotrip as gt
    >>> gt.normalize(jnp.array([3.0, 4.0])).tolist(), gt.normalize(jnp.zeros(2)).tolist()
    ([0.6, 0.8], [0.0, 0.0])
    >>> gt.normalize(jnp.array([jnp.nan, 1.0])).tolist()
    [nan, nan]
    """
    x = check_vectors(x, "x")
    return safe_div(x, safe_norm(x, keepdims=True))


def project_tangent(x: jax.Array, v: jax.Array) -> jax.Array:
    r"""Project ``v`` onto the tangent space of the sphere at the unit vector ``x``.

    .. math:: P_x v = (I - x x^\top)\, v = v - (x \cdot v)\, x.

    This is the Riemannian gradient when ``v`` is a Euclidean gradient at ``x``.
    ``x`` must be a unit vector for the result to be tangent (it is not checked
    here, so that the function stays cheap inside loops).

    Args:
      x: unit vectors, shape ``(..., d)``.
      v: vectors, shape broadcastable with ``x``.

    Returns:
      Array of the broadcast shape ``(..., d)``.
    """
    x, v = check_vector_pair(x, v, ("x", "v"))
    return v - jnp.sum(x * v, axis=-1, keepdims=True) * x


def angle(x: jax.Array, y: jax.Array) -> jax.Array:
    r"""Angle between ``x`` and ``y`` in radians, in :math:`[0, \pi]`, accurately everywhere.

    For unit vectors this is Kahan's formula

    .. math:: \theta = 2\,\operatorname{atan2}(\|x - y\|, \|x + y\|),

    which, unlike :math:`\arccos(x\cdot y)`, keeps full relative accuracy near
    :math:`\theta = 0` and near :math:`\theta = \pi`. To stay accurate when ``x``
    and ``y`` are unit only to working precision (their norms are
    :math:`1 \pm \varepsilon`, which at :math:`\theta \lesssim \sqrt\varepsilon`
    would otherwise dominate :math:`\|x-y\|`), the radial part is removed exactly:
    with :math:`\Delta r = \|x\| - \|y\| = (x-y)\cdot(x+y)/(\|x\|+\|y\|)`,

    .. math:: \theta = 2\,\operatorname{atan2}\!\Big(\sqrt{\|x-y\|^2 - \Delta r^2},\;
              \sqrt{\|x+y\|^2 - \Delta r^2}\Big),

    an identity for any non-zero vectors (both radicands equal
    :math:`\|x\|\|y\|\,\|\hat x \mp \hat y\|^2`). Accuracy: for unit vectors rounded
    to the working precision the result is within a few ulps of the exact angle
    between the two given vectors over the whole range (the tests assert
    ``|err| <= 4 ulp(theta) + 4 eps * theta`` against mpmath at 50 digits for
    :math:`\theta \in [10^{-7}, \pi - 10^{-7}]`). For vectors of very different
    norms accuracy degrades; normalise first (see :func:`vector_angle`).

    Singular points and conventions (all with finite gradients):

    * :math:`x = y` (:math:`\theta = 0`) and :math:`x = -y` (:math:`\theta = \pi`):
      the angle is not differentiable there (a cone point); its gradient is 0.
    * a zero vector: the angle is :math:`\pi/2` (as for :math:`\arccos(x\cdot y)`
      with :math:`x\cdot y = 0`), with gradient 0.

    Bad values are not conventions: a NaN or infinite entry gives NaN (never
    :math:`\pi/2` or 0). Shapes are checked: both inputs need a non-empty vector axis
    of the same length ``d`` and broadcastable leading shapes; empty *leading* axes
    give an empty result.

    Elsewhere the gradient is the exact one,
    :math:`\nabla_x\theta = -P_x\hat y/(\|x\|\sin\theta)`, which is tangent to the
    sphere at ``x`` (the angle is scale invariant).

    Args:
      x: array of shape ``(..., d)``, ``d >= 1``.
      y: array of shape ``(..., d)`` broadcastable with ``x``.

    Returns:
      Angles of the broadcast leading shape ``(...)``, dtype of the inputs.

    Raises:
      TypeError: non-floating inputs.
      ValueError: scalars, ``d = 0``, different ``d`` or leading shapes that do not
        broadcast (messages name ``x``/``y`` and the shapes).

    >>> import jax.numpy as jnp, geotrip as gt
    >>> float(gt.angle(jnp.array([1.0, 0.0]), jnp.array([1.0, 1e-4])))
    9.9999999666e-05

    >>> float(gt.angle(jnp.array([1.0, 0.0]), jnp.array([-1.0, 0.0])))
    3.141592653589793

    >>> float(gt.angle(jnp.array([1.0, jnp.nan]), jnp.array([1.0, 0.0])))
    nan
    """
    x, y = check_vector_pair(x, y)
    d = x - y
    s = x + y
    nx = safe_norm(x)
    ny = safe_norm(y)
    # a zero vector is the only convention; NaN norms (NaN or inf entries) stay NaN
    both = ~((nx == 0) | (ny == 0))
    dr = safe_div(jnp.sum(d * s, axis=-1), jnp.where(both, nx + ny, jnp.zeros_like(nx)))
    dr2 = dr * dr
    sin_half = safe_sqrt(jnp.sum(d * d, axis=-1) - dr2)
    cos_half = safe_sqrt(jnp.sum(s * s, axis=-1) - dr2)
    theta = 2 * jnp.arctan2(sin_half, cos_half)
    finite = jnp.isfinite(nx) & jnp.isfinite(ny)
    fallback = jnp.where(finite, jnp.full_like(theta, jnp.pi / 2), jnp.full_like(theta, jnp.nan))
    return jnp.where(both, theta, fallback)


def vector_angle(u: jax.Array, v: jax.Array) -> jax.Array:
    r"""Angle in radians between two arbitrary vectors (e.g. two gradients).

    .. math:: \angle(u, v) = \theta(u/\|u\|,\; v/\|v\|) \in [0, \pi],

    computed with :func:`angle` after normalising each vector, so it is accurate
    whatever the ratio of the two norms. If either vector is exactly zero the
    result is :math:`\pi/2` with a zero gradient (see :func:`angle`); callers that
    must tell this case apart (as :func:`geotrip.gradient_angles` does) mask it.

    Args:
      u: array of shape ``(..., m)``.
      v: array broadcastable with ``u``.

    Returns:
      Array of shape ``(...)``.
    """
    return angle(normalize(u), normalize(v))


def pairwise_angles(x: jax.Array, y: jax.Array | None = None) -> jax.Array:
    r"""Matrix of angles :math:`\Theta_{ij} = \theta(x_i, y_j)` (``y = x`` by default).

    Uses :func:`angle` on broadcast pairs, so the diagonal of ``pairwise_angles(x)``
    is exactly 0 and near-antipodal pairs are accurate. Memory is
    :math:`O(n m d)`; for large sets, chunk the rows.

    Args:
      x: array of shape ``(..., n, d)``.
      y: array of shape ``(..., m, d)`` or ``None``.

    Returns:
      Array of shape ``(..., n, m)``.
    """
    x = check_vectors(x, "x")
    y = x if y is None else check_vectors(y, "y")
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(
            f"x and y must be sets of vectors of shape (..., n, d), got shapes {x.shape}, {y.shape}"
        )
    return angle(x[..., :, None, :], y[..., None, :, :])


def random_rotation(key: jax.Array, dim: int, *, dtype=None) -> jax.Array:
    r"""A Haar-random rotation matrix :math:`Q \in SO(d)`.

    QR of a standard Gaussian matrix with the signs of :math:`\operatorname{diag}(R)`
    absorbed into :math:`Q` (Mezzadri 2007), then one column flipped if
    :math:`\det Q < 0`.

    Args:
      key: a PRNG key.
      dim: the dimension ``d`` (static).
      dtype: floating dtype of the result (default: JAX's default float).

    Returns:
      Array of shape ``(d, d)``.
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    dtype = jnp.zeros((), dtype=dtype).dtype if dtype is not None else jnp.result_type(float)
    g = jax.random.normal(key, (int(dim), int(dim)), dtype=dtype)
    q, r = jnp.linalg.qr(g)
    q = q * jnp.sign(jnp.diagonal(r))[None, :]
    det_sign = jnp.sign(jnp.linalg.det(q))
    return q.at[:, 0].multiply(det_sign)
