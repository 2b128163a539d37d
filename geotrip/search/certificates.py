r"""Counterexample certificates: writing them, and checking them independently.

A *certificate* is a JSON file that states a fact about one configuration of
triplets on the unit sphere, in a form anyone can re-check without geotrip's
JAX code. :func:`verify_certificate` is that re-check. It is deliberately
**independent of the code that found the configuration**: it imports neither JAX
nor geotrip's distance, loss or gradient modules, and uses no autodiff. It
re-implements the closed forms (below) twice over, in float64 NumPy and in
mpmath at 50 significant digits, with the same plain code run on two number
backends.

Format (``"format": "geotrip-certificate/1"``)
-----------------------------------------------
* ``points``: rows of *decimal strings* (e.g. ``"0.3127"``). The configuration is
  the rows **exactly re-normalised**: :math:`x_i = r_i/\|r_i\|` with :math:`r_i`
  the exact decimal row (computed in mpmath at 50 digits; in float64 from the
  nearest doubles).
* ``triplets``: ``[[anchor, positive, negative], ...]`` row indices.
* ``losses``: ``{"A": {"distance", "margin"}, "B": {...}, "soft": bool}``. Distances
  are names of the family (``chord_sq``, ``chord``, ``geodesic``, ``geodesic_sq``,
  ``cosine``); margins are decimal strings or numbers.
* ``claims``: the claimed numbers (see :data:`CLAIM_NAMES`); every claim present is
  recomputed and must agree within :data:`REL_TOL`.
* ``assertions``: strict inequalities ``"QUANTITY > BOUND"`` or ``"QUANTITY < BOUND"``
  over claim names (e.g. ``"angle_deg > 90"``, ``"step.delta_B > 0"``); each must
  hold in mpmath with a margin of safety (:func:`safety_margin`).
* ``objective``, ``search``, ``provenance``: how it was found (informational, not checked).

Closed forms (notation of :mod:`geotrip.core._gradients`)
-----------------------------------------------------
.. math::
   \theta(x,y) = 2\operatorname{atan2}(\|x-y\|, \|x+y\|),\qquad
   u_{x\to y} = \frac{y - (x\cdot y)x}{\|y - (x\cdot y)x\|},

   z_k = g(\theta_{a_kp_k}) - g(\theta_{a_kn_k}) + m,\quad
   \ell_k = \max(0, z_k)\ \text{or}\ \log(1+e^{z_k}),\quad s_k = \mathbb 1[z_k>0]\ \text{or}\ \sigma(z_k),

   G_{a} \mathrel{+}= s_k(-g'(\theta_{ap})u_{a\to p} + g'(\theta_{an})u_{a\to n}),\
   G_{p} \mathrel{+}= -s_k g'(\theta_{ap}) u_{p\to a},\
   G_{n} \mathrel{+}= s_k g'(\theta_{an}) u_{n\to a}.

Raw (ambient) pair gradients :math:`\partial_x d(x,y)`: ``chord_sq`` :math:`2(x-y)`,
``chord`` :math:`(x-y)/\|x-y\|`, ``cosine`` :math:`-y`, ``geodesic``
:math:`-u_{x\to y}`, ``geodesic_sq`` :math:`-2\theta u_{x\to y}`.

Claims: ``angle_deg`` (angle between the flattened Riemannian gradients
:math:`G_A, G_B`, degrees), ``raw_angle_deg`` (same for raw gradients),
``cos``, ``grad_norm_A``, ``grad_norm_B``, ``loss_A``, ``loss_B``,
``slope_B_along_A`` :math:`= -\langle G_A,G_B\rangle/\|G_A\|` (first-order change of B
along A's unit descent direction), ``slope_A_along_B``, ``z_A``, ``z_B`` (lists),
``active_disagreement`` (number of triplets active under exactly one hinge), and
``step = {"size": eta, "along": "A"|"B", "delta_A", "delta_B"}``: the changes of
both losses after :math:`X' = \operatorname{normalize}(X + \eta D)` with
:math:`D = -G/\|G\|_F` the unit Riemannian descent direction of the named loss.

Robustness rules (what makes a claim *certifiable*)
---------------------------------------------------
* every claimed number must agree with the 50-digit value within
  ``REL_TOL * max(1, |value|)``, and the float64 value must agree with the 50-digit
  one within the same tolerance (else the configuration is ill-conditioned);
* with the hard hinge, no triplet may lie within :data:`HINGE_TOL` of its hinge
  boundary under either loss (the gradient is not defined there);
* no pair of an active triplet may be within :data:`PAIR_TOL` (in :math:`\sin\theta`) of
  coincident or antipodal (its tangent direction is undefined there);
* the gradients named by a claim must not vanish (norm at least :data:`GRAD_TOL`);
* every assertion must hold in mpmath by at least :func:`safety_margin`, i.e. by
  :data:`SAFETY_ABS` plus :data:`SAFETY_REL` times the bound, which is many orders
  of magnitude above float64 rounding error, and the float64 value must satisfy it too.

The thresholds are constants of this module; values written in a file do not
loosen them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CERTIFICATE_FORMAT",
    "CLAIM_NAMES",
    "CertificateError",
    "VerificationResult",
    "certificate_quantities",
    "format_decimal_points",
    "load_certificate",
    "safety_margin",
    "verify_certificate",
    "write_certificate",
]

CERTIFICATE_FORMAT = "geotrip-certificate/1"
MP_DIGITS = 50
REL_TOL = 1e-8
"""Claimed values and the float64 recomputation must match the 50-digit value within ``REL_TOL * max(1, |v|)``."""
HINGE_TOL = 1e-7
"""A hard-hinge triplet with ``|z| < HINGE_TOL`` (in the distance's units) is on the boundary: not certifiable."""
PAIR_TOL = 1e-7
"""A pair of an active triplet with ``sin(theta) < PAIR_TOL`` has no well-conditioned tangent direction."""
GRAD_TOL = 1e-9
"""A gradient with Frobenius norm below this is treated as zero (its angle is undefined)."""
SAFETY_ABS = 1e-7
SAFETY_REL = 1e-7

_DISTANCE_NAMES = ("chord_sq", "chord", "geodesic", "geodesic_sq", "cosine")
CLAIM_NAMES = (
    "angle_deg",
    "raw_angle_deg",
    "cos",
    "grad_norm_A",
    "grad_norm_B",
    "loss_A",
    "loss_B",
    "slope_B_along_A",
    "slope_A_along_B",
    "z_A",
    "z_B",
    "active_disagreement",
    "step",
)
_SCALAR_QUANTITIES = (
    "angle_deg",
    "raw_angle_deg",
    "cos",
    "grad_norm_A",
    "grad_norm_B",
    "loss_A",
    "loss_B",
    "slope_B_along_A",
    "slope_A_along_B",
    "active_disagreement",
    "step.delta_A",
    "step.delta_B",
)
_ASSERTION = re.compile(
    r"^\s*([A-Za-z_][A-Za-z_.]*)\s*([<>])\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$"
)


class CertificateError(ValueError):
    """The file is not a readable, well-formed certificate (corrupt, truncated, wrong schema)."""


def safety_margin(bound: float) -> float:
    """The margin by which an asserted strict inequality must hold: ``SAFETY_ABS + SAFETY_REL * |bound|``."""
    return SAFETY_ABS + SAFETY_REL * abs(float(bound))


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


class _Calc:
    """Closed-form triplet quantities for one configuration, on one number backend."""

    def __init__(self, B, points, triplets, losses):
        self.B = B
        self.X = [self._normalize([B.num(c) for c in row]) for row in points]
        self.T = [tuple(int(i) for i in t) for t in triplets]
        self.soft = bool(losses["soft"])
        self.dist = {k: losses[k]["distance"] for k in ("A", "B")}
        self.margin = {k: B.num(losses[k]["margin"]) for k in ("A", "B")}

    # geometry ---------------------------------------------------------------------------
    def _norm(self, u):
        return self.B.sqrt(_dot(u, u))

    def _normalize(self, u):
        n = self._norm(u)
        if not n > 0:
            raise CertificateError("a point row is the zero vector; it cannot be normalised")
        return [a / n for a in u]

    def angle(self, x, y):
        return 2 * self.B.atan2(self._norm(_sub(x, y)), self._norm(_add(x, y)))

    def tangent(self, x, y):
        v = _sub(y, _scale(_dot(x, y), x))
        n = self._norm(v)
        return [a / n for a in v] if n > 0 else [self.B.zero for _ in v]

    # the distance family ------------------------------------------------------------------
    def profile(self, name, t):
        B = self.B
        if name == "chord_sq":
            return 4 * B.sin(t / 2) ** 2
        if name == "chord":
            return 2 * B.sin(t / 2)
        if name == "geodesic":
            return t
        if name == "geodesic_sq":
            return t * t
        return 2 * B.sin(t / 2) ** 2  # cosine: 1 - cos t

    def weight(self, name, t):
        B = self.B
        if name == "chord_sq":
            return 2 * B.sin(t)
        if name == "chord":
            return B.cos(t / 2)
        if name == "geodesic":
            return B.one
        if name == "geodesic_sq":
            return 2 * t
        return B.sin(t)

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

    def grads(self, key, riemannian=True):
        X, name = self.X, self.dist[key]
        d = len(X[0])
        G = [[self.B.zero] * d for _ in X]
        for (a, p, n), zk in zip(self.T, self.z(key)):
            s = self._slope(zk)
            if s == 0:
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


# ----------------------------------------------------------------------------------------
# Schema checks
# ----------------------------------------------------------------------------------------


def _finite_number(x, what):
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise CertificateError(f"{what} must be a number, got {type(x).__name__}")
    if not math.isfinite(float(x)):
        raise CertificateError(f"{what} must be finite, got {x!r}")
    return float(x)


_DECIMAL = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")


def _decimal(x, what):
    if isinstance(x, str):
        if not _DECIMAL.match(x.strip()):
            raise CertificateError(f"{what} must be a decimal number, got {x!r}")
        return x.strip()
    return repr(_finite_number(x, what))


def _check_schema(cert: Any) -> dict:
    if not isinstance(cert, dict):
        raise CertificateError("a certificate must be a JSON object")
    fmt = cert.get("format")
    if fmt != CERTIFICATE_FORMAT:
        raise CertificateError(
            f"unknown certificate format {fmt!r}; expected {CERTIFICATE_FORMAT!r}"
        )
    for key in ("points", "triplets", "losses", "claims"):
        if key not in cert:
            raise CertificateError(f"missing field {key!r}")
    pts = cert["points"]
    if not isinstance(pts, list) or not pts or not all(isinstance(r, list) for r in pts):
        raise CertificateError("'points' must be a non-empty list of rows")
    dim = len(pts[0])
    if dim < 2 or any(len(r) != dim for r in pts):
        raise CertificateError(
            f"'points' rows must all have the same length >= 2 (first row has {dim})"
        )
    points = [
        [_decimal(c, f"points[{i}][{j}]") for j, c in enumerate(r)] for i, r in enumerate(pts)
    ]
    tri = cert["triplets"]
    if not isinstance(tri, list) or not tri:
        raise CertificateError(
            "'triplets' must be a non-empty list of [anchor, positive, negative]"
        )
    triplets = []
    for k, t in enumerate(tri):
        if (
            not isinstance(t, list)
            or len(t) != 3
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in t)
        ):
            raise CertificateError(f"triplets[{k}] must be three integer indices, got {t!r}")
        if not all(0 <= i < len(points) for i in t):
            raise CertificateError(
                f"triplets[{k}] = {t} has an index outside [0, {len(points) - 1}]"
            )
        if len(set(t)) != 3:
            raise CertificateError(f"triplets[{k}] = {t} repeats a point")
        triplets.append(t)
    losses = cert["losses"]
    if not isinstance(losses, dict):
        raise CertificateError("'losses' must be an object with keys A, B, soft")
    clean = {"soft": losses.get("soft", False)}
    if not isinstance(clean["soft"], bool):
        raise CertificateError("'losses.soft' must be true or false")
    for key in ("A", "B"):
        spec = losses.get(key)
        if not isinstance(spec, dict) or "distance" not in spec or "margin" not in spec:
            raise CertificateError(f"'losses.{key}' must be an object with 'distance' and 'margin'")
        if spec["distance"] not in _DISTANCE_NAMES:
            raise CertificateError(
                f"'losses.{key}.distance' is {spec['distance']!r}; valid: {', '.join(_DISTANCE_NAMES)}"
            )
        clean[key] = {
            "distance": spec["distance"],
            "margin": _decimal(spec["margin"], f"losses.{key}.margin"),
        }
    claims = cert["claims"]
    if not isinstance(claims, dict) or not claims:
        raise CertificateError("'claims' must be a non-empty object")
    unknown = sorted(set(claims) - set(CLAIM_NAMES))
    if unknown:
        raise CertificateError(
            f"unknown claim(s) {', '.join(unknown)}; known: {', '.join(CLAIM_NAMES)}"
        )
    for name, v in claims.items():
        if name in ("z_A", "z_B"):
            if not isinstance(v, list) or len(v) != len(triplets):
                raise CertificateError(f"claim {name!r} must be a list with one value per triplet")
            for k, x in enumerate(v):
                _finite_number(x, f"claims.{name}[{k}]")
        elif name == "step":
            if not isinstance(v, dict) or v.get("along") not in ("A", "B"):
                raise CertificateError("claim 'step' must be an object with 'along' = 'A' or 'B'")
            for f in ("size", "delta_A", "delta_B"):
                if f not in v:
                    raise CertificateError(f"claim 'step' lacks {f!r}")
                _finite_number(v[f], f"claims.step.{f}")
            if not v["size"] > 0:
                raise CertificateError("claims.step.size must be positive")
        else:
            _finite_number(v, f"claims.{name}")
    assertions = cert.get("assertions", [])
    if not isinstance(assertions, list) or not all(isinstance(a, str) for a in assertions):
        raise CertificateError("'assertions' must be a list of strings such as 'angle_deg > 90'")
    parsed = []
    for a in assertions:
        m = _ASSERTION.match(a)
        if not m or m.group(1) not in _SCALAR_QUANTITIES:
            raise CertificateError(
                f"cannot read assertion {a!r}; expected 'QUANTITY > NUMBER' or "
                f"'QUANTITY < NUMBER' with QUANTITY in {', '.join(_SCALAR_QUANTITIES)}"
            )
        q = m.group(1)
        base = q.split(".")[0]
        if base not in claims:
            raise CertificateError(f"assertion {a!r} is about {q!r}, which is not among the claims")
        parsed.append((a, q, m.group(2), float(m.group(3))))
    return {
        "points": points,
        "triplets": triplets,
        "losses": clean,
        "claims": claims,
        "assertions": parsed,
    }


def load_certificate(path: str | Path) -> dict:
    """Read a certificate file; raise :class:`CertificateError` with a one-line reason if unreadable."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CertificateError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CertificateError(f"cannot read {path}: {exc}") from None
    try:
        cert = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CertificateError(f"{path} is not valid JSON (corrupt or truncated?): {exc}") from None
    _check_schema(cert)
    return cert


# ----------------------------------------------------------------------------------------
# Recomputation and verification
# ----------------------------------------------------------------------------------------


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
    return out


def certificate_quantities(cert: Mapping, *, backend: str = "mpmath") -> dict[str, float]:
    """Recompute every quantity a certificate can claim, with the independent closed forms.

    Args:
      cert: a certificate dict (as loaded from JSON).
      backend: ``"mpmath"`` (50 digits) or ``"float64"`` (NumPy).

    Returns:
      A dict of floats (lists for ``z_A``/``z_B``): ``angle_deg``, ``raw_angle_deg``,
      ``cos``, ``grad_norm_A``, ..., ``step.delta_A``, ``step.delta_B``.
    """
    c = _check_schema(cert)
    names = set(CLAIM_NAMES)
    step = c["claims"].get("step")
    vals = _run_backend(backend, c, names, step)
    return {
        k: ([float(x) for x in v] if isinstance(v, list) else float(v))
        for k, v in vals.items()
        if not k.startswith("_")
    }


def _run_backend(backend, c, names, step):
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


@dataclass
class VerificationResult:
    """Outcome of :func:`verify_certificate`.

    Attributes:
      ok: True when every claim and assertion checked out.
      failures: one line per failed check.
      checked: one line per passed check.
      values: the 50-digit recomputed quantities (as floats).
      path: the file, when verifying a file.
    """

    ok: bool
    failures: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    def summary(self) -> str:
        where = f"{self.path}: " if self.path else ""
        if self.ok:
            ang = self.values.get("angle_deg")
            extra = f"; Riemannian gradient angle {ang:.6f} deg" if isinstance(ang, float) else ""
            return (
                f"{where}certificate verified: {len(self.checked)} checks pass in float64 and in "
                f"mpmath at {MP_DIGITS} digits{extra}"
            )
        return f"{where}certificate REJECTED: {len(self.failures)} failed check(s)"


def _tol(v) -> float:
    return REL_TOL * max(1.0, abs(float(v)))


def verify_certificate(cert_or_path: Mapping | str | Path) -> VerificationResult:
    """Re-check every claim and assertion of a certificate, independently of geotrip's JAX code.

    Each claim is recomputed from the exactly re-normalised decimal points with the
    closed forms of this module, in float64 (NumPy) and in mpmath at 50 digits.
    See the module docstring for the robustness rules and tolerances.

    Args:
      cert_or_path: a certificate dict or the path of a JSON certificate.

    Returns:
      A :class:`VerificationResult`; ``ok`` is False with one message per failed check.

    Raises:
      CertificateError: the file is unreadable, truncated, not JSON, or not a well-formed
        certificate (one-line reason).
    """
    path = None
    if isinstance(cert_or_path, (str, Path)):
        path = str(cert_or_path)
        cert = load_certificate(cert_or_path)
    else:
        cert = cert_or_path
    c = _check_schema(cert)
    claims = c["claims"]
    res = VerificationResult(ok=True, path=path)
    fail, good = res.failures.append, res.checked.append
    step = claims.get("step")
    names = set(claims)
    mp_vals = _run_backend("mpmath", c, set(CLAIM_NAMES), step)
    f64 = _run_backend("float64", c, set(CLAIM_NAMES), step)
    res.values = {
        k: ([float(x) for x in v] if isinstance(v, list) and k != "_pair_sines" else float(v))
        for k, v in mp_vals.items()
        if k != "_pair_sines"
    }

    # Robust active sets.
    zA, zB = mp_vals["z_A"], mp_vals["z_B"]
    if not c["losses"]["soft"]:
        for tag, zs in (("A", zA), ("B", zB)):
            for k, zk in enumerate(zs):
                if abs(zk) < HINGE_TOL:
                    fail(
                        f"triplet {k} is on the hinge boundary of loss {tag} "
                        f"(z = {float(zk):.3e}, |z| < {HINGE_TOL:g}): not certifiable"
                    )
    for k, ((sp, sn), za, zb) in enumerate(zip(mp_vals["_pair_sines"], zA, zB)):
        if c["losses"]["soft"] or za > 0 or zb > 0:
            for pair, sv in (("anchor-positive", sp), ("anchor-negative", sn)):
                if sv < PAIR_TOL:
                    fail(
                        f"triplet {k}: the {pair} pair is (nearly) coincident or antipodal "
                        f"(sin(theta) = {float(sv):.3e} < {PAIR_TOL:g}): not certifiable"
                    )
    for tag in ("A", "B"):
        gname = f"grad_norm_{tag}"
        uses = names & {"angle_deg", "cos", "slope_B_along_A", "slope_A_along_B"}
        if step is not None and step["along"] == tag:
            uses.add("step")
        if gname in mp_vals and mp_vals[gname] < GRAD_TOL and uses:
            fail(
                f"the Riemannian gradient of loss {tag} vanishes (norm {float(mp_vals[gname]):.3e}); "
                f"angles and slopes are undefined"
            )

    # Claimed values.
    def compare(label, claimed, exact, approx):
        if exact is None:
            fail(
                f"{label}: claimed {claimed!r} but the quantity is undefined for this configuration"
            )
            return
        e, a = float(exact), float(approx) if approx is not None else float("nan")
        if not abs(a - e) <= _tol(e):
            fail(f"{label}: ill-conditioned, float64 gives {a!r} but 50-digit mpmath gives {e!r}")
        if not abs(float(claimed) - e) <= _tol(e):
            fail(
                f"{label}: claimed {float(claimed)!r}, recomputed {e!r} (mpmath, {MP_DIGITS} digits) "
                f"and {a!r} (float64); tolerance {_tol(e):.1e}"
            )
        else:
            good(f"{label} = {e!r}")

    for name, claimed in claims.items():
        if name in ("z_A", "z_B"):
            for k, (cz, ez, az) in enumerate(zip(claimed, mp_vals[name], f64[name])):
                compare(f"{name}[{k}]", cz, ez, az)
        elif name == "step":
            for f in ("delta_A", "delta_B"):
                compare(
                    f"step.{f} (size {claimed['size']:g} along {claimed['along']})",
                    claimed[f],
                    mp_vals[f"step.{f}"],
                    f64.get(f"step.{f}"),
                )
        else:
            compare(name, claimed, mp_vals.get(name), f64.get(name))

    # Assertions, with the margin of safety.
    for text, q, op, bound in c["assertions"]:
        v = mp_vals.get(q)
        if v is None:
            fail(f"assertion {text!r}: {q} is undefined for this configuration")
            continue
        margin = safety_margin(bound)
        gap = float(v - bound) if op == ">" else float(bound - v)
        gap64 = (float(f64[q]) - bound) if op == ">" else (bound - float(f64[q]))
        if gap <= 0:
            fail(f"assertion {text!r} is false: {q} = {float(v)!r} (mpmath, {MP_DIGITS} digits)")
        elif gap < margin or gap64 < margin:
            fail(
                f"assertion {text!r} holds by only {gap:.3e} (< safety margin {margin:.1e}): not certifiable"
            )
        else:
            good(f"assertion {text!r} holds by {gap:.3e} (safety margin {margin:.1e})")
    res.ok = not res.failures
    return res


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------


def format_decimal_points(points: Sequence[Sequence[float]], decimals: int) -> list[list[str]]:
    """Round coordinates to ``decimals`` places and format them as short decimal strings.

    ``-0`` is written ``"0"``; trailing zeros are stripped. A row that rounds to the zero
    vector raises :class:`ValueError` (it cannot be re-normalised).
    """
    if not isinstance(decimals, int) or decimals < 0:
        raise ValueError(f"decimals must be a non-negative integer, got {decimals!r}")
    rows = []
    for i, row in enumerate(np.asarray(points, dtype=np.float64)):
        strs = []
        for x in row:
            s = f"{round(float(x), decimals):.{decimals}f}"
            if "." in s:
                s = s.rstrip("0").rstrip(".")
            if s in ("-0", "", "-"):
                s = "0"
            strs.append(s)
        if all(float(s) == 0.0 for s in strs):
            raise ValueError(f"row {i} rounds to the zero vector at {decimals} decimals")
        rows.append(strs)
    return rows


def write_certificate(
    path: str | Path,
    *,
    points: Sequence[Sequence[str]],
    triplets: Sequence[Sequence[int]],
    losses: Mapping[str, Any],
    claims: Mapping[str, Any],
    assertions: Sequence[str] = (),
    kind: str = "angle",
    objective: Mapping[str, Any] | None = None,
    search: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    statement: str = "",
) -> Path:
    """Write a certificate JSON file (schema in the module docstring) and return its path.

    The content is schema-checked before writing (:class:`CertificateError` if malformed);
    it is not verified here (call :func:`verify_certificate`).
    """
    cert = {
        "format": CERTIFICATE_FORMAT,
        "kind": kind,
        "statement": statement,
        "points": [[str(c) for c in row] for row in points],
        "normalization": "each point is its decimal row divided by the row's exact Euclidean norm",
        "triplets": [[int(i) for i in t] for t in triplets],
        "losses": {
            "A": dict(losses["A"]),
            "B": dict(losses["B"]),
            "soft": bool(losses.get("soft", False)),
        },
        "claims": _plain(dict(claims)),
        "assertions": list(assertions),
        "verification": {
            "tolerance_rel": REL_TOL,
            "hinge_tol": HINGE_TOL,
            "pair_tol": PAIR_TOL,
            "grad_tol": GRAD_TOL,
            "safety_abs": SAFETY_ABS,
            "safety_rel": SAFETY_REL,
            "mp_digits": MP_DIGITS,
            "note": "thresholds of geotrip.search.certificates; values here are informational",
        },
        "objective": _plain(dict(objective or {})),
        "search": _plain(dict(search or {})),
        "provenance": _plain(dict(provenance or {})),
    }
    _check_schema(cert)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cert, indent=1) + "\n")
    return path


def _plain(x):
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    return x
