r"""Search objectives: what "two triplet losses disagree" means, as functions of a configuration.

A configuration is a point set :math:`X \in (S^{d-1})^n` (shape ``(n, d)``) and index
triplets ``(k, 3)``. For two losses A and B (distance, margin, hinge or soft) let
:math:`G_A, G_B \in \mathbb{R}^{n\times d}` be the Riemannian gradients of the summed
losses (:func:`geotrip.batch_grads`). The objectives (all maximised):

* ``"angle"``: the angle :math:`\phi = \angle(G_A, G_B)` in degrees. The optimiser
  maximises :math:`-\cos\phi = -\langle G_A,G_B\rangle/(\|G_A\|\|G_B\|)` with a safe
  denominator: where a gradient vanishes (norm below ``1e-8``) the surrogate is
  :math:`-1` (the worst value), so zero-gradient configurations are never attractors
  and never produce NaN.
* ``"descent"``: the normalised first-order descent disagreement
  :math:`\partial_{\hat D_A} L_B/\|G_B\| = -\cos\phi`, the rate at which A's unit descent
  direction raises B, as a fraction of B's steepest rate. It is positive exactly for a
  disagreement; its certificate adds a finite step with a retraction that lowers A and
  raises B (:func:`geotrip.certify`).
* ``"active"``: active-set disagreement. With :math:`z^A_k, z^B_k` the hinge arguments
  scaled by the distance's range :math:`g(\pi)` (:attr:`geotrip.Distance.range_max`),
  :math:`r_k = \max(\min(z^A_k, -z^B_k), \min(-z^A_k, z^B_k))` is positive when
  triplet ``k`` is active under exactly one loss; the objective is
  :math:`\frac1k\sum_k \min(r_k, c)/c` with :math:`c = 0.05` (1 when every triplet
  disagrees robustly).
* ``"raw"``: raw vs Riemannian disagreement,
  :math:`\angle(G_A,G_B) - \angle(G^{raw}_A, G^{raw}_B)` in degrees: how much comparing
  raw (ambient) gradients understates the disagreement.
* a callable ``f(X, triplets) -> scalar``: any differentiable JAX function of the
  configuration.

Active-set control (``active``, hard hinges only), so that a disagreement can be
attributed to the per-pair *weights* or to the hinges' *active sets*:

* ``"any"``: no constraint (a triplet may be active under one loss only);
* ``"both"``: every triplet active under both hinges, each hinge argument at least
  ``gap`` above 0 (:math:`z^A_k > \text{gap}`, :math:`z^B_k > \text{gap}`, each in its
  distance's units). The angle then comes from the weighting alone;
* ``"disjoint"``: every triplet active under exactly one hinge (the other's argument
  below :math:`-\text{gap}`): the active-set effect on purpose.

A configuration outside the pattern is not valid (never reported), and the optimiser's
surrogate gets a penalty :math:`10\sum_k \max(0, 2\,\text{gap} - z_k)/g(\pi)` per hinge
that pulls it back inside (for ``"disjoint"``, toward "A only" for even triplets and
"B only" for odd ones, so that both gradients are non-zero; any disjoint pattern is
valid).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._caches import bounded_cache
from .._numerics import safe_div, safe_sqrt
from ..core._distances import distance as get_distance
from ..core._geometry import angle, vector_angle
from ..core._gradients import (
    DEFAULT_MARGINS,
    _margin_pair,
    batch_grads,
    triplet_grads_closed_form,
)
from ._format import GRAD_TOL

__all__ = [
    "ACTIVE_MODES",
    "OBJECTIVES",
    "STRUCTURES",
    "decomposition",
    "objective_function",
    "triplet_structure",
]

OBJECTIVES = ("angle", "descent", "active", "raw")
STRUCTURES = ("shared_anchor", "chain", "cycle", "labeled")
ACTIVE_MODES = ("any", "both", "disjoint")
_ACTIVE_CAP = 0.05
_PENALTY = 10.0


# ----------------------------------------------------------------------------------------
# Triplet structures
# ----------------------------------------------------------------------------------------


def _validated_triplets(structure) -> np.ndarray:
    t = np.asarray(structure)
    if t.dtype.kind not in "iu" or t.ndim != 2 or t.shape[1] != 3 or t.shape[0] < 1:
        raise ValueError(
            f"triplets must be an integer array of shape (k, 3), got {t.dtype} {t.shape}"
        )
    if t.min() < 0:
        raise ValueError("triplet indices must be non-negative")
    if np.any((t[:, 0] == t[:, 1]) | (t[:, 0] == t[:, 2]) | (t[:, 1] == t[:, 2])):
        raise ValueError("each triplet must use three different points")
    return t.astype(np.int32)


def _labeled_triplets(labels) -> np.ndarray:
    if labels is None:
        raise ValueError("structure 'labeled' needs labels")
    lab = np.asarray(labels)
    out = [
        (a, p, n)
        for a, p, n in itertools.product(range(lab.size), repeat=3)
        if a != p and lab[a] == lab[p] and lab[n] != lab[a]
    ]
    if not out:
        raise ValueError(
            "these labels give no triplet (need a class with two members and another class)"
        )
    return np.asarray(out, dtype=np.int32)


def triplet_structure(
    structure: str | Sequence[Sequence[int]] | np.ndarray,
    k: int | None = None,
    *,
    labels: Sequence[int] | None = None,
) -> np.ndarray:
    r"""Index triplets ``(k, 3)`` of a structure (anchor, positive, negative rows).

    * ``"shared_anchor"``: :math:`k` triplets on one anchor (row 0) with their own
      positives and negatives: :math:`(0, 2i+1, 2i+2)`, :math:`2k+1` points.
    * ``"chain"``: the negative of each triplet is the anchor of the next:
      :math:`(2i, 2i+1, 2i+2)`, :math:`2k+1` points.
    * ``"cycle"``: a chain closed on itself: :math:`(2i, 2i+1, (2i+2) \bmod 2k)`,
      :math:`2k` points, :math:`k \ge 2`.
    * ``"labeled"``: all triplets of a labeled batch (``labels`` of length :math:`n`):
      every :math:`(a, p, n)` with :math:`a \ne p`, same label, and a different label for
      :math:`n`.
    * an integer array ``(k, 3)``: used as given (validated).

    Returns:
      ``int32`` array of shape ``(k, 3)``.

    >>> import geotrip as gt
    >>> gt.triplet_structure("chain", 2).tolist()
    [[0, 1, 2], [2, 3, 4]]
    """
    if not isinstance(structure, str):
        return _validated_triplets(structure)
    if structure == "labeled":
        return _labeled_triplets(labels)
    if structure not in STRUCTURES:
        raise ValueError(
            f"unknown structure {structure!r}; valid: {', '.join(STRUCTURES)} or an index array"
        )
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (number of triplets) must be a positive integer, got {k!r}")
    i = np.arange(k)
    if structure == "shared_anchor":
        t = np.stack([np.zeros_like(i), 2 * i + 1, 2 * i + 2], 1)
    elif structure == "chain":
        t = np.stack([2 * i, 2 * i + 1, 2 * i + 2], 1)
    else:
        if k < 2:
            raise ValueError("a cycle needs k >= 2 triplets")
        t = np.stack([2 * i, 2 * i + 1, (2 * i + 2) % (2 * k)], 1)
    return t.astype(np.int32)


# ----------------------------------------------------------------------------------------
# Shared pieces: the two gradients, hinge arguments, a safe cosine
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Spec:
    objective: Any
    triplets: tuple
    distances: tuple
    margins: tuple
    soft: bool


def _pair_grads(X, t, spec: _Spec, riemannian=True):
    """Summed gradients of losses A and B w.r.t. X, shape (n, d) each.

    Riemannian ones come from the closed form (:func:`geotrip.triplet_grads_closed_form`,
    scattered onto the points), which equals :func:`geotrip.batch_grads` (tested) and is
    much cheaper to differentiate again than nested autodiff; raw ones from autodiff.
    """
    if not riemannian:
        return tuple(
            batch_grads(X, t, distance=d, margin=m, soft=spec.soft, riemannian=False)
            for d, m in zip(spec.distances, spec.margins)
        )
    a, p, n = X[t[:, 0]], X[t[:, 1]], X[t[:, 2]]
    out = []
    for d, m in zip(spec.distances, spec.margins):
        ga, gp, gn = triplet_grads_closed_form(a, p, n, distance=d, margin=m, soft=spec.soft)
        G = jnp.zeros_like(X).at[t[:, 0]].add(ga).at[t[:, 1]].add(gp).at[t[:, 2]].add(gn)
        out.append(G)
    return tuple(out)


def _z(X, t, dist, margin):
    """Hinge arguments ``d(a, p) - d(a, n) + margin`` of every triplet, shape ``(k,)``."""
    D = get_distance(dist)
    a, p, n = X[t[:, 0]], X[t[:, 1]], X[t[:, 2]]
    return D.ambient(a, p) - D.ambient(a, n) + margin


def _triplet_grads(X, t, dist, margin, soft):
    """Closed-form Riemannian gradients of each triplet, ``(k, 3, d)`` (a, p, n rows)."""
    a, p, n = X[t[:, 0]], X[t[:, 1]], X[t[:, 2]]
    return jnp.stack(triplet_grads_closed_form(a, p, n, distance=dist, margin=margin, soft=soft), 1)


def _scatter(X, t, g, weights):
    """Sum per-triplet gradients ``g`` ``(k, 3, d)``, weighted per triplet, onto the points."""
    g = g * weights[:, None, None]
    return (
        jnp.zeros_like(X).at[t[:, 0]].add(g[:, 0]).at[t[:, 1]].add(g[:, 1]).at[t[:, 2]].add(g[:, 2])
    )


def decomposition(X, t, spec: _Spec) -> dict:
    r"""Angle over the triplets active under both hinges, and the share of each gradient's
    squared norm from the triplets active under its own hinge only.

    ``share_one_only_A`` is :math:`\|G_A^{A\,only}\|^2/\|G_A\|^2` (it can exceed 1 when the
    two parts cancel); both shares are 0 when every active triplet is active under both.
    Returns JAX scalars ``angle_both_deg`` (NaN when a part vanishes), ``share_one_only_A``,
    ``share_one_only_B`` and the boolean masks ``active_A``, ``active_B``.
    """
    (dA, dB), (mA, mB) = spec.distances, spec.margins
    if spec.soft:
        actA = actB = jnp.ones(t.shape[0], bool)
    else:
        actA, actB = _z(X, t, dA, mA) > 0, _z(X, t, dB, mB) > 0
    gA = _triplet_grads(X, t, dA, mA, spec.soft)
    gB = _triplet_grads(X, t, dB, mB, spec.soft)
    dt = X.dtype
    both = (actA & actB).astype(dt)
    GA, GB = _scatter(X, t, gA, jnp.ones_like(both)), _scatter(X, t, gB, jnp.ones_like(both))
    GA2, GB2 = _scatter(X, t, gA, both), _scatter(X, t, gB, both)
    onlyA = _scatter(X, t, gA, (actA & ~actB).astype(dt))
    onlyB = _scatter(X, t, gB, (actB & ~actA).astype(dt))
    c, ok = _cos_safe(GA2, GB2)
    return {
        "angle_both_deg": jnp.where(ok, _flat_angle_deg(GA2, GB2), jnp.nan),
        "share_one_only_A": safe_div(jnp.sum(onlyA * onlyA), jnp.sum(GA * GA)),
        "share_one_only_B": safe_div(jnp.sum(onlyB * onlyB), jnp.sum(GB * GB)),
        "active_A": actA,
        "active_B": actB,
    }


def _cos_safe(GA, GB):
    """``(cos(G_A, G_B), ok)``; where a gradient's norm is below ``10 * GRAD_TOL``, cos = 1."""
    tiny = jnp.asarray(GRAD_TOL * 10, GA.dtype) ** 2
    nA2, nB2 = jnp.sum(GA * GA), jnp.sum(GB * GB)
    ok = (nA2 > tiny) & (nB2 > tiny)
    den = jnp.where(ok, safe_sqrt(nA2 * nB2), jnp.zeros_like(nA2))
    return safe_div(jnp.sum(GA * GB), den, fill=1.0), ok


def _flat_angle_deg(GA, GB):
    return jnp.degrees(vector_angle(GA.reshape(-1), GB.reshape(-1)))


# ----------------------------------------------------------------------------------------
# Objectives
# ----------------------------------------------------------------------------------------


def objective_function(
    objective: str | Callable,
    triplets,
    *,
    distances=("chord_sq", "geodesic"),
    margins=DEFAULT_MARGINS,
    soft: bool = False,
    active: str = "any",
    gap: float = 1e-3,
) -> tuple[Callable, Callable, Callable]:
    r"""The three functions of an objective over configurations ``X`` of shape ``(n, d)``.

    Returns:
      ``(surrogate, score, valid)``: ``surrogate(X)`` is the smooth, NaN-free scalar the
      optimiser maximises; ``score(X)`` the reported value (degrees for ``angle`` and
      ``raw``, :math:`-\cos\phi` for ``descent``, the fraction-like measure for ``active``,
      the function's value for a callable); ``valid(X)`` is True when the configuration
      is robust enough to certify (finite, no triplet pair within ``1e-6`` of coincident
      or antipodal, hard hinges at least ``1e-6`` from their boundary, and, for the
      gradient objectives, both gradients non-zero) and, with ``active="both"`` or
      ``"disjoint"``, every triplet follows that activity pattern (module docstring).

    The functions are cached (bounded, :func:`geotrip.clear_caches`) by the objective,
    the triplets, the distances, the margins, ``soft``, ``active`` and ``gap``.

    Raises:
      ValueError: an unknown objective or active mode, ``active`` other than ``"any"``
        with soft hinges (a soft hinge is active everywhere) or with the ``"active"``
        objective, or a negative ``gap``.
    """
    t_np = triplet_structure(triplets)
    key_t = tuple(map(tuple, t_np.tolist()))
    dists = tuple(get_distance(d) for d in distances)
    check_active(active, gap, soft=soft, objective=objective)
    margins = _margin_pair(margins, *dists)  # B's None: slope-matched to A's
    return _cached_objective(
        objective, key_t, dists, tuple(map(float, margins)), bool(soft), active, float(gap)
    )


def check_active(active, gap, *, soft, objective):
    """Validate the active-set options (see :func:`objective_function`)."""
    if active not in ACTIVE_MODES:
        raise ValueError(f"unknown active mode {active!r}; valid: {', '.join(ACTIVE_MODES)}")
    if not (isinstance(gap, (int, float)) and gap >= 0):
        raise ValueError(f"gap must be a non-negative number, got {gap!r}")
    if active != "any" and soft:
        raise ValueError(f"active={active!r} needs hard hinges (a soft hinge is always active)")
    if active != "any" and objective == "active":
        raise ValueError(f"the 'active' objective cannot be combined with active={active!r}")


@bounded_cache(64)
def _cached_objective(objective, key_t, dists, margins, soft, active="any", gap=1e-3):
    t_np = np.asarray(key_t, np.int32)
    f, s, v = _build_objective(objective, t_np, dists, margins, soft)
    if active != "any":
        f, v = _with_pattern(f, v, jnp.asarray(t_np), dists, margins, active, gap)
    return f, jax.jit(s), jax.jit(v)


def _pattern_terms(X, t, dists, margins, gap):
    """Hinge arguments (own units) and their range-normalised forms, for both losses."""
    zA, zB = (_z(X, t, d, m) for d, m in zip(dists, margins))
    return zA, zB, zA / dists[0].range_max, zB / dists[1].range_max


def pattern_holds(X, t, dists, margins, active, gap):
    """Whether every triplet follows the activity pattern ``active`` with margin ``gap``."""
    zA, zB, _, _ = _pattern_terms(X, t, dists, margins, gap)
    if active == "both":
        return jnp.all((zA > gap) & (zB > gap))
    if active == "disjoint":
        return jnp.all(((zA > gap) & (zB < -gap)) | ((zA < -gap) & (zB > gap)))
    return jnp.asarray(True)


def _with_pattern(surrogate, valid, t, dists, margins, active, gap):
    """Add the activity-pattern penalty to the surrogate and the pattern to validity."""
    cA, cB = 2 * gap / dists[0].range_max, 2 * gap / dists[1].range_max

    def penalty(X):
        _, _, nA, nB = _pattern_terms(X, t, dists, margins, gap)
        if active == "both":
            short = jnp.maximum(cA - nA, 0) + jnp.maximum(cB - nB, 0)
        else:  # disjoint: even triplets pulled to "A only", odd ones to "B only"
            only_a = jnp.maximum(cA - nA, 0) + jnp.maximum(nB + cB, 0)
            only_b = jnp.maximum(nA + cA, 0) + jnp.maximum(cB - nB, 0)
            short = jnp.where(jnp.arange(t.shape[0]) % 2 == 0, only_a, only_b)
        return _PENALTY * jnp.sum(short)

    def surrogate_p(X):
        return surrogate(X) - penalty(X)

    def valid_p(X):
        return valid(X) & pattern_holds(X, t, dists, margins, active, gap)

    return surrogate_p, valid_p


def _base_valid(t, spec: _Spec):
    def base_valid(X):
        a, p, n = X[t[:, 0]], X[t[:, 1]], X[t[:, 2]]
        sines = jnp.stack([jnp.sin(angle(a, p)), jnp.sin(angle(a, n))])
        ok = jnp.all(jnp.isfinite(X)) & jnp.all(sines > 1e-6)
        if not spec.soft:
            for d, m in zip(spec.distances, spec.margins):
                ok = ok & jnp.all(jnp.abs(_z(X, t, d, m)) > 1e-6)
        return ok

    return base_valid


def _build_objective(objective, t_np, dists, margins, soft):
    t = jnp.asarray(t_np)
    spec = _Spec(objective, tuple(map(tuple, t_np.tolist())), dists, tuple(margins), bool(soft))
    base_valid = _base_valid(t, spec)
    if callable(objective):
        fn = objective
        return (lambda X: fn(X, t)), (lambda X: fn(X, t)), base_valid
    if objective not in OBJECTIVES:
        raise ValueError(
            f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)} or a callable"
        )
    if objective in ("angle", "descent"):
        return _angle_objective(t, spec, base_valid, descent=objective == "descent")
    if objective == "raw":
        return _raw_objective(t, spec, base_valid)
    return _active_objective(t, spec, base_valid)


def _angle_objective(t, spec, base_valid, *, descent: bool):
    def surrogate(X):
        GA, GB = _pair_grads(X, t, spec)
        c, _ = _cos_safe(GA, GB)
        return -c

    def score(X):
        GA, GB = _pair_grads(X, t, spec)
        c, ok = _cos_safe(GA, GB)
        if descent:
            return -c
        return jnp.where(ok, _flat_angle_deg(GA, GB), jnp.zeros_like(c))

    def valid(X):
        GA, GB = _pair_grads(X, t, spec)
        return base_valid(X) & _cos_safe(GA, GB)[1]

    return surrogate, score, valid


def _raw_objective(t, spec, base_valid):
    def score(X):
        GA, GB = _pair_grads(X, t, spec)
        RA, RB = _pair_grads(X, t, spec, riemannian=False)
        _, ok1 = _cos_safe(GA, GB)
        _, ok2 = _cos_safe(RA, RB)
        diff = jnp.degrees(
            vector_angle(GA.reshape(-1), GB.reshape(-1))
            - vector_angle(RA.reshape(-1), RB.reshape(-1))
        )
        return jnp.where(ok1 & ok2, diff, jnp.full_like(diff, -180.0))

    def valid(X):
        GA, GB = _pair_grads(X, t, spec)
        RA, RB = _pair_grads(X, t, spec, riemannian=False)
        return base_valid(X) & _cos_safe(GA, GB)[1] & _cos_safe(RA, RB)[1]

    return score, score, valid


def _active_objective(t, spec, base_valid):
    (dA, dB), (mA, mB) = spec.distances, spec.margins
    rA, rB = dA.range_max, dB.range_max

    def score(X):
        zA = _z(X, t, dA, mA) / rA
        zB = _z(X, t, dB, mB) / rB
        r = jnp.maximum(jnp.minimum(zA, -zB), jnp.minimum(-zA, zB))
        return jnp.mean(jnp.minimum(r, _ACTIVE_CAP)) / _ACTIVE_CAP

    return score, score, base_valid
