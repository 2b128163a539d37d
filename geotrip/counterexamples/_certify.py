r"""Certification: round a found configuration, state its claims, write and verify a certificate.

The claims are computed here with geotrip's JAX functions in float64; the certificate is
then re-checked by the independent verifier (:func:`geotrip.verify_certificate`, no JAX).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .._caches import bounded_cache
from ..core._losses import batch_loss
from ._format import GRAD_TOL, format_decimal_points, safety_margin, write_certificate
from ._objectives import _flat_angle_deg, _pair_grads, _Spec, _z, decomposition
from ._optimizer import SearchResult, _objective_name
from ._simplify import _STEP_SIZES, _dd, _default_threshold, _holds, _objective_of, _step_claims
from .certificates import VerificationResult, verify_certificate

__all__ = ["Certificate", "certify"]


@dataclasses.dataclass
class Certificate:
    """A written certificate: its path (or None), content, decimals used and the verification."""

    path: Path | None
    content: dict
    decimals: int
    verification: VerificationResult


@bounded_cache(16)
def _claim_arrays_fn(distances: tuple, margins: tuple, soft: bool):
    """One jitted function for the JAX-side claims (eager evaluation compiles every
    primitive separately, which dominated the time of a certification)."""
    spec = _Spec(None, (), distances, margins, soft)

    def claim_arrays(X, t):
        GA, GB = _pair_grads(X, t, spec)
        RA, RB = _pair_grads(X, t, spec, riemannian=False)
        dec = decomposition(X, t, spec)
        return {
            "angle_deg": _flat_angle_deg(GA, GB),
            "raw_angle_deg": _flat_angle_deg(RA, RB),
            "raw_norm_A": jnp.linalg.norm(RA),
            "raw_norm_B": jnp.linalg.norm(RB),
            "z_A": _z(X, t, distances[0], margins[0]),
            "z_B": _z(X, t, distances[1], margins[1]),
            "loss_A": batch_loss(X, t, distance=distances[0], margin=margins[0], soft=soft),
            "loss_B": batch_loss(X, t, distance=distances[1], margin=margins[1], soft=soft),
            **dec,
        }

    return jax.jit(claim_arrays)


def _claims(X, t, res: SearchResult, step) -> dict:
    """Every claim about configuration X, computed with geotrip's JAX code."""
    Xj, tj = jnp.asarray(X), jnp.asarray(t)
    fn = _claim_arrays_fn(tuple(res.distances), tuple(res.margins), bool(res.soft))
    arr = fn(Xj, tj)
    dd = _dd(res)(Xj, tj, jnp.asarray(step["size"], Xj.dtype))
    zA, zB = np.asarray(arr["z_A"]), np.asarray(arr["z_B"])
    hingeA, hingeB = np.asarray(arr["active_A"]), np.asarray(arr["active_B"])
    claims = {
        "angle_deg": float(arr["angle_deg"]),
        "raw_angle_deg": float(arr["raw_angle_deg"]),
        "cos": float(dd["cos"]),
        "grad_norm_A": float(dd["grad_norm/A"]),
        "grad_norm_B": float(dd["grad_norm/B"]),
        "loss_A": float(arr["loss_A"]),
        "loss_B": float(arr["loss_B"]),
        "slope_B_along_A": float(dd["slope/B_along_A"]),
        "slope_A_along_B": float(dd["slope/A_along_B"]),
        "z_A": [float(v) for v in zA],
        "z_B": [float(v) for v in zB],
        "active_disagreement": float(np.sum(hingeA != hingeB)),
        "step": {
            "size": step["size"],
            "along": "A",
            "delta_A": float(dd["step/A_along_A"]),
            "delta_B": float(dd["step/B_along_A"]),
        },
    }
    big = 100 * GRAD_TOL
    if not (claims["grad_norm_A"] > big and claims["grad_norm_B"] > big):
        # An angle or a slope involving a vanishing gradient is undefined: claim only what is.
        for name in ("angle_deg", "cos", "slope_B_along_A", "slope_A_along_B"):
            claims.pop(name)
        if not claims["grad_norm_A"] > big:
            claims.pop("step")
    if not (float(arr["raw_norm_A"]) > big and float(arr["raw_norm_B"]) > big):
        claims.pop("raw_angle_deg")
    claims.update(_decomposition_claims(arr, hingeA, hingeB))
    return claims


def _decomposition_claims(dec, hingeA, hingeB) -> dict:
    """Per-triplet activity pattern; angle over the both-active triplets; one-only shares."""
    pattern = [
        {(True, True): "both", (True, False): "A", (False, True): "B"}.get((a, b), "none")
        for a, b in zip(hingeA.tolist(), hingeB.tolist())
    ]
    out = {
        "pattern": pattern,
        "share_one_only_A": float(dec["share_one_only_A"]),
        "share_one_only_B": float(dec["share_one_only_B"]),
    }
    angle_both = float(dec["angle_both_deg"])
    if np.isfinite(angle_both):
        out["angle_both_deg"] = angle_both
    return out


def _pattern_assertions(active: str, gap: float, claims) -> list[str]:
    """``z_A[i] > gap`` / ``z_B[i] > gap`` (and ``< -gap`` for the inactive hinge) per triplet."""
    if active == "any":
        return []
    out = []
    for i, pat in enumerate(claims["pattern"]):
        for tag in ("A", "B"):
            on = pat == "both" or pat == tag
            out.append(f"z_{tag}[{i}] > {gap!r}" if on else f"z_{tag}[{i}] < {-gap!r}")
    return out


def _assertions(objective, claims, threshold) -> list[str]:
    out = []
    obtuse = claims.get("angle_deg", 0.0) > 90 + 10 * safety_margin(90)
    if objective == "descent" or (objective == "angle" and obtuse):
        out += ["angle_deg > 90", "slope_B_along_A > 0", "slope_A_along_B > 0"]
        st = claims["step"]
        if st["delta_A"] < -1e-5 and st["delta_B"] > 1e-5:
            out += ["step.delta_A < 0", "step.delta_B > 0"]
    if objective == "active" and claims["active_disagreement"] >= 1:
        out.append(f"active_disagreement > {claims['active_disagreement'] - 0.5:g}")
    if objective == "raw" and "raw_angle_deg" in claims:
        out.append("raw_angle_deg < 90" if claims["raw_angle_deg"] < 89.999 else "cos < 1")
        if obtuse:
            out.append("angle_deg > 90")
    return out


def _round(X, t, result, thr, decimals, max_decimals, value_tolerance):
    """The fewest decimals keeping validity, the property and the score: ``(q, rows, Xr)``."""
    _, score, valid = _objective_of(result, t)
    s0 = float(score(jnp.asarray(X)))
    had_property = _holds(X, t, result, thr)
    tries = [decimals] if decimals is not None else list(range(2, max_decimals + 1))
    for q in tries:
        try:
            rows = format_decimal_points(X, q)
        except ValueError:
            continue
        R = np.asarray([[float(c) for c in r] for r in rows])
        Xr = R / np.linalg.norm(R, axis=1, keepdims=True)
        if not bool(valid(jnp.asarray(Xr))):
            continue
        if had_property and not _holds(Xr, t, result, thr):
            continue
        if (
            result.objective != "descent"
            and not abs(float(score(jnp.asarray(Xr))) - s0) <= value_tolerance
        ):
            continue
        return q, rows, Xr, s0, float(score(jnp.asarray(Xr)))
    raise ValueError(
        f"no rounding to at most {tries[-1]} decimals keeps the configuration's property"
    )


def _given_rows(rows, t, result):
    """``(decimals, exact points, score, score)`` of given decimal rows (no rounding)."""
    R = np.asarray([[float(c) for c in r] for r in rows])
    Xr = R / np.linalg.norm(R, axis=1, keepdims=True)
    _, score, valid = _objective_of(result, t)
    if not bool(valid(jnp.asarray(Xr))):
        raise ValueError("the given rows are not a valid configuration for this problem")
    q = max((len(c.partition(".")[2]) for r in rows for c in r), default=0)
    s = float(score(jnp.asarray(Xr)))
    return q, Xr, s, s


def _statement(result, claims, k, dim) -> str:
    angle = (
        f"Riemannian gradient angle {claims['angle_deg']:.4f} deg"
        if "angle_deg" in claims
        else "a gradient vanishes"
    )
    return (
        f"{result.distances[0]} (margin {result.margins[0]:g}) vs {result.distances[1]} "
        f"(margin {result.margins[1]:g}){' soft' if result.soft else ''}, k={k} triplets "
        f"on S^{dim - 1}: {angle}; {int(claims['active_disagreement'])} triplet(s) active "
        f"under exactly one loss (pattern required: {result.active})"
    )


def _losses(result) -> dict:
    out = {
        "A": {"distance": str(result.distances[0]), "margin": repr(result.margins[0])},
        "B": {"distance": str(result.distances[1]), "margin": repr(result.margins[1])},
        "soft": result.soft,
    }
    if result.match is not None:
        out["match"] = {"rule": result.match}
        if result.match in ("slope", "reference"):
            out["match"]["theta_ref"] = "pi/2"
    return out


def _write_and_verify(path, content):
    if path is not None:
        path = write_certificate(path, **content)
        return Path(path), json.loads(Path(path).read_text()), verify_certificate(path)
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        p = write_certificate(os.path.join(tmp, "c.json"), **content)
        doc = json.loads(Path(p).read_text())
    return None, doc, verify_certificate(doc)


def certify(
    result: SearchResult,
    path: str | Path | None = None,
    *,
    decimals: int | None = None,
    rows: list[list[str]] | None = None,
    max_decimals: int = 12,
    value_tolerance: float = 1e-3,
    threshold: float | None = None,
    statement: str = "",
    provenance: Mapping | None = None,
) -> Certificate:
    r"""Round a configuration to short decimals, state its claims, write and verify a certificate.

    With ``rows`` (decimal strings, e.g. an earlier certificate's points, embedded), the
    configuration is exactly those rows re-normalised: no rounding.

    Rounding: the fewest decimal places ``q`` (from 2 up to ``max_decimals``, or exactly
    ``decimals``) such that the exactly re-normalised rounded configuration is still valid,
    keeps the property (:func:`geotrip.simplify`) when the original had it, and keeps its
    score within ``value_tolerance`` of the unrounded score (for ``descent``: a certifiable
    finite step exists). Claims are computed with geotrip's JAX functions in float64 and
    then re-checked by the independent verifier (:func:`geotrip.verify_certificate`).

    For ``descent`` (and for an obtuse ``angle``) the certificate asserts
    ``angle_deg > 90``, both slopes ``> 0`` and, along A's unit descent direction with the
    step size of largest robust gain, ``step.delta_A < 0`` and ``step.delta_B > 0``.

    Returns:
      A :class:`Certificate`; ``verification.ok`` tells whether the verifier accepted it.

    Claims need float64: with ``jax_enable_x64`` off (JAX's default) they are computed
    inside ``jax.enable_x64(True)``; the global setting is left as it was.

    Raises:
      ValueError: no rounding up to ``max_decimals`` keeps the property.

    Example (not run as a doctest: compiling the claims takes several seconds; the tests
    run it): ``gt.certify(gt.search("angle", k=2, active="both"), "c.json")``.
    """
    if not jax.config.jax_enable_x64:  # claims need float64: compute them in an x64 context
        with jax.enable_x64(True):
            return certify(
                result,
                path,
                decimals=decimals,
                rows=rows,
                max_decimals=max_decimals,
                value_tolerance=value_tolerance,
                threshold=threshold,
                statement=statement,
                provenance=provenance,
            )
    X = np.asarray(result.points, np.float64)
    t = np.asarray(result.triplets)
    thr = _default_threshold(result.objective) if threshold is None else float(threshold)
    if rows is None:
        q, rows, Xr, s0, s_rounded = _round(
            X, t, result, thr, decimals, max_decimals, value_tolerance
        )
    else:
        q, Xr, s0, s_rounded = _given_rows(rows, t, result)
    st = _step_claims(Xr, t, result, _STEP_SIZES)
    claims = _claims(Xr, t, result, st[1] if st is not None else {"size": 1e-3})
    name = _objective_name(result.objective)
    if provenance is None:
        from .._provenance import provenance as _prov

        provenance = _prov(seed=result.seed)
    content = dict(
        points=rows,
        triplets=t.tolist(),
        losses=_losses(result),
        claims=claims,
        assertions=_assertions(name, claims, thr)
        + _pattern_assertions(result.active, result.gap, claims),
        active=result.active,
        kind=name,
        statement=statement or _statement(result, claims, t.shape[0], X.shape[1]),
        objective={
            "name": name,
            "value_unrounded": s0,
            "value_rounded": s_rounded,
            "threshold": thr,
        },
        search={
            "seed": result.seed,
            "restarts": result.restarts,
            "steps": result.steps,
            "decimals": q,
            "notes": list(result.notes),
        },
        provenance=provenance,
    )
    path, doc, ver = _write_and_verify(path, content)
    return Certificate(path=path, content=doc, decimals=q, verification=ver)
