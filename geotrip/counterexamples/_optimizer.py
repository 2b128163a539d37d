r"""The counterexample optimiser: many restarts, Riemannian Adam on a product of spheres.

Method: ``restarts`` random configurations (drawn from several families: uniform,
clustered, collapsed caps, bipolar) optimised in parallel (``vmap``) by Riemannian
gradient ascent on the product of spheres: the Euclidean gradient is projected on the
tangent spaces, fed to an optax optimiser (Adam with a cosine-decayed step), the update
projected again, and each row retracted by re-normalisation. The steps run in
jit-compiled ``lax.scan`` chunks under a tqdm progress bar. Everything is a pure
function of ``seed``. Non-finite gradients are replaced by 0 and a step that would
produce a non-finite point is skipped, so degenerate configurations (zero gradients,
coincident points) cannot poison the search. The objectives are those of
:func:`geotrip.objective_function`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._caches import bounded_cache
from .._distributed import allgather_objects, process_share
from .._numerics import float_dtype
from ..core._distances import distance as get_distance
from ..core._geometry import normalize, project_tangent
from ._margins import resolve_margins
from ._objectives import (
    check_active,
    objective_function,
    triplet_structure,
)

__all__ = ["RESTART_FAMILIES", "SearchResult", "draw_configurations", "search"]

RESTART_FAMILIES = ("uniform", "clustered", "cap", "bipolar")


# ----------------------------------------------------------------------------------------
# Restart families
# ----------------------------------------------------------------------------------------


def _draw_all_impl(key, fam, n, d, dtype):
    # One Gaussian draw (R, 2n + 4, max(d, 4)) feeds everything: a single threefry kernel
    # keeps the compile time low; uniforms are Gaussian CDFs of independent entries.
    R = fam.shape[0]
    G = jax.random.normal(key, (R, 2 * n + 4, max(d, 4)), dtype)
    U = jax.scipy.special.ndtr(G)
    g = G[:, :n, :d]
    centers = normalize(G[:, n : n + 3, :d])
    u = U[:, n + 3, :4]
    ncl = 2 + (u[:, 0] > 0.5).astype(jnp.int32)  # 2 or 3 clusters
    assign = jnp.minimum((U[:, n + 4 :, 0] * ncl[:, None].astype(dtype)).astype(jnp.int32), 2)
    spread = (0.05 + 0.55 * u[:, 1])[:, None, None]
    clustered = normalize(jnp.take_along_axis(centers, assign[:, :, None], axis=1) + spread * g)
    cap_r = jnp.exp(math.log(0.01) + (math.log(0.3) - math.log(0.01)) * u[:, 2])[:, None, None]
    cap = normalize(centers[:, :1] + cap_r * g)
    sign = jnp.where(U[:, n + 4 :, 1:2] < 0.5, 1.0, -1.0).astype(dtype)
    bip_r = (0.05 + 0.35 * u[:, 3])[:, None, None]
    bipolar = normalize(sign * centers[:, :1] + bip_r * g)
    allf = jnp.stack([normalize(g), clustered, cap, bipolar], axis=1)  # (R, 4, n, d)
    return jnp.take_along_axis(allf, fam[:, None, None, None], axis=1)[:, 0]


_draw_all = jax.jit(_draw_all_impl, static_argnums=(2, 3, 4))


def draw_configurations(
    key: jax.Array,
    restarts: int,
    n_points: int,
    dim: int,
    *,
    families: Sequence[str] = RESTART_FAMILIES,
    dtype=None,
) -> tuple[jax.Array, np.ndarray]:
    r"""Random starting configurations: ``restarts`` sets of ``n_points`` unit vectors.

    The points lie on :math:`S^{dim-1} \subset \mathbb{R}^{dim}`. Restart ``r`` uses family
    ``families[r % len(families)]``; all randomness comes from ``key`` (a few batched
    draws, so compilation stays cheap):

    * ``uniform``: i.i.d. uniform points (normalised Gaussians);
    * ``clustered``: 2 or 3 random centres, each point near one (Gaussian spread 0.05-0.6);
    * ``cap``: every point in one small cap (collapsed start, spread 0.01-0.3, log-uniform);
    * ``bipolar``: points near a centre or its antipode (far pairs, spread 0.05-0.4).

    Returns:
      ``(X0, family_index)`` of shapes ``(restarts, n_points, dim)`` and ``(restarts,)``.
    """
    bad = [f for f in families if f not in RESTART_FAMILIES]
    if bad or not families:
        raise ValueError(f"unknown restart families {bad}; valid: {', '.join(RESTART_FAMILIES)}")
    dtype = float_dtype(dtype)
    fam = np.asarray(
        [RESTART_FAMILIES.index(families[r % len(families)]) for r in range(restarts)], np.int32
    )
    X0 = _draw_all(key, jnp.asarray(fam), n_points, dim, dtype)
    return X0, fam


@dataclasses.dataclass
class SearchResult:
    """Best configuration found by :func:`search` (or :func:`geotrip.simplify`).

    Attributes:
      points: ``(n, d)`` float64 unit vectors of the best valid restart.
      triplets: ``(k, 3)`` int32.
      value: its score (see :func:`objective_function`); NaN if no restart was valid.
      objective, distances, margins, soft: the problem.
      values: ``(restarts,)`` best score of each restart (NaN where never valid).
      families: ``(restarts,)`` restart family names.
      candidates: up to 8 best distinct configurations, best first (``(c, n, d)``).
      candidate_values: their scores.
      history: best score after each chunk of steps.
      seed, restarts, steps, seconds: run parameters and wall time (compile included).
      notes: what was done to the configuration (margin matching, simplification steps,
        structure, ...).
      active, gap: the activity pattern every reported configuration follows
        (:func:`geotrip.objective_function`).
      match: the rule that derived B's margin from A's, or None when both were given.
    """

    points: np.ndarray
    triplets: np.ndarray
    value: float
    objective: Any
    distances: tuple
    margins: tuple
    soft: bool
    values: np.ndarray
    families: list
    candidates: np.ndarray
    candidate_values: np.ndarray
    history: list
    seed: int
    restarts: int
    steps: int
    seconds: float
    notes: list = dataclasses.field(default_factory=list)
    active: str = "any"
    gap: float = 1e-3
    match: str | None = None

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])

    @property
    def k(self) -> int:
        return int(self.triplets.shape[0])

    @property
    def angle_deg(self) -> float:
        """Riemannian gradient angle (degrees) of the best configuration.

        Computed by the jitted program of :func:`geotrip.certify`'s claims (the same
        formula; compiled once per shape and reused by the certification, where eager
        evaluation compiled some 90 primitives one by one: about 3-6 s of a CLI search).
        """
        from ._certify import _claim_arrays_fn

        if not jax.config.jax_enable_x64:  # as certify: float64 claims
            with jax.enable_x64(True):
                return self.angle_deg
        fn = _claim_arrays_fn(tuple(self.distances), tuple(self.margins), bool(self.soft))
        X = jnp.asarray(np.asarray(self.points, np.float64))
        return float(fn(X, jnp.asarray(np.asarray(self.triplets)))["angle_deg"])

    def describe(self) -> str:
        name = _objective_name(self.objective)
        extra = ""
        if name == "descent" and np.isfinite(self.value):
            extra = f" (gradient angle {self.angle_deg:.4f} deg)"
        how = f"matched by {self.match}" if self.match else "explicit"
        return (
            f"{name}: best {self.value:.6g}{extra} with k={self.k} triplets, "
            f"n={self.points.shape[0]} points, d={self.dim}; margins {self.margins[0]:g}, "
            f"{self.margins[1]:.6g} ({how}), active={self.active}; {self.restarts} restarts x "
            f"{self.steps} steps, seed {self.seed}, {self.seconds:.1f} s"
        )


def _objective_name(objective) -> str:
    if isinstance(objective, str):
        return objective
    return getattr(objective, "__name__", "custom")


# ----------------------------------------------------------------------------------------
# Compiled steps
# ----------------------------------------------------------------------------------------


def _cosine_schedule(lr: float, total: float):
    def schedule(count):  # cosine decay to 1% (written out: optax's mixes int and float dtypes)
        frac = jnp.minimum(jnp.asarray(count).astype(float_dtype()), total) / total
        return lr * (0.01 + 0.99 * 0.5 * (1 + jnp.cos(jnp.pi * frac)))

    return schedule


def _riemannian_step(surrogate, opt):
    """One Riemannian Adam ascent step with projection, retraction and NaN guards."""

    def one_step(X, state):
        g = jax.grad(surrogate)(X)
        g = project_tangent(X, jnp.where(jnp.isfinite(g), g, jnp.zeros_like(g)))
        upd, state = opt.update(-g, state, X)
        upd = project_tangent(X, upd)
        Xn = normalize(X + upd)
        Xn = jnp.where(jnp.all(jnp.isfinite(Xn)), Xn, X)
        return Xn, state

    return one_step


@bounded_cache(32)
def _compiled(objective, key_t, distances, margins, soft, active, gap, steps, chunk, lr):
    """``(run_chunk, init)``: jitted chunk of ``chunk`` vmapped steps, and the initialiser.

    Cached by stable values (objective, triplets, distances, margins, soft, budget); the
    shapes (restarts, n, d, dtype) are handled by ``jax.jit``'s own cache.
    """
    import optax

    surrogate, score, valid = objective_function(
        objective,
        np.asarray(key_t, np.int32),
        distances=distances,
        margins=margins,
        soft=soft,
        active=active,
        gap=gap,
    )
    opt = optax.adam(_cosine_schedule(lr, float(max(steps, 1))))
    vstep = jax.vmap(_riemannian_step(surrogate, opt))

    def evaluate(X):
        s = score(X)
        v = valid(X) & jnp.isfinite(s)
        return jnp.where(v, s, jnp.full_like(s, -jnp.inf))

    veval = jax.vmap(evaluate)

    @jax.jit
    def run_chunk(X, state, bestX, best):
        def body(carry, _):
            X, state = carry
            return vstep(X, state), None

        (X, state), _ = jax.lax.scan(body, (X, state), None, length=chunk)
        s = veval(X)
        better = s > best
        bestX = jnp.where(better[:, None, None], X, bestX)
        return X, state, bestX, jnp.maximum(s, best)

    init = jax.jit(lambda X0: (jax.vmap(opt.init)(X0), veval(X0)))
    return run_chunk, init


# ----------------------------------------------------------------------------------------
# search
# ----------------------------------------------------------------------------------------


def _check_search_args(t, n_points, dim, restarts, steps, chunk, distances) -> int:
    """Validate the problem; return the number of points."""
    n = int(t.max()) + 1 if n_points is None else int(n_points)
    if n <= int(t.max()):
        raise ValueError(f"n_points={n} is too small for triplet index {int(t.max())}")
    if not isinstance(dim, (int, np.integer)) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2, got {dim!r}")
    for name, v in (("restarts", restarts), ("steps", steps), ("chunk", chunk)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if len(distances) != 2:
        raise ValueError("distances must be a pair (A, B)")
    return n


def _initial_configurations(key, restarts, n, dim, families, init, init_noise):
    """``(X0, family names)``: random restarts, or ``init`` and noisy copies of it."""
    dtype = float_dtype()
    if init is None:
        X0, fam = draw_configurations(key, restarts, n, dim, families=families, dtype=dtype)
        return X0, [RESTART_FAMILIES[i] for i in fam]
    init = np.asarray(init, np.float64)
    if init.shape != (n, dim):
        raise ValueError(f"init must have shape ({n}, {dim}), got {init.shape}")
    scales = np.concatenate([[0.0], np.geomspace(1e-3, init_noise, max(restarts - 1, 1))])
    scales = scales[:restarts]
    noise = jax.random.normal(key, (restarts, n, dim), dtype)
    X0 = normalize(
        jnp.asarray(init, dtype)[None] + jnp.asarray(scales, dtype)[:, None, None] * noise
    )
    return X0, ["init"] * restarts


def _run(run_chunk, X, state, bestX, best, n_chunks, chunk, desc, progress):
    """Run the compiled chunks under a tqdm bar; return ``(bestX, best, history)``."""
    from tqdm.auto import tqdm

    history = []
    with tqdm(
        total=n_chunks * chunk, desc=desc, disable=not progress, leave=False, unit="step"
    ) as bar:
        for _ in range(n_chunks):
            X, state, bestX, best = run_chunk(X, state, bestX, best)
            b = float(np.max(np.asarray(best)))  # exact either way; no program to compile
            history.append(b)
            bar.update(chunk)
            bar.set_postfix(best=f"{b:.5g}")
    return bestX, best, history


def _distinct_candidates(best, bestX, limit=8):
    """Up to ``limit`` best distinct valid configurations (max-norm distance > 1e-6)."""
    order = np.argsort(-best, kind="stable")
    cand, cvals = [], []
    for i in order:
        if not np.isfinite(best[i]):
            break
        if any(np.max(np.abs(bestX[i] - c)) < 1e-6 for c in cand):
            continue
        cand.append(bestX[i])
        cvals.append(best[i])
        if len(cand) == limit:
            break
    return order, cand, cvals


def _gather_restarts(bestX, best, history, restarts: int):
    """All processes' restarts in restart order (padding dropped); history: the best of all."""
    parts = allgather_objects((np.asarray(bestX), np.asarray(best), np.asarray(history)))
    bestX = np.concatenate([p[0] for p in parts])[:restarts]
    best = np.concatenate([p[1] for p in parts])[:restarts]
    history = [float(h) for h in np.max(np.stack([p[2] for p in parts]), axis=0)]
    return bestX, best, history


def _finish(best, bestX, history, t, problem: dict, run: dict) -> SearchResult:
    best = np.asarray(best, np.float64)
    bestX = np.asarray(bestX, np.float64)
    n, dim = bestX.shape[1:]
    order, cand, cvals = _distinct_candidates(best, bestX)
    if cand:
        pts, val = cand[0], float(cvals[0])
    else:
        pts, val = bestX[order[0]], float("nan")
    return SearchResult(
        points=pts,
        triplets=np.asarray(t),
        value=val,
        values=np.where(np.isfinite(best), best, np.nan),
        candidates=np.asarray(cand).reshape(-1, n, dim),
        candidate_values=np.asarray(cvals),
        history=history,
        **problem,
        **run,
    )


def search(
    objective: str | Callable = "angle",
    *,
    triplets=None,
    structure: str = "shared_anchor",
    k: int = 2,
    labels: Sequence[int] | None = None,
    n_points: int | None = None,
    dim: int = 3,
    distances: Sequence = ("chord_sq", "geodesic"),
    margins: Sequence[float | None] | None = None,
    match: str | None = "slope",
    active: str = "any",
    gap: float = 1e-3,
    soft: bool = False,
    restarts: int = 256,
    steps: int = 400,
    learning_rate: float = 0.02,
    seed: int = 0,
    families: Sequence[str] = RESTART_FAMILIES,
    init: np.ndarray | None = None,
    init_noise: float = 0.1,
    chunk: int = 50,
    progress: bool = True,
    distributed: bool = False,
) -> SearchResult:
    r"""Search for a configuration maximising an objective, many restarts in parallel.

    The objectives are described in :func:`geotrip.objective_function` and the method in
    :mod:`geotrip.counterexamples._optimizer`.

    Args:
      objective: ``"angle"``, ``"descent"``, ``"active"``, ``"raw"`` or a callable
        ``f(X, triplets) -> scalar`` (JAX, differentiable).
      triplets: an index array ``(k, 3)``; otherwise built from ``structure``, ``k`` and
        ``labels`` (:func:`geotrip.triplet_structure`).
      n_points: number of points (default: the largest index + 1).
      dim: ambient dimension :math:`d \ge 2` (points on :math:`S^{d-1}`).
      distances, soft: the two losses A and B.
      margins: ``(m_A, m_B)`` used as given; ``None`` (the default) or ``(m_A, None)``:
        A's margin (default 0.2) and B's derived from it by ``match``.
      match: rule of :func:`geotrip.match_margin` for B's margin (default ``"slope"``:
        :math:`m_B = m_A\,g_B'(\pi/2)/g_A'(\pi/2)`); not used when both margins are given.
      active: ``"any"``, ``"both"`` (every triplet active under both hinges by ``gap``:
        the weighting effect alone) or ``"disjoint"`` (every triplet active under exactly
        one hinge); see :func:`geotrip.objective_function`.
      gap: the least hinge argument (in each distance's units) of an active triplet, and
        the most of an inactive one (negated), for ``active`` other than ``"any"``.
      restarts, steps, learning_rate: budget and Adam step (cosine-decayed to 1%).
      seed: the PRNG seed; the result is a deterministic function of it.
      families: restart families (:func:`draw_configurations`).
      init: optional ``(n, d)`` starting configuration: restart 0 starts there and the
        others from it perturbed by Gaussian noise of scales log-spaced up to ``init_noise``.
      chunk: steps per compiled chunk (the progress bar advances per chunk).
      progress: show a tqdm progress bar.
      distributed: in a run of several processes (:func:`geotrip.init_distributed`), each
        process optimises its share of the restarts (contiguous blocks:
        the same starting configurations as one process draws, sliced) and the results are
        gathered, so every process returns the single-process result bit for bit (the
        restarts are independent: a restart's trajectory does not depend on the others in
        its ``vmap``). Every process must call it (a collective). Ignored with one process.

    Returns:
      A :class:`SearchResult`.

    One triplet active under both hinges never makes chord_sq and geodesic gradients 60
    degrees apart (a small search, in float32 or float64; B's margin matched to A's 0.2):

    >>> import geotrip as gt
    >>> r = gt.search(
    ...     "angle", k=1, dim=3, active="both", restarts=8, steps=40, seed=0, progress=False
    ... )
    >>> r.points.shape, r.triplets.tolist(), round(r.margins[1], 6), bool(0 < r.value < 60)
    ((3, 3), [[0, 1, 2]], 0.1, True)
    """
    t0 = time.perf_counter()
    if triplets is None:
        triplets = triplet_structure(structure, k, labels=labels)
    t = triplet_structure(triplets)
    n = _check_search_args(t, n_points, dim, restarts, steps, chunk, distances)
    check_active(active, gap, soft=soft, objective=objective)
    distances = tuple(get_distance(d).name if isinstance(d, str) else d for d in distances)
    margins, match, margin_note = resolve_margins(distances, margins, match=match, dim=dim)
    chunk = min(chunk, steps)
    n_chunks = -(-steps // chunk)
    X0, fam_names = _initial_configurations(
        jax.random.key(seed), restarts, n, dim, families, init, init_noise
    )
    run_chunk, init_fn = _compiled(
        objective,
        tuple(map(tuple, t.tolist())),
        distances,
        margins,
        bool(soft),
        active,
        float(gap),
        n_chunks * chunk,
        chunk,
        float(learning_rate),
    )
    desc = f"search {_objective_name(objective)} k={t.shape[0]} d={dim}"
    if distributed and jax.process_count() > 1:
        X0 = X0[process_share(restarts)]  # this process's restarts (one process: all, as drawn)
    # optax's Adam mixes int and float dtypes (bias correction), which strict promotion forbids.
    with jax.numpy_dtype_promotion("standard"):
        state, best = init_fn(X0)
        bestX, best, history = _run(run_chunk, X0, state, X0, best, n_chunks, chunk, desc, progress)
    if distributed:
        bestX, best, history = _gather_restarts(bestX, best, history, restarts)
    problem = dict(
        objective=objective,
        distances=distances,
        margins=margins,
        soft=bool(soft),
        active=active,
        gap=float(gap),
        match=match,
        notes=[margin_note] if margin_note else [],
    )
    run = dict(
        families=fam_names,
        seed=int(seed),
        restarts=int(restarts),
        steps=int(n_chunks * chunk),
        seconds=time.perf_counter() - t0,
    )
    return _finish(best, bestX, history, t, problem, run)
