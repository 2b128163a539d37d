r"""What the training runs train on: the tasks' data, and the reference units of distances.

* :func:`make_task_data` builds a task's arrays (:class:`TaskData`): free labelled points
  (``"features"``), synthetic Gaussian clusters (``"clusters"``) or scikit-learn's digits
  (``"digits"``), with a stratified held-out split.
* :func:`reference_distance` puts a distance in *reference units*,
  :math:`\tilde g = g / g'(\theta_\text{ref})`, so that margins and learning rates mean the
  same thing for every distance at :math:`\theta_\text{ref} = \pi/2` (see
  :mod:`geotrip.train._runner`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from .._caches import bounded_cache
from .._numerics import float_dtype
from ..core._distances import Distance, make_distance
from ..core._distances import distance as get_distance
from ._data import class_table, load_digits, make_clusters, stratified_split

__all__ = ["TRAINING_TASKS", "TaskData", "make_task_data", "reference_distance"]

Array = jax.Array

TRAINING_TASKS = ("features", "clusters", "digits")


@bounded_cache(maxsize=64)
def reference_distance(name: str, theta_ref: float = math.pi / 2) -> Distance:
    r"""The distance ``name`` in reference units: :math:`\tilde g = g / g'(\theta_\text{ref})`.

    Returns a cached :class:`geotrip.Distance` (one object per ``(name, theta_ref)``,
    so ``jit`` caches stay warm) whose profile, weight and ambient form are those
    of ``name`` divided by :math:`g'(\theta_\text{ref})`. ``theta_ref`` must be in
    :math:`(0, \pi)` and the weight must be positive there.

    >>> import math, geotrip as gt
    >>> ref = gt.reference_distance("chord_sq")
    >>> round(ref.weight_at(math.pi / 2), 12), round(ref.range_max, 12)
    (1.0, 2.0)
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
    dtype = float_dtype(dtype)
    return _make_task_data(task, seed=seed, dtype=dtype, **kwargs)


@bounded_cache(maxsize=32)
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
    dtype = float_dtype(dtype)
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
