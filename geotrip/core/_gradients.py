r"""Raw and Riemannian gradients of triplet losses, and the angles between them.

Notation: unit vectors :math:`a, p, n`; :math:`\theta_{ap} = \angle(a, p)`,
:math:`\theta_{an} = \angle(a, n)`; :math:`u_{x\to y}` the unit tangent at
:math:`x` toward :math:`y`; :math:`\psi` the angle between :math:`u_{a\to p}` and
:math:`u_{a\to n}`; :math:`w_p = g'(\theta_{ap})`, :math:`w_n = g'(\theta_{an})`;
:math:`s = h'(z)` the hinge slope. The Riemannian gradients of one triplet are

.. math::
   G_a = s\,(-w_p\,u_{a\to p} + w_n\,u_{a\to n}), \quad
   G_p = -s\,w_p\,u_{p\to a}, \quad
   G_n = s\,w_n\,u_{n\to a}.

**Theorem (one triplet: the joint angle involving the geodesic loss is acute).**
Let loss A have weights :math:`(w_p, w_n)` and loss B weights :math:`(w'_p, w'_n)`,
both active (:math:`s, s' > 0`). Since :math:`\|u\| = 1` and
:math:`u_{a\to p}\cdot u_{a\to n} = \cos\psi`,

.. math::
   \langle G^A, G^B\rangle / (s s')
   = 2(w_p w'_p + w_n w'_n) - (w_p w'_n + w_n w'_p)\cos\psi .

If B is ``geodesic`` (:math:`w'_p = w'_n = 1`) this is
:math:`(w_p + w_n)(2 - \cos\psi) \ge w_p + w_n > 0` whenever A has a non-zero
gradient, so the joint Riemannian angle between *any* loss of the family and the
geodesic loss is strictly below :math:`90^\circ` for a single active triplet
(in particular ``chord_sq`` vs ``geodesic``). In fact it is at most :math:`60^\circ`:
with :math:`\|G^B\|^2 = 4 - 2c`, :math:`\|G^A\|^2 = 2(w_p^2 + w_n^2 - w_p w_n c)`,
:math:`c = \cos\psi` and :math:`r = w_n/w_p`,

.. math::
   \cos^2\phi = \frac{(1+r)^2 (2-c)}{4(1 + r^2 - rc)} \ge \frac14
   \iff (1-c)(1+r^2) + r(4-c) \ge 0,

which holds, with equality only in the limit :math:`r \in \{0, \infty\}`,
:math:`\psi = 0` (one pair's weight vanishing and the two pairs aligned).
More generally the inner product is
positive whenever :math:`w_p(2w'_p - w'_n) + w_n(2w'_n - w'_p) > 0`, e.g. when the
weights of one loss differ by less than a factor 2 between the two pairs. It is
*not* true for every pair of the family: for ``geodesic_sq`` vs ``chord`` with
:math:`\theta_{ap} \to \pi`, :math:`\theta_{an} \to 0`, :math:`\psi \to 0`, the
inner product tends to :math:`-2\pi < 0`. For batches of triplets over shared
points the per-triplet terms add and cancel, and the angle can exceed
:math:`90^\circ` even for ``chord_sq`` vs ``geodesic`` (see the tests and the
counterexample search).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from .._numerics import safe_div
from .._validate import check_finite_scalar, check_margin
from ._distances import Distance
from ._distances import distance as get_distance
from ._geometry import angle, normalize, project_tangent, safe_norm, vector_angle
from ._losses import (
    _batch_loss,
    _triplet_loss,
    check_batch_inputs,
    check_triplet_inputs,
    hinge_slope,
)
from ._margins import DEFAULT_MARGINS, _margin_pair, _pair, slope_matched_margin  # noqa: F401

__all__ = [
    "triplet_grads",
    "triplet_grads_closed_form",
    "tangent_direction",
    "gradient_angles",
    "batch_grads",
    "batch_gradient_angle",
    "descent_disagreement",
    "normalize_vjp",
    "normalize_vjp_closed_form",
    "GRADIENT_ANGLE_KEYS",
]

Array = jax.Array

_BLOCKS = ("anchor", "positive", "negative", "joint")
GRADIENT_ANGLE_KEYS = tuple(
    f"{kind}/{block}" for kind in ("raw", "riemannian") for block in _BLOCKS
)


def _raw_triplet_grads(a, p, n, dist, margin, soft):
    f = lambda a_, p_, n_: jnp.sum(_triplet_loss(a_, p_, n_, dist, margin, soft))
    return jax.grad(f, argnums=(0, 1, 2))(a, p, n)


def triplet_grads(
    a: Array,
    p: Array,
    n: Array,
    *,
    distance: str | Distance = "chord_sq",
    margin: float | Array = 0.2,
    soft: bool = False,
    riemannian: bool = True,
) -> tuple[Array, Array, Array]:
    r"""Gradients of the triplet loss with respect to ``a``, ``p`` and ``n``, by autodiff.

    Raw gradients are the Euclidean gradients of the ambient loss
    (:func:`geotrip.triplet_loss`); Riemannian ones are their projections
    :math:`(I - x x^\top)\nabla_x \ell` onto the tangent space at each point,
    which equal the closed form in the module docstring
    (:func:`triplet_grads_closed_form` checks this independently).

    Singular points: at an inactive hinge all gradients are 0; at coincident or
    antipodal pairs the pair's tangent direction is 0 by convention.

    Args:
      a, p, n: unit vectors of shape ``(..., d)`` (one triplet per leading index).
      distance, margin, soft: as in :func:`geotrip.triplet_loss`.
      riemannian: project onto the tangent spaces (default) or return raw gradients.

    Returns:
      ``(grad_a, grad_p, grad_n)``, each of shape ``(..., d)``.

    >>> import jax, jax.numpy as jnp, geotrip as gt
    >>> a, p, n = gt.parametric_triplet(0.5, 0.3, 2.0, dim=8, key=jax.random.key(0))
    >>> ga, gp, gn = gt.triplet_grads(a, p, n, distance="geodesic", margin=0.1)
    >>> ga.shape, abs(float(jnp.dot(ga, a))) < 1e-12   # Riemannian: tangent at a
    ((8,), True)
    """
    dist = get_distance(distance)
    a, p, n = check_triplet_inputs(a, p, n)
    check_margin(margin)
    return _triplet_grads_jit(a, p, n, margin, dist=dist, soft=soft, riemannian=riemannian)


# Public functions validate concrete inputs eagerly, then run one compiled program per
# (shapes, dtypes, static options); margins are traced (a new value does not recompile).
_STATIC = ("dist", "dA", "dB", "soft", "riemannian", "method")
_jit = lambda f: jax.jit(f, static_argnames=[k for k in _STATIC if k in f.__code__.co_varnames])


@_jit
def _triplet_grads_jit(a, p, n, margin, *, dist, soft, riemannian):
    ga, gp, gn = _raw_triplet_grads(a, p, n, dist, margin, soft)
    if riemannian:
        ga, gp, gn = project_tangent(a, ga), project_tangent(p, gp), project_tangent(n, gn)
    return ga, gp, gn


def tangent_direction(x: Array, y: Array) -> Array:
    r"""Unit tangent :math:`u_{x\to y}` at the unit vector ``x`` pointing toward ``y``.

    .. math:: u_{x\to y} = \frac{P_x y}{\|P_x y\|}, \qquad P_x = I - x x^\top,

    computed as :math:`P_x(y - x)` when :math:`x\cdot y \ge 0` and :math:`P_x(y + x)`
    otherwise (equal in exact arithmetic, each free of cancellation on its side),
    so it stays accurate for nearly coincident and nearly antipodal pairs. At
    :math:`y = \pm x` the direction is undefined and is 0 by convention.

    Args:
      x, y: unit vectors of shape ``(..., d)``.

    Returns:
      Array of shape ``(..., d)``.
    """
    c = jnp.sum(x * y, axis=-1, keepdims=True)
    v = jnp.where(c >= 0, y - x, y + x)
    return normalize(project_tangent(x, v))


def triplet_grads_closed_form(
    a: Array,
    p: Array,
    n: Array,
    *,
    distance: str | Distance = "chord_sq",
    margin: float | Array = 0.2,
    soft: bool = False,
) -> tuple[Array, Array, Array]:
    r"""Riemannian triplet gradients from the per-pair weights, without autodiff.

    .. math::
       G_a = s\,\big(-g'(\theta_{ap})\,u_{a\to p} + g'(\theta_{an})\,u_{a\to n}\big),\quad
       G_p = -s\,g'(\theta_{ap})\,u_{p\to a},\quad
       G_n = s\,g'(\theta_{an})\,u_{n\to a},

    with :math:`s = h'(g(\theta_{ap}) - g(\theta_{an}) + m)` (0 or 1 for the
    hinge, :math:`\sigma(\cdot)` for the soft margin) and :math:`u` from
    :func:`tangent_direction`. This is an independent check of the autodiff path
    (:func:`triplet_grads`) and a fast path for sweeps.

    Args:
      a, p, n: unit vectors of shape ``(..., d)``.
      distance, margin, soft: as in :func:`geotrip.triplet_loss`.

    Returns:
      ``(G_a, G_p, G_n)``, each of shape ``(..., d)``.
    """
    dist = get_distance(distance)
    a, p, n = check_triplet_inputs(a, p, n)
    check_margin(margin)
    t_ap, t_an = angle(a, p), angle(a, n)
    s = hinge_slope(dist.profile(t_ap) - dist.profile(t_an) + margin, soft=soft)
    wp = (s * dist.weight(t_ap))[..., None]
    wn = (s * dist.weight(t_an))[..., None]
    ga = -wp * tangent_direction(a, p) + wn * tangent_direction(a, n)
    gp = -wp * tangent_direction(p, a)
    gn = wn * tangent_direction(n, a)
    return ga, gp, gn


def _masked_angle(u, v):
    defined = (safe_norm(u) > 0) & (safe_norm(v) > 0)
    th = vector_angle(u, v)
    return jnp.where(defined, th, jnp.full_like(th, jnp.nan)), defined


def gradient_angles(
    a: Array,
    p: Array,
    n: Array,
    *,
    distances: Sequence[str | Distance] = ("chord_sq", "geodesic"),
    margins: Sequence[float | Array | None] = DEFAULT_MARGINS,
    soft: bool = False,
    method: str = "closed_form",
) -> dict[str, Array]:
    r"""Angles (radians) between the gradients of two triplet losses A and B.

    For each block :math:`b \in \{a, p, n\}` and the joint gradient (the
    concatenation over :math:`a, p, n`, a vector in :math:`\mathbb{R}^{3d}`),

    .. math:: \phi_b = \angle\big(\nabla_b \ell_A,\; \nabla_b \ell_B\big) \in [0, \pi],

    for raw (ambient) and Riemannian (tangent-projected) gradients. For one
    triplet active under both losses with B = ``geodesic``, the joint Riemannian
    angle is below :math:`\pi/2` (theorem in :mod:`geotrip.core._gradients`).

    Returns a dict with, for each key ``K`` in :data:`GRADIENT_ANGLE_KEYS`
    (``"raw/anchor"``, ..., ``"riemannian/joint"``):

    * ``K``: the angle, shape ``(...)``; NaN exactly where one of the two gradients
      is zero (an inactive hinge, or a pair at :math:`\theta \in \{0, \pi\}` with
      vanishing weight), where the angle is undefined;
    * ``"defined/" + K``: boolean mask, True where the angle is defined;

    and ``"active/A"``, ``"active/B"``: whether each hinge is active
    (:math:`z > 0`; always True for the soft margin).

    Args:
      a, p, n: unit vectors of shape ``(..., d)``.
      distances: the pair (A, B) of distance names or :class:`geotrip.Distance`.
      margins: the pair of margins, each in its distance's own units; B's may be ``None``
        (the default, ``(0.2, None)``): matched to A's by the
        slope rule at :math:`\pi/2` (:func:`geotrip.match_margin` with ``rule="slope"``),
        so ``chord_sq`` 0.2 is compared with ``geodesic`` 0.1.
      soft: soft margin for both losses.
      method: ``"closed_form"`` (default; any distance; :mod:`geotrip.sweeps._closed_form`)
        or ``"autodiff"`` (``jax.grad`` of both losses: the tests' reference). They agree to
        rounding (float32, 10^6 uniform triplets in d = 3, against float64: at most 0.0094
        rad closed form, 0.018 rad autodiff) except within rounding of a hinge boundary.

    >>> import jax, jax.numpy as jnp, geotrip as gt
    >>> a, p, n = gt.parametric_triplet(0.5, 0.3, 2.0, dim=8, key=jax.random.key(0))
    >>> ang = gt.gradient_angles(a, p, n, distances=("chord_sq", "geodesic"), margins=(0.2, 0.1))
    >>> round(float(jnp.degrees(ang["riemannian/joint"])), 4)   # below 60 deg for one triplet
    10.8763

    >>> bool(ang["active/A"]), bool(ang["active/B"])
    (True, True)
    """
    dA, dB = (get_distance(d) for d in _pair(distances, "distances"))
    mA, mB = _margin_pair(margins, dA, dB)
    a, p, n = check_triplet_inputs(a, p, n)
    if method not in ("closed_form", "autodiff"):
        raise ValueError(f"method must be 'closed_form' or 'autodiff', got {method!r}")
    return _gradient_angles_jit(a, p, n, mA, mB, dA=dA, dB=dB, soft=soft, method=method)


@_jit
def _gradient_angles_jit(a, p, n, mA, mB, *, dA, dB, soft, method):
    if method == "closed_form":
        from ._closed_form import _closed_form  # imports this module

        return _closed_form(a, p, n, dA, dB, mA, mB, soft)
    return _gradient_angles_autodiff(a, p, n, dA, dB, mA, mB, soft)


def _gradient_angles_autodiff(a, p, n, dA, dB, mA, mB, soft):
    gA = _raw_triplet_grads(a, p, n, dA, mA, soft)
    gB = _raw_triplet_grads(a, p, n, dB, mB, soft)
    out: dict[str, Array] = {}
    proj = lambda gs: tuple(project_tangent(x, g) for x, g in zip((a, p, n), gs))
    for kind, A, B in (("raw", gA, gB), ("riemannian", proj(gA), proj(gB))):
        for block, u, v in zip(("anchor", "positive", "negative"), A, B):
            out[f"{kind}/{block}"], out[f"defined/{kind}/{block}"] = _masked_angle(u, v)
        th, ok = _masked_angle(jnp.concatenate(A, axis=-1), jnp.concatenate(B, axis=-1))
        out[f"{kind}/joint"], out[f"defined/{kind}/joint"] = th, ok
    for tag, dist, m in (("A", dA, mA), ("B", dB, mB)):
        z = dist.ambient(a, p) - dist.ambient(a, n) + m
        out[f"active/{tag}"] = jnp.ones(z.shape, bool) if soft else z > 0
    return out


def _batch_grads(X, t, dist, margin, soft, mask, riemannian):
    g = jax.grad(lambda Y: _batch_loss(Y, t, dist, margin, soft, mask, "sum"))(X)
    return project_tangent(X, g) if riemannian else g


def batch_grads(
    X: Array,
    triplets: Array,
    *,
    distance: str | Distance = "chord_sq",
    margin: float | Array = 0.2,
    soft: bool = False,
    riemannian: bool = True,
    mask: Array | None = None,
) -> Array:
    r"""Gradient with respect to the point set of the summed triplet loss.

    .. math:: G = \nabla_X \sum_k w_k\,\ell(x_{a_k}, x_{p_k}, x_{n_k}),

    projected row by row onto the tangent spaces when ``riemannian``.

    Args:
      X: unit vectors ``(n_points, d)``; triplets: integer ``(k, 3)``; mask: ``(k,)``.

    Returns:
      Array of shape ``(n_points, d)``. Under ``jit`` an out-of-range triplet index
      makes the gradient NaN (never a clamped row); :func:`geotrip.checked` raises.
    """
    dist = get_distance(distance)
    X, t, mask = check_batch_inputs(X, triplets, mask)
    check_margin(margin)
    return _batch_grads_jit(X, t, margin, mask, dist=dist, soft=soft, riemannian=riemannian)


@_jit
def _batch_grads_jit(X, t, margin, mask, *, dist, soft, riemannian):
    return _batch_grads(X, t, dist, margin, soft, mask, riemannian)


def batch_gradient_angle(
    X: Array,
    triplets: Array,
    *,
    distances: Sequence[str | Distance] = ("chord_sq", "geodesic"),
    margins: Sequence[float | Array | None] = DEFAULT_MARGINS,
    riemannian: bool = True,
    soft: bool = False,
    mask: Array | None = None,
) -> Array:
    r"""Angle (radians) between the gradients w.r.t. ``X`` of two summed triplet losses.

    .. math:: \phi = \angle\big(\nabla_X L_A(X),\; \nabla_X L_B(X)\big),

    each gradient flattened to a vector of :math:`\mathbb{R}^{n d}` (Riemannian by
    default). Unlike a single triplet, a batch over shared points can give
    :math:`\phi > 90^\circ` even for ``chord_sq`` vs ``geodesic``.

    ``margins`` as in :func:`geotrip.gradient_angles` (default ``(0.2, None)``: B's margin
    slope-matched to A's).

    Returns:
      A scalar; NaN exactly when one of the two gradients is zero.

    >>> import jax, jax.numpy as jnp, geotrip as gt
    >>> X = gt.uniform_sphere(jax.random.key(1), (4,), 3)
    >>> t = jnp.array([[0, 1, 2], [3, 1, 2]])
    >>> phi = gt.batch_gradient_angle(X, t, distances=("chord_sq", "geodesic"), margins=(0.2, 0.1))
    >>> round(float(jnp.degrees(phi)), 3)
    4.061
    """
    dA, dB = (get_distance(d) for d in _pair(distances, "distances"))
    mA, mB = _margin_pair(margins, dA, dB)
    X, t, mask = check_batch_inputs(X, triplets, mask)
    return _batch_gradient_angle_jit(
        X, t, mA, mB, mask, dA=dA, dB=dB, soft=soft, riemannian=riemannian
    )


@_jit
def _batch_gradient_angle_jit(X, t, mA, mB, mask, *, dA, dB, soft, riemannian):
    GA = _batch_grads(X, t, dA, mA, soft, mask, riemannian)
    GB = _batch_grads(X, t, dB, mB, soft, mask, riemannian)
    th, _ = _masked_angle(GA.reshape(-1), GB.reshape(-1))
    return th


def _retract(X, V, step):
    return normalize(X + step * V)


def descent_disagreement(
    X: Array,
    triplets: Array,
    *,
    distances: Sequence[str | Distance] = ("chord_sq", "geodesic"),
    margins: Sequence[float | Array | None] = DEFAULT_MARGINS,
    step: float | Array = 1e-3,
    soft: bool = False,
    mask: Array | None = None,
) -> dict[str, Array]:
    r"""Does a descent step on loss A raise loss B (and vice versa)?

    Let :math:`G_A, G_B` be the Riemannian gradients (shape ``(n_points, d)``) and
    :math:`\hat D_A = -G_A/\|G_A\|_F` the unit descent direction of A. Then:

    * first order: the directional derivative of B along A's descent direction,
      :math:`\partial_{\hat D_A} L_B = -\langle G_A, G_B\rangle/\|G_A\|`, and the
      reverse :math:`-\langle G_A, G_B\rangle/\|G_B\|` (both positive exactly when
      the gradient angle exceeds :math:`90^\circ`);
    * finite step with a retraction: :math:`X' = \operatorname{normalize}(X + \eta\hat D_A)`
      (each row re-normalised), and the changes :math:`L_A(X') - L_A(X)`,
      :math:`L_B(X') - L_B(X)`; likewise along :math:`\hat D_B`. Here :math:`\eta` is
      ``step``, the Frobenius length of the tangent displacement before retraction.

    A step that lowers A and raises B is a *disagreement*. Zero gradients give a
    zero direction (no step), so all outputs stay finite. ``margins`` as in
    :func:`geotrip.gradient_angles` (default ``(0.2, None)``: B's margin slope-matched to A's).

    Returns:
      A dict of scalars: ``"loss/A"``, ``"loss/B"``, ``"grad_norm/A"``,
      ``"grad_norm/B"``, ``"cos"`` (cosine of the angle; 0 if a gradient is zero),
      ``"slope/B_along_A"``, ``"slope/A_along_B"``, ``"slope/A_along_A"``
      (:math:`-\|G_A\|`), ``"slope/B_along_B"``, ``"step/A_along_A"``,
      ``"step/B_along_A"``, ``"step/A_along_B"``, ``"step/B_along_B"`` (loss changes
      after the finite step), ``"disagree/along_A"`` (step along A lowers A and
      raises B), ``"disagree/along_B"``.
    """
    dA, dB = (get_distance(d) for d in _pair(distances, "distances"))
    mA, mB = _margin_pair(margins, dA, dB)
    X, t, mask = check_batch_inputs(X, triplets, mask)
    check_finite_scalar(step, "step")
    LA = lambda Y: _batch_loss(Y, t, dA, mA, soft, mask, "sum")
    LB = lambda Y: _batch_loss(Y, t, dB, mB, soft, mask, "sum")
    GA = _batch_grads(X, t, dA, mA, soft, mask, True)
    GB = _batch_grads(X, t, dB, mB, soft, mask, True)
    nA, nB = safe_norm(GA.reshape(-1)), safe_norm(GB.reshape(-1))
    inner = jnp.sum(GA * GB)
    DA, DB = safe_div(-GA, nA), safe_div(-GB, nB)
    l0A, l0B = LA(X), LB(X)
    XA, XB = _retract(X, DA, step), _retract(X, DB, step)
    out = {
        "loss/A": l0A,
        "loss/B": l0B,
        "grad_norm/A": nA,
        "grad_norm/B": nB,
        "cos": safe_div(inner, nA * nB),
        "slope/B_along_A": safe_div(-inner, nA),
        "slope/A_along_B": safe_div(-inner, nB),
        "slope/A_along_A": -nA,
        "slope/B_along_B": -nB,
        "step/A_along_A": LA(XA) - l0A,
        "step/B_along_A": LB(XA) - l0B,
        "step/A_along_B": LA(XB) - l0A,
        "step/B_along_B": LB(XB) - l0B,
    }
    out["disagree/along_A"] = (out["step/A_along_A"] < 0) & (out["step/B_along_A"] > 0)
    out["disagree/along_B"] = (out["step/B_along_B"] < 0) & (out["step/A_along_B"] > 0)
    return out


def normalize_vjp(z: Array, cotangent: Array) -> Array:
    r"""Back-propagate ``cotangent`` (:math:`\partial L/\partial f`) through :math:`f = z/\|z\|`.

    Computed by autodiff (``jax.vjp`` of :func:`geotrip.normalize`).

    A network whose last layer is L2 normalisation receives
    :math:`\partial L/\partial z = (I - f f^\top)\,\partial L/\partial f\,/\,\|z\|`:
    the Riemannian gradient at :math:`f`, divided by :math:`\|z\|`
    (:func:`normalize_vjp_closed_form`). So training through the normalisation layer
    never "moves points through the sphere": only the tangent part of the loss
    gradient reaches the network. At :math:`z = 0` the result is 0 (convention of
    :func:`geotrip.normalize`).

    Args:
      z: pre-normalisation embeddings, shape ``(..., d)``.
      cotangent: :math:`\partial L/\partial f`, same shape.

    Returns:
      :math:`\partial L/\partial z`, shape ``(..., d)``.
    """
    _, vjp = jax.vjp(normalize, z)
    return vjp(cotangent)[0]


def normalize_vjp_closed_form(z: Array, cotangent: Array) -> Array:
    r"""The closed form :math:`(I - f f^\top)\,v / \|z\|` with :math:`f = z/\|z\|`.

    The value at ``z = 0`` is 0 (the convention of :func:`geotrip.normalize`)."""
    n = safe_norm(z, keepdims=True)
    f = normalize(z)
    proj = project_tangent(f, cotangent)
    return safe_div(proj, n)
