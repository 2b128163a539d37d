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

from ..core._losses import batch_loss
from ._format import GRAD_TOL, format_decimal_points, safety_margin, write_certificate
from ._objectives import _flat_angle_deg, _pair_grads, _Spec, _z, objective_function
from ._optimizer import SearchResult, _objective_name
from ._simplify import _STEP_SIZES, _dd, _default_threshold, _holds, _step_claims
from .certificates import VerificationResult, verify_certificate

__all__ = ["Certificate", "certify"]


@dataclasses.dataclass
class Certificate:
    """A written certificate: its path (or None), content, decimals used and the verification."""

    path: Path | None
    content: dict
    decimals: int
    verification: VerificationResult


def _claims(X, t, res: SearchResult, step) -> dict:
    """Every claim about configuration X, computed with geotrip's JAX code."""
    Xj, tj = jnp.asarray(X), jnp.asarray(t)
    spec = _Spec(None, (), res.distances, res.margins, res.soft)
    GA, GB = _pair_grads(Xj, tj, spec)
    RA, RB = _pair_grads(Xj, tj, spec, riemannian=False)
    dd = _dd(res)(Xj, tj, jnp.asarray(step["size"], Xj.dtype))
    zA = _z(Xj, tj, res.distances[0], res.margins[0])
    zB = _z(Xj, tj, res.distances[1], res.margins[1])
    hingeA = np.asarray(zA) > 0 if not res.soft else np.ones(t.shape[0], bool)
    hingeB = np.asarray(zB) > 0 if not res.soft else np.ones(t.shape[0], bool)
    loss = [
        float(batch_loss(Xj, tj, distance=d, margin=m, soft=res.soft))
        for d, m in zip(res.distances, res.margins)
    ]
    claims = {
        "angle_deg": float(_flat_angle_deg(GA, GB)),
        "raw_angle_deg": float(_flat_angle_deg(RA, RB)),
        "cos": float(dd["cos"]),
        "grad_norm_A": float(dd["grad_norm/A"]),
        "grad_norm_B": float(dd["grad_norm/B"]),
        "loss_A": loss[0],
        "loss_B": loss[1],
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
    nRA, nRB = float(jnp.linalg.norm(RA)), float(jnp.linalg.norm(RB))
    if not (nRA > big and nRB > big):
        claims.pop("raw_angle_deg")
    return claims


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
    _, score, valid = objective_function(
        result.objective, t, distances=result.distances, margins=result.margins, soft=result.soft
    )
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
        "under exactly one loss"
    )


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
    max_decimals: int = 12,
    value_tolerance: float = 1e-3,
    threshold: float | None = None,
    statement: str = "",
    provenance: Mapping | None = None,
) -> Certificate:
    r"""Round a configuration to short decimals, state its claims, write and verify a certificate.

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

    Raises:
      ValueError: if float64 is off, or no rounding up to ``max_decimals`` keeps the
        property.

    >>> import jax, geotrip as gt
    >>> x64 = jax.config.jax_enable_x64
    >>> jax.config.update("jax_enable_x64", True)
    >>> r = gt.search("angle", k=1, dim=3, restarts=8, steps=40, seed=0, progress=False)
    >>> c = gt.certify(r, provenance={})
    >>> c.verification.ok, c.decimals <= 12, bool(c.verification.values["angle_deg"] < 60)
    (True, True, True)
    >>> jax.config.update("jax_enable_x64", x64)
    """
    if not jax.config.jax_enable_x64:
        raise ValueError(
            "certify needs float64: enable it with jax.config.update('jax_enable_x64', True)"
        )
    X = np.asarray(result.points, np.float64)
    t = np.asarray(result.triplets)
    thr = _default_threshold(result.objective) if threshold is None else float(threshold)
    q, rows, Xr, s0, s_rounded = _round(X, t, result, thr, decimals, max_decimals, value_tolerance)
    st = _step_claims(Xr, t, result, _STEP_SIZES)
    claims = _claims(Xr, t, result, st[1] if st is not None else {"size": 1e-3})
    name = _objective_name(result.objective)
    if provenance is None:
        from .._provenance import provenance as _prov

        provenance = _prov(seed=result.seed)
    content = dict(
        points=rows,
        triplets=t.tolist(),
        losses={
            "A": {"distance": str(result.distances[0]), "margin": repr(result.margins[0])},
            "B": {"distance": str(result.distances[1]), "margin": repr(result.margins[1])},
            "soft": result.soft,
        },
        claims=claims,
        assertions=_assertions(name, claims, thr),
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
            "seconds": round(result.seconds, 3),
            "decimals": q,
            "notes": list(result.notes),
        },
        provenance=provenance,
    )
    path, doc, ver = _write_and_verify(path, content)
    return Certificate(path=path, content=doc, decimals=q, verification=ver)
