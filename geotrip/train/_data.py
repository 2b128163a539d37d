r"""Labelled data for the training experiments, and PK batch sampling.

* :func:`make_clusters`: synthetic Gaussian clusters in input space, with
  configurable classes, dimension, noise and label noise;
* :func:`load_digits`: scikit-learn's bundled 8x8 digits (1797 images, 10 classes),
  read offline from the copy shipped inside scikit-learn (optional extra ``data``);
* :func:`stratified_split`, :func:`class_table` and :func:`sample_pk`: a held-out
  split that keeps every class, and PK batches (P classes x K samples, Hermans et
  al. 2017) drawn under ``jit`` with static shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import float_dtype

__all__ = ["make_clusters", "load_digits", "stratified_split", "class_table", "sample_pk"]

Array = jax.Array


def make_clusters(
    key: Array,
    *,
    n_classes: int = 8,
    n_per_class: int = 64,
    dim: int = 32,
    noise: float = 1.0,
    separation: float = 1.0,
    label_noise: float = 0.0,
    dtype=None,
) -> tuple[Array, Array]:
    r"""Gaussian clusters in :math:`\mathbb{R}^{dim}` with (optionally noisy) labels.

    .. math:: \mu_c \sim \mathcal N(0, s^2 I),\qquad x = \mu_{y} + \sigma\,\varepsilon,
              \ \varepsilon \sim \mathcal N(0, I),

    with :math:`s` = ``separation`` and :math:`\sigma` = ``noise``; class
    ``c`` has exactly ``n_per_class`` points, ordered by class. With
    ``label_noise = q`` each *observed* label is, independently with probability
    :math:`q`, replaced by a uniformly drawn *different* class (the inputs keep
    their true cluster).

    Returns:
      ``(x, y)``: inputs ``(n_classes * n_per_class, dim)`` and int32 labels.
    """
    for name, v in (("n_classes", n_classes), ("n_per_class", n_per_class), ("dim", dim)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if not (noise >= 0 and separation >= 0):
        raise ValueError(f"noise and separation must be >= 0, got {noise}, {separation}")
    if not (0.0 <= label_noise <= 1.0):
        raise ValueError(f"label_noise must be a probability in [0, 1], got {label_noise}")
    dtype = float_dtype(dtype)
    km, ke, kf, ks = jax.random.split(key, 4)
    mu = jax.random.normal(km, (n_classes, dim), dtype) * jnp.asarray(separation, dtype)
    y_true = jnp.repeat(jnp.arange(n_classes, dtype=jnp.int32), n_per_class)
    x = mu[y_true] + jax.random.normal(ke, (y_true.shape[0], dim), dtype) * jnp.asarray(
        noise, dtype
    )
    flip = jax.random.uniform(kf, y_true.shape) < label_noise
    shift = jax.random.randint(ks, y_true.shape, 1, n_classes, dtype=jnp.int32)
    y = jnp.where(flip, (y_true + shift) % n_classes, y_true).astype(jnp.int32)
    return x, y


def load_digits(*, standardize: bool = True, dtype=None) -> tuple[Array, Array]:
    r"""scikit-learn's bundled handwritten digits: 1797 images of 8x8 pixels, classes 0..9.

    Read from the CSV shipped inside scikit-learn (no download). With
    ``standardize`` each pixel is centred and scaled to unit variance over the data
    set (constant pixels are left at 0).

    Returns:
      ``(x, y)``: inputs ``(1797, 64)`` and int32 labels ``(1797,)``.

    Raises:
      ImportError: if scikit-learn is not installed (``pip install 'geotrip[data]'``).
    """
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError as exc:  # pragma: no cover - exercised by monkeypatching in tests
        raise ImportError(
            "geotrip.load_digits needs scikit-learn: install the optional extra with "
            "pip install 'geotrip[data]' (or pip install scikit-learn)"
        ) from exc
    bunch = _load()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int32)
    if standardize:
        mu = x.mean(axis=0)
        sd = x.std(axis=0)
        x = (x - mu) / np.where(sd > 0, sd, 1.0)
    dtype = float_dtype(dtype)
    return jnp.asarray(x, dtype), jnp.asarray(y)


def stratified_split(
    key: Array, y: Array, *, test_fraction: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    r"""Random train/test index split that keeps every class on both sides.

    Within each class of size :math:`n_c` the test side gets
    :math:`\max(1, \operatorname{round}(q\, n_c))` points (and the train side at least
    one), :math:`q` = ``test_fraction``. Runs outside ``jit`` (sizes are data dependent).

    Returns:
      ``(train_idx, test_idx)``: sorted int32 NumPy arrays, disjoint, covering all points.
    """
    if not (0.0 < test_fraction < 1.0):
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    y = np.asarray(y)
    train, test = [], []
    for i, c in enumerate(np.unique(y)):
        idx = np.flatnonzero(y == c)
        if idx.size < 2:
            raise ValueError(
                f"class {c} has {idx.size} point(s); a stratified split needs at least 2"
            )
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, i), idx.size))
        n_test = min(max(1, int(round(test_fraction * idx.size))), idx.size - 1)
        test.append(idx[perm[:n_test]])
        train.append(idx[perm[n_test:]])
    return np.sort(np.concatenate(train)).astype(np.int32), np.sort(np.concatenate(test)).astype(
        np.int32
    )


def class_table(y: Array) -> tuple[Array, Array, Array]:
    r"""Index table of the points of each class, for :func:`sample_pk`.

    Returns:
      ``(classes, table, counts)``: the sorted class labels ``(C,)``; ``table`` of shape
      ``(C, max_count)`` whose row ``c`` lists the indices of class ``classes[c]``
      (padded with -1); ``counts`` ``(C,)``. All int32.
    """
    y = np.asarray(y)
    classes = np.unique(y)
    counts = np.array([(y == c).sum() for c in classes], dtype=np.int32)
    table = -np.ones((classes.size, int(counts.max())), dtype=np.int32)
    for i, c in enumerate(classes):
        idx = np.flatnonzero(y == c)
        table[i, : idx.size] = idx
    return jnp.asarray(classes.astype(np.int32)), jnp.asarray(table), jnp.asarray(counts)


def sample_pk(key: Array, table: Array, counts: Array, *, p: int, k: int) -> Array:
    r"""A PK batch: ``p`` distinct classes, ``k`` distinct points of each.

    Classes are drawn uniformly without replacement; within a class, ``k`` points
    uniformly without replacement (random priorities, padding slots last). Every
    class must have at least ``k`` points (checked when ``counts`` is concrete).
    Jittable, static output shape.

    Args:
      key: PRNG key.
      table, counts: from :func:`class_table`.
      p, k: static batch layout.

    Returns:
      int32 point indices of shape ``(p * k,)``, grouped by class.
    """
    n_cls, width = table.shape
    if not (isinstance(p, int) and isinstance(k, int) and 1 <= p <= n_cls and k >= 1):
        raise ValueError(
            f"need integers 1 <= p <= {n_cls} (classes) and k >= 1, got p={p!r}, k={k!r}"
        )
    if k > width:
        raise ValueError(f"k={k} exceeds the largest class size {width}")
    if not isinstance(counts, jax.core.Tracer) and int(np.min(np.asarray(counts))) < k:
        smallest = int(np.min(np.asarray(counts)))
        raise ValueError(f"every class needs at least k={k} points; smallest has {smallest}")
    kc, kp = jax.random.split(key)
    cls = jax.random.choice(kc, n_cls, (p,), replace=False)
    pri = jax.random.uniform(kp, (p, width))
    slot = jnp.arange(width, dtype=counts.dtype)[None, :]
    pri = jnp.where(slot < counts[cls][:, None], pri, jnp.full_like(pri, 2.0))
    order = jnp.argsort(pri, axis=1)[:, :k]
    return jnp.take_along_axis(table[cls], order, axis=1).reshape(-1).astype(jnp.int32)
