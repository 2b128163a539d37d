r"""One training step of one run, and the static setup shared by a batch of runs.

:class:`TrainSetup` fixes shapes and code paths (distances, miner, hinge or soft margin,
batch layout, network, optimiser). The functions below act on *one* run's state; the
runner (:mod:`geotrip.train._runner`) vectorises them over runs with ``vmap`` and over
steps with ``lax.scan``:

* free features (``task="features"``): Riemannian gradient descent on the points,
  :math:`X \leftarrow \operatorname{normalize}(X - \eta\,(I - x_i x_i^\top)\nabla_{x_i} L)`;
* MLPs (``"clusters"``, ``"digits"``): a PK batch, online mining on its embeddings (no
  gradient through the miner), the triplet loss, back-propagation through
  :func:`geotrip.mlp_embed`, and an optax optimiser.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from ..core._distances import Distance
from ..core._distances import distance as get_distance
from ..core._geometry import normalize, project_tangent
from ..core._losses import batch_loss
from ..core._mining import MINING_STRATEGIES, mine_triplets
from ._data import sample_pk
from ._mechanism import push_pull_summary
from ._metrics import active_share, embedding_metrics, riemannian_grad_norm
from ._models import cap_last_layer, init_features, init_mlp, mlp_embed
from ._tasks import TaskData, reference_distance

__all__ = ["OPTIMIZERS", "TrainSetup"]

OPTIMIZERS = ("adam", "sgd", "momentum")
"""Optimisers of the MLP runs: Adam, plain SGD, SGD with momentum 0.9."""
MOMENTUM = 0.9


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
      optimizer: ``"adam"``, ``"sgd"`` or ``"momentum"`` (SGD with heavy-ball momentum
        0.9, as FaceNet-style training) for the MLP; the free features always use
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
                f"steps ({self.steps}) must be a positive multiple of "
                f"eval_every ({self.eval_every})"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )


def _loss_parts(F, labels, margin, key, setup: TrainSetup, dist: Distance):
    """Mine on F (no gradient through mining); the loss, its gradient w.r.t. F, active share."""
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
    pp = push_pull_summary(jax.lax.stop_gradient(F), t, distance=dist, mask=valid)
    return loss, gF, active_share(per - thresh, valid), pp


def _init_state(task: str, setup: TrainSetup, data: TaskData, seed, spread, dtype):
    key = jax.random.key(seed)
    kinit, kcap, krun = jax.random.split(key, 3)
    if task == "features":
        n = data.y_train.shape[0]
        X = init_features(kinit, n, setup.embed_dim, spread, dtype=dtype)
        return {"X": X, "key": krun}
    sizes = (data.x_train.shape[1],) + tuple(setup.hidden) + (setup.embed_dim,)
    params = cap_last_layer(init_mlp(kinit, sizes, dtype=dtype), data.x_train, spread, key=kcap)
    return {"params": params, "opt": _optimizer(setup).init(params), "key": krun}


def _optimizer(setup: TrainSetup) -> optax.GradientTransformation:
    """The update direction of the MLP runs (the learning rate is applied by :func:`_step`)."""
    if setup.optimizer == "adam":
        return optax.scale_by_adam()
    if setup.optimizer == "momentum":
        return optax.trace(decay=MOMENTUM)
    return optax.identity()


def _step(state, i, lr, margin, task, setup, data, dist):
    key = jax.random.fold_in(state["key"], i)
    kb, km = jax.random.split(key)
    if task == "features":
        X = state["X"]
        loss, g, act, pp = _loss_parts(X, data.y_train, margin, km, setup, dist)
        rg = project_tangent(X, g)
        new = dict(state, X=normalize(X - lr * rg))
        return new, (loss, act, riemannian_grad_norm(X, g), pp)
    idx = sample_pk(kb, data.table, data.counts, p=setup.p, k=setup.k)
    xb, yb = data.x_train[idx], data.y_train[idx]
    F, vjp = jax.vjp(lambda prm: mlp_embed(prm, xb), state["params"])
    loss, gF, act, pp = _loss_parts(F, yb, margin, km, setup, dist)
    (gp,) = vjp(gF)
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int32 and float
        upd, opt = _optimizer(setup).update(gp, state["opt"], state["params"])
    params = jax.tree_util.tree_map(lambda p_, u: p_ - lr * u, state["params"], upd)
    return dict(state, params=params, opt=opt), (loss, act, riemannian_grad_norm(F, gF), pp)


def _evaluate(state, task, data):
    if task == "features":
        E, y = state["X"], data.y_train
    else:
        E, y = mlp_embed(state["params"], data.x_test), data.y_test
    return embedding_metrics(E, y)


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
        w = onehot(v.dtype).reshape((1,) * (v.ndim - 1) + (-1,))
        return jnp.sum(v * w, axis=-1)

    return Distance(
        "selected",
        profile=lambda t: combine([m.profile(t) for m in members]),
        weight=lambda t: combine([m.weight(t) for m in members]),
        ambient=lambda x, y: combine([m.ambient(x, y) for m in members]),
        formula="one of " + ", ".join(setup.distances),
    )
