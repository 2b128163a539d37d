r"""What a collapse sweep runs: :class:`CollapseSweep` and the named presets.

A sweep is a list of *cells* (task x (mining strategy, soft margin)); each cell is one
vectorised batch over distances x seeds x learning rates x margins x initial spreads
(:func:`geotrip.train_grid`). Presets, by cost: ``tiny`` (tests, notebook), ``figure-quick``
and ``figure`` (the registered figures), ``quick`` (``geotrip collapse --quick``, minutes
on 2 CPU cores) and ``full`` (sized for one GPU).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from ..core._distances import DISTANCES

__all__ = ["CollapseSweep", "COLLAPSE_PRESETS"]


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
        (and optionally ``max_batch``: runs per vectorised batch, ``losses``, and
        ``per_strategy``: ``{strategy: {key: value}}`` overrides, e.g. a smaller grid for
        the costlier miners).
        A grid may also name its ``task`` (default: its key) and override ``setup`` fields.
      setup: common :class:`TrainSetup` fields (``p``, ``k``, ``hidden``, ``embed_dim``, ...).
      data: per regime (grid key), keyword arguments of :func:`make_task_data`.
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
        """The cells ``(regime, strategy, soft)``; each runs all distances in one vectorised batch.

        A *regime* is a key of ``grids``: a task name, or any name whose grid says which
        ``"task"`` it trains and which ``"setup"`` fields it overrides (e.g. a deeper MLP with
        SGD + momentum from its default initialisation).
        """
        return [
            (t, s, soft)
            for t in self.tasks
            for (s, soft) in self.grids[t].get("losses", self.losses)
        ]

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=lambda o: list(o)))


_INF = math.inf
_HINGE_SOFT = (("batch_hard", False), ("semihard", False), ("batch_hard", True))


def _grid(steps, eval_every, lrs, margins, spreads, losses=None):
    g = dict(steps=steps, eval_every=eval_every, lrs=lrs, margins=margins, spreads=spreads)
    if losses is not None:
        g["losses"] = losses
    return g


# The FaceNet regime: a 3-hidden-layer ReLU MLP at its default initialisation (no cap),
# SGD with momentum, batch-hard and hardest-negative mining, on the digits.
_HEALTHY_DIGITS = dict(
    _grid(
        300,
        100,
        (0.05,),
        (0.1, 0.5),
        (_INF,),
        losses=(("batch_hard", False), ("hardest_negative", False)),
    ),
    task="digits",
    setup=dict(hidden=(64, 64, 64), embed_dim=16, p=8, k=4, optimizer="momentum"),
)

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
        distances=tuple(DISTANCES),
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
        distances=tuple(DISTANCES),
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
    # the healthy-start cells of `quick` alone (`geotrip collapse --preset healthy`)
    "healthy": CollapseSweep(
        name="healthy",
        tasks=("digits_healthy",),
        distances=tuple(DISTANCES),
        losses=(("batch_hard", False),),
        n_seeds=8,
        grids={"digits_healthy": _HEALTHY_DIGITS},
    ),
    # `geotrip collapse --quick`: about 5 minutes on 2 CPU cores for the collapsed-start cells,
    # plus the healthy-start cells (a few minutes more)
    "quick": CollapseSweep(
        name="quick",
        tasks=("features", "clusters", "digits", "digits_healthy"),
        distances=tuple(DISTANCES),
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
            "digits_healthy": _HEALTHY_DIGITS,
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
        distances=tuple(DISTANCES),
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
