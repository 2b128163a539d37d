r"""The :math:`O(1)`-per-triplet part of the closed-form gradient angles, in orthonormal
coordinates of :math:`\operatorname{span}(a, p, n)` (used by :mod:`geotrip.core._closed_form`).

From the Gram entries of pass 1 (:math:`g_{11} = \|\delta_p\|^2`, :math:`g_{22} =
\|\delta_n\|^2`, :math:`g_{12} = \delta_p\cdot\delta_n`, :math:`\delta_x = x - \sigma_x a`)
take the frame :math:`e_0 = a`, :math:`e_1 = u_{a\to p}`, :math:`e_2 \perp e_0, e_1` (the
Cholesky factor of the Gram matrix :math:`M`):

.. math:: \sin\theta_{ax} = \sqrt{g(1 - g/4)},\quad \cos\theta_{ax} = \sigma_x(1 - g/2),\quad
          \cos\psi = \frac{g_{12} - \alpha_p\alpha_n}{\sin\theta_{ap}\sin\theta_{an}},\quad
          \alpha_x = a\cdot\delta_x = -\sigma_x g/2,

with :math:`\psi` the angle between the tangents :math:`u_{a\to p}, u_{a\to n}` and
:math:`\sin\psi = \sqrt{(1-\cos\psi)(1+\cos\psi)}`. Then :math:`a = (1, 0, 0)`,
:math:`\delta_p = (\alpha_p, \sin\theta_{ap}, 0)`, :math:`\delta_n = (\alpha_n,
\sin\theta_{an}\cos\psi, \sin\theta_{an}\sin\psi)`, and every gradient block is a 3-vector:
the Riemannian ones with pair weights :math:`w_p, w_n` are

.. math:: g_a = (0,\ w_n\cos\psi - w_p,\ w_n\sin\psi),\quad
          g_p = -w_p(\sin\theta_{ap}, -\cos\theta_{ap}, 0),\quad
          g_n = w_n(\sin\theta_{an}, -\cos\theta_{an}\cos\psi, -\cos\theta_{an}\sin\psi),

the raw ones are the coefficient vectors of ``geotrip.core._closed_form._RAW_COEFS``
mapped by the factor. Angles between two such vectors: for at most four coordinates
:math:`\operatorname{atan2}(\|u\wedge v\|, u\cdot v)` with :math:`\|u\wedge v\|^2 =
\sum_{i<j}(u_iv_j - u_jv_i)^2` (no cancellation for small or near-:math:`\pi` angles, no
normalisation), else Kahan's :math:`2\operatorname{atan2}(\|\,|v|u - |u|v\|, \|\,|v|u +
|u|v\|)`. The Riemannian positive and negative blocks are parallel (angle 0 or
:math:`\pi` by the signs of the weights), and the Riemannian joint gradient is the 4-vector
:math:`(g_{a,1}, g_{a,2}, w_p, w_n)` (the blocks are orthogonal and :math:`u_{p\to a},
u_{n\to a}` unit). About 6 square roots and 6 arctangents per triplet for a pair of built-in
distances, against 34 square roots and 8 arctangents of quadratic forms in :math:`M` before.

Exact zero coordinates are ``None`` (trace time), so that nothing is computed for them.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from .._numerics import safe_div, safe_sqrt

__all__: list[str] = []

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


def _atan2_upper(y, x):
    """``atan2(y, x)`` in ``[0, pi]`` for ``y >= 0`` and any ``x``."""
    at = _atan2_nonneg(y, jnp.abs(x))
    return jnp.where(x < 0, math.pi - at, at)


# --- small vectors: tuples of arrays, None for an exact zero --------------------------------


def _mul(x, y):
    return None if x is None or y is None else x * y


def _sum(xs):
    xs = [x for x in xs if x is not None]
    return None if not xs else sum(xs[1:], xs[0])


def _neg(x):
    return None if x is None else -x


def _sub(x, y):
    return _sum([x, _neg(y)])


def _angle(u, v, like):
    r"""Angle between the small vectors ``u, v`` (tuples of arrays or ``None``) and whether it
    is defined (both nonzero); NaN where not. ``like``: an array of the output's shape and
    dtype."""
    nu2 = _sum([_mul(x, x) for x in u])
    nv2 = _sum([_mul(x, x) for x in v])
    if nu2 is None or nv2 is None:
        ok = jnp.zeros(like.shape, bool)
        return jnp.full_like(like, jnp.nan), ok
    ok = (nu2 > 0) & (nv2 > 0)
    if len(u) <= 4:
        dot = _sum([_mul(x, y) for x, y in zip(u, v)])
        minors = [
            _sub(_mul(u[i], v[j]), _mul(u[j], v[i]))
            for i in range(len(u))
            for j in range(i + 1, len(u))
        ]
        minors = [m for m in minors if m is not None]
        zero = jnp.zeros_like(like)
        dot = zero if dot is None else dot
        if not minors:
            wedge = zero
        elif len(minors) == 1:
            wedge = jnp.abs(minors[0])
        else:
            wedge = safe_sqrt(_sum([m * m for m in minors]))
        th = _atan2_upper(wedge, dot)
    else:
        nu, nv = safe_sqrt(nu2), safe_sqrt(nv2)
        su, sv = [_mul(nv, x) for x in u], [_mul(nu, y) for y in v]
        dm2 = _sum([_mul(d, d) for d in (_sub(x, y) for x, y in zip(su, sv))])
        dp2 = _sum([_mul(d, d) for d in (_sum([x, y]) for x, y in zip(su, sv))])
        th = 2 * _atan2_nonneg(safe_sqrt(dm2), safe_sqrt(dp2))
    return jnp.where(ok, th, jnp.full_like(th, jnp.nan)), ok


def _parallel_angle(wA, wB):
    """Angle between ``wA x`` and ``wB x`` for a unit vector ``x``: 0 or pi by the signs."""
    ok = (wA != 0) & (wB != 0)
    th = jnp.where((wA > 0) == (wB > 0), jnp.zeros_like(wA), jnp.full_like(wA, math.pi))
    return jnp.where(ok, th, jnp.full_like(th, jnp.nan)), ok


class _Frame:
    """Orthonormal coordinates of span(a, p, n) from the Gram entries (module docstring)."""

    def __init__(self, g11, g22, g12, sp, sn):
        self.g11, self.g22, self.sp, self.sn = g11, g22, sp, sn
        self.sin_p = safe_sqrt(g11 * (1 - g11 / 4))
        self.sin_n = safe_sqrt(g22 * (1 - g22 / 4))
        self.cos_p = sp * (1 - g11 / 2)
        self.cos_n = sn * (1 - g22 / 2)
        self.al_p, self.al_n = -sp * g11 / 2, -sn * g22 / 2
        den = self.sin_p * self.sin_n
        c = jnp.clip(safe_div(g12 - self.al_p * self.al_n, den), -1, 1)
        self.cpsi = jnp.where(den > 0, c, jnp.ones_like(c))
        self.spsi = safe_sqrt((1 - self.cpsi) * (1 + self.cpsi))
        self.ok_p, self.ok_n = self.sin_p > 0, self.sin_n > 0

    def coords(self, c):
        """Frame coordinates of the vector with coefficients ``c`` in (a, delta_p, delta_n)."""
        return (
            _sum([c[0], _mul(c[1], self.al_p), _mul(c[2], self.al_n)]),
            _sum([_mul(c[1], self.sin_p), _mul(c[2], self.sin_n * self.cpsi)]),
            _mul(c[2], self.sin_n * self.spsi),
        )

    def weights(self, wp, wn):
        """Pair weights, 0 where the tangent direction is undefined (x = +-a)."""
        zero = jnp.zeros_like(wp)
        return jnp.where(self.ok_p, wp, zero), jnp.where(self.ok_n, wn, zero)

    def riemannian(self, wp, wn):
        """The Riemannian gradient blocks (3-vectors) for masked pair weights ``wp, wn``."""
        return (
            (None, wn * self.cpsi - wp, wn * self.spsi),
            (-wp * self.sin_p, wp * self.cos_p, None),
            (wn * self.sin_n, -wn * self.cos_n * self.cpsi, -wn * self.cos_n * self.spsi),
        )


def frame_angles(F: _Frame, wA, wB, rawA, rawB):
    """The angles and masks (``{name: (theta, ok)}``) between the gradients of losses A and B:
    Riemannian from the masked pair weights ``wA = (wp, wn)``, ``wB``; raw from the
    coefficient blocks ``rawA``, ``rawB`` in (a, delta_p, delta_n) (``"riemannian"`` for a
    scale-invariant ambient form: the raw gradients are the Riemannian ones; ``None`` for no
    raw angles)."""
    like = F.g11
    (wpA, wnA), (wpB, wnB) = wA, wB
    gaA, gaB = F.riemannian(wpA, wnA)[0], F.riemannian(wpB, wnB)[0]
    out = {
        "riemannian/anchor": _angle(gaA[1:], gaB[1:], like),
        "riemannian/positive": _parallel_angle(wpA, wpB),
        "riemannian/negative": _parallel_angle(wnA, wnB),
        "riemannian/joint": _angle((*gaA[1:], wpA, wnA), (*gaB[1:], wpB, wnB), like),
    }
    if rawA is None or rawB is None:
        return out
    if rawA == "riemannian" and rawB == "riemannian":
        return out | {k.replace("riemannian", "raw"): v for k, v in out.items()}
    blocks = [
        F.riemannian(*w) if raw == "riemannian" else tuple(F.coords(c) for c in raw)
        for raw, w in ((rawA, wA), (rawB, wB))
    ]
    for i, b in enumerate(("anchor", "positive", "negative")):
        out[f"raw/{b}"] = _angle(blocks[0][i], blocks[1][i], like)
    out["raw/joint"] = _angle(sum(blocks[0], ()), sum(blocks[1], ()), like)
    return out
