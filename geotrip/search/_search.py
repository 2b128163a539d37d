r"""Counterexample search: where do two triplet losses of the family disagree?

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
  :math:`\partial_{\hat D_A} L_B/\|G_B\| = -\langle G_A,G_B\rangle/(\|G_A\|\|G_B\|) = -\cos\phi`,
  the rate at which A's unit descent direction raises B, as a fraction of B's steepest
  rate. It is positive exactly for a disagreement; its certificate adds a finite step with
  a retraction that lowers A and raises B (:func:`certify`).
* ``"active"``: active-set disagreement. With :math:`z^A_k, z^B_k` the hinge arguments
  scaled by the distance's range :math:`g(\pi)`,
  :math:`r_k = \max(\min(z^A_k, -z^B_k), \min(-z^A_k, z^B_k))` is positive when
  triplet ``k`` is active under exactly one loss; the objective is
  :math:`\frac1k\sum_k \min(r_k, c)/c` with :math:`c = 0.05` (1 when every triplet
  disagrees robustly).
* ``"raw"``: raw vs Riemannian disagreement, :math:`\angle(G_A,G_B) - \angle(G^{raw}_A, G^{raw}_B)`
  in degrees: how much comparing raw (ambient) gradients understates the disagreement.
* a callable ``f(X, triplets) -> scalar``: any differentiable JAX function of the configuration.

Method: ``restarts`` random configurations (drawn from several families: uniform,
clustered, collapsed caps, bipolar clusters) optimised in parallel (``vmap``) by
Riemannian gradient ascent on the product of spheres: the Euclidean gradient is
projected on the tangent spaces, fed to an optax optimiser (Adam with a cosine-decayed
step), the update projected again, and each row retracted by re-normalisation. The
steps run in jit-compiled ``lax.scan`` chunks under a tqdm progress bar. Everything is
a pure function of ``seed``. Non-finite gradients are replaced by 0 and a step that
would produce a non-finite point is skipped, so degenerate configurations (zero
gradients, coincident points) cannot poison the search.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core._distances import distance as get_distance
from ..core._geometry import angle, normalize, project_tangent, vector_angle
from ..core._gradients import batch_grads, descent_disagreement, triplet_grads_closed_form
from ..core._losses import batch_loss
from .certificates import (
    GRAD_TOL,
    VerificationResult,
    format_decimal_points,
    safety_margin,
    verify_certificate,
    write_certificate,
)

__all__ = [
    "OBJECTIVES",
    "STRUCTURES",
    "RESTART_FAMILIES",
    "SearchResult",
    "Certificate",
    "triplet_structure",
    "draw_configurations",
    "objective_function",
    "search",
    "simplify",
    "certify",
]

OBJECTIVES = ("angle", "descent", "active", "raw")
STRUCTURES = ("shared_anchor", "chain", "cycle", "labeled")
RESTART_FAMILIES = ("uniform", "clustered", "cap", "bipolar")
_ACTIVE_CAP = 0.05
_RANGE = {
    "chord_sq": 4.0,
    "chord": 2.0,
    "geodesic": math.pi,
    "geodesic_sq": math.pi**2,
    "cosine": 2.0,
}


# ----------------------------------------------------------------------------------------
# Triplet structures
# ----------------------------------------------------------------------------------------


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
    """
    if not isinstance(structure, str):
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
    if structure == "labeled":
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
    r"""Random starting configurations, ``restarts`` of ``n_points`` unit vectors in :math:`\mathbb{R}^{dim}`.

    Restart ``r`` uses family ``families[r % len(families)]``; all randomness comes from
    ``key`` (a few batched draws, so compilation stays cheap):

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
    dtype = dtype or jnp.result_type(float)
    fam = np.asarray(
        [RESTART_FAMILIES.index(families[r % len(families)]) for r in range(restarts)], np.int32
    )
    X0 = _draw_all(key, jnp.asarray(fam), n_points, dim, jnp.dtype(dtype))
    return X0, fam


# ----------------------------------------------------------------------------------------
# Objectives
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
    D = get_distance(dist)
    a, p, n = X[t[:, 0]], X[t[:, 1]], X[t[:, 2]]
    return D.ambient(a, p) - D.ambient(a, n) + margin


def _cos_safe(GA, GB):
    tiny = jnp.asarray(GRAD_TOL * 10, GA.dtype) ** 2
    nA2, nB2 = jnp.sum(GA * GA), jnp.sum(GB * GB)
    ok = (nA2 > tiny) & (nB2 > tiny)
    den = jnp.sqrt(jnp.where(ok, nA2 * nB2, jnp.ones_like(nA2)))
    return jnp.where(ok, jnp.sum(GA * GB) / den, jnp.ones_like(nA2)), ok


_OBJECTIVES_CACHE: dict = {}


def objective_function(
    objective: str | Callable,
    triplets,
    *,
    distances=("chord_sq", "geodesic"),
    margins=(0.2, 0.2),
    soft: bool = False,
) -> tuple[Callable, Callable, Callable]:
    r"""The three functions of an objective over configurations ``X`` of shape ``(n, d)``.

    Returns:
      ``(surrogate, score, valid)``: ``surrogate(X)`` is the smooth, NaN-free scalar the
      optimiser maximises; ``score(X)`` the reported value (degrees for ``angle`` and
      ``raw``, :math:`-\cos\phi` for ``descent``, the fraction-like measure for ``active``,
      the function's value for a callable); ``valid(X)`` is True when the configuration
      is robust enough to certify (finite, no triplet pair within ``1e-6`` of coincident
      or antipodal, hard hinges at least ``1e-6`` from their boundary, and, for the
      gradient objectives, both gradients non-zero).
    """
    t_np = triplet_structure(triplets)
    ckey = (
        objective,
        t_np.tobytes(),
        t_np.shape,
        tuple(map(str, distances)),
        tuple(map(float, margins)),
        bool(soft),
    )
    if ckey not in _OBJECTIVES_CACHE:
        f, s, v = _objective_function(objective, t_np, distances, margins, soft)
        _OBJECTIVES_CACHE[ckey] = (f, jax.jit(s), jax.jit(v))
    return _OBJECTIVES_CACHE[ckey]


def _objective_function(objective, t_np, distances, margins, soft):
    t = jnp.asarray(t_np)
    dA, dB = (
        get_distance(d).name if not callable(getattr(d, "ambient", None)) else d for d in distances
    )
    spec = _Spec(
        objective, tuple(map(tuple, np.asarray(t).tolist())), (dA, dB), tuple(margins), bool(soft)
    )
    del dA, dB

    def base_valid(X):
        a, p, n = X[t[:, 0]], X[t[:, 1]], X[t[:, 2]]
        sines = jnp.stack([jnp.sin(angle(a, p)), jnp.sin(angle(a, n))])
        ok = jnp.all(jnp.isfinite(X)) & jnp.all(sines > 1e-6)
        if not soft:
            for d, m in zip(spec.distances, spec.margins):
                ok = ok & jnp.all(jnp.abs(_z(X, t, d, m)) > 1e-6)
        return ok

    if callable(objective):
        fn = objective
        return (lambda X: fn(X, t)), (lambda X: fn(X, t)), base_valid
    if objective not in OBJECTIVES:
        raise ValueError(
            f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)} or a callable"
        )

    if objective in ("angle", "descent"):

        def surrogate(X):
            GA, GB = _pair_grads(X, t, spec)
            c, _ = _cos_safe(GA, GB)
            return -c

        def score(X):
            GA, GB = _pair_grads(X, t, spec)
            c, ok = _cos_safe(GA, GB)
            if objective == "descent":
                return -c
            return jnp.where(
                ok, jnp.degrees(vector_angle(GA.reshape(-1), GB.reshape(-1))), jnp.zeros_like(c)
            )

        def valid(X):
            GA, GB = _pair_grads(X, t, spec)
            return base_valid(X) & _cos_safe(GA, GB)[1]

        return surrogate, score, valid

    if objective == "raw":

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

    # active-set disagreement
    def score(X):
        (dA, dB), (mA, mB) = spec.distances, spec.margins
        zA = _z(X, t, dA, mA) / _RANGE.get(getattr(dA, "name", dA), 1.0)
        zB = _z(X, t, dB, mB) / _RANGE.get(getattr(dB, "name", dB), 1.0)
        r = jnp.maximum(jnp.minimum(zA, -zB), jnp.minimum(-zA, zB))
        return jnp.mean(jnp.minimum(r, _ACTIVE_CAP)) / _ACTIVE_CAP

    return score, score, base_valid


# ----------------------------------------------------------------------------------------
# The optimiser
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class SearchResult:
    """Best configuration found by :func:`search` (or :func:`simplify`).

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

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])

    @property
    def k(self) -> int:
        return int(self.triplets.shape[0])

    @property
    def angle_deg(self) -> float:
        """Riemannian gradient angle (degrees) of the best configuration."""
        GA, GB = _pair_grads(
            jnp.asarray(self.points),
            jnp.asarray(self.triplets),
            _Spec(None, (), self.distances, self.margins, self.soft),
        )
        return float(jnp.degrees(vector_angle(GA.reshape(-1), GB.reshape(-1))))

    def describe(self) -> str:
        name = (
            self.objective
            if isinstance(self.objective, str)
            else getattr(self.objective, "__name__", "custom")
        )
        extra = ""
        if name == "descent" and np.isfinite(self.value):
            extra = f" (gradient angle {self.angle_deg:.4f} deg)"
        return (
            f"{name}: best {self.value:.6g}{extra} with k={self.k} triplets, n={self.points.shape[0]} points, "
            f"d={self.dim}; {self.restarts} restarts x {self.steps} steps, seed {self.seed}, "
            f"{self.seconds:.1f} s"
        )


_COMPILED: dict = {}


def _compiled(spec_key, surrogate, score, valid, steps, chunk, lr):
    key = (spec_key, steps, chunk, lr)
    if key in _COMPILED:
        return _COMPILED[key]
    import optax

    total = float(max(steps, 1))

    def schedule(count):  # cosine decay to 1% (written out: optax's mixes int and float dtypes)
        frac = jnp.minimum(jnp.asarray(count).astype(jnp.result_type(float)), total) / total
        return lr * (0.01 + 0.99 * 0.5 * (1 + jnp.cos(jnp.pi * frac)))

    opt = optax.adam(schedule)

    def one_step(X, state):
        g = jax.grad(surrogate)(X)
        g = project_tangent(X, jnp.where(jnp.isfinite(g), g, jnp.zeros_like(g)))
        upd, state = opt.update(-g, state, X)
        upd = project_tangent(X, upd)
        Xn = normalize(X + upd)
        Xn = jnp.where(jnp.all(jnp.isfinite(Xn)), Xn, X)
        return Xn, state

    vstep = jax.vmap(one_step)

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
    _COMPILED[key] = (run_chunk, init)
    return _COMPILED[key]


def _spec_key(objective, t, n, d, distances, margins, soft, restarts, dtype):
    return (
        objective if isinstance(objective, str) else id(objective),
        t.tobytes(),
        t.shape,
        n,
        d,
        tuple(str(x) for x in distances),
        tuple(float(m) for m in margins),
        bool(soft),
        restarts,
        str(dtype),
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
    margins: Sequence[float] = (0.2, 0.2),
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
) -> SearchResult:
    r"""Search for a configuration maximising an objective (module docstring), many restarts in parallel.

    Args:
      objective: ``"angle"``, ``"descent"``, ``"active"``, ``"raw"`` or a callable
        ``f(X, triplets) -> scalar`` (JAX, differentiable).
      triplets: an index array ``(k, 3)``; otherwise built from ``structure``, ``k`` and
        ``labels`` (:func:`triplet_structure`).
      n_points: number of points (default: the largest index + 1).
      dim: ambient dimension :math:`d \ge 2` (points on :math:`S^{d-1}`).
      distances, margins, soft: the two losses A and B.
      restarts, steps, learning_rate: budget and Adam step (cosine-decayed to 1%).
      seed: the PRNG seed; the result is a deterministic function of it.
      families: restart families (:func:`draw_configurations`).
      init: optional ``(n, d)`` starting configuration: restart 0 starts there and the
        others from it perturbed by Gaussian noise of scales log-spaced up to ``init_noise``.
      chunk: steps per compiled chunk (the progress bar advances per chunk).
      progress: show a tqdm progress bar.

    Returns:
      A :class:`SearchResult`.
    """
    t0 = time.perf_counter()
    if triplets is None:
        triplets = triplet_structure(structure, k, labels=labels)
    t = triplet_structure(triplets)
    n = int(t.max()) + 1 if n_points is None else int(n_points)
    if n <= int(t.max()):
        raise ValueError(f"n_points={n} is too small for triplet index {int(t.max())}")
    if not isinstance(dim, (int, np.integer)) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2, got {dim!r}")
    for name, v in (("restarts", restarts), ("steps", steps), ("chunk", chunk)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if len(distances) != 2 or len(margins) != 2:
        raise ValueError("distances and margins must be pairs (A, B)")
    distances = tuple(get_distance(d).name if isinstance(d, str) else d for d in distances)
    dtype = jnp.result_type(float)
    surrogate, score, valid = objective_function(
        objective, t, distances=distances, margins=margins, soft=soft
    )
    chunk = min(chunk, steps)
    n_chunks = -(-steps // chunk)
    key = jax.random.key(seed)
    if init is not None:
        init = np.asarray(init, np.float64)
        if init.shape != (n, dim):
            raise ValueError(f"init must have shape ({n}, {dim}), got {init.shape}")
        scales = np.concatenate([[0.0], np.geomspace(1e-3, init_noise, max(restarts - 1, 1))])[
            :restarts
        ]
        noise = jax.random.normal(key, (restarts, n, dim), dtype)
        X0 = normalize(
            jnp.asarray(init, dtype)[None] + jnp.asarray(scales, dtype)[:, None, None] * noise
        )
        fam_names = ["init"] * restarts
    else:
        X0, fam = draw_configurations(key, restarts, n, dim, families=families, dtype=dtype)
        fam_names = [RESTART_FAMILIES[i] for i in fam]
    run_chunk, init_fn = _compiled(
        _spec_key(objective, t, n, dim, distances, margins, soft, restarts, dtype),
        surrogate,
        score,
        valid,
        n_chunks * chunk,
        chunk,
        float(learning_rate),
    )
    # optax's Adam mixes int and float dtypes (bias correction), which strict promotion forbids.
    promo = jax.numpy_dtype_promotion("standard")
    promo.__enter__()
    try:
        state, best = init_fn(X0)
        X, bestX, history = X0, X0, []
        X, bestX, best, history = _run(
            run_chunk, X, state, bestX, best, n_chunks, chunk, objective, t, dim, progress
        )
    finally:
        promo.__exit__(None, None, None)
    return _finish(
        best,
        bestX,
        history,
        t,
        n,
        dim,
        objective,
        distances,
        margins,
        soft,
        fam_names,
        seed,
        restarts,
        n_chunks * chunk,
        t0,
    )


def _run(run_chunk, X, state, bestX, best, n_chunks, chunk, objective, t, dim, progress):
    history = []
    from tqdm.auto import tqdm

    name = objective if isinstance(objective, str) else "custom"
    with tqdm(
        total=n_chunks * chunk,
        desc=f"search {name} k={t.shape[0]} d={dim}",
        disable=not progress,
        leave=False,
        unit="step",
    ) as bar:
        for _ in range(n_chunks):
            X, state, bestX, best = run_chunk(X, state, bestX, best)
            b = float(jnp.max(best))
            history.append(b)
            bar.update(chunk)
            bar.set_postfix(best=f"{b:.5g}")
    return X, bestX, best, history


def _finish(
    best,
    bestX,
    history,
    t,
    n,
    dim,
    objective,
    distances,
    margins,
    soft,
    fam_names,
    seed,
    restarts,
    steps,
    t0,
):
    best = np.asarray(best, np.float64)
    bestX = np.asarray(bestX, np.float64)
    order = np.argsort(-best, kind="stable")
    cand, cvals = [], []
    for i in order:
        if not np.isfinite(best[i]):
            break
        if any(np.max(np.abs(bestX[i] - c)) < 1e-6 for c in cand):
            continue
        cand.append(bestX[i])
        cvals.append(best[i])
        if len(cand) == 8:
            break
    values = np.where(np.isfinite(best), best, np.nan)
    if cand:
        pts, val = cand[0], float(cvals[0])
    else:
        pts, val = bestX[order[0]], float("nan")
    return SearchResult(
        points=pts,
        triplets=np.asarray(t),
        value=val,
        objective=objective,
        distances=distances,
        margins=tuple(float(m) for m in margins),
        soft=bool(soft),
        values=values,
        families=fam_names,
        candidates=np.asarray(cand).reshape(-1, n, dim),
        candidate_values=np.asarray(cvals),
        history=history,
        seed=int(seed),
        restarts=int(restarts),
        steps=int(steps),
        seconds=time.perf_counter() - t0,
    )


# ----------------------------------------------------------------------------------------
# Properties, simplification, certificates
# ----------------------------------------------------------------------------------------


def _default_threshold(objective) -> float:
    if objective in ("angle",):
        return 90.0
    return 0.0


_DD_CACHE: dict = {}


def _dd(res: SearchResult):
    key = (tuple(map(str, res.distances)), tuple(res.margins), res.soft)
    if key not in _DD_CACHE:
        _DD_CACHE[key] = jax.jit(
            lambda X, t, step: descent_disagreement(
                X, t, distances=res.distances, margins=res.margins, step=step, soft=res.soft
            )
        )
    return _DD_CACHE[key]


def _step_claims(X, t, res: SearchResult, sizes) -> tuple[float, dict] | None:
    """Largest-gain step (along A) that lowers A and raises B robustly, or None."""
    best = None
    for eta in sizes:
        dd = _dd(res)(jnp.asarray(X), jnp.asarray(t), jnp.asarray(eta, jnp.result_type(float)))
        dA, dB = float(dd["step/A_along_A"]), float(dd["step/B_along_A"])
        gain = min(-dA, dB)
        if gain > 100 * safety_margin(0.0) and (best is None or gain > best[0]):
            best = (gain, {"size": float(eta), "along": "A", "delta_A": dA, "delta_B": dB})
    return best


_STEP_SIZES = (0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 3e-4, 1e-4)


def _holds(X, t, res: SearchResult, threshold: float) -> bool:
    """Does configuration X keep the property (score > threshold, valid; descent: a finite step too)?"""
    _, score, valid = objective_function(
        res.objective, t, distances=res.distances, margins=res.margins, soft=res.soft
    )
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
       re-optimise briefly from the current configuration (:func:`search` with ``init``);
       keep the removal if the property still holds; repeat until none can go.
    2. Dimension: rotate the points to their principal axes (SVD), drop the last
       coordinate, re-normalise and re-optimise; repeat while the property holds, down to
       ``min_dim``.

    Rounding to short decimals is done by :func:`certify`.

    Returns:
      A new :class:`SearchResult` (``notes`` records the steps taken).
    """
    thr = _default_threshold(result.objective) if threshold is None else float(threshold)
    seed = result.seed if seed is None else seed
    X, t = np.asarray(result.points), np.asarray(result.triplets)
    notes = []
    if not _holds(X, t, result, thr):
        raise ValueError(
            f"the configuration does not have the property (score > {thr:g}) to begin with"
        )

    def reopt(X, t, dim, tag):
        r = search(
            result.objective,
            triplets=t,
            n_points=X.shape[0],
            dim=dim,
            distances=result.distances,
            margins=result.margins,
            soft=result.soft,
            restarts=restarts,
            steps=steps,
            seed=seed + tag,
            init=X,
            init_noise=0.1,
            progress=progress,
            learning_rate=0.005,
        )
        for c in r.candidates:
            if _holds(c, t, result, thr):
                return c
        return X if _holds(X, t, result, thr) else None

    changed = True
    tag = 1
    while changed and t.shape[0] > 1:
        changed = False
        for i in reversed(range(t.shape[0])):
            t2 = np.delete(t, i, axis=0)
            X2, t2 = _reindex(X, t2)
            tag += 1
            Y = X2 if _holds(X2, t2, result, thr) else reopt(X2, t2, X2.shape[1], tag)
            if Y is not None:
                notes.append(f"removed triplet {i} (k {t.shape[0]} -> {t2.shape[0]})")
                X, t, changed = Y, t2, True
                break
    while X.shape[1] > min_dim:
        _, _, vt = np.linalg.svd(X, full_matrices=False)
        Y = X @ vt.T
        Y = Y[:, :-1]
        nrm = np.linalg.norm(Y, axis=1, keepdims=True)
        if np.any(nrm < 1e-6):
            break
        Y = Y / nrm
        tag += 1
        Z = Y if _holds(Y, t, result, thr) else reopt(Y, t, Y.shape[1], tag)
        if Z is None:
            notes.append(f"dimension {X.shape[1]} -> {X.shape[1] - 1} loses the property; stopped")
            break
        notes.append(f"reduced dimension {X.shape[1]} -> {X.shape[1] - 1}")
        X = Z
    _, score, _ = objective_function(
        result.objective, t, distances=result.distances, margins=result.margins, soft=result.soft
    )
    val = float(score(jnp.asarray(X)))
    return dataclasses.replace(
        result,
        points=X,
        triplets=t,
        value=val,
        candidates=X[None],
        candidate_values=np.asarray([val]),
        notes=result.notes + notes,
    )


@dataclasses.dataclass
class Certificate:
    """A written certificate: its path (or None), content, decimals used and the verification."""

    path: Path | None
    content: dict
    decimals: int
    verification: VerificationResult


def _claims(X, t, res: SearchResult, step) -> dict:
    Xj, tj = jnp.asarray(X), jnp.asarray(t)
    spec = _Spec(None, (), res.distances, res.margins, res.soft)
    GA, GB = _pair_grads(Xj, tj, spec)
    RA, RB = _pair_grads(Xj, tj, spec, riemannian=False)
    dd = _dd(res)(Xj, tj, jnp.asarray(step["size"], Xj.dtype))
    zA = _z(Xj, tj, res.distances[0], res.margins[0])
    zB = _z(Xj, tj, res.distances[1], res.margins[1])
    hingeA = np.asarray(zA) > 0 if not res.soft else np.ones(t.shape[0], bool)
    hingeB = np.asarray(zB) > 0 if not res.soft else np.ones(t.shape[0], bool)
    claims = {
        "angle_deg": float(jnp.degrees(vector_angle(GA.reshape(-1), GB.reshape(-1)))),
        "raw_angle_deg": float(jnp.degrees(vector_angle(RA.reshape(-1), RB.reshape(-1)))),
        "cos": float(dd["cos"]),
        "grad_norm_A": float(dd["grad_norm/A"]),
        "grad_norm_B": float(dd["grad_norm/B"]),
        "loss_A": float(
            batch_loss(Xj, tj, distance=res.distances[0], margin=res.margins[0], soft=res.soft)
        ),
        "loss_B": float(
            batch_loss(Xj, tj, distance=res.distances[1], margin=res.margins[1], soft=res.soft)
        ),
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
    keeps the property (:func:`simplify`) when the original had it, and keeps its score
    within ``value_tolerance`` of the unrounded score (for ``descent``: a certifiable
    finite step exists). Claims are computed with geotrip's JAX functions in float64 and
    then re-checked by the independent verifier (:func:`geotrip.verify_certificate`).

    For ``descent`` (and for an obtuse ``angle``) the certificate asserts
    ``angle_deg > 90``, both slopes ``> 0`` and, along A's unit descent direction with the
    step size of largest robust gain, ``step.delta_A < 0`` and ``step.delta_B > 0``.

    Returns:
      A :class:`Certificate`; ``verification.ok`` tells whether the verifier accepted it.

    Raises:
      ValueError: if no rounding up to ``max_decimals`` keeps the property.
    """
    if not jax.config.jax_enable_x64:
        raise ValueError(
            "certify needs float64: enable it with jax.config.update('jax_enable_x64', True)"
        )
    X = np.asarray(result.points, np.float64)
    t = np.asarray(result.triplets)
    thr = _default_threshold(result.objective) if threshold is None else float(threshold)
    _, score, valid = objective_function(
        result.objective, t, distances=result.distances, margins=result.margins, soft=result.soft
    )
    s0 = float(score(jnp.asarray(X)))
    had_property = _holds(X, t, result, thr)
    tries = [decimals] if decimals is not None else list(range(2, max_decimals + 1))
    chosen = None
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
        chosen = (q, rows, Xr)
        break
    if chosen is None:
        raise ValueError(
            f"no rounding to at most {tries[-1]} decimals keeps the configuration's property"
        )
    q, rows, Xr = chosen
    st = _step_claims(Xr, t, result, _STEP_SIZES)
    step = st[1] if st is not None else {"size": 1e-3}
    claims = _claims(Xr, t, result, step)
    objective_name = (
        result.objective
        if isinstance(result.objective, str)
        else getattr(result.objective, "__name__", "custom")
    )
    assertions = _assertions(objective_name, claims, thr)
    if not statement:
        statement = (
            f"{result.distances[0]} (margin {result.margins[0]:g}) vs {result.distances[1]} "
            f"(margin {result.margins[1]:g}){' soft' if result.soft else ''}, k={t.shape[0]} triplets "
            f"on S^{X.shape[1] - 1}: "
            + (
                f"Riemannian gradient angle {claims['angle_deg']:.4f} deg"
                if "angle_deg" in claims
                else "a gradient vanishes"
            )
            + f"; {int(claims['active_disagreement'])} triplet(s) active under exactly one loss"
        )
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
        assertions=assertions,
        kind=objective_name,
        statement=statement,
        objective={
            "name": objective_name,
            "value_unrounded": s0,
            "value_rounded": float(score(jnp.asarray(Xr))),
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
    if path is not None:
        path = write_certificate(path, **content)
        import json

        doc = json.loads(Path(path).read_text())
        ver = verify_certificate(path)
    else:
        import json
        import os
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            p = write_certificate(os.path.join(tmp, "c.json"), **content)
            doc = json.loads(Path(p).read_text())
        ver = verify_certificate(doc)
    return Certificate(
        path=Path(path) if path is not None else None, content=doc, decimals=q, verification=ver
    )
