r"""Closed-form gradient angles: the implementation behind
:func:`geotrip.gradient_angles` (default ``method="closed_form"``) and
:func:`geotrip.gradient_angles_closed_form`.

The derivation (the basis :math:`a, \delta_p, \delta_n`, its Gram matrix :math:`M`, the raw and
Riemannian gradient coefficients, Kahan's angle formula in :math:`M`) is in the docstring of
:mod:`geotrip.sweeps._closed_form`. Here: one pass over :math:`a, p, n` (the Gram sums), then
:math:`O(1)` work per triplet, and a repair of the triplets where quadratic forms in :math:`M`
are ill-conditioned (``_repair``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .._numerics import safe_div, safe_sqrt
from ._distances import DISTANCES, Distance
from ._frame_angles import _atan2_nonneg, _Frame, frame_angles
from ._gradients import _masked_angle, _raw_triplet_grads
from ._losses import hinge_slope

__all__: list[str] = []

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
    """The Gram matrix M of (a, delta_p, delta_n): its entries, and the signs sigma_p, sigma_n."""

    def __init__(self, g11, g22, g12, sp, sn):
        self.g11, self.g22, self.g12 = g11, g22, g12
        self.g01 = -sp * g11 / 2
        self.g02 = -sn * g22 / 2
        self.sp, self.sn = sp, sn


def _ambient_basis(apn, sp, sn):
    r"""The basis vectors :math:`(a, \delta_p, \delta_n)`, each ``(..., d)``, of
    ``apn = (a, p, n)``: :math:`\delta_x = x - \sigma_x a` with the signs ``sp, sn`` of the
    Gram pass, less its radial rounding error (as in :func:`_gram_sums`)."""
    a, p, n = apn
    dot = lambda x, y: jnp.sum(x * y, axis=-1, keepdims=True)
    deltas = []
    for x, s in ((p, sp), (n, sn)):
        s = s[..., None]
        d = jnp.where(s > 0, x - a, x + a)
        deltas.append(d - (dot(a, d) + s * dot(d, d) / 2) * a)
    return (a, *deltas)


def _vec(*cs):
    return tuple(jnp.broadcast_arrays(*cs))


def _reduce(prods, lanes):
    """Sums over the last axis of the arrays ``prods`` in one variadic reduction (XLA fuses
    them into a single pass over the inputs; separate ``jnp.sum`` calls materialise the
    differences and read them repeatedly). ``lanes``: first sum ``(..., d / lanes, lanes)``
    over the middle axis (a reduction XLA:CPU vectorises along the lanes), then the lanes."""
    x0 = prods[0]
    d = x0.shape[-1]
    if lanes and d % lanes == 0 and d >= 2 * lanes:
        prods = tuple(x.reshape(x.shape[:-1] + (d // lanes, lanes)) for x in prods)
    zero = jnp.zeros((), x0.dtype)
    sums = jax.lax.reduce(
        prods,
        (zero,) * len(prods),
        lambda x, y: tuple(u + v for u, v in zip(x, y)),
        (x0.ndim - 1,),
    )
    return tuple(jnp.sum(x, -1) for x in sums) if sums[0].ndim == x0.ndim else sums


_LANES = 8


def _gram_sums(a, p, n, fast: bool = False):
    r"""The sums of one pass; returns the basis and (theta_ap, theta_an).

    Accurate (default): twelve sums of :math:`x \mp a`, so that :math:`\delta_x = x -
    \sigma_x a` keeps full relative accuracy for near-antipodal pairs too. ``fast``: five sums
    of :math:`p - a, n - a` (:math:`\|p-a\|^2, \|n-a\|^2, (p-a)\cdot(n-a), a\cdot(p-a),
    a\cdot(n-a)`), vectorised over lanes: about twice as fast; the entries with
    :math:`\sigma_x = -1` follow from :math:`\|a\| = 1` with an absolute error of a few
    :math:`\varepsilon`, so pairs with :math:`\|x + a\|^2 <` :func:`_antipodal_tol` are
    recomputed (:func:`_repair`)."""
    dm_p, dm_n = p - a, n - a
    if fast:
        qmp, qmn, cmm, amp, amn = _reduce(
            (dm_p * dm_p, dm_n * dm_n, dm_p * dm_n, a * dm_p, a * dm_n), _LANES
        )
        # |x + a|^2 = |x - a|^2 + 4 a.(x - a) + 4, a.(x + a) = a.(x - a) + 2, for unit a
        app, apn = amp + 2, amn + 2
        qpp, qpn = qmp + 2 * (amp + app), qmn + 2 * (amn + apn)
        cmp_, cpm = cmm + 2 * amp, cmm + 2 * amn
        cpp = cmp_ + 2 * apn
    else:
        dp_p, dp_n = p + a, n + a
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
        qmp, qpp, qmn, qpn, cmm, cmp_, cpm, cpp, amp, app, amn, apn = _reduce(prods, 0)
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
    # |a - x| = 2 sin(theta / 2), |a + x| = 2 cos(theta / 2): also the built-in profiles
    four = 4 * one
    m_p = safe_sqrt(jnp.where(pos_p, qmp, four - qpp))
    q_p = safe_sqrt(jnp.where(pos_p, four - qmp, qpp))
    m_n = safe_sqrt(jnp.where(pos_n, qmn, four - qpn))
    q_n = safe_sqrt(jnp.where(pos_n, four - qmn, qpn))
    t_ap = 2 * _atan2_nonneg(m_p, q_p)
    t_an = 2 * _atan2_nonneg(m_n, q_n)
    return B, t_ap, t_an, ((m_p / 2, q_p / 2), (m_n / 2, q_n / 2))


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


# Profile g and weight g' of the built-in distances from theta and its half-angle sine and
# cosine (known from the sums without trigonometric calls, which XLA:CPU does not vectorise:
# 6.5 ns per jnp.sin against 0.3 per sqrt here); the same functions as DISTANCES[name].
_HALF_ANGLE_FORMS = {
    "chord_sq": (lambda t, sh, ch: 4 * sh * sh, lambda t, sh, ch: 4 * sh * ch),
    "chord": (lambda t, sh, ch: 2 * sh, lambda t, sh, ch: ch),
    "geodesic": (lambda t, sh, ch: t, lambda t, sh, ch: jnp.ones_like(t)),
    "geodesic_sq": (lambda t, sh, ch: t * t, lambda t, sh, ch: 2 * t),
    "cosine": (lambda t, sh, ch: 2 * sh * sh, lambda t, sh, ch: 2 * sh * ch),
}


def _profile_weight(dist: Distance, t, half):
    """(g(t), g'(t)); ``half = (sin(t / 2), cos(t / 2))``."""
    if DISTANCES.get(dist.name) is dist:
        g, w = _HALF_ANGLE_FORMS[dist.name]
        return g(t, *half), w(t, *half)
    return dist.profile(t), dist.weight(t)


def _hinge_weights(t_ap, t_an, dist: Distance, margin, soft, halves):
    """Per-triplet scalars of one loss: hinge argument z, slope s, pair weights s g'(theta)."""
    (g_p, w_p), (g_n, w_n) = (_profile_weight(dist, t, h) for t, h in zip((t_ap, t_an), halves))
    z = g_p - g_n + margin
    s = hinge_slope(z, soft=soft)
    return z, s, s * w_p, s * w_n


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


_BLOCK = 4096


def _closed_form(a, p, n, dA, dB, mA, mB, soft, block: int = _BLOCK, repair: bool = True):
    """The eight angles and masks for triplets ``a, p, n`` of shape ``(..., d)``.

    Fewer than ``2 * _MIN_BLOCK`` triplets: the gradients are formed as d-vectors and their
    angles taken there, as in the autodiff path (``O(d)`` per angle; no loss of accuracy
    where the Gram matrix is nearly singular).
    Otherwise two passes over row blocks (``lax.fori_loop``, blocks of ``block`` rows, at
    least four blocks). Pass 1 reads ``a, p, n`` (the five fast sums of :func:`_gram_sums`)
    and writes 15 scalars per triplet (the Gram entries, both angles, each loss's hinge
    argument, slope and pair weights); pass 2 computes the eight angles from them in
    orthonormal coordinates (:mod:`geotrip.core._frame_angles`). The loop boundary makes XLA
    materialise the scalars once (in one fused pass XLA:CPU re-evaluates shared
    subexpressions inside each fusion that consumes them); blocks keep the temporaries in
    cache. Per-triplet margins and user distances of ambient kind ``custom`` (autodiff of
    the ambient form) take one fused pass (accurate sums). Then the ill-conditioned
    triplets, and after the fast sums the near-antipodal ones, are recomputed
    (:func:`_repair`).

    ``repair=False``: the Gram basis only, for every size, as before the repair existed (the
    sweeps' per-configuration metric, vmapped over one triplet at a time: ``O(1)`` per
    triplet after the sums, and the numbers of earlier ``geotrip sweep`` runs)."""
    lead = a.shape[:-1]
    size = math.prod(lead)
    d = a.shape[-1]
    if size < 2 * _MIN_BLOCK and repair:
        scal = _pass1(a, p, n, dA, dB, mA, mB, soft)
        return _pass2(scal, dA, dB, soft, (a, p, n, mA, mB), ambient=(a, p, n))
    scalar_margins = all(jnp.ndim(m) == 0 for m in (mA, mB))
    custom = "custom" in (dA.ambient_kind, dB.ambient_kind)
    flat = lambda x: jnp.broadcast_to(x, lead + x.shape[len(lead) :]).reshape(
        (size,) + x.shape[len(lead) :]
    )
    if size < 2 * _MIN_BLOCK or not scalar_margins or custom:
        scal = _pass1(a, p, n, dA, dB, mA, mB, soft)
        out = _pass2(scal, dA, dB, soft, (a, p, n, mA, mB))
        if not repair:
            return out
        scal, out = jax.tree.map(flat, (scal, out))
        a, p, n = (x.reshape(size, d) for x in (a, p, n))
    else:
        # at least two blocks: XLA inlines a loop of one iteration (and would fuse the passes)
        block = min(block, max(_MIN_BLOCK, -(-size // 4)))
        a, p, n = (x.reshape(size, d) for x in (a, p, n))
        p1 = lambda t: _pass1(*t, dA, dB, mA, mB, soft, fast=True)
        scal = _blocked(p1, (a, p, n), size, block)
        out = _blocked(lambda sc: _pass2(sc, dA, dB, soft), scal, size, block)
    if repair:
        fast = scalar_margins and not custom and size >= 2 * _MIN_BLOCK
        out = _repair(out, scal, (a, p, n), dA, dB, mA, mB, soft, fast)
    return {k: v.reshape(lead) for k, v in out.items()}


# sin^2(psi) (psi: the angle between the tangents u_{a->p}, u_{a->n}) below which _repair
# recomputes a triplet: sqrt(eps) of the dtype (float32: 3.5e-4, psi < 1.1 deg; float64:
# 1.5e-8, psi < 1.2e-4 rad). The Gram path's error there is about eps / sin^2(psi) rad, so at
# most about sqrt(eps) above it (measured: 1.3e-4 rad at psi = 1e-6 in float64).
# _repair gathers up to max(_MIN_REPAIR, size // (_REPAIR_SHARE * ceil(d / 4))) triplets
# (float32 d = 3: 1/32 of them, about 3x the share of uniform random triplets it repairs;
# the bound shrinks with d, as each repaired triplet costs O(d)); more (near-coplanar data,
# e.g. all of S^1) and it evaluates every triplet on the vectors.
_MIN_REPAIR = 64
_REPAIR_SHARE = 32


def _ill_conditioned(base):
    """Triplets whose Gram matrix M is nearly singular: the tangents u_{a->p}, u_{a->n} nearly
    parallel (a, p, n nearly on one great circle). There a quadratic form c^T M c loses
    accuracy like the square of the condition number (float32: up to 1.6 rad of error in
    the anchor angles, measured), since sin(psi) is known from the sums only to about
    sqrt(eps)."""
    g11, g22, g12, sp, sn = base[:5]
    s2p = g11 * (1 - g11 / 4)  # sin^2(theta_ap) = |tangent part of delta_p|^2
    s2n = g22 * (1 - g22 / 4)
    t = g12 - (sp * g11 / 2) * (sn * g22 / 2)  # tangent parts' inner product
    prod = s2p * s2n
    tau = math.sqrt(jnp.finfo(g11.dtype).eps)
    return (prod > 0) & (prod - t * t < tau * prod)


def _antipodal(base):
    """Pairs whose fast Gram entries (:func:`_gram_sums` with ``fast``) are inaccurate:
    sigma = -1 and |x + a|^2 below eps^(1/4) of the dtype (float32: 0.019, an angle within
    0.14 rad of pi; float64: 1.2e-4). Above it their absolute error of a few eps costs at most
    about eps^(7/8) rad."""
    g11, g22, _, sp, sn = base[:5]
    tol = float(jnp.finfo(g11.dtype).eps) ** 0.25
    return ((sp < 0) & (g11 < tol)) | ((sn < 0) & (g22 < tol))


def _repair(out, scal, apn, dA, dB, mA, mB, soft, fast):
    """Recompute the ill-conditioned triplets (:func:`_ill_conditioned`) with the quadratic
    gradients formed as d-vectors (:func:`_ambient_basis`): the cancellation then happens
    once, on d-vectors, as in the autodiff path. Rows ``(size,)``, inputs ``(size, d)``. A
    fixed number of them is gathered (``lax.switch``: under ``vmap`` every branch runs)."""
    size, d = apn[0].shape
    ill = _ill_conditioned(scal[0])
    if fast:  # recompute the pass-1 scalars too, from the accurate sums
        ill = ill | _antipodal(scal[0])
    p1 = lambda x: _pass1(*x, dA, dB, mA, mB, soft) if fast else None
    k = min(size, max(_MIN_REPAIR, size // (_REPAIR_SHARE * -(-d // 4))))

    def few(out):
        idx = jnp.nonzero(ill, size=k, fill_value=size)[0]
        take = lambda x: jnp.take(x, idx, axis=0, mode="fill", fill_value=1)
        sub_apn = tuple(map(take, apn))
        sub = _pass2(p1(sub_apn) or jax.tree.map(take, scal), dA, dB, soft, ambient=sub_apn)
        return {
            key: v.at[idx].set(sub[key], mode="drop") if key in sub else v for key, v in out.items()
        }

    def every(out):
        return out | _pass2(p1(apn) or scal, dA, dB, soft, ambient=apn)

    count = jnp.sum(ill)
    branch = jnp.where(count == 0, 0, jnp.where(count <= k, 1, 2))
    return jax.lax.switch(branch, (lambda out: out, few, every), out)


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


def _pass1(a, p, n, dA, dB, mA, mB, soft, fast=False):
    B, t_ap, t_an, halves = _gram_sums(a, p, n, fast)
    base = (B.g11, B.g22, B.g12, B.sp, B.sn, t_ap, t_an)
    hinge = lambda d, m: _hinge_weights(t_ap, t_an, d, m, soft, halves)
    return base, hinge(dA, mA), hinge(dB, mB)


def _pass2(scal, dA, dB, soft, custom_inputs=None, ambient=None):
    """The eight angles from pass 1's scalars; ``custom_inputs = (a, p, n, mA, mB)`` for
    a distance whose raw gradient needs autodiff of its ambient form (without them the raw
    angles of such a distance are left out); ``ambient = (a, p, n)`` to form the gradients
    as d-vectors (:func:`_ambient_basis`) and take their angles there, as autodiff does."""
    (g11, g22, g12, sp, sn, t_ap, t_an), scA, scB = scal
    blocks = ("anchor", "positive", "negative")
    if ambient is None:  # orthonormal coordinates of span(a, p, n) (geotrip.core._frame_angles)
        F = _Frame(g11, g22, g12, sp, sn)
        wA, wB = F.weights(*scA[2:]), F.weights(*scB[2:])
        raws = [
            "riemannian" if d.ambient_kind == "angle" else _RAW_COEFS.get(d.ambient_kind)
            for d in (dA, dB)
        ]
        raws = [
            r if r is None or r == "riemannian" else r(F, t_ap, t_an, sc[1])
            for r, sc in zip(raws, (scA, scB))
        ]
        res = frame_angles(F, wA, wB, *raws)
        names = sorted(res)
        angles = [res[k] for k in names]
        kinds = sorted({k.split("/")[0] for k in names})
    else:  # the gradients as d-vectors (blocks (..., d), joint (..., 3d)), as autodiff has them
        B = _Basis(g11, g22, g12, sp, sn)
        dirs = _directions(B)
        rA, wA = _coef_grads(B, t_ap, t_an, dA, scA, dirs)
        rB, wB = _coef_grads(B, t_ap, t_an, dB, scB, dirs)
        kinds = [("riemannian", rA, rB)] + (
            [("raw", wA, wB)] if wA is not None and wB is not None else []
        )
        names, pairs = [], []
        for kind, gA, gB in kinds:
            names += [f"{kind}/{b}" for b in blocks] + [f"{kind}/joint"]
            pairs += [((gA[i],), (gB[i],)) for i in range(3)] + [(gA, gB)]
        basis = _ambient_basis(ambient, sp, sn)
        vec = lambda u: jnp.concatenate(
            [sum(c[..., None] * b for c, b in zip(x, basis)) for x in u], -1
        )
        angles = [_masked_angle(vec(u), vec(v)) for u, v in pairs]
    out: dict[str, Array] = {}
    for name, (th, ok) in zip(names, angles):
        out[name], out["defined/" + name] = th, ok
    if len(kinds) == 1 and custom_inputs is not None:  # raw gradients by autodiff
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
