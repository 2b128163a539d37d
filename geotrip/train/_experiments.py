r"""Training experiments on collapse: vectorised runners, sweeps and phase diagrams.

Two kinds of runs, both moved by a triplet loss with online mining
(:func:`geotrip.mine_triplets`) and both vectorised over seeds and over the
hyper-parameters that keep shapes static (learning rate, margin, initial spread)
with ``vmap`` + ``lax.scan``:

* ``task="features"`` (unconstrained features): ``n`` labelled points on the sphere
  are the parameters, moved by Riemannian gradient descent,

  .. math:: X \leftarrow \operatorname{normalize}\big(X - \eta\,(I - x_i x_i^\top)\nabla_{x_i} L\big),

  (projected gradient, retraction by normalisation) on the full batch. This isolates
  the loss geometry from any network.
* ``task="clusters"`` / ``"digits"``: a small MLP ending in L2 normalisation
  (:func:`geotrip.mlp_embed`) trained with Adam (optax) on PK batches of synthetic
  Gaussian clusters or of scikit-learn's digits; metrics on a held-out split.

**Units of margins and learning rates (how distances are matched).** Each distance
:math:`g` is used in *reference units*: divided by its slope at the reference angle
:math:`\theta_\text{ref} = \pi/2`,

.. math:: \tilde g(\theta) = g(\theta) / g'(\theta_\text{ref}),

so that every distance has per-pair weight 1 at :math:`\pi/2` (where uniformly
random high-dimensional points sit). A margin :math:`m` (and a learning rate) then
means the same thing for every distance at :math:`\theta_\text{ref}`; in native units
the margin is :math:`m_B = m\, g_B'(\theta_\text{ref})` (e.g. FaceNet's ``chord_sq``
margin 0.2 is :math:`m = 0.1` here). Rankings (mining) are unchanged by the scaling.
What still differs between distances is exactly the weight *profile*
:math:`\tilde g'(\theta)`, in particular :math:`\tilde g'(0)`, which is 0 for
``chord_sq``, ``geodesic_sq`` and ``cosine`` and positive for ``chord`` and
``geodesic``.

**Seeds.** A run with seed ``s`` draws its initialisation, batches and random
negatives from ``jax.random.key(s)`` only, whatever its hyper-parameters and
whichever other runs share its ``vmap``: runs with one seed are paired across
distances, strategies, learning rates, margins and spreads (same start point,
same batches up to data-dependent mining), which makes the paired comparisons of
:func:`collapse_summary` possible.

**Collapse** is :func:`geotrip.is_collapsed` (mean pairwise cosine > 0.99 or
effective rank < 1.5) on the evaluation embeddings at the end of training.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._provenance import provenance, write_provenance
from ..core._distances import Distance, make_distance
from ..core._distances import distance as get_distance
from ..core._geometry import normalize, project_tangent
from ..core._losses import batch_loss
from ..core._mining import MINING_STRATEGIES, mine_triplets
from ._data import class_table, load_digits, make_clusters, sample_pk, stratified_split
from ._metrics import active_share, embedding_metrics, riemannian_grad_norm
from ._models import cap_last_layer, init_features, init_mlp, mlp_embed

__all__ = [
    "TRAINING_TASKS",
    "TRAINING_METRICS",
    "TrainSetup",
    "TaskData",
    "make_task_data",
    "reference_distance",
    "train_runs",
    "train_grid",
    "wilson_interval",
    "clopper_pearson_interval",
    "CollapseSweep",
    "COLLAPSE_PRESETS",
    "run_collapse_sweep",
    "collapse_phase_table",
    "collapse_summary",
    "read_collapse_runs",
]

Array = jax.Array

TRAINING_TASKS = ("features", "clusters", "digits")
TRAINING_METRICS = (
    "loss",
    "active",
    "grad_norm",
    "mean_cos",
    "erank",
    "alignment",
    "uniformity",
    "recall_at_1",
    "collapsed",
)
_EVAL_METRICS = ("mean_cos", "erank", "alignment", "uniformity", "recall_at_1", "collapsed")


# ----------------------------------------------------------------------------- units
@functools.cache
def reference_distance(name: str, theta_ref: float = math.pi / 2) -> Distance:
    r"""The distance ``name`` in reference units: :math:`\tilde g = g / g'(\theta_\text{ref})`.

    Returns a cached :class:`geotrip.Distance` (one object per ``(name, theta_ref)``,
    so ``jit`` caches stay warm) whose profile, weight and ambient form are those
    of ``name`` divided by :math:`g'(\theta_\text{ref})`. ``theta_ref`` must be in
    :math:`(0, \pi)` and the weight must be positive there.
    """
    base = get_distance(name)
    if not (0.0 < theta_ref < math.pi):
        raise ValueError(f"theta_ref must be in (0, pi), got {theta_ref}")
    with jax.ensure_compile_time_eval(), jax.enable_x64(True):  # the constant in float64
        c = float(np.asarray(base.weight(jnp.asarray(theta_ref, jnp.float64)), dtype=np.float64))
    if not c > 0:
        raise ValueError(f"distance {base.name!r} has weight {c} <= 0 at theta_ref={theta_ref}")
    inv = 1.0 / c
    return make_distance(
        f"{base.name}@ref",
        lambda t, _g=base.profile: _g(t) * inv,
        weight=lambda t, _w=base.weight: _w(t) * inv,
        ambient=lambda x, y, _d=base.ambient: _d(x, y) * inv,
        formula=f"({base.formula}) / {c:.6g}",
    )


# ----------------------------------------------------------------------------- data
@dataclasses.dataclass(frozen=True, eq=False)
class TaskData:
    """Arrays a task trains and evaluates on (hashable by identity, usable as a static arg).

    ``x_train``/``x_test`` are ``None`` for ``task="features"``, whose labels are
    ``y_train`` (one per free point) and whose evaluation set is the points themselves.
    """

    task: str
    y_train: Array
    y_test: Array
    x_train: Array | None = None
    x_test: Array | None = None
    table: Array | None = None
    counts: Array | None = None
    info: tuple = ()


def make_task_data(task: str, *, seed: int = 0, dtype=None, **kwargs) -> TaskData:
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    return _make_task_data(task, seed=seed, dtype=dtype, **kwargs)


@functools.lru_cache(maxsize=32)
def _make_task_data(
    task: str,
    *,
    seed: int = 0,
    n_classes: int = 8,
    n_per_class: int = 4,
    dim: int = 32,
    noise: float = 1.0,
    label_noise: float = 0.0,
    cluster_size: int = 64,
    test_fraction: float = 0.25,
    dtype=None,
) -> TaskData:
    r"""Build the data of a task.

    * ``features``: ``n_classes * n_per_class`` labels (``n_per_class`` points per class),
      the free points themselves being drawn per run.
    * ``clusters``: :func:`geotrip.make_clusters` with ``n_classes`` classes of
      ``cluster_size`` points in ``dim`` dimensions (``noise``, ``label_noise``),
      data seed ``seed``; stratified train/test split.
    * ``digits``: :func:`geotrip.load_digits` (needs scikit-learn), stratified split.

    Results are memoised on the arguments (the arrays are immutable), so repeated
    sweeps in one process reuse one :class:`TaskData` and its compiled runners.
    """
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    key = jax.random.key(seed)
    if task == "features":
        if n_classes < 2 or n_per_class < 2:
            raise ValueError("features need n_classes >= 2 and n_per_class >= 2")
        y = jnp.repeat(jnp.arange(n_classes, dtype=jnp.int32), n_per_class)
        return TaskData(
            "features",
            y_train=y,
            y_test=y,
            info=(("n_classes", n_classes), ("n_per_class", n_per_class)),
        )
    if task == "clusters":
        x, y = make_clusters(
            jax.random.fold_in(key, 1),
            n_classes=n_classes,
            n_per_class=cluster_size,
            dim=dim,
            noise=noise,
            label_noise=label_noise,
            dtype=dtype,
        )
        info = (
            ("n_classes", n_classes),
            ("cluster_size", cluster_size),
            ("dim", dim),
            ("noise", noise),
            ("label_noise", label_noise),
        )
    elif task == "digits":
        x, y = load_digits(dtype=dtype)
        info = (("dataset", "sklearn digits"), ("n", int(x.shape[0])))
    else:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TRAINING_TASKS)}")
    tr, te = stratified_split(jax.random.fold_in(key, 2), y, test_fraction=test_fraction)
    classes, table, counts = class_table(y[tr])
    return TaskData(
        task,
        y_train=y[tr],
        y_test=y[te],
        x_train=x[tr],
        x_test=x[te],
        table=table,
        counts=counts,
        info=info + (("test_fraction", test_fraction),),
    )


make_task_data.__doc__ = _make_task_data.__doc__


# ----------------------------------------------------------------------------- runner
@dataclasses.dataclass(frozen=True)
class TrainSetup:
    r"""The static part of a batch of runs (everything that fixes shapes or code paths).

    Attributes:
      distances: names in :data:`geotrip.DISTANCES` (used in reference units); a batch
        of runs may mix them (each run picks one by index, see :func:`train_runs`),
        so all distances of a cell share one compilation.
      strategy: a name in :data:`geotrip.MINING_STRATEGIES`.
      soft: soft margin :math:`\log(1 + e^z)` instead of the hinge.
      steps: training steps (a multiple of ``eval_every``).
      eval_every: steps between metric evaluations.
      p, k: PK batch layout for the MLP tasks (``features`` use all points).
      hidden: hidden widths of the MLP; embed_dim: embedding dimension (also the
        dimension of the free features).
      optimizer: ``"adam"`` or ``"sgd"`` for the MLP; the free features always use
        Riemannian gradient descent.
      theta_ref: reference angle of the units (see the module docstring).
    """

    distances: tuple[str, ...] = ("chord_sq",)
    strategy: str = "batch_hard"
    soft: bool = False
    steps: int = 300
    eval_every: int = 50
    p: int = 8
    k: int = 4
    hidden: tuple[int, ...] = (64,)
    embed_dim: int = 16
    optimizer: str = "adam"
    theta_ref: float = math.pi / 2

    def __post_init__(self):
        if isinstance(self.distances, str) or not self.distances:
            raise ValueError(
                f"distances must be a non-empty tuple of names, got {self.distances!r}"
            )
        for d in self.distances:
            if not isinstance(d, str):
                raise TypeError(f"distances must be names, got {d!r}")
            get_distance(d)
        if self.strategy not in MINING_STRATEGIES:
            raise ValueError(
                f"unknown strategy {self.strategy!r}; valid: {', '.join(MINING_STRATEGIES)}"
            )
        if self.eval_every < 1 or self.steps < self.eval_every or self.steps % self.eval_every:
            raise ValueError(
                f"steps ({self.steps}) must be a positive multiple of eval_every ({self.eval_every})"
            )
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")


def _loss_parts(F, labels, margin, key, setup: TrainSetup, dist: Distance):
    """Mine on F (no gradient through mining), then loss, its gradient w.r.t. F and the active share."""
    t, valid = mine_triplets(
        jax.lax.stop_gradient(F),
        labels,
        strategy=setup.strategy,
        distance=dist,
        margin=margin,
        key=key,
    )

    v = valid.astype(F.dtype)
    count = jnp.maximum(jnp.sum(v), jnp.ones_like(v[0]))

    def loss_fn(F_):
        # = batch_loss(..., reduction="mean"), keeping the per-triplet terms for the active share
        per = batch_loss(
            F_, t, distance=dist, margin=margin, soft=setup.soft, mask=valid, reduction="none"
        )
        return jnp.sum(per) / count, per

    (loss, per), gF = jax.value_and_grad(loss_fn, has_aux=True)(F)
    # active hinge z > 0  <=>  hinge(z) > 0, or softplus(z) > log 2 for the soft margin
    thresh = jnp.log(jnp.asarray(2.0, F.dtype)) if setup.soft else jnp.zeros((), F.dtype)
    return loss, gF, active_share(per - thresh, valid)


def _init_state(task: str, setup: TrainSetup, data: TaskData, seed, spread, dtype):
    key = jax.random.key(seed)
    kinit, kcap, krun = jax.random.split(key, 3)
    if task == "features":
        n = data.y_train.shape[0]
        X = init_features(kinit, n, setup.embed_dim, spread, dtype=dtype)
        return {"X": X, "key": krun}
    sizes = (data.x_train.shape[1],) + tuple(setup.hidden) + (setup.embed_dim,)
    params = cap_last_layer(init_mlp(kinit, sizes, dtype=dtype), data.x_train, spread, key=kcap)
    opt_state = (
        optax.scale_by_adam().init(params) if setup.optimizer == "adam" else optax.EmptyState()
    )
    return {"params": params, "opt": opt_state, "key": krun}


def _step(state, i, lr, margin, task, setup, data, dist):
    key = jax.random.fold_in(state["key"], i)
    kb, km = jax.random.split(key)
    if task == "features":
        X = state["X"]
        loss, g, act = _loss_parts(X, data.y_train, margin, km, setup, dist)
        rg = project_tangent(X, g)
        new = dict(state, X=normalize(X - lr * rg))
        return new, (loss, act, riemannian_grad_norm(X, g))
    idx = sample_pk(kb, data.table, data.counts, p=setup.p, k=setup.k)
    xb, yb = data.x_train[idx], data.y_train[idx]
    F, vjp = jax.vjp(lambda prm: mlp_embed(prm, xb), state["params"])
    loss, gF, act = _loss_parts(F, yb, margin, km, setup, dist)
    (gp,) = vjp(gF)
    if setup.optimizer == "adam":
        with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int32 and float
            upd, opt = optax.scale_by_adam().update(gp, state["opt"], state["params"])
    else:
        upd, opt = gp, state["opt"]
    params = jax.tree_util.tree_map(lambda p_, u: p_ - lr * u, state["params"], upd)
    return dict(state, params=params, opt=opt), (loss, act, riemannian_grad_norm(F, gF))


def _evaluate(state, task, data):
    if task == "features":
        E, y = state["X"], data.y_train
    else:
        E, y = mlp_embed(state["params"], data.x_test), data.y_test
    return embedding_metrics(E, y)


@functools.partial(jax.jit, static_argnames=("task", "setup", "data"))
def _init_batch(seeds, spreads, *, task, setup, data):
    dtype = spreads.dtype
    return jax.vmap(lambda s, r: _init_state(task, setup, data, s, r, dtype))(seeds, spreads)


def _selected_distance(setup: TrainSetup, didx) -> Distance:
    r"""The reference-unit distance ``setup.distances[didx]``, with ``didx`` possibly traced.

    For several distances it is the one-hot combination
    :math:`\sum_i [i = \text{didx}]\,\tilde g_i`, exact for the selected member (every
    member is finite with finite gradients everywhere, so the zero-weighted ones add
    exact zeros).
    """
    members = [reference_distance(d, setup.theta_ref) for d in setup.distances]
    if len(members) == 1:
        return members[0]

    def onehot(dtype):
        return (jnp.arange(len(members), dtype=jnp.int32) == didx).astype(dtype)

    def combine(values):
        v = jnp.stack(values, axis=-1)
        return jnp.sum(v * onehot(v.dtype), axis=-1)

    return Distance(
        "selected",
        profile=lambda t: combine([m.profile(t) for m in members]),
        weight=lambda t: combine([m.weight(t) for m in members]),
        ambient=lambda x, y: combine([m.ambient(x, y) for m in members]),
        formula="one of " + ", ".join(setup.distances),
    )


@functools.partial(jax.jit, static_argnames=("task", "setup", "data"))
def _chunk_batch(states, start, n_steps, lrs, margins, didxs, *, task, setup, data):
    """Evaluate the metrics of ``states``, then take ``n_steps <= eval_every`` steps (0: none).

    One compiled function serves every chunk, the evaluation graph appears once, and
    ``n_steps`` (not batched) keeps the ``lax.cond`` in the scan a real branch under vmap.
    """

    def one(state, lr, margin, didx):
        dist = _selected_distance(setup, didx)
        m = _evaluate(state, task, data)
        zero = jnp.zeros((), lr.dtype)

        def body(st, i):
            def take(st_):
                return _step(st_, start + i, lr, margin, task, setup, data, dist)

            def skip(st_):
                return st_, (zero, zero, zero)

            return jax.lax.cond(i < n_steps, take, skip, st)

        st, (loss, act, gn) = jax.lax.scan(
            body, state, jnp.arange(setup.eval_every, dtype=jnp.int32)
        )
        m.update(loss=jnp.mean(loss), active=jnp.mean(act), grad_norm=gn[-1])
        return st, m

    return jax.vmap(one)(states, lrs, margins, didxs)


def train_runs(
    task: str,
    setup: TrainSetup,
    data: TaskData,
    *,
    seeds: Sequence[int],
    lrs: Sequence[float],
    margins: Sequence[float],
    spreads: Sequence[float],
    distance_index: Sequence[int] | None = None,
    dtype=None,
    progress: bool | str = False,
) -> dict[str, np.ndarray]:
    r"""Train ``R`` runs at once (``vmap`` over runs, ``lax.scan`` over steps).

    Run ``r`` has seed ``seeds[r]``, learning rate ``lrs[r]``, margin ``margins[r]``
    (reference units), initial spread ``spreads[r]`` (radians; ``inf`` for the
    uncapped default start) and distance ``setup.distances[distance_index[r]]``
    (default: the first). Metrics are recorded at step 0 and every
    ``setup.eval_every`` steps: ``loss``, ``active`` and ``grad_norm`` (Riemannian
    gradient norm w.r.t. the batch embeddings) are over the training batches of the
    preceding chunk (mean, mean, last step; NaN at step 0); ``mean_cos``, ``erank``,
    ``alignment``, ``uniformity``, ``recall_at_1`` and ``collapsed`` are on the
    evaluation embeddings (the held-out split, or the free points).

    Returns:
      dict with ``"step"`` ``(E + 1,)`` and each name of :data:`TRAINING_METRICS` as an array
      ``(R, E + 1)``, ``E = steps / eval_every``.
    """
    if task not in TRAINING_TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TRAINING_TASKS)}")
    if task != data.task:
        raise ValueError(f"data was built for task {data.task!r}, not {task!r}")
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    cols = [np.asarray(v, dtype=float).reshape(-1) for v in (lrs, margins, spreads)]
    seeds = np.asarray(seeds).reshape(-1)
    if not (len(seeds) == len(cols[0]) == len(cols[1]) == len(cols[2])) or len(seeds) == 0:
        raise ValueError("seeds, lrs, margins and spreads must be non-empty and of one length")
    if not np.issubdtype(seeds.dtype, np.integer) or np.any(seeds < 0):
        raise ValueError("seeds must be non-negative integers")
    if np.any(~np.isfinite(cols[0])) or np.any(cols[0] <= 0):
        raise ValueError("learning rates must be finite and > 0")
    if np.any(~np.isfinite(cols[1])) or np.any(cols[1] < 0):
        raise ValueError("margins must be finite and >= 0")
    if np.any(np.isnan(cols[2])) or np.any(cols[2] <= 0):
        raise ValueError("spreads must be > 0 (inf for the default, uncapped start)")
    if task != "features" and np.any(np.isfinite(cols[2]) & (cols[2] >= np.pi / 2)):
        raise ValueError("MLP spreads must be < pi/2 (a cap on one side of the sphere) or inf")
    if task != "features":
        data_ok = int(np.min(np.asarray(data.counts)))
        if setup.p > data.table.shape[0] or setup.k > data_ok:
            raise ValueError(
                f"PK batch p={setup.p}, k={setup.k} does not fit the data "
                f"({data.table.shape[0]} classes, smallest has {data_ok} training points)"
            )
    didx = (
        np.zeros(len(seeds), np.int32)
        if distance_index is None
        else np.asarray(distance_index).reshape(-1)
    )
    if (
        didx.shape != seeds.shape
        or not np.issubdtype(didx.dtype, np.integer)
        or np.any(didx < 0)
        or np.any(didx >= len(setup.distances))
    ):
        raise ValueError(
            f"distance_index must hold one integer in [0, {len(setup.distances)}) per run"
        )
    didx_ = jnp.asarray(didx.astype(np.int32))
    lrs_, margins_, spreads_ = (jnp.asarray(c, dtype) for c in cols)
    steps = setup.steps
    seeds_ = jnp.asarray(seeds.astype(np.uint32))
    setup = dataclasses.replace(setup, steps=setup.eval_every)  # one compiled chunk for any length
    states = _init_batch(seeds_, spreads_, task=task, setup=setup, data=data)
    n_chunks = steps // setup.eval_every
    hist: dict[str, list] = {k: [] for k in TRAINING_METRICS}
    train_keys = ("loss", "active", "grad_norm")
    for k in train_keys:
        hist[k].append(np.full(len(seeds), np.nan))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=steps, desc=progress if isinstance(progress, str) else "train", leave=False
        )
    for c in range(n_chunks + 1):
        start = jnp.asarray(c * setup.eval_every, jnp.int32)
        n = jnp.asarray(setup.eval_every if c < n_chunks else 0, jnp.int32)
        states, m = _chunk_batch(
            states, start, n, lrs_, margins_, didx_, task=task, setup=setup, data=data
        )
        for k, v in m.items():
            if k not in train_keys:
                hist[k].append(np.asarray(v))
            elif c < n_chunks:
                hist[k].append(np.asarray(v))
        if bar is not None and c < n_chunks:
            bar.update(setup.eval_every)
    if bar is not None:
        bar.close()
    out = {k: np.stack(hist[k], axis=1).astype(float) for k in TRAINING_METRICS}
    out["step"] = np.arange(n_chunks + 1) * setup.eval_every
    return out


def train_grid(
    task: str,
    setup: TrainSetup,
    data: TaskData,
    *,
    seeds: Sequence[int],
    lrs: Sequence[float],
    margins: Sequence[float],
    spreads: Sequence[float],
    dtype=None,
    max_batch: int | None = None,
    progress: bool | str = False,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    r"""All runs of the product grid distances x seeds x lrs x margins x spreads, vectorised.

    The distances are ``setup.distances``. With ``max_batch`` the runs go through
    :func:`train_runs` in batches of at most ``max_batch`` (the last one padded to the
    same size, so one compilation serves all; results are unchanged, since runs are
    independent of their batch companions) to bound memory on large grids.

    Returns:
      ``(rows, history)``: one dict per run (``distance``, ``seed``, ``lr``, ``margin``,
      ``spread``, ``init_*`` and ``final_*`` of every metric, ``collapsed``), and the
      history of :func:`train_runs` with the grid columns added.
    """
    nd = len(setup.distances)
    grid = np.array(
        np.meshgrid(
            np.arange(nd, dtype=float),
            np.asarray(seeds, float),
            np.asarray(lrs, float),
            np.asarray(margins, float),
            np.asarray(spreads, float),
            indexing="ij",
        )
    ).reshape(5, -1)
    didx = grid[0].astype(np.int32)
    seeds_g = grid[1].astype(np.int64)
    total = grid.shape[1]
    size = total if not max_batch or max_batch >= total else int(max_batch)
    if size < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    parts = []
    for lo in range(0, total, size):
        idx = np.arange(lo, lo + size).clip(max=total - 1)  # pad the last batch with the last run
        h = train_runs(
            task,
            setup,
            data,
            seeds=seeds_g[idx],
            lrs=grid[2][idx],
            margins=grid[3][idx],
            spreads=grid[4][idx],
            distance_index=didx[idx],
            dtype=dtype,
            progress=progress,
        )
        keep = min(size, total - lo)
        parts.append({k: v[:keep] for k, v in h.items() if k != "step"})
        step = h["step"]
    hist = {k: np.concatenate([p_[k] for p_ in parts]) for k in parts[0]}
    hist["step"] = step
    rows = []
    for r in range(grid.shape[1]):
        row: dict[str, Any] = {
            "distance": setup.distances[didx[r]],
            "seed": int(seeds_g[r]),
            "lr": float(grid[2, r]),
            "margin": float(grid[3, r]),
            "spread": float(grid[4, r]),
        }
        for k in TRAINING_METRICS:
            if k in _EVAL_METRICS:
                row[f"init_{k}"] = float(hist[k][r, 0])
            row[f"final_{k}"] = float(hist[k][r, -1])
        row["collapsed"] = int(hist["collapsed"][r, -1] > 0.5)
        rows.append(row)
    hist = dict(
        hist,
        distance_index=didx,
        distances=np.array(setup.distances),
        seed=seeds_g,
        lr=grid[2],
        margin=grid[3],
        spread=grid[4],
    )
    return rows, hist


# ----------------------------------------------------------------------------- statistics
def wilson_interval(k, n, *, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    r"""Wilson score interval for a binomial proportion :math:`k/n`.

    .. math:: \frac{\hat p + \frac{z^2}{2n} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}}
              {1 + z^2/n}

    with :math:`z` the two-sided normal quantile. Vectorised; ``n = 0`` gives [0, 1].
    """
    from scipy.stats import norm

    k = np.asarray(k, float)
    n = np.asarray(n, float)
    z = norm.ppf(0.5 + confidence / 2)
    nn = np.where(n > 0, n, 1.0)
    p = k / nn
    den = 1 + z * z / nn
    mid = (p + z * z / (2 * nn)) / den
    half = z * np.sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn)) / den
    lo = np.where(
        (n > 0) & (k > 0), np.clip(mid - half, 0, 1), 0.0
    )  # exact ends (no rounding past p)
    hi = np.where((n > 0) & (k < n), np.clip(mid + half, 0, 1), 1.0)
    lo, hi = np.minimum(lo, p), np.maximum(hi, p)
    return lo, hi


def clopper_pearson_interval(k, n, *, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    r"""Exact (Clopper–Pearson) interval: Beta quantiles :math:`B(\alpha/2; k, n-k+1)`, :math:`B(1-\alpha/2; k+1, n-k)`."""
    from scipy.stats import beta

    k = np.asarray(k, float)
    n = np.asarray(n, float)
    a = 1 - confidence
    lo = np.where(k > 0, beta.ppf(a / 2, np.maximum(k, 1e-300), n - k + 1), 0.0)
    hi = np.where(k < n, beta.ppf(1 - a / 2, k + 1, np.maximum(n - k, 1e-300)), 1.0)
    return np.nan_to_num(lo), np.nan_to_num(hi, nan=1.0)


# ----------------------------------------------------------------------------- sweeps
_CELL_KEYS = ("task", "distance", "strategy", "soft")


@dataclasses.dataclass(frozen=True)
class CollapseSweep:
    r"""A collapse sweep: cells (task x (strategy, soft)), each one vectorised batch over
    distances x seeds x learning rates x margins x spreads.

    Attributes:
      name: preset name (recorded in provenance).
      tasks: tasks to run (see :data:`TRAINING_TASKS`).
      distances: distance names.
      losses: ``(strategy, soft)`` pairs (a task's grid may override them with ``losses``).
      n_seeds: seeds ``seed0 .. seed0 + n_seeds - 1`` per grid point.
      grids: per task, a dict with ``steps``, ``eval_every``, ``lrs``, ``margins``, ``spreads``
        (and optionally ``max_batch``: runs per vectorised batch, ``losses``, and ``per_strategy``: ``{strategy: {key: value}}``
        overrides, e.g. a smaller grid for the costlier miners).
      setup: common :class:`TrainSetup` fields (``p``, ``k``, ``hidden``, ``embed_dim``, ...).
      data: per task, keyword arguments of :func:`make_task_data`.
    """

    name: str
    tasks: tuple[str, ...]
    distances: tuple[str, ...]
    losses: tuple[tuple[str, bool], ...]
    n_seeds: int
    grids: Mapping[str, Mapping[str, Any]]
    setup: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def cells(self) -> list[tuple[str, str, bool]]:
        """The cells ``(task, strategy, soft)``; each runs all distances in one vectorised batch."""
        return [
            (t, s, soft)
            for t in self.tasks
            for (s, soft) in self.grids[t].get("losses", self.losses)
        ]

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=lambda o: list(o)))


_ALL5 = ("chord_sq", "chord", "geodesic", "geodesic_sq", "cosine")
_INF = math.inf
_HINGE_SOFT = (("batch_hard", False), ("semihard", False), ("batch_hard", True))


def _grid(steps, eval_every, lrs, margins, spreads, losses=None):
    g = dict(steps=steps, eval_every=eval_every, lrs=lrs, margins=margins, spreads=spreads)
    if losses is not None:
        g["losses"] = losses
    return g


COLLAPSE_PRESETS: dict[str, CollapseSweep] = {
    # for tests and the notebook: seconds
    "tiny": CollapseSweep(
        name="tiny",
        tasks=("features", "clusters"),
        distances=("chord_sq", "chord", "geodesic"),
        losses=(("batch_hard", False),),
        n_seeds=3,
        grids={
            "features": _grid(40, 20, (0.5,), (0.2,), (0.01, _INF)),
            "clusters": _grid(40, 20, (1e-2,), (0.2,), (0.01, _INF)),
        },
        setup=dict(p=4, k=3, hidden=(16,), embed_dim=6),
        data={
            "features": dict(n_classes=4, n_per_class=3),
            "clusters": dict(n_classes=4, cluster_size=16, dim=8),
        },
    ),
    # for `geotrip figures --quick` (< 30 s)
    "figure-quick": CollapseSweep(
        name="figure-quick",
        tasks=("features",),
        distances=_ALL5,
        losses=(("batch_hard", False),),
        n_seeds=4,
        grids={"features": _grid(100, 50, (0.5,), (0.5,), (0.01, 0.1, _INF))},
        setup=dict(p=6, k=4, hidden=(32,), embed_dim=8),
        data={"features": dict(n_classes=6, n_per_class=4)},
    ),
    # for `geotrip figures` (< 3 min)
    "figure": CollapseSweep(
        name="figure",
        tasks=("features", "clusters"),
        distances=_ALL5,
        losses=(("batch_hard", False),),
        n_seeds=8,
        grids={
            "features": _grid(200, 50, (0.05, 0.5), (0.1, 0.5), (0.01, 0.1, 0.3, _INF)),
            "clusters": _grid(200, 50, (1e-3, 1e-2), (0.1, 0.5), (0.01, 0.1, 0.3, _INF)),
        },
        setup=dict(p=6, k=4, hidden=(32,), embed_dim=8),
        data={
            "features": dict(n_classes=6, n_per_class=4),
            "clusters": dict(n_classes=6, cluster_size=48, dim=16),
        },
    ),
    # `geotrip collapse --quick`: about 5 minutes on 2 CPU cores
    "quick": CollapseSweep(
        name="quick",
        tasks=("features", "clusters", "digits"),
        distances=_ALL5,
        losses=_HINGE_SOFT,
        n_seeds=8,
        grids={
            "features": dict(
                _grid(
                    200,
                    50,
                    (0.05, 0.5),
                    (0.1, 0.5),
                    (0.01, 0.1, 0.3, _INF),
                    losses=_HINGE_SOFT + (("random", False),),
                ),
                # the costlier miners at the learning rate where batch-hard runs stay stuck
                per_strategy={"semihard": dict(lrs=(0.05,)), "random": dict(lrs=(0.05,))},
            ),
            "clusters": _grid(
                200,
                50,
                (1e-3, 1e-2),
                (0.1, 0.5),
                (0.01, 0.1, 0.3, _INF),
                losses=(("batch_hard", False), ("batch_hard", True)),
            ),
            "digits": _grid(
                200,
                50,
                (1e-3, 1e-2),
                (0.1, 0.5),
                (0.01, 0.1, 0.3, _INF),
                losses=(("batch_hard", False),),
            ),
        },
        setup=dict(p=6, k=4, hidden=(32,), embed_dim=8),
        data={
            "features": dict(n_classes=6, n_per_class=4),
            "clusters": dict(n_classes=6, cluster_size=48, dim=16),
            "digits": {},
        },
    ),
    # `geotrip collapse --preset full`: sized for one GPU
    "full": CollapseSweep(
        name="full",
        tasks=("features", "clusters", "digits"),
        distances=_ALL5,
        losses=(
            ("batch_hard", False),
            ("semihard", False),
            ("batch_all", False),
            ("random", False),
            ("batch_hard", True),
        ),
        n_seeds=32,
        grids={
            t: dict(
                _grid(
                    2000,
                    100,
                    lrs,
                    (0.05, 0.1, 0.2, 0.5, 1.0),
                    (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, _INF),
                ),
                max_batch=4096,
                per_strategy={
                    "batch_all": dict(max_batch=512),
                    "semihard": dict(max_batch=2048),
                    "random": dict(max_batch=2048),
                },
            )
            for t, lrs in (
                ("features", (0.01, 0.05, 0.2, 1.0)),
                ("clusters", (3e-4, 1e-3, 3e-3, 1e-2)),
                ("digits", (3e-4, 1e-3, 3e-3, 1e-2)),
            )
        },
        setup=dict(p=8, k=4, hidden=(128, 128), embed_dim=32),
        data={
            "features": dict(n_classes=8, n_per_class=4),
            "clusters": dict(n_classes=10, cluster_size=100, dim=64),
            "digits": {},
        },
    ),
}


def _cell_id(cell) -> str:
    task, s, soft = cell
    return f"{task}__{s}__{'soft' if soft else 'hinge'}"


def _fmt(v):
    if isinstance(v, float):
        return "inf" if math.isinf(v) else repr(v)
    return v


def _append_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        if new:
            w.writeheader()
        w.writerows({k: _fmt(v) for k, v in r.items()} for r in rows)
        fh.flush()
        os.fsync(fh.fileno())


def read_collapse_runs(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a ``runs.csv`` written by :func:`run_collapse_sweep` (numbers parsed, ``soft`` as bool)."""
    rows = []
    with Path(path).open() as fh:
        for r in csv.DictReader(fh):
            out: dict[str, Any] = {}
            for k, v in r.items():
                if k in ("task", "distance", "strategy", "cell"):
                    out[k] = v
                elif k == "soft":
                    out[k] = v in ("True", "1", "true")
                elif k in ("seed", "collapsed"):
                    out[k] = int(v)
                else:
                    out[k] = float(v)
            rows.append(out)
    return rows


def _group(rows, keys):
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    return groups


def collapse_phase_table(
    rows: Sequence[Mapping[str, Any]],
    *,
    by: Sequence[str] = ("task", "distance", "strategy", "soft", "spread", "lr", "margin"),
    confidence: float = 0.95,
) -> list[dict[str, Any]]:
    r"""Collapse probability per group with Wilson and Clopper–Pearson intervals.

    Each output row has the ``by`` columns, ``n`` (runs), ``collapsed`` (count),
    ``p`` (:math:`k/n`), ``wilson_lo/hi``, ``cp_lo/hi``, ``init_collapsed`` (runs
    already collapsed at step 0) and ``recall_at_1`` (mean final Recall@1).
    """
    out = []
    for key, grp in sorted(_group(rows, by).items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        n = len(grp)
        k = sum(int(r["collapsed"]) for r in grp)
        wl, wh = wilson_interval(k, n, confidence=confidence)
        cl, ch = clopper_pearson_interval(k, n, confidence=confidence)
        row = dict(zip(by, key))
        row.update(
            n=n,
            collapsed=k,
            p=k / n,
            wilson_lo=float(wl),
            wilson_hi=float(wh),
            cp_lo=float(cl),
            cp_hi=float(ch),
            init_collapsed=sum(int(r["init_collapsed"] > 0.5) for r in grp),
            recall_at_1=float(np.mean([r["final_recall_at_1"] for r in grp])),
        )
        out.append(row)
    return out


def _paired(rows, a: str, b: str):
    """Paired outcomes of distances a and b on identical (task, strategy, soft, seed, lr, margin, spread)."""
    keys = ("task", "strategy", "soft", "seed", "lr", "margin", "spread")
    idx = {}
    for r in rows:
        if r["distance"] in (a, b):
            idx.setdefault(tuple(r[k] for k in keys), {})[r["distance"]] = r
    return [(v[a], v[b]) for v in idx.values() if a in v and b in v]


def collapse_summary(
    rows: Sequence[Mapping[str, Any]], *, confidence: float = 0.95
) -> dict[str, Any]:
    r"""Tests of the two hypotheses on finished runs.

    * ``gprime0``: collapse rates of the distances with :math:`g'(0) = 0`
      (``chord_sq``, ``geodesic_sq``, ``cosine``) versus :math:`g'(0) > 0` (``chord``,
      ``geodesic``), per task, strategy/soft and spread, with Wilson intervals.
    * ``squared_vs_root``: for the pairs (``chord_sq``, ``chord``) and
      (``geodesic_sq``, ``geodesic``), paired on identical seed and hyper-parameters:
      both/neither/only-squared/only-root collapse counts and the exact two-sided
      McNemar p-value (binomial test on the discordant pairs), per task and overall.
    * ``recall``: mean final Recall@1 per task, strategy/soft and distance.
    """
    from scipy.stats import binomtest

    zero = {"chord_sq", "geodesic_sq", "cosine"}
    out: dict[str, Any] = {
        "criterion": "mean pairwise cosine > 0.99 or effective rank < 1.5 "
        "on the evaluation embeddings at the end of training",
        "confidence": confidence,
        "gprime0": [],
        "squared_vs_root": [],
        "recall": [],
    }
    for key, grp in sorted(
        _group(rows, ("task", "strategy", "soft", "spread")).items(), key=lambda kv: str(kv[0])
    ):
        entry = dict(zip(("task", "strategy", "soft", "spread"), key))
        for tag, members in (("zero", lambda d: d in zero), ("positive", lambda d: d not in zero)):
            sel = [r for r in grp if members(r["distance"])]
            n, k = len(sel), sum(int(r["collapsed"]) for r in sel)
            lo, hi = wilson_interval(k, n, confidence=confidence)
            entry[tag] = dict(
                n=n, collapsed=k, p=(k / n if n else float("nan")), lo=float(lo), hi=float(hi)
            )
        out["gprime0"].append(entry)
    tasks = sorted({r["task"] for r in rows})
    for sq, root in (("chord_sq", "chord"), ("geodesic_sq", "geodesic")):
        for task in tasks + ["all"]:
            pairs = _paired([r for r in rows if task == "all" or r["task"] == task], sq, root)
            if not pairs:
                continue
            both = sum(1 for x, y in pairs if x["collapsed"] and y["collapsed"])
            only_sq = sum(1 for x, y in pairs if x["collapsed"] and not y["collapsed"])
            only_root = sum(1 for x, y in pairs if y["collapsed"] and not x["collapsed"])
            disc = only_sq + only_root
            pval = float(binomtest(only_sq, disc, 0.5).pvalue) if disc else 1.0
            out["squared_vs_root"].append(
                dict(
                    task=task,
                    squared=sq,
                    root=root,
                    pairs=len(pairs),
                    both=both,
                    neither=len(pairs) - both - disc,
                    only_squared=only_sq,
                    only_root=only_root,
                    mcnemar_p=pval,
                )
            )
    for key, grp in sorted(
        _group(rows, ("task", "strategy", "soft", "distance")).items(), key=lambda kv: str(kv[0])
    ):
        rec = np.array([r["final_recall_at_1"] for r in grp])
        out["recall"].append(
            dict(
                zip(("task", "strategy", "soft", "distance"), key),
                n=int(rec.size),
                mean=float(rec.mean()),
                std=float(rec.std(ddof=1)) if rec.size > 1 else 0.0,
            )
        )
    return out


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_fmt) + "\n")
    os.replace(tmp, path)


def run_collapse_sweep(
    spec: CollapseSweep | str,
    out_dir: str | os.PathLike,
    *,
    seed0: int = 0,
    dtype=None,
    resume: bool = True,
    progress: bool = True,
    max_cells: int | None = None,
) -> dict[str, Any]:
    r"""Run a collapse sweep cell by cell, writing results incrementally to ``out_dir``.

    After each cell (task, strategy, soft) finishes, its rows are appended
    to ``runs.csv`` (one row per run, fsync'ed), its history to
    ``history/CELL.npz``, its id to ``done.json``, and ``phase.csv``,
    ``phase_by_spread.csv`` and ``summary.json`` are rewritten. An interrupted sweep
    keeps every finished cell; with ``resume`` a rerun skips them. ``provenance.json``
    records the command, versions, device, git revision and the spec.

    Args:
      spec: a :class:`CollapseSweep` or a name in :data:`COLLAPSE_PRESETS`.
      out_dir: output folder.
      seed0: first seed.
      resume: skip cells listed in ``done.json`` (otherwise start afresh).
      progress: show tqdm progress bars.
      max_cells: stop after this many newly run cells (for tests).

    Returns:
      The summary of :func:`collapse_summary`, plus ``"cells"``, ``"seconds"``.
    """
    if isinstance(spec, str):
        try:
            spec = COLLAPSE_PRESETS[spec]
        except KeyError:
            raise ValueError(
                f"unknown preset {spec!r}; valid: {', '.join(COLLAPSE_PRESETS)}"
            ) from None
    out = Path(out_dir)
    (out / "history").mkdir(parents=True, exist_ok=True)
    done_path, runs_path = out / "done.json", out / "runs.csv"
    done: list[str] = []
    if resume and done_path.exists():
        done = json.loads(done_path.read_text())["cells"]
        if done and not runs_path.exists():
            done = []
    elif not resume:
        for p in (done_path, runs_path):
            if p.exists():
                p.unlink()
    params = {
        "spec": spec.to_json(),
        "seed0": seed0,
        "dtype": str(jnp.dtype(dtype or jnp.result_type(float))),
        "units": "reference: g / g'(pi/2); margins and learning rates comparable across distances",
    }
    write_provenance(out / "provenance.json", provenance(seed=seed0, extra=params))
    datas = {
        t: make_task_data(t, seed=seed0, dtype=dtype, **dict(spec.data.get(t, {})))
        for t in spec.tasks
    }
    cells = spec.cells()
    todo = [c for c in cells if _cell_id(c) not in done]
    t_start = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=f"collapse[{spec.name}]")
    ran = 0
    seeds = np.arange(seed0, seed0 + spec.n_seeds)
    for cell in todo:
        if max_cells is not None and ran >= max_cells:
            break
        task, strategy, soft = cell
        g = dict(spec.grids[task])
        g.update(dict(g.get("per_strategy", {}).get(strategy, {})))
        setup = TrainSetup(
            distances=tuple(spec.distances),
            strategy=strategy,
            soft=soft,
            steps=int(g["steps"]),
            eval_every=int(g["eval_every"]),
            **dict(spec.setup),
        )
        t0 = time.perf_counter()
        rows, hist = train_grid(
            task,
            setup,
            datas[task],
            seeds=seeds,
            lrs=g["lrs"],
            margins=g["margins"],
            spreads=g["spreads"],
            dtype=dtype,
            max_batch=g.get("max_batch"),
        )
        secs = time.perf_counter() - t0
        cid = _cell_id(cell)
        rows = [
            dict(cell=cid, task=task, strategy=strategy, soft=soft, **r, seconds=secs) for r in rows
        ]
        np.savez_compressed(out / "history" / f"{cid}.npz", **hist)
        _append_csv(runs_path, rows)
        done.append(cid)
        _write_json(done_path, {"cells": done})
        all_rows = read_collapse_runs(runs_path)
        _write_tables(out, all_rows)
        ran += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{cid} {secs:.1f}s")
    if bar is not None:
        bar.close()
    all_rows = read_collapse_runs(runs_path) if runs_path.exists() else []
    summary = collapse_summary(all_rows) if all_rows else {}
    summary.update(cells=len(done), cells_total=len(cells), seconds=time.perf_counter() - t_start)
    return summary


def _write_tables(out: Path, rows) -> None:
    for name, by in (
        ("phase", ("task", "distance", "strategy", "soft", "spread", "lr", "margin")),
        ("phase_by_spread", ("task", "distance", "strategy", "soft", "spread")),
    ):
        table = collapse_phase_table(rows, by=by)
        tmp = out / f"{name}.csv.tmp"
        with tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows({k: _fmt(v) for k, v in r.items()} for r in table)
        os.replace(tmp, out / f"{name}.csv")
    _write_json(out / "summary.json", collapse_summary(rows))
