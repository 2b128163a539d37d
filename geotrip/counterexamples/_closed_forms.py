r"""The verifier's closed forms, on two number backends: NumPy float64 and mpmath (no JAX).

This module is deliberately **independent of the code that finds configurations**: it
imports neither JAX nor geotrip's distance, loss or gradient modules, and uses no
autodiff. It re-implements the closed forms below once, as plain code that runs on
NumPy float64 scalars and on mpmath numbers at 50 significant digits. The distance
family is restated here as a small table for that reason (it cannot use
:class:`geotrip.Distance`, whose profiles are JAX functions).

.. math::
   \theta(x,y) = 2\operatorname{atan2}(\|x-y\|, \|x+y\|),\qquad
   u_{x\to y} = \frac{y - (x\cdot y)x}{\|y - (x\cdot y)x\|},

   z_k = g(\theta_{a_kp_k}) - g(\theta_{a_kn_k}) + m,\quad
   \ell_k = \max(0, z_k)\ \text{or}\ \log(1+e^{z_k}),\quad
   s_k = \mathbb 1[z_k>0]\ \text{or}\ \sigma(z_k),

   G_{a} \mathrel{+}= s_k(-g'(\theta_{ap})u_{a\to p} + g'(\theta_{an})u_{a\to n}),\
   G_{p} \mathrel{+}= -s_k g'(\theta_{ap}) u_{p\to a},\
   G_{n} \mathrel{+}= s_k g'(\theta_{an}) u_{n\to a}.

Raw (ambient) pair gradients :math:`\partial_x d(x,y)`: ``chord_sq`` :math:`2(x-y)`,
``chord`` :math:`(x-y)/\|x-y\|`, ``cosine`` :math:`-y`, ``geodesic``
:math:`-u_{x\to y}`, ``geodesic_sq`` :math:`-2\theta u_{x\to y}`.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._format import MP_DIGITS, CertificateError

# ----------------------------------------------------------------------------------------
# Number backends: the same plain code runs on NumPy float64 scalars and on mpmath mpf.
# ----------------------------------------------------------------------------------------


class _Float64:
    name = "float64"

    def num(self, s):
        return np.float64(float(s))

    zero = np.float64(0.0)
    one = np.float64(1.0)
    pi = np.float64(np.pi)
    sqrt = staticmethod(np.sqrt)
    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)
    atan2 = staticmethod(np.arctan2)
    exp = staticmethod(np.exp)
    log1p = staticmethod(np.log1p)

    def to_float(self, x):
        return float(x)


class _MP:
    name = "mpmath"

    def __init__(self, mp):
        self.mp = mp
        self.zero = mp.mpf(0)
        self.one = mp.mpf(1)
        self.pi = mp.pi
        self.sqrt, self.sin, self.cos = mp.sqrt, mp.sin, mp.cos
        self.atan2, self.exp, self.log1p = mp.atan2, mp.exp, mp.log1p

    def num(self, s):
        return self.mp.mpf(str(s))

    def to_float(self, x):
        return float(x)


def _dot(u, v):
    s = u[0] * v[0]
    for a, b in zip(u[1:], v[1:]):
        s = s + a * b
    return s


def _sub(u, v):
    return [a - b for a, b in zip(u, v)]


def _add(u, v):
    return [a + b for a, b in zip(u, v)]


def _scale(c, u):
    return [c * a for a in u]


# The family, restated for the verifier (profile g and weight g' on a number backend B).
_PROFILES = {
    "chord_sq": lambda B, t: 4 * B.sin(t / 2) ** 2,
    "chord": lambda B, t: 2 * B.sin(t / 2),
    "geodesic": lambda B, t: t,
    "geodesic_sq": lambda B, t: t * t,
    "cosine": lambda B, t: 2 * B.sin(t / 2) ** 2,  # 1 - cos t
}
_WEIGHTS = {
    "chord_sq": lambda B, t: 2 * B.sin(t),
    "chord": lambda B, t: B.cos(t / 2),
    "geodesic": lambda B, t: B.one,
    "geodesic_sq": lambda B, t: 2 * t,
    "cosine": lambda B, t: B.sin(t),
}


class _Calc:
    """Closed-form triplet quantities for one configuration, on one number backend."""

    def __init__(self, B, points, triplets, losses):
        self.B = B
        self.X = [self._normalize([B.num(c) for c in row], row) for row in points]
        self.T = [tuple(int(i) for i in t) for t in triplets]
        self.soft = bool(losses["soft"])
        self.dist = {k: losses[k]["distance"] for k in ("A", "B")}
        self.margin = {k: B.num(losses[k]["margin"]) for k in ("A", "B")}

    # geometry ---------------------------------------------------------------------------
    def _norm(self, u):
        return self.B.sqrt(_dot(u, u))

    def _normalize(self, u, text=None):
        n = self._norm(u)
        if not n > 0:
            if text is None or all(decimal.Decimal(str(c)) == 0 for c in text):
                raise CertificateError("a point row is the zero vector; it cannot be normalised")
            raise CertificateError(
                "a point row's norm underflows to 0 in float64 (entries too small); "
                "scale the row up (points are normalised by the verifier)"
            )
        if self.B.name != "mpmath" and not math.isfinite(float(n)):
            raise CertificateError(
                "a point row's norm overflows float64; scale the row down "
                "(points are normalised by the verifier)"
            )
        return [a / n for a in u]

    def angle(self, x, y):
        return 2 * self.B.atan2(self._norm(_sub(x, y)), self._norm(_add(x, y)))

    def tangent(self, x, y):
        v = _sub(y, _scale(_dot(x, y), x))
        n = self._norm(v)
        return [a / n for a in v] if n > 0 else [self.B.zero for _ in v]

    # the distance family ------------------------------------------------------------------
    def profile(self, name, t):
        return _PROFILES[name](self.B, t)

    def weight(self, name, t):
        return _WEIGHTS[name](self.B, t)

    def raw_pair_grad(self, name, x, y):
        """Euclidean gradient in x of the ambient form of d(x, y) at unit x."""
        if name == "chord_sq":
            return _scale(2, _sub(x, y))
        if name == "chord":
            d = _sub(x, y)
            n = self._norm(d)
            return [a / n for a in d] if n > 0 else [self.B.zero for _ in d]
        if name == "cosine":
            return [-a for a in y]
        u = self.tangent(x, y)
        if name == "geodesic":
            return [-a for a in u]
        return _scale(-2 * self.angle(x, y), u)

    # losses and gradients ----------------------------------------------------------------------
    def z(self, key, X=None):
        X = self.X if X is None else X
        name, m = self.dist[key], self.margin[key]
        return [
            self.profile(name, self.angle(X[a], X[p]))
            - self.profile(name, self.angle(X[a], X[n]))
            + m
            for a, p, n in self.T
        ]

    def _hinge(self, z):
        B = self.B
        if self.soft:
            return z + B.log1p(B.exp(-z)) if z > 0 else B.log1p(B.exp(z))
        return z if z > 0 else B.zero

    def _slope(self, z):
        B = self.B
        if self.soft:
            return B.one / (B.one + B.exp(-z))
        return B.one if z > 0 else B.zero

    def loss(self, key, X=None):
        total = self.B.zero
        for zk in self.z(key, X):
            total = total + self._hinge(zk)
        return total

    def grads(self, key, riemannian=True, only=None):
        """Flattened gradient of loss ``key``; with ``only`` (a set of triplet indices),
        summed over those triplets alone."""
        X, name = self.X, self.dist[key]
        d = len(X[0])
        G = [[self.B.zero] * d for _ in X]
        for k, ((a, p, n), zk) in enumerate(zip(self.T, self.z(key))):
            s = self._slope(zk)
            if s == 0 or (only is not None and k not in only):
                continue
            if riemannian:
                wp = s * self.weight(name, self.angle(X[a], X[p]))
                wn = s * self.weight(name, self.angle(X[a], X[n]))
                G[a] = _add(
                    G[a],
                    _add(
                        _scale(-wp, self.tangent(X[a], X[p])), _scale(wn, self.tangent(X[a], X[n]))
                    ),
                )
                G[p] = _add(G[p], _scale(-wp, self.tangent(X[p], X[a])))
                G[n] = _add(G[n], _scale(wn, self.tangent(X[n], X[a])))
            else:
                G[a] = _add(
                    G[a],
                    _scale(
                        s,
                        _sub(
                            self.raw_pair_grad(name, X[a], X[p]),
                            self.raw_pair_grad(name, X[a], X[n]),
                        ),
                    ),
                )
                G[p] = _add(G[p], _scale(s, self.raw_pair_grad(name, X[p], X[a])))
                G[n] = _add(G[n], _scale(-s, self.raw_pair_grad(name, X[n], X[a])))
        return [c for row in G for c in row]

    def vec_angle_deg(self, u, v):
        nu, nv = self._norm(u), self._norm(v)
        uh, vh = [a / nu for a in u], [b / nv for b in v]
        return self.angle(uh, vh) * 180 / self.B.pi

    def step(self, along, size):
        g = self.grads(along)
        ng = self._norm(g)
        d = len(self.X[0])
        D = [-c / ng for c in g]
        Xs = [
            self._normalize([self.X[i][j] + self.B.num(size) * D[i * d + j] for j in range(d)])
            for i in range(len(self.X))
        ]
        return {
            "delta_A": self.loss("A", Xs) - self.loss("A"),
            "delta_B": self.loss("B", Xs) - self.loss("B"),
        }


def _quantities(calc: _Calc, names: set[str], step_spec: Mapping | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    need_riem = names & {
        "angle_deg",
        "cos",
        "grad_norm_A",
        "grad_norm_B",
        "slope_B_along_A",
        "slope_A_along_B",
    }
    if need_riem:
        GA, GB = calc.grads("A"), calc.grads("B")
        nA, nB = calc._norm(GA), calc._norm(GB)
        out["grad_norm_A"], out["grad_norm_B"] = nA, nB
        inner = _dot(GA, GB)
        if nA > 0:
            out["slope_B_along_A"] = -inner / nA
        if nB > 0:
            out["slope_A_along_B"] = -inner / nB
        if nA > 0 and nB > 0:
            out["cos"] = inner / (nA * nB)
            out["angle_deg"] = calc.vec_angle_deg(GA, GB)
    if "raw_angle_deg" in names:
        RA, RB = calc.grads("A", riemannian=False), calc.grads("B", riemannian=False)
        out["raw_grad_norm_A"], out["raw_grad_norm_B"] = calc._norm(RA), calc._norm(RB)
        if calc._norm(RA) > 0 and calc._norm(RB) > 0:
            out["raw_angle_deg"] = calc.vec_angle_deg(RA, RB)
    out["loss_A"], out["loss_B"] = calc.loss("A"), calc.loss("B")
    out["z_A"], out["z_B"] = calc.z("A"), calc.z("B")
    out["active_disagreement"] = calc.B.num(
        sum(int((za > 0) != (zb > 0)) for za, zb in zip(out["z_A"], out["z_B"]))
    )
    if step_spec is not None:
        st = calc.step(step_spec["along"], repr(float(step_spec["size"])))
        out["step.delta_A"], out["step.delta_B"] = st["delta_A"], st["delta_B"]
    out.update(_decomposition(calc, out["z_A"], out["z_B"]))
    return out


def _decomposition(calc: _Calc, zA, zB) -> dict[str, Any]:
    """Activity pattern per triplet; angle over the triplets active under both hinges;
    share of each gradient's squared norm from the triplets active under its hinge only."""
    if calc.soft:
        onA = onB = [True] * len(zA)
    else:
        onA, onB = [z > 0 for z in zA], [z > 0 for z in zB]
    names = {(True, True): "both", (True, False): "A", (False, True): "B"}
    pattern = [names.get((a, b), "none") for a, b in zip(onA, onB)]
    both = {k for k, p in enumerate(pattern) if p == "both"}
    out: dict[str, Any] = {"pattern": pattern}
    GA2, GB2 = calc.grads("A", only=both), calc.grads("B", only=both)
    if calc._norm(GA2) > 0 and calc._norm(GB2) > 0:
        out["angle_both_deg"] = calc.vec_angle_deg(GA2, GB2)
    for tag in ("A", "B"):
        mine = {k for k, p in enumerate(pattern) if p == tag}
        G, part = calc.grads(tag), calc.grads(tag, only=mine)
        nG2 = _dot(G, G)
        out[f"share_one_only_{tag}"] = _dot(part, part) / nG2 if nG2 > 0 else calc.B.zero
    return out


def run_backend(backend: str, c: dict, names: set[str], step) -> dict[str, Any]:
    """The quantities ``names`` of a schema-checked certificate ``c`` on one backend
    (``"float64"`` or ``"mpmath"`` at ``MP_DIGITS``); mpmath adds ``_pair_sines``."""
    if backend == "float64":
        with np.errstate(all="ignore"):
            calc = _Calc(_Float64(), c["points"], c["triplets"], c["losses"])
            return _quantities(calc, names, step)
    if backend != "mpmath":
        raise ValueError(f"backend must be 'mpmath' or 'float64', got {backend!r}")
    import mpmath

    with mpmath.workdps(MP_DIGITS):
        calc = _Calc(_MP(mpmath), c["points"], c["triplets"], c["losses"])
        vals = _quantities(calc, names, step)
        vals["_pair_sines"] = _pair_sines(calc)
    return vals


def _pair_sines(calc: _Calc):
    out = []
    for a, p, n in calc.T:
        out.append(
            (
                calc.B.sin(calc.angle(calc.X[a], calc.X[p])),
                calc.B.sin(calc.angle(calc.X[a], calc.X[n])),
            )
        )
    return out


def slope_matched_margin(losses: Mapping) -> float:
    r""":math:`m_A\,g_B'(\pi/2)/g_A'(\pi/2)` in mpmath (the ``"slope"`` matching rule)."""
    import mpmath

    with mpmath.workdps(MP_DIGITS):
        B = _MP(mpmath)
        t = B.pi / 2
        wA, wB = (_WEIGHTS[losses[k]["distance"]](B, t) for k in ("A", "B"))
        return float(B.num(losses["A"]["margin"]) * wB / wA)
