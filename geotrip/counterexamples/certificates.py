r"""Counterexample certificates: checking them independently of the search (no JAX).

A *certificate* is a JSON file that states a fact about one configuration of
triplets on the unit sphere, in a form anyone can re-check without geotrip's
JAX code. :func:`verify_certificate` is that re-check. It is deliberately
**independent of the code that found the configuration**: this module and the two it
imports (:mod:`geotrip.counterexamples._format`, the file format and its schema;
:mod:`geotrip.counterexamples._closed_forms`, the closed forms on NumPy float64 and mpmath
backends) import neither JAX nor geotrip's distance, loss or gradient modules, and use
no autodiff. The same plain code runs on two number backends: float64 and mpmath at
50 significant digits.

Claims: ``angle_deg`` (angle between the flattened Riemannian gradients
:math:`G_A, G_B`, degrees), ``raw_angle_deg`` (same for raw gradients),
``cos``, ``grad_norm_A``, ``grad_norm_B``, ``loss_A``, ``loss_B``,
``slope_B_along_A`` :math:`= -\langle G_A,G_B\rangle/\|G_A\|` (first-order change of B
along A's unit descent direction), ``slope_A_along_B``, ``z_A``, ``z_B`` (lists),
``active_disagreement`` (number of triplets active under exactly one hinge), and
``step = {"size": eta, "along": "A"|"B", "delta_A", "delta_B"}``: the changes of
both losses after :math:`X' = \operatorname{normalize}(X + \eta D)` with
:math:`D = -G/\|G\|_F` the unit Riemannian descent direction of the named loss.

Weighting vs active set: ``pattern`` (per triplet ``"both"``, ``"A"``, ``"B"`` or
``"none"``: under which hinges it is active), ``angle_both_deg`` (the angle between the
gradients summed over the triplets active under both hinges only: the weighting effect)
and ``share_one_only_A`` (:math:`\|G_A^{A\,only}\|^2/\|G_A\|^2`, the part of A's
gradient from triplets active under A only; likewise B). A certificate may require a
pattern with ``"active": "both"`` (every triplet ``both``) or ``"disjoint"`` (every
triplet ``A`` or ``B``), with assertions ``z_A[i] > gap`` that keep it robust; and it may
state how B's margin was chosen, ``losses.match = {"rule": "slope", ...}``, which for the
slope rule is re-checked: :math:`m_B = m_A\,g_B'(\pi/2)/g_A'(\pi/2)`.

Robustness rules (what makes a claim *certifiable*)
---------------------------------------------------
* every claimed number must agree with the 50-digit value within
  ``REL_TOL * max(1, |value|)``, and the float64 value must agree with the 50-digit
  one within the same tolerance (else the configuration is ill-conditioned);
* with the hard hinge, no triplet may lie within ``HINGE_TOL`` of its hinge
  boundary under either loss (the gradient is not defined there);
* no pair of an active triplet may be within ``PAIR_TOL`` (in :math:`\sin\theta`) of
  coincident or antipodal (its tangent direction is undefined there);
* the gradients named by a claim must not vanish (norm at least ``GRAD_TOL``);
* every assertion must hold in mpmath by at least :func:`safety_margin`, i.e. by
  ``SAFETY_ABS`` plus ``SAFETY_REL`` times the bound, which is many orders
  of magnitude above float64 rounding error, and the float64 value must satisfy it too.

The thresholds are constants of :mod:`geotrip.counterexamples._format`; values written in a
file do not loosen them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._closed_forms import run_backend, slope_matched_margin
from ._format import (
    CLAIM_NAMES,
    GRAD_TOL,
    HINGE_TOL,
    MP_DIGITS,
    PAIR_TOL,
    REL_TOL,
    CertificateError,
    _check_schema,
    load_certificate,
    safety_margin,
)

__all__ = [
    "CertificateError",
    "VerificationResult",
    "certificate_quantities",
    "verify_certificate",
]


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
    vals = run_backend(backend, c, set(CLAIM_NAMES), c["claims"].get("step"))
    return _plain_values(vals)


def _plain_values(vals) -> dict[str, Any]:
    """Floats (lists of floats, or of strings for ``pattern``), without private entries."""
    out = {}
    for k, v in vals.items():
        if k.startswith("_"):
            continue
        if isinstance(v, list):
            out[k] = [x if isinstance(x, str) else float(x) for x in v]
        else:
            out[k] = float(v)
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


def _check_robustness(c, claims, mp_vals, fail) -> None:
    """Hinge arguments away from 0, active pairs away from coincident/antipodal, and
    non-vanishing gradients wherever a claim needs them."""
    zA, zB = mp_vals["z_A"], mp_vals["z_B"]
    soft = c["losses"]["soft"]
    if not soft:
        for tag, zs in (("A", zA), ("B", zB)):
            for k, zk in enumerate(zs):
                if abs(zk) < HINGE_TOL:
                    fail(
                        f"triplet {k} is on the hinge boundary of loss {tag} "
                        f"(z = {float(zk):.3e}, |z| < {HINGE_TOL:g}): not certifiable"
                    )
    for k, ((sp, sn), za, zb) in enumerate(zip(mp_vals["_pair_sines"], zA, zB)):
        if soft or za > 0 or zb > 0:
            for pair, sv in (("anchor-positive", sp), ("anchor-negative", sn)):
                if sv < PAIR_TOL:
                    fail(
                        f"triplet {k}: the {pair} pair is (nearly) coincident or antipodal "
                        f"(sin(theta) = {float(sv):.3e} < {PAIR_TOL:g}): not certifiable"
                    )
    step = claims.get("step")
    for tag in ("A", "B"):
        gname = f"grad_norm_{tag}"
        uses = set(claims) & {"angle_deg", "cos", "slope_B_along_A", "slope_A_along_B"}
        if step is not None and step["along"] == tag:
            uses.add("step")
        if gname in mp_vals and mp_vals[gname] < GRAD_TOL and uses:
            fail(
                f"the Riemannian gradient of loss {tag} vanishes "
                f"(norm {float(mp_vals[gname]):.3e}); angles and slopes are undefined"
            )


def _compare(label, claimed, exact, approx, fail, good) -> None:
    """One claimed number against the 50-digit value, and float64 against 50 digits."""
    if exact is None:
        fail(f"{label}: claimed {claimed!r} but the quantity is undefined for this configuration")
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


def _check_claims(claims, mp_vals, f64, fail, good) -> None:
    for name, claimed in claims.items():
        if name == "pattern":
            if claimed != mp_vals["pattern"] or f64["pattern"] != mp_vals["pattern"]:
                fail(
                    f"pattern: claimed {claimed}, recomputed {mp_vals['pattern']} (mpmath) and "
                    f"{f64['pattern']} (float64)"
                )
            else:
                good(f"pattern = {claimed}")
        elif name in ("z_A", "z_B"):
            for k, (cz, ez, az) in enumerate(zip(claimed, mp_vals[name], f64[name])):
                _compare(f"{name}[{k}]", cz, ez, az, fail, good)
        elif name == "step":
            for f in ("delta_A", "delta_B"):
                _compare(
                    f"step.{f} (size {claimed['size']:g} along {claimed['along']})",
                    claimed[f],
                    mp_vals[f"step.{f}"],
                    f64.get(f"step.{f}"),
                    fail,
                    good,
                )
        else:
            _compare(name, claimed, mp_vals.get(name), f64.get(name), fail, good)


def _lookup(vals, q):
    """A scalar quantity by name, ``z_A[3]`` included; None if undefined."""
    if q.endswith("]"):
        name, _, index = q[:-1].partition("[")
        return vals[name][int(index)]
    return vals.get(q)


def _check_pattern_and_match(c, mp_vals, fail, good) -> None:
    """The required activity pattern (``active``) and a slope-matched margin, re-checked."""
    active, pattern = c["active"], mp_vals["pattern"]
    allowed = {"both": ("both",), "disjoint": ("A", "B")}.get(active)
    if allowed is not None:
        bad = [i for i, p in enumerate(pattern) if p not in allowed]
        if bad:
            fail(
                f"required pattern {active!r} does not hold: triplet(s) {bad} are "
                f"{[pattern[i] for i in bad]} (mpmath)"
            )
        else:
            good(f"required pattern {active!r} holds for all {len(pattern)} triplets")
    match = c["losses"].get("match")
    if match and match.get("rule") == "slope":
        expect, given = slope_matched_margin(c["losses"]), float(c["losses"]["B"]["margin"])
        if abs(given - expect) <= _tol(expect):
            good(f"margin of B = {given!r} is slope-matched to A's ({expect!r})")
        else:
            fail(f"margin of B is {given!r}, but the slope rule gives {expect!r}")


def _check_assertions(assertions, mp_vals, f64, fail, good) -> None:
    """Each asserted strict inequality, with the margin of safety, in mpmath and float64."""
    for text, q, op, bound in assertions:
        v = _lookup(mp_vals, q)
        if v is None:
            fail(f"assertion {text!r}: {q} is undefined for this configuration")
            continue
        margin = safety_margin(bound)
        gap = float(v - bound) if op == ">" else float(bound - v)
        v64 = float(_lookup(f64, q))
        gap64 = (v64 - bound) if op == ">" else (bound - v64)
        if gap <= 0:
            fail(f"assertion {text!r} is false: {q} = {float(v)!r} (mpmath, {MP_DIGITS} digits)")
        elif gap < margin or gap64 < margin:
            fail(
                f"assertion {text!r} holds by only {gap:.3e} (< safety margin {margin:.1e}): "
                "not certifiable"
            )
        else:
            good(f"assertion {text!r} holds by {gap:.3e} (safety margin {margin:.1e})")


def verify_certificate(cert_or_path: Mapping | str | Path) -> VerificationResult:
    """Re-check every claim and assertion of a certificate, independently of geotrip's JAX code.

    Each claim is recomputed from the exactly re-normalised decimal points with the
    closed forms of :mod:`geotrip.counterexamples._closed_forms`, in float64 (NumPy) and in
    mpmath at 50 digits. See the module docstring for the robustness rules and
    tolerances.

    Args:
      cert_or_path: a certificate dict or the path of a JSON certificate.

    Returns:
      A :class:`VerificationResult`; ``ok`` is False with one message per failed check,
      and False for a certificate without assertions (it would certify nothing).

    Raises:
      CertificateError: the file is unreadable, truncated, not JSON, or not a well-formed
        certificate (one-line reason).

    One chord_sq-vs-geodesic triplet on the sphere, both hinges active; a claim that
    matches the recomputation verifies, a tampered one is rejected:

    >>> from geotrip.counterexamples.certificates import verify_certificate
    >>> cert = {
    ...     "format": "geotrip-certificate/1",
    ...     "points": [["1", "0", "0"], ["0", "1", "0"], ["0.8", "0", "0.6"]],
    ...     "triplets": [[0, 1, 2]],
    ...     "losses": {"A": {"distance": "chord_sq", "margin": "0.2"},
    ...                "B": {"distance": "geodesic", "margin": "0.1"}, "soft": False},
    ...     "claims": {"loss_A": 1.8, "angle_deg": 14.036243467926479},
    ...     "assertions": ["angle_deg < 60"],
    ... }
    >>> res = verify_certificate(cert)
    >>> res.ok, round(res.values["angle_deg"], 6)
    (True, 14.036243)
    >>> cert["claims"]["loss_A"] = 1.9
    >>> res = verify_certificate(cert)
    >>> res.ok, res.failures[0][:33]
    (False, 'loss_A: claimed 1.9, recomputed 1')
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
    mp_vals = run_backend("mpmath", c, set(CLAIM_NAMES), step)
    f64 = run_backend("float64", c, set(CLAIM_NAMES), step)
    res.values = _plain_values(mp_vals)
    _check_robustness(c, claims, mp_vals, fail)
    _check_claims(claims, mp_vals, f64, fail, good)
    _check_pattern_and_match(c, mp_vals, fail, good)
    _check_assertions(c["assertions"], mp_vals, f64, fail, good)
    if not c["assertions"]:
        fail(
            "the certificate asserts nothing (empty 'assertions'): matching numbers alone "
            "certify no property; state at least one, e.g. 'angle_deg > 90'"
        )
    res.ok = not res.failures
    return res
