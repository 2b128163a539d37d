r"""Closed-form gradient angles: one fused pass over :math:`a, p, n`, then :math:`O(1)` work
per triplet.

Every raw and Riemannian triplet gradient of the
built-in family is a linear combination of :math:`a, p, n`. Write them in the basis

.. math:: b_0 = a,\quad b_1 = \delta_p = p - \sigma_p a,\quad b_2 = \delta_n = n - \sigma_n a,
          \qquad \sigma_x = \operatorname{sign}(a\cdot x)\ (\text{+1 at } 0),

whose Gram matrix, for unit vectors, is

.. math:: M = \begin{pmatrix} 1 & -\sigma_p g_{11}/2 & -\sigma_n g_{22}/2\\
          \cdot & g_{11} & g_{12} \\ \cdot & \cdot & g_{22}\end{pmatrix},\quad
          g_{11} = \|\delta_p\|^2,\ g_{22} = \|\delta_n\|^2,\ g_{12} = \delta_p\cdot\delta_n

(using :math:`a\cdot\delta_p = -\sigma_p\|\delta_p\|^2/2`, exact on the sphere). One
pass over the data computes the eight sums :math:`\|p \mp a\|^2`, :math:`\|n \mp a\|^2`,
:math:`(p \mp a)\cdot(n \mp a)`; everything else (the angles
:math:`\theta_{ap} = 2\operatorname{atan2}(\sqrt{g_{11}}, \sqrt{4 - g_{11}})` for
:math:`\sigma_p = 1`, the tangent directions, the weights, the hinge slopes, the
gradient coefficients and the eight angles between gradients, each by Kahan's
formula :math:`2\operatorname{atan2}(\|\hat u - \hat v\|, \|\hat u + \hat v\|)` with the
norms taken in :math:`M`) costs :math:`O(1)` per triplet. The differences
:math:`p \mp a` are formed elementwise, so near-coincident and near-antipodal pairs
keep full relative accuracy, as in :func:`geotrip.angle`. The path is thus bound by
reading :math:`a, p, n` from memory.

Raw gradients by the closed form of the ambient form (:attr:`geotrip.Distance.ambient_kind`,
hinge slope :math:`s`): ``"chord_sq"`` :math:`(2s(n-p),\, 2s(p-a),\, 2s(a-n))`;
``"chord"`` :math:`s\big(e_{ap} - e_{an},\, -e_{ap},\, e_{an}\big)` with
:math:`e_{ax} = (a-x)/\|a-x\|`; ``"cosine"`` :math:`s(n-p,\, -a,\, a)`; ``"angle"``
(``geodesic``, ``geodesic_sq``, and :func:`geotrip.make_distance` without ``ambient``: the
ambient form is :math:`g` of the scale-invariant angle) equal the Riemannian gradients.
Riemannian gradients use the per-pair weights (:func:`geotrip.triplet_grads_closed_form`).
Distances of kind ``"custom"`` use their weight for the Riemannian part and autodiff of
their ambient form for the raw part.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from .._numerics import safe_div, safe_sqrt
from ..core._distances import Distance
from ..core._distances import distance as get_distance
from ..core._gradients import _masked_angle, _pair, _raw_triplet_grads
from ..core._losses import check_triplet_inputs, hinge_slope

__all__ = ["gradient_angles_closed_form"]

Array = jax.Array


# Coefficient vectors in the basis (a, delta_p, delta_n) are tuples of three arrays (not
# stacked arrays), so that XLA fuses the whole O(1)-per-triplet computation elementwise.


def _div0(c, n):
    """c / n with 0 where n == 0 (c: tuple of three arrays; one reciprocal, three products)."""
    inv = safe_div(jnp.ones_like(n), n)
    return tuple(x * inv for x in c)


def _scale(w, c):
    return tuple(w * x for x in c)


def _add(c, e):
    return tuple(x + y for x, y in zip(c, e))


def _sub(c, e):
    return tuple(x - y for x, y in zip(c, e))


class _Basis:
    """The Gram matrix M of (a, delta_p, delta_n) and quadratic forms in it."""

    def __init__(self, g11, g22, g12, sp, sn):
        self.g11, self.g22, self.g12 = g11, g22, g12
        self.g01 = -sp * g11 / 2
        self.g02 = -sn * g22 / 2
        self.sp, self.sn = sp, sn

    def dot(self, c, e):
        return (
            c[0] * e[0]
            + self.g11 * c[1] * e[1]
            + self.g22 * c[2] * e[2]
            + self.g01 * (c[0] * e[1] + c[1] * e[0])
            + self.g02 * (c[0] * e[2] + c[2] * e[0])
            + self.g12 * (c[1] * e[2] + c[2] * e[1])
        )

    def sq(self, c):
        return jnp.maximum(self.dot(c, c), jnp.zeros_like(self.g11))


def _vec(*cs):
    return tuple(jnp.broadcast_arrays(*cs))


# Cephes atanf / atan coefficients (float32: polynomial on |t| <= tan(pi/8); float64: rational
# on |t| <= 0.66 with the reduction at tan(3 pi/8) folded into the min/max ratio below).
_ATAN_P32 = (8.05374449538e-2, -1.38776856032e-1, 1.99777106478e-1, -3.33329491539e-1)
_ATAN_P64 = (
    -8.750608600031904122785e-1,
    -1.615753718733365076637e1,
    -7.500855792314704667340e1,
    -1.228866684490136173410e2,
    -6.485021904942025371773e1,
)
_ATAN_Q64 = (
    2.485846490142306297962e1,
    1.650270098316988542046e2,
    4.328810604912902668951e2,
    4.853903996359136964868e2,
    1.945506571482613964425e2,
)


def _atan2_nonneg(y, x):
    """``atan2(y, x)`` for ``y, x >= 0`` (0 at the origin) from divisions, a polynomial and
    selects, which XLA:CPU vectorises: its ``atan2`` is a scalar library call (about 20 ns
    per element here, 1-2.5 ns for this one). Error <= 3.2 ulp in float32, <= 2 ulp in
    float64 (against NumPy's float64/long-double ``arctan2`` on 2e6 points), full relative
    accuracy for small angles (Kahan's formula relies on that)."""
    lo, hi = jnp.minimum(y, x), jnp.maximum(y, x)
    pos = hi > 0
    r = jnp.where(pos, lo, 0) / jnp.where(pos, hi, 1)  # tan of the angle to the nearer axis
    f32 = r.dtype == jnp.float32
    big = r > (0.4142135623730950 if f32 else 0.66)
    t = jnp.where(big, (r - 1) / (r + 1), r)  # atan(r) = pi/4 + atan(t) when big
    z = t * t
    if f32:
        c = _ATAN_P32
        at = (((c[0] * z + c[1]) * z + c[2]) * z + c[3]) * z * t + t
        at = jnp.where(big, math.pi / 4 + at, at)
    else:
        p, q = _ATAN_P64, _ATAN_Q64
        num = (((p[0] * z + p[1]) * z + p[2]) * z + p[3]) * z + p[4]
        den = ((((z + q[0]) * z + q[1]) * z + q[2]) * z + q[3]) * z + q[4]
        at = t * (z * num / den) + t
        at = jnp.where(big, math.pi / 4 + (at + 3.061616997868383e-17), at)
    return jnp.where(y > x, math.pi / 2 - at, at)


def _gram_sums(a, p, n):
    """The eight sums of one pass; returns the basis and (theta_ap, theta_an)."""
    dm_p, dp_p = p - a, p + a
    dm_n, dp_n = n - a, n + a
    prods = (
        dm_p * dm_p,
        dp_p * dp_p,
        dm_n * dm_n,
        dp_n * dp_n,
        dm_p * dm_n,
        dm_p * dp_n,
        dp_p * dm_n,
        dp_p * dp_n,
        a * dm_p,
        a * dp_p,
        a * dm_n,
        a * dp_n,
    )
    # One variadic reduction: XLA fuses the twelve sums into a single pass over a, p, n
    # (separate jnp.sum calls materialise the differences and read them repeatedly).
    zero = jnp.zeros((), prods[0].dtype)
    sums = jax.lax.reduce(
        prods,
        (zero,) * len(prods),
        lambda x, y: tuple(u + v for u, v in zip(x, y)),
        (prods[0].ndim - 1,),
    )
    qmp, qpp, qmn, qpn, cmm, cmp_, cpm, cpp, amp, app, amn, apn = sums
    pos_p = qmp <= qpp
    pos_n = qmn <= qpn
    one = jnp.ones_like(qmp)
    sp = jnp.where(pos_p, one, -one)
    sn = jnp.where(pos_n, one, -one)
    g11 = jnp.where(pos_p, qmp, qpp)
    g22 = jnp.where(pos_n, qmn, qpn)
    g12 = jnp.where(pos_p, jnp.where(pos_n, cmm, cmp_), jnp.where(pos_n, cpm, cpp))
    # Inputs are unit only to rounding (|x| = 1 +- eps): then a.delta differs from the sphere's
    # -sigma |delta|^2 / 2 by r ~ eps, a radial error that is large next to a tiny delta. Remove
    # it, delta' = delta - r a, so that the basis describes the triplet on the sphere.
    ad_p = jnp.where(pos_p, amp, app)
    ad_n = jnp.where(pos_n, amn, apn)
    r_p = ad_p + sp * g11 / 2
    r_n = ad_n + sn * g22 / 2
    g12 = g12 - r_n * ad_p - r_p * ad_n + r_p * r_n
    g11 = jnp.maximum(g11 - 2 * r_p * ad_p + r_p * r_p, jnp.zeros_like(g11))
    g22 = jnp.maximum(g22 - 2 * r_n * ad_n + r_n * r_n, jnp.zeros_like(g22))
    B = _Basis(g11, g22, g12, sp, sn)
    # Kahan: theta = 2 atan2(|a - x|, |a + x|); with sigma = +1, |a - x|^2 = g, |a + x|^2 = 4 - g.
    four = 4 * one
    t_ap = 2 * _atan2_nonneg(
        safe_sqrt(jnp.where(pos_p, qmp, four - qpp)), safe_sqrt(jnp.where(pos_p, four - qmp, qpp))
    )
    t_an = 2 * _atan2_nonneg(
        safe_sqrt(jnp.where(pos_n, qmn, four - qpn)), safe_sqrt(jnp.where(pos_n, four - qmn, qpn))
    )
    return B, t_ap, t_an


def _directions(B):
    """Coefficients of the unit tangents u_{a->p}, u_{a->n}, u_{p->a}, u_{n->a} (0 where
    undefined)."""
    zero = jnp.zeros_like(B.g11)
    one = jnp.ones_like(B.g11)
    sin_ap = safe_sqrt(B.g11 * (1 - B.g11 / 4))
    sin_an = safe_sqrt(B.g22 * (1 - B.g22 / 4))
    u_ap = _div0(_vec(-B.g01, one, zero), sin_ap)
    u_an = _div0(_vec(-B.g02, zero, one), sin_an)
    u_pa = _div0(_vec(B.g11 / 2, -B.sp * (1 - B.g11 / 2), zero), sin_ap)
    u_na = _div0(_vec(B.g22 / 2, zero, -B.sn * (1 - B.g22 / 2)), sin_an)
    return u_ap, u_an, u_pa, u_na


def _hinge_weights(t_ap, t_an, dist: Distance, margin, soft):
    """Per-triplet scalars of one loss: hinge argument z, slope s, pair weights s g'(theta)."""
    z = dist.profile(t_ap) - dist.profile(t_an) + margin
    s = hinge_slope(z, soft=soft)
    return z, s, s * dist.weight(t_ap), s * dist.weight(t_an)


def _coef_grads(B, t_ap, t_an, dist: Distance, scalars, dirs):
    """(riemannian, raw) gradient coefficients, each a tuple of three blocks; raw is None for
    a distance whose ambient form has no closed form (``ambient_kind == "custom"``)."""
    u_ap, u_an, u_pa, u_na = dirs
    _, s, wp, wn = scalars
    riem = (_sub(_scale(wn, u_an), _scale(wp, u_ap)), _scale(-wp, u_pa), _scale(wn, u_na))
    if dist.ambient_kind == "angle":  # scale-invariant ambient form: raw = Riemannian
        return riem, riem
    raw_coefs = _RAW_COEFS.get(dist.ambient_kind)
    return riem, (None if raw_coefs is None else raw_coefs(B, t_ap, t_an, s))


def _raw_chord_sq(B, t_ap, t_an, s):
    """||x - y||^2: (2s(n - p), 2s(p - a), 2s(a - n))."""
    zero, one = jnp.zeros_like(B.g11), jnp.ones_like(B.g11)
    return (
        _scale(2 * s, _vec(B.sn - B.sp, -one, one)),
        _scale(2 * s, _vec(B.sp - one, one, zero)),
        _scale(2 * s, _vec(one - B.sn, zero, -one)),
    )


def _raw_cosine(B, t_ap, t_an, s):
    """1 - x.y: (s(n - p), -s a, s a)."""
    zero, one = jnp.zeros_like(B.g11), jnp.ones_like(B.g11)
    return (
        _scale(s, _vec(B.sn - B.sp, -one, one)),
        _scale(s, _vec(-one, zero, zero)),
        _scale(s, _vec(one, zero, zero)),
    )


def _raw_chord(B, t_ap, t_an, s):
    """||x - y||: s (e_ap - e_an, -e_ap, e_an) with e_ax = (a - x)/|a - x|."""
    zero, one = jnp.zeros_like(B.g11), jnp.ones_like(B.g11)
    e_ap = _div0(_vec(one - B.sp, -one, zero), 2 * jnp.sin(t_ap / 2))
    e_an = _div0(_vec(one - B.sn, zero, -one), 2 * jnp.sin(t_an / 2))
    return (_scale(s, _sub(e_ap, e_an)), _scale(-s, e_ap), _scale(s, e_an))


# Closed-form raw gradient coefficients per Distance.ambient_kind ("angle" is handled above,
# "custom" has none: autodiff of the ambient form).
_RAW_COEFS = {"chord_sq": _raw_chord_sq, "cosine": _raw_cosine, "chord": _raw_chord}


def _coef_angle(B, u, v):
    """Angle between the vectors with coefficients u, v (tuples of blocks); NaN where one is
    zero. Kahan's formula with both arguments scaled by |u| |v| > 0, which needs no division:
    theta = 2 atan2(| |v| u - |u| v |, | |v| u + |u| v |)."""
    nu = safe_sqrt(sum(B.sq(x) for x in u))
    nv = safe_sqrt(sum(B.sq(x) for x in v))
    su = [_scale(nv, x) for x in u]
    sv = [_scale(nu, x) for x in v]
    dm = safe_sqrt(sum(B.sq(_sub(x, y)) for x, y in zip(su, sv)))
    dp = safe_sqrt(sum(B.sq(_add(x, y)) for x, y in zip(su, sv)))
    th = 2 * _atan2_nonneg(dm, dp)
    ok = (nu > 0) & (nv > 0)
    return jnp.where(ok, th, jnp.full_like(th, jnp.nan)), ok


def gradient_angles_closed_form(
    a: Array,
    p: Array,
    n: Array,
    *,
    distances: Sequence[str | Distance] = ("chord_sq", "geodesic"),
    margins: Sequence[float | Array] = (0.2, 0.2),
    soft: bool = False,
) -> dict[str, Array]:
    r"""Same output as :func:`geotrip.gradient_angles`, from closed forms (module docstring).

    One pass over ``a, p, n`` (eight fused sums of length :math:`d`), then
    :math:`O(1)` work per triplet; no autodiff. Assumes unit vectors (as every
    triplet function does): the Gram entries :math:`a\cdot\delta` use
    :math:`\|a\| = \|x\| = 1` exactly. The hinge activity uses the profile
    :math:`g(\theta)` with the accurate angle, so it can differ from the autodiff
    path (which evaluates the ambient form) only for triplets within rounding of
    the hinge boundary.

    Args:
      a, p, n: unit vectors of shape ``(..., d)``, any :math:`d \ge 1`.
      distances, margins, soft: as in :func:`geotrip.gradient_angles`.

    Returns:
      The dict of :func:`geotrip.gradient_angles` (angles in radians, NaN where
      undefined, ``defined/...`` masks, ``active/A``, ``active/B``).

    >>> import jax.numpy as jnp, geotrip as gt
    >>> a, p, n = gt.parametric_triplet(1.0, 0.8, 2.0, dim=3)  # a hard triplet
    >>> out = gt.gradient_angles_closed_form(a, p, n, margins=(0.2, 0.1))
    >>> bool(out["active/A"]), bool(out["active/B"])
    (True, True)
    >>> round(float(jnp.degrees(out["riemannian/joint"])), 1)  # chord_sq vs geodesic
    3.7
    >>> ref = gt.gradient_angles(a, p, n, margins=(0.2, 0.1))  # the autodiff path
    >>> bool(jnp.allclose(out["riemannian/joint"], ref["riemannian/joint"], atol=1e-5))
    True
    """
    dA, dB = (get_distance(d) for d in _pair(distances, "distances"))
    mA, mB = _pair(margins, "margins")
    a, p, n = check_triplet_inputs(a, p, n)
    return _closed_form(a, p, n, dA, dB, mA, mB, soft)


_BLOCK = 4096


def _closed_form(a, p, n, dA, dB, mA, mB, soft, block: int = _BLOCK):
    """Two passes over row blocks (``lax.fori_loop``). Pass 1 reads ``a, p, n`` (the fused
    Gram sums) and writes 15 scalars per triplet (the Gram entries, both angles, each loss's
    hinge argument, slope and pair weights); pass 2 computes the eight angles from them. The loop
    boundary makes XLA materialise the scalars once: in one fused pass XLA:CPU re-evaluates
    g and g' (sin, cos, ...) inside each of the ~36 fusions that consume them. Blocks keep
    the O(1)-per-triplet temporaries in cache. Per-triplet margins and user distances of
    ambient kind ``custom`` (autodiff of the ambient form) take the fused path."""
    lead = a.shape[:-1]
    size = math.prod(lead)
    scalar_margins = all(jnp.ndim(m) == 0 for m in (mA, mB))
    custom = "custom" in (dA.ambient_kind, dB.ambient_kind)
    if size < 2 * _MIN_BLOCK or not scalar_margins or custom:
        return _closed_form_flat(a, p, n, dA, dB, mA, mB, soft)
    d = a.shape[-1]
    # at least two blocks: XLA inlines a loop of one iteration (and would fuse the passes)
    block = min(block, size // 2 // _MIN_BLOCK * _MIN_BLOCK)
    a, p, n = (x.reshape(size, d) for x in (a, p, n))
    scal = _blocked(lambda t: _pass1(*t, dA, dB, mA, mB, soft), (a, p, n), size, block)
    out = _blocked(lambda sc: _pass2(sc, dA, dB, soft), scal, size, block)
    return {k: v.reshape(lead) for k, v in out.items()}


def _blocked(fn, xs, size, block):
    """``fn`` over rows ``[start, start + block)`` of the arrays in ``xs``, in a loop writing
    into full-size outputs. The last block starts at ``size - block`` (it overlaps the one
    before and rewrites equal values), so nothing is padded or copied."""
    nb = -(-size // block)
    starts = lambda i: jnp.minimum(i * block, size - block)
    take = lambda x, s: jax.lax.dynamic_slice_in_dim(x, s, block, axis=0)
    shapes = jax.eval_shape(fn, jax.tree.map(lambda x: take(x, 0), xs))
    init = jax.tree.map(lambda sd: jnp.zeros((size,) + sd.shape[1:], sd.dtype), shapes)

    def body(i, acc):
        s = starts(i)
        res = fn(jax.tree.map(lambda x: take(x, s), xs))
        return jax.tree.map(lambda o, r: jax.lax.dynamic_update_slice_in_dim(o, r, s, 0), acc, res)

    return jax.lax.fori_loop(0, nb, body, init)


_MIN_BLOCK = 128


def _pass1(a, p, n, dA, dB, mA, mB, soft):
    B, t_ap, t_an = _gram_sums(a, p, n)
    base = (B.g11, B.g22, B.g12, B.sp, B.sn, t_ap, t_an)
    return base, _hinge_weights(t_ap, t_an, dA, mA, soft), _hinge_weights(t_ap, t_an, dB, mB, soft)


def _pass2(scal, dA, dB, soft, custom_inputs=None):
    """The eight angles from pass 1's scalars; ``custom_inputs = (a, p, n, mA, mB)`` for
    a distance whose raw gradient needs autodiff of its ambient form."""
    (g11, g22, g12, sp, sn, t_ap, t_an), scA, scB = scal
    B = _Basis(g11, g22, g12, sp, sn)
    dirs = _directions(B)
    rA, wA = _coef_grads(B, t_ap, t_an, dA, scA, dirs)
    rB, wB = _coef_grads(B, t_ap, t_an, dB, scB, dirs)
    out: dict[str, Array] = {}
    for block, i in (("anchor", 0), ("positive", 1), ("negative", 2)):
        th, ok = _coef_angle(B, (rA[i],), (rB[i],))
        out[f"riemannian/{block}"], out[f"defined/riemannian/{block}"] = th, ok
    th, ok = _coef_angle(B, rA, rB)
    out["riemannian/joint"], out["defined/riemannian/joint"] = th, ok
    if wA is not None and wB is not None:
        for block, i in (("anchor", 0), ("positive", 1), ("negative", 2)):
            th, ok = _coef_angle(B, (wA[i],), (wB[i],))
            out[f"raw/{block}"], out[f"defined/raw/{block}"] = th, ok
        th, ok = _coef_angle(B, wA, wB)
        out["raw/joint"], out["defined/raw/joint"] = th, ok
    else:  # a user distance: raw gradients by autodiff of its ambient form
        a, p, n, mA, mB = custom_inputs
        gA = _raw_triplet_grads(a, p, n, dA, mA, soft)
        gB = _raw_triplet_grads(a, p, n, dB, mB, soft)
        for block, u, v in zip(("anchor", "positive", "negative"), gA, gB):
            out[f"raw/{block}"], out[f"defined/raw/{block}"] = _masked_angle(u, v)
        th, ok = _masked_angle(jnp.concatenate(gA, axis=-1), jnp.concatenate(gB, axis=-1))
        out["raw/joint"], out["defined/raw/joint"] = th, ok
    for tag, sc in (("A", scA), ("B", scB)):
        z = sc[0]
        out[f"active/{tag}"] = jnp.ones(z.shape, bool) if soft else z > 0
    return {k: out[k] for k in sorted(out)}


def _closed_form_flat(a, p, n, dA, dB, mA, mB, soft):
    """Both passes fused (small inputs, per-triplet margins, user distances)."""
    scal = _pass1(a, p, n, dA, dB, mA, mB, soft)
    return _pass2(scal, dA, dB, soft, (a, p, n, mA, mB))
