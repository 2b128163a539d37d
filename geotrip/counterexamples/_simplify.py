r"""Shrinking a counterexample: fewest triplets, then smallest dimension, keeping its property.

The *property* of a configuration is ``score > threshold`` (plus validity, and for the
``descent`` objective a finite retraction step that lowers A and raises B). The helpers
that decide it (:func:`_holds`, :func:`_step_claims`) are shared with
:func:`geotrip.certify`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .._caches import bounded_cache
from .._numerics import float_dtype
from ..core._gradients import descent_disagreement
from ._format import safety_margin
from ._objectives import objective_function
from ._optimizer import SearchResult, search

__all__ = ["simplify"]

_STEP_SIZES = (0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 3e-4, 1e-4)


def _default_threshold(objective) -> float:
    return 90.0 if objective == "angle" else 0.0


@bounded_cache(16)
def _dd_cached(distances: tuple, margins: tuple, soft: bool):
    return jax.jit(
        lambda X, t, step: descent_disagreement(
            X, t, distances=distances, margins=margins, step=step, soft=soft
        )
    )


def _dd(res: SearchResult):
    """Jitted :func:`geotrip.descent_disagreement` for the losses of ``res`` (cached)."""
    return _dd_cached(tuple(res.distances), tuple(float(m) for m in res.margins), bool(res.soft))


def _step_claims(X, t, res: SearchResult, sizes) -> tuple[float, dict] | None:
    """Largest-gain step (along A) that lowers A and raises B robustly, or None."""
    best = None
    for eta in sizes:
        dd = _dd(res)(jnp.asarray(X), jnp.asarray(t), jnp.asarray(eta, float_dtype()))
        dA, dB = float(dd["step/A_along_A"]), float(dd["step/B_along_A"])
        gain = min(-dA, dB)
        if gain > 100 * safety_margin(0.0) and (best is None or gain > best[0]):
            best = (gain, {"size": float(eta), "along": "A", "delta_A": dA, "delta_B": dB})
    return best


def _objective_of(res: SearchResult, t):
    """``objective_function`` of the problem of ``res`` (losses, active pattern) on ``t``."""
    return objective_function(
        res.objective,
        t,
        distances=res.distances,
        margins=res.margins,
        soft=res.soft,
        active=res.active,
        gap=res.gap,
    )


def _holds(X, t, res: SearchResult, threshold: float) -> bool:
    """Does X keep the property (valid, score > threshold; descent: a finite step too)?"""
    _, score, valid = _objective_of(res, t)
    Xj = jnp.asarray(X)
    if not bool(valid(Xj)):
        return False
    s = float(score(Xj))
    if not s > threshold + 10 * safety_margin(threshold):
        return False
    if res.objective == "descent":
        return _step_claims(X, t, res, _STEP_SIZES) is not None
    return True


def _reindex(X, t):
    used = np.unique(t)
    remap = -np.ones(int(t.max()) + 1, np.int64)
    remap[used] = np.arange(used.size)
    return X[used], remap[t].astype(np.int32)


class _Shrinker:
    """The state of one simplification: the property, the budget, and a re-optimiser."""

    def __init__(self, result, threshold, steps, restarts, seed, progress):
        self.result, self.thr = result, threshold
        self.steps, self.restarts, self.seed, self.progress = steps, restarts, seed, progress
        self.tag = 1
        self.notes: list[str] = []

    def holds(self, X, t) -> bool:
        return _holds(X, t, self.result, self.thr)

    def keep_or_reoptimise(self, X, t):
        """X if it keeps the property, else the best re-optimised configuration that does."""
        self.tag += 1
        if self.holds(X, t):
            return X
        r = self.result
        found = search(
            r.objective,
            triplets=t,
            n_points=X.shape[0],
            dim=X.shape[1],
            distances=r.distances,
            margins=r.margins,
            soft=r.soft,
            active=r.active,
            gap=r.gap,
            restarts=self.restarts,
            steps=self.steps,
            seed=self.seed + self.tag,
            init=X,
            init_noise=0.1,
            progress=self.progress,
            learning_rate=0.005,
        )
        for c in found.candidates:
            if self.holds(c, t):
                return c
        return X if self.holds(X, t) else None

    def drop_triplets(self, X, t):
        """Remove triplets one at a time while the property survives."""
        changed = True
        while changed and t.shape[0] > 1:
            changed = False
            for i in reversed(range(t.shape[0])):
                X2, t2 = _reindex(X, np.delete(t, i, axis=0))
                Y = self.keep_or_reoptimise(X2, t2)
                if Y is not None:
                    self.notes.append(f"removed triplet {i} (k {t.shape[0]} -> {t2.shape[0]})")
                    X, t, changed = Y, t2, True
                    break
        return X, t

    def reduce_dimension(self, X, t, min_dim):
        """Drop the least principal axis while the property survives, down to ``min_dim``."""
        while X.shape[1] > min_dim:
            _, _, vt = np.linalg.svd(X, full_matrices=False)
            Y = (X @ vt.T)[:, :-1]
            nrm = np.linalg.norm(Y, axis=1, keepdims=True)
            if np.any(nrm < 1e-6):
                break
            Z = self.keep_or_reoptimise(Y / nrm, t)
            d = X.shape[1]
            if Z is None:
                self.notes.append(f"dimension {d} -> {d - 1} loses the property; stopped")
                break
            self.notes.append(f"reduced dimension {d} -> {d - 1}")
            X = Z
        return X


def simplify(
    result: SearchResult,
    *,
    threshold: float | None = None,
    min_dim: int = 2,
    steps: int = 200,
    restarts: int = 32,
    seed: int | None = None,
    progress: bool = False,
) -> SearchResult:
    r"""Shrink a counterexample: fewest triplets, then smallest dimension, keeping the property.

    The property is ``score > threshold`` (plus validity, and for ``descent`` a finite step
    that lowers A and raises B). ``threshold`` defaults to 90 degrees for ``angle`` and 0
    otherwise (an obtuse gradient angle / a descent disagreement / a larger Riemannian
    than raw angle / an active-set disagreement / a positive custom score).

    1. Triplets: try removing each triplet (dropping unused points); after each removal
       re-optimise briefly from the current configuration (:func:`geotrip.search` with
       ``init``); keep the removal if the property still holds; repeat until none can go.
    2. Dimension: rotate the points to their principal axes (SVD), drop the last
       coordinate, re-normalise and re-optimise; repeat while the property holds, down to
       ``min_dim``.

    Rounding to short decimals is done by :func:`geotrip.certify`.

    Returns:
      A new :class:`geotrip.SearchResult` (``notes`` records the steps taken).
    """
    thr = _default_threshold(result.objective) if threshold is None else float(threshold)
    seed = result.seed if seed is None else seed
    X, t = np.asarray(result.points), np.asarray(result.triplets)
    if not _holds(X, t, result, thr):
        raise ValueError(
            f"the configuration does not have the property (score > {thr:g}) to begin with"
        )
    shrink = _Shrinker(result, thr, steps, restarts, seed, progress)
    X, t = shrink.drop_triplets(X, t)
    X = shrink.reduce_dimension(X, t, min_dim)
    _, score, _ = _objective_of(result, t)
    val = float(score(jnp.asarray(X)))
    return dataclasses.replace(
        result,
        points=X,
        triplets=t,
        value=val,
        candidates=X[None],
        candidate_values=np.asarray([val]),
        notes=result.notes + shrink.notes,
    )
