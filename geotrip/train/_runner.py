r"""The vectorised training runner: many runs at once, ``vmap`` over runs, ``lax.scan`` over steps.

Two kinds of runs, both moved by a triplet loss with online mining
(:func:`geotrip.mine_triplets`) and both vectorised over seeds and over the
hyper-parameters that keep shapes static (learning rate, margin, initial spread)
with ``vmap`` + ``lax.scan``:

* ``task="features"`` (unconstrained features): ``n`` labelled points on the sphere
  are the parameters, moved by Riemannian gradient descent,

  .. math:: X \leftarrow \operatorname{normalize}\big(X -
            \eta\,(I - x_i x_i^\top)\nabla_{x_i} L\big),

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

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import float_dtype
from ._steps import TrainSetup, _evaluate, _init_state, _selected_distance, _step
from ._tasks import TRAINING_TASKS, TaskData

__all__ = ["TRAINING_METRICS", "train_runs", "train_grid"]

Array = jax.Array

TRAINING_METRICS = (
    "loss",
    "active",
    "grad_norm",
    "mean_cos",
    "erank",
    "alignment",
    "uniformity",
    "recall_at_1",
    "map_at_r",
    "collapsed",
    "push_pull",
    "hard_share",
    "pull_wins",
)
_EVAL_METRICS = (
    "mean_cos",
    "erank",
    "alignment",
    "uniformity",
    "recall_at_1",
    "map_at_r",
    "collapsed",
)
_TRAIN_METRICS = ("loss", "active", "grad_norm", "push_pull", "hard_share", "pull_wins")


@functools.partial(jax.jit, static_argnames=("task", "setup", "data"))
def _init_batch(seeds, spreads, *, task, setup, data):
    dtype = spreads.dtype
    return jax.vmap(lambda s, r: _init_state(task, setup, data, s, r, dtype))(seeds, spreads)


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
                pp = {"log_ratio": zero, "hard_share": zero, "pull_wins": zero}
                return st_, (zero, zero, zero, pp)

            return jax.lax.cond(i < n_steps, take, skip, st)

        st, (loss, act, gn, pp) = jax.lax.scan(
            body, state, jnp.arange(setup.eval_every, dtype=jnp.int32)
        )
        m.update(
            loss=jnp.mean(loss),
            active=jnp.mean(act),
            grad_norm=gn[-1],
            push_pull=jnp.exp(jnp.mean(pp["log_ratio"])),
            hard_share=jnp.mean(pp["hard_share"]),
            pull_wins=jnp.mean(pp["pull_wins"]),
        )
        return st, m

    return jax.vmap(one)(states, lrs, margins, didxs)


def _check_task(task: str, data: TaskData) -> None:
    if task not in TRAINING_TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TRAINING_TASKS)}")
    if task != data.task:
        raise ValueError(f"data was built for task {data.task!r}, not {task!r}")


def _check_run_columns(task, setup, data, seeds, lrs, margins, spreads):
    """Validate the per-run columns; returns ``(seeds, lrs, margins, spreads)`` as NumPy arrays."""
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
    return (seeds, *cols)


def _check_distance_index(setup: TrainSetup, distance_index, n_runs: int) -> np.ndarray:
    if distance_index is None:
        return np.zeros(n_runs, np.int32)
    didx = np.asarray(distance_index).reshape(-1)
    if (
        didx.shape != (n_runs,)
        or not np.issubdtype(didx.dtype, np.integer)
        or np.any(didx < 0)
        or np.any(didx >= len(setup.distances))
    ):
        raise ValueError(
            f"distance_index must hold one integer in [0, {len(setup.distances)}) per run"
        )
    return didx.astype(np.int32)


def _progress_bar(progress, total):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=progress if isinstance(progress, str) else "train", leave=False)


def _run_chunks(states, columns, *, task, setup, data, steps, bar):
    """Evaluate, then train ``eval_every`` steps, ``steps / eval_every`` times; evaluate once more.

    Returns the history ``{metric: [per-evaluation arrays]}``; the training metrics get
    NaN at step 0 (no preceding chunk).
    """
    n_runs = columns[0].shape[0]
    n_chunks = steps // setup.eval_every
    hist: dict[str, list] = {k: [] for k in TRAINING_METRICS}
    for k in _TRAIN_METRICS:
        hist[k].append(np.full(n_runs, np.nan))
    for c in range(n_chunks + 1):
        start = jnp.asarray(c * setup.eval_every, jnp.int32)
        n = jnp.asarray(setup.eval_every if c < n_chunks else 0, jnp.int32)
        states, m = _chunk_batch(states, start, n, *columns, task=task, setup=setup, data=data)
        for k, v in m.items():
            if k not in _TRAIN_METRICS or c < n_chunks:
                hist[k].append(np.asarray(v))
        if bar is not None and c < n_chunks:
            bar.update(setup.eval_every)
    return hist


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
    _check_task(task, data)
    dtype = float_dtype(dtype)
    seeds, lrs_, margins_, spreads_ = _check_run_columns(
        task, setup, data, seeds, lrs, margins, spreads
    )
    didx = _check_distance_index(setup, distance_index, len(seeds))
    columns = tuple(jnp.asarray(c, dtype) for c in (lrs_, margins_))
    columns = columns + (jnp.asarray(didx),)
    spreads_j = jnp.asarray(spreads_, dtype)
    steps = setup.steps
    setup = dataclasses.replace(setup, steps=setup.eval_every)  # one compiled chunk for any length
    states = _init_batch(
        jnp.asarray(seeds.astype(np.uint32)), spreads_j, task=task, setup=setup, data=data
    )
    bar = _progress_bar(progress, steps)
    hist = _run_chunks(states, columns, task=task, setup=setup, data=data, steps=steps, bar=bar)
    if bar is not None:
        bar.close()
    out = {k: np.stack(hist[k], axis=1).astype(float) for k in TRAINING_METRICS}
    out["step"] = np.arange(steps // setup.eval_every + 1) * setup.eval_every
    return out


def _product_grid(n_distances, seeds, lrs, margins, spreads) -> np.ndarray:
    """The product grid distance index x seed x lr x margin x spread, shape ``(5, R)``."""
    return np.array(
        np.meshgrid(
            np.arange(n_distances, dtype=float),
            np.asarray(seeds, float),
            np.asarray(lrs, float),
            np.asarray(margins, float),
            np.asarray(spreads, float),
            indexing="ij",
        )
    ).reshape(5, -1)


def _grid_rows(setup, grid, didx, seeds_g, hist) -> list[dict[str, Any]]:
    """One summary row per run: its grid point, ``init_*``/``final_*`` metrics, ``collapsed``."""
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
    return rows


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
    grid = _product_grid(len(setup.distances), seeds, lrs, margins, spreads)
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
    rows = _grid_rows(setup, grid, didx, seeds_g, hist)
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
