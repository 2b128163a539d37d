r"""Closed-form gradient angles: the implementation behind
:func:`geotrip.gradient_angles` (default ``method="closed_form"``) and
:func:`geotrip.gradient_angles_closed_form`.

The derivation (the basis :math:`a, \delta_p, \delta_n`, its Gram matrix :math:`M`, the raw and
Riemannian gradient coefficients, Kahan's angle formula in :math:`M`) is in the docstring of
:mod:`geotrip.sweeps._closed_form`. Here: one pass over :math:`a, p, n` (the Gram sums), then
:math:`O(1)` work per triplet, and a repair of the triplets where quadratic forms in :math:`M`
are ill-conditioned (:func:`_repair`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .._numerics import safe_div, safe_sqrt
from ._distances import Distance
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


def _coef_angles(B, pairs):
    """Angles between the vectors with coefficients u, v (tuples of blocks), for each pair
    ``(u, v)``; NaN where one is zero. Kahan's formula with both arguments scaled by
    |u| |v| > 0, which needs no division: theta = 2 atan2(| |v| u - |u| v |, | |v| u + |u| v |).
    """
    n2 = iter([B.sq(x) for u, v in pairs for x in (*u, *v)])
    norms = [
        (safe_sqrt(sum(next(n2) for _ in u)), safe_sqrt(sum(next(n2) for _ in v))) for u, v in pairs
    ]
    terms = []
    for (u, v), (nu, nv) in zip(pairs, norms):
        su, sv = [_scale(nv, x) for x in u], [_scale(nu, x) for x in v]
        terms += [_sub(x, y) for x, y in zip(su, sv)] + [_add(x, y) for x, y in zip(su, sv)]
    q = iter([B.sq(x) for x in terms])
    out = []
    for (u, _), (nu, nv) in zip(pairs, norms):
        dm, dp = (safe_sqrt(sum(next(q) for _ in u)) for _ in range(2))
        th = 2 * _atan2_nonneg(dm, dp)
        ok = (nu > 0) & (nv > 0)
        out.append((jnp.where(ok, th, jnp.full_like(th, jnp.nan)), ok))
    return out


_BLOCK = 4096


def _closed_form(a, p, n, dA, dB, mA, mB, soft, block: int = _BLOCK, repair: bool = True):
    """The eight angles and masks for triplets ``a, p, n`` of shape ``(..., d)``.

    Fewer than ``2 * _MIN_BLOCK`` triplets: the gradients are formed as d-vectors and their
    angles taken there, as in the autodiff path (``O(d)`` per angle; no loss of accuracy
    where the Gram matrix is nearly singular).
    Otherwise two passes over row blocks (``lax.fori_loop``). Pass 1 reads ``a, p, n`` (the
    fused Gram sums) and writes 15 scalars per triplet (the Gram entries, both angles, each
    loss's hinge argument, slope and pair weights); pass 2 computes the eight angles from them.
    The loop boundary makes XLA materialise the scalars once: in one fused pass XLA:CPU
    re-evaluates g and g' (sin, cos, ...) inside each of the ~36 fusions that consume them.
    Blocks keep the O(1)-per-triplet temporaries in cache. Per-triplet margins and user
    distances of ambient kind ``custom`` (autodiff of the ambient form) take one fused pass.
    Then the ill-conditioned triplets are recomputed (:func:`_repair`).

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
        block = min(block, size // 2 // _MIN_BLOCK * _MIN_BLOCK)
        a, p, n = (x.reshape(size, d) for x in (a, p, n))
        scal = _blocked(lambda t: _pass1(*t, dA, dB, mA, mB, soft), (a, p, n), size, block)
        out = _blocked(lambda sc: _pass2(sc, dA, dB, soft), scal, size, block)
    if repair:
        out = _repair(out, scal, (a, p, n), dA, dB, soft)
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


def _repair(out, scal, apn, dA, dB, soft):
    """Recompute the ill-conditioned triplets (:func:`_ill_conditioned`) with the quadratic
    gradients formed as d-vectors (:func:`_ambient_basis`): the cancellation then happens
    once, on d-vectors, as in the autodiff path. Rows ``(size,)``, inputs ``(size, d)``. A
    fixed number of them is gathered (``lax.switch``: under ``vmap`` every branch runs)."""
    size, d = apn[0].shape
    ill = _ill_conditioned(scal[0])
    k = min(size, max(_MIN_REPAIR, size // (_REPAIR_SHARE * -(-d // 4))))

    def few(out):
        idx = jnp.nonzero(ill, size=k, fill_value=size)[0]
        take = lambda x: jnp.take(x, idx, axis=0, mode="fill", fill_value=1)
        sub = _pass2(jax.tree.map(take, scal), dA, dB, soft, ambient=tuple(map(take, apn)))
        return {
            key: v.at[idx].set(sub[key], mode="drop") if key in sub else v for key, v in out.items()
        }

    def every(out):
        return out | _pass2(scal, dA, dB, soft, ambient=apn)

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


def _pass1(a, p, n, dA, dB, mA, mB, soft):
    B, t_ap, t_an = _gram_sums(a, p, n)
    base = (B.g11, B.g22, B.g12, B.sp, B.sn, t_ap, t_an)
    return base, _hinge_weights(t_ap, t_an, dA, mA, soft), _hinge_weights(t_ap, t_an, dB, mB, soft)


def _pass2(scal, dA, dB, soft, custom_inputs=None, ambient=None):
    """The eight angles from pass 1's scalars; ``custom_inputs = (a, p, n, mA, mB)`` for
    a distance whose raw gradient needs autodiff of its ambient form (without them the raw
    angles of such a distance are left out); ``ambient = (a, p, n)`` to form the gradients
    as d-vectors (:func:`_ambient_basis`) and take their angles there, as autodiff does."""
    (g11, g22, g12, sp, sn, t_ap, t_an), scA, scB = scal
    B = _Basis(g11, g22, g12, sp, sn)
    dirs = _directions(B)
    rA, wA = _coef_grads(B, t_ap, t_an, dA, scA, dirs)
    rB, wB = _coef_grads(B, t_ap, t_an, dB, scB, dirs)
    blocks = ("anchor", "positive", "negative")
    kinds = [("riemannian", rA, rB)] + (
        [("raw", wA, wB)] if wA is not None and wB is not None else []
    )
    names, pairs = [], []
    for kind, gA, gB in kinds:
        names += [f"{kind}/{b}" for b in blocks] + [f"{kind}/joint"]
        pairs += [((gA[i],), (gB[i],)) for i in range(3)] + [(gA, gB)]
    if ambient is None:
        angles = _coef_angles(B, pairs)
    else:  # the gradients as d-vectors (blocks (..., d), joint (..., 3d)), as autodiff has them
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
