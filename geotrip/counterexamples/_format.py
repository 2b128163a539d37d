r"""Certificate files: the format, its constants and schema, reading and writing (no JAX).

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
  over claim names (e.g. ``"angle_deg > 90"``, ``"step.delta_B > 0"``, or one hinge
  argument ``"z_A[1] > 0.001"``); each must hold in mpmath with a margin of safety
  (:func:`safety_margin`).
* ``active`` (optional, default ``"any"``): a required per-triplet activity pattern,
  ``"both"`` or ``"disjoint"`` (:data:`ACTIVE_MODES`), checked against the recomputed
  ``pattern`` claim; ``losses.match`` (optional): how B's margin was derived from A's.
* ``objective``, ``search``, ``provenance``: how it was found (informational, not checked).

The thresholds are constants of this module; values written in a file do not
loosen them. This module imports only the standard library and NumPy.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_text

__all__ = [
    "CERTIFICATE_FORMAT",
    "CLAIM_NAMES",
    "CertificateError",
    "format_decimal_points",
    "load_certificate",
    "safety_margin",
    "write_certificate",
]

CERTIFICATE_FORMAT = "geotrip-certificate/1"
MP_DIGITS = 50
REL_TOL = 1e-8
"""Claimed values and the float64 recomputation must match the 50-digit value within
``REL_TOL * max(1, |v|)``."""
HINGE_TOL = 1e-7
"""A hard-hinge triplet with ``|z| < HINGE_TOL`` (in the distance's units) is on the boundary:
not certifiable."""
PAIR_TOL = 1e-7
"""A pair of an active triplet with ``sin(theta) < PAIR_TOL`` has no well-conditioned tangent
direction."""
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
    "pattern",
    "angle_both_deg",
    "share_one_only_A",
    "share_one_only_B",
)
PATTERN_VALUES = ("both", "A", "B", "none")
"""Per-triplet activity: active under both hinges, under A only, under B only, under none."""
ACTIVE_MODES = ("any", "both", "disjoint")
"""Required activity patterns: no constraint; every triplet ``both``; every one ``A`` or ``B``."""
_INDEXED_QUANTITIES = ("z_A", "z_B")
# What an assertion may bound: every scalar claim, the step claim's two deltas in its place,
# and (indexed) z_A[i], z_B[i]; the pattern is not a number.
_SCALAR_QUANTITIES = tuple(
    q
    for name in CLAIM_NAMES
    if name not in (*_INDEXED_QUANTITIES, "pattern")
    for q in (("step.delta_A", "step.delta_B") if name == "step" else (name,))
)
_ASSERTION = re.compile(
    r"^\s*([A-Za-z_][A-Za-z_.]*)(?:\[([0-9]+)\])?\s*([<>])\s*"
    r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$"
)


class CertificateError(ValueError):
    """The file is not a readable, well-formed certificate (corrupt, truncated, wrong schema)."""


def safety_margin(bound: float) -> float:
    """The margin by which an asserted strict inequality must hold.

    It is ``SAFETY_ABS + SAFETY_REL * |bound|``.
    """
    return SAFETY_ABS + SAFETY_REL * abs(float(bound))


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
        if not math.isfinite(float(x)):
            raise CertificateError(
                f"{what} = {x.strip()!r} overflows float64 (largest about 1.8e308); "
                "the verifier checks in float64 too, so write the number (or its row) scaled"
            )
        return x.strip()
    return repr(_finite_number(x, what))


def _check_points(pts) -> list[list[str]]:
    if not isinstance(pts, list) or not pts or not all(isinstance(r, list) for r in pts):
        raise CertificateError("'points' must be a non-empty list of rows")
    dim = len(pts[0])
    if dim < 2 or any(len(r) != dim for r in pts):
        raise CertificateError(
            f"'points' rows must all have the same length >= 2 (first row has {dim})"
        )
    return [[_decimal(c, f"points[{i}][{j}]") for j, c in enumerate(r)] for i, r in enumerate(pts)]


def _check_triplets(tri, n_points: int) -> list[list[int]]:
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
        if not all(0 <= i < n_points for i in t):
            raise CertificateError(f"triplets[{k}] = {t} has an index outside [0, {n_points - 1}]")
        if len(set(t)) != 3:
            raise CertificateError(f"triplets[{k}] = {t} repeats a point")
        triplets.append(t)
    return triplets


def _check_losses(losses) -> dict:
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
                f"'losses.{key}.distance' is {spec['distance']!r}; "
                f"valid: {', '.join(_DISTANCE_NAMES)}"
            )
        clean[key] = {
            "distance": spec["distance"],
            "margin": _decimal(spec["margin"], f"losses.{key}.margin"),
        }
    match = losses.get("match")
    if match is not None:
        if not isinstance(match, dict) or not isinstance(match.get("rule"), str):
            raise CertificateError("'losses.match' must be an object with a 'rule'")
        clean["match"] = dict(match)
    return clean


def _check_step_claim(v) -> None:
    if not isinstance(v, dict) or v.get("along") not in ("A", "B"):
        raise CertificateError("claim 'step' must be an object with 'along' = 'A' or 'B'")
    for f in ("size", "delta_A", "delta_B"):
        if f not in v:
            raise CertificateError(f"claim 'step' lacks {f!r}")
        _finite_number(v[f], f"claims.step.{f}")
    if not v["size"] > 0:
        raise CertificateError("claims.step.size must be positive")


def _check_claims(claims, k: int) -> dict:
    if not isinstance(claims, dict) or not claims:
        raise CertificateError("'claims' must be a non-empty object")
    unknown = sorted(set(claims) - set(CLAIM_NAMES))
    if unknown:
        raise CertificateError(
            f"unknown claim(s) {', '.join(unknown)}; known: {', '.join(CLAIM_NAMES)}"
        )
    for name, v in claims.items():
        if name in ("z_A", "z_B"):
            if not isinstance(v, list) or len(v) != k:
                raise CertificateError(f"claim {name!r} must be a list with one value per triplet")
            for i, x in enumerate(v):
                _finite_number(x, f"claims.{name}[{i}]")
        elif name == "pattern":
            if not isinstance(v, list) or len(v) != k or any(x not in PATTERN_VALUES for x in v):
                raise CertificateError(
                    f"claim 'pattern' must be a list with one of {', '.join(PATTERN_VALUES)} "
                    "per triplet"
                )
        elif name == "step":
            _check_step_claim(v)
        else:
            _finite_number(v, f"claims.{name}")
    return claims


def _check_assertions(assertions, claims) -> list[tuple]:
    if not isinstance(assertions, list) or not all(isinstance(a, str) for a in assertions):
        raise CertificateError("'assertions' must be a list of strings such as 'angle_deg > 90'")
    parsed = []
    for a in assertions:
        m = _ASSERTION.match(a)
        name, index = (m.group(1), m.group(2)) if m else (None, None)
        known = _INDEXED_QUANTITIES if index is not None else _SCALAR_QUANTITIES
        if not m or name not in known:
            raise CertificateError(
                f"cannot read assertion {a!r}; expected 'QUANTITY > NUMBER' or "
                f"'QUANTITY < NUMBER' with QUANTITY in {', '.join(_SCALAR_QUANTITIES)} or "
                "z_A[i], z_B[i]"
            )
        q = name if index is None else f"{name}[{int(index)}]"
        if name.split(".")[0] not in claims:
            raise CertificateError(f"assertion {a!r} is about {q!r}, which is not among the claims")
        if index is not None and not int(index) < len(claims[name]):
            raise CertificateError(f"assertion {a!r}: index {index} is past the last triplet")
        parsed.append((a, q, m.group(3), float(m.group(4))))
    return parsed


def _check_active(cert) -> str:
    active = cert.get("active", "any")
    if active not in ACTIVE_MODES:
        raise CertificateError(f"'active' is {active!r}; valid: {', '.join(ACTIVE_MODES)}")
    if active != "any" and "pattern" not in cert["claims"]:
        raise CertificateError(f"'active' = {active!r} needs the claim 'pattern'")
    return active


def _check_schema(cert: Any) -> dict:
    """Validate a certificate's structure; return its cleaned parts (one-line errors)."""
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
    points = _check_points(cert["points"])
    triplets = _check_triplets(cert["triplets"], len(points))
    losses = _check_losses(cert["losses"])
    claims = _check_claims(cert["claims"], len(triplets))
    assertions = _check_assertions(cert.get("assertions", []), claims)
    return {
        "points": points,
        "triplets": triplets,
        "losses": losses,
        "claims": claims,
        "assertions": assertions,
        "active": _check_active(cert),
    }


def load_certificate(path: str | Path) -> dict:
    """Read a certificate file.

    Raises:
      CertificateError: with a one-line reason if the file is unreadable or malformed.
    """
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
    active: str = "any",
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
            **({"match": dict(losses["match"])} if losses.get("match") else {}),
        },
        "active": active,
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
            "note": "thresholds of geotrip.counterexamples.certificates (informational)",
        },
        "objective": _plain(dict(objective or {})),
        "search": _plain(dict(search or {})),
        "provenance": _plain(dict(provenance or {})),
    }
    _check_schema(cert)
    path = Path(path)
    atomic_write_text(path, json.dumps(cert, indent=1) + "\n")
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
