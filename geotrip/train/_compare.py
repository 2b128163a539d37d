r"""A fair test of learning: each distance tuned on its own, then retrained over seeds.

"Does the squared chord distance inhibit learning?" is only answerable at each distance's
*own* best hyper-parameters. The protocol of :func:`run_compare`, per task:

1. **Tune** (validation only): the training split of :func:`geotrip.make_task_data` is split
   again, stratified (:func:`tuning_split`), into a fitting part and a validation part. Every
   distance trains on the fitting part over the grid learning rate x margin (reference
   units), with ``tune_seeds`` seeds; its setting is the one with the best mean validation
   score (``select_by``: MAP@R by default; ties to the smaller learning rate, then margin).
   The test split is never read.
2. **Retrain and test**: each distance trains on the whole training split at its tuned
   setting with ``n_seeds`` new seeds (seed ``s`` gives every distance the same
   initialisation and PK batches); held-out Recall@1 and MAP@R (leave-one-out within the
   test split) are reported with Student-t 95% intervals over seeds (the independent unit).
3. **Compare**: per seed, the difference of each distance to ``chord_sq``, with its t
   interval, Cohen's :math:`d_z`, the exact sign-flip test and Wilcoxon's signed-rank test.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .._io import atomic_open, atomic_write_text
from .._provenance import provenance, write_provenance
from ..core._distances import DISTANCES
from ._data import class_table, stratified_split
from ._runner import train_grid, train_runs
from ._statistics import mean_interval, paired_comparison
from ._steps import TrainSetup
from ._tasks import TaskData, make_task_data

__all__ = [
    "CompareSpec",
    "COMPARE_PRESETS",
    "grid_edges",
    "tuning_split",
    "tune_distances",
    "run_compare",
]

SCORES = ("recall_at_1", "map_at_r")


@dataclasses.dataclass(frozen=True)
class CompareSpec:
    """What :func:`run_compare` runs (see the module docstring for the protocol).

    Attributes:
      name: preset name. tasks: MLP tasks (``"digits"``, ``"clusters"``).
      distances: names; the first is the baseline of the paired comparisons.
      strategy, soft, optimizer: the loss, miner and optimiser shared by all runs.
      lrs, margins: the tuning grid (margins in reference units).
      tune_seeds: seeds per grid point when tuning; n_seeds: seeds when retraining.
      steps, eval_every: training length. setup: other :class:`TrainSetup` fields.
      data: per task, keyword arguments of :func:`geotrip.make_task_data`.
      val_fraction: share of each class of the training split held out for validation.
      select_by: the validation score that picks the setting (``"map_at_r"``,
        ``"recall_at_1"``).
    """

    name: str
    tasks: tuple[str, ...]
    distances: tuple[str, ...]
    lrs: tuple[float, ...]
    margins: tuple[float, ...]
    tune_seeds: int = 2
    n_seeds: int = 10
    steps: int = 300
    eval_every: int = 100
    strategy: str = "batch_hard"
    soft: bool = False
    optimizer: str = "adam"
    setup: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    val_fraction: float = 0.25
    select_by: str = "map_at_r"

    def __post_init__(self):
        if self.select_by not in SCORES:
            raise ValueError(f"select_by must be one of {SCORES}, got {self.select_by!r}")
        if self.n_seeds < 2 or self.tune_seeds < 1:
            raise ValueError("need n_seeds >= 2 and tune_seeds >= 1")

    def train_setup(self) -> TrainSetup:
        return TrainSetup(
            distances=tuple(self.distances),
            strategy=self.strategy,
            soft=self.soft,
            steps=self.steps,
            eval_every=self.eval_every,
            optimizer=self.optimizer,
            **dict(self.setup),
        )

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))


_MLP = dict(hidden=(64, 64, 64), embed_dim=16, p=8, k=4)
COMPARE_PRESETS: dict[str, CompareSpec] = {
    "tiny": CompareSpec(
        name="tiny",
        tasks=("clusters",),
        distances=("chord_sq", "chord", "geodesic"),
        lrs=(1e-3, 1e-2),
        margins=(0.1,),
        tune_seeds=1,
        n_seeds=3,
        steps=20,
        eval_every=10,
        setup=dict(hidden=(16,), embed_dim=6, p=4, k=3),
        data={"clusters": dict(n_classes=4, cluster_size=24, dim=8)},
    ),
    "quick": CompareSpec(
        name="quick",
        tasks=("digits", "clusters"),
        distances=tuple(DISTANCES),
        lrs=(3e-4, 1e-3, 3e-3),
        margins=(0.05, 0.2),
        tune_seeds=2,
        n_seeds=10,
        steps=300,
        eval_every=100,
        setup=_MLP,
        data={"clusters": dict(n_classes=8, cluster_size=64, dim=32, label_noise=0.1)},
    ),
    # the digits of "quick" with a grid that brackets every distance's optimum of "quick"
    # (there, every distance chose the largest lr and the squared ones the smallest margin)
    "digits_wide": CompareSpec(
        name="digits_wide",
        tasks=("digits",),
        distances=tuple(DISTANCES),
        lrs=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
        margins=(0.01, 0.02, 0.05, 0.2, 0.5, 1.0),
        tune_seeds=2,
        n_seeds=10,
        steps=300,
        eval_every=100,
        setup=_MLP,
    ),
    "full": CompareSpec(
        name="full",
        tasks=("digits", "clusters"),
        distances=tuple(DISTANCES),
        lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
        margins=(0.02, 0.05, 0.1, 0.2, 0.5),
        tune_seeds=5,
        n_seeds=30,
        steps=3000,
        eval_every=500,
        setup=dict(hidden=(256, 256, 256), embed_dim=64, p=10, k=8),
        data={"clusters": dict(n_classes=16, cluster_size=200, dim=64, label_noise=0.1)},
    ),
}


def tuning_split(data: TaskData, *, seed: int = 0, val_fraction: float = 0.25) -> TaskData:
    """The tuning task: the *training* split of ``data`` split into fitting and validation.

    The returned :class:`TaskData` trains on the fitting part and evaluates on the
    validation part (its ``x_test``/``y_test``); nothing of ``data``'s test split is used.
    The split is stratified (every class on both sides) with its own key (``seed``).
    """
    if data.task == "features" or data.x_train is None:
        raise ValueError("tuning_split needs an MLP task (clusters or digits)")
    fit, val = stratified_split(
        jax.random.fold_in(jax.random.key(seed), 3), data.y_train, test_fraction=val_fraction
    )
    _, table, counts = class_table(data.y_train[fit])
    return TaskData(
        data.task,
        y_train=data.y_train[fit],
        y_test=data.y_train[val],
        x_train=data.x_train[fit],
        x_test=data.x_train[val],
        table=table,
        counts=counts,
        info=data.info + (("tuning_split", f"seed={seed}, val_fraction={val_fraction}"),),
    )


def tune_distances(
    spec: CompareSpec, tune_data: TaskData, *, seed0: int = 1000
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Step 1 of the protocol on ``tune_data`` (from :func:`tuning_split`).

    Returns ``({distance: {"lr", "margin", "validation": {score: mean}}}, rows)``: the
    tuned setting per distance and one row per tuning run (final validation scores).
    """
    rows, _ = train_grid(
        tune_data.task,
        spec.train_setup(),
        tune_data,
        seeds=range(seed0, seed0 + spec.tune_seeds),
        lrs=spec.lrs,
        margins=spec.margins,
        spreads=(math.inf,),
    )
    tuned = {}
    for dist in spec.distances:
        cells: dict[tuple[float, float], list] = {}
        for r in rows:
            if r["distance"] == dist:
                cells.setdefault((r["lr"], r["margin"]), []).append(r)

        def score(cell, key=spec.select_by):
            v = np.mean([r[f"final_{key}"] for r in cells[cell]])
            return (-v if np.isfinite(v) else np.inf, cell[0], cell[1])

        best = min(cells, key=score)
        tuned[dist] = {
            "lr": best[0],
            "margin": best[1],
            "at_grid_edge": grid_edges(best, spec),
            "validation": {
                k: float(np.mean([r[f"final_{k}"] for r in cells[best]])) for k in SCORES
            },
        }
    return tuned, rows


def grid_edges(setting: tuple[float, float], spec: CompareSpec) -> list[str]:
    """Which ends of the tuning grid a tuned ``(lr, margin)`` sits on, e.g.
    ``["largest lr"]``: the optimum may lie outside the grid (widen it before concluding).
    A grid axis of one value is not reported (it is not tuned).

    >>> spec = COMPARE_PRESETS["quick"]
    >>> grid_edges((3e-3, 0.05), spec)
    ['largest lr', 'smallest margin']
    """
    out = []
    for name, v, axis in (("lr", setting[0], spec.lrs), ("margin", setting[1], spec.margins)):
        if len(axis) > 1 and v == min(axis):
            out.append(f"smallest {name}")
        elif len(axis) > 1 and v == max(axis):
            out.append(f"largest {name}")
    return out


def _retrain(spec: CompareSpec, data: TaskData, tuned, seeds) -> dict[str, dict[str, np.ndarray]]:
    """Step 2: every distance at its tuned setting, all seeds, in one vectorised batch."""
    nd = len(spec.distances)
    didx = np.repeat(np.arange(nd), len(seeds))
    seeds_r = np.tile(np.asarray(seeds), nd)
    h = train_runs(
        data.task,
        spec.train_setup(),
        data,
        seeds=seeds_r,
        lrs=[tuned[spec.distances[i]]["lr"] for i in didx],
        margins=[tuned[spec.distances[i]]["margin"] for i in didx],
        spreads=np.full(len(didx), np.inf),
        distance_index=didx,
    )
    out = {}
    for i, dist in enumerate(spec.distances):
        sel = didx == i
        out[dist] = {k: h[k][sel, -1] for k in SCORES + ("collapsed", "mean_cos", "push_pull")}
        out[dist]["init_mean_cos"] = h["mean_cos"][sel, 0]
    return out


def _task_report(spec, tuned, scores) -> dict[str, Any]:
    base = spec.distances[0]
    rep: dict[str, Any] = {"distances": {}, f"paired_vs_{base}": {}}
    for dist in spec.distances:
        s = scores[dist]
        entry = {
            "tuned": {"lr": tuned[dist]["lr"], "margin": tuned[dist]["margin"]},
            "at_grid_edge": tuned[dist].get("at_grid_edge", []),
        }
        for k in SCORES:
            mi = mean_interval(s[k])
            entry[k] = {"mean": mi["mean"], "ci95": mi["ci95"], "n_seeds": mi["n"]}
        entry["validation"] = tuned[dist]["validation"]
        entry["collapsed"] = int(np.sum(s["collapsed"] > 0.5))
        entry["init_mean_cos"] = float(np.mean(s["init_mean_cos"]))
        entry["final_mean_cos"] = float(np.mean(s["mean_cos"]))
        rep["distances"][dist] = entry
        if dist != base:
            rep[f"paired_vs_{base}"][dist] = {
                k: paired_comparison(s[k], scores[base][k]) for k in SCORES
            }
    return rep


def run_compare(
    spec: CompareSpec | str, out_dir: str | os.PathLike, *, seed0: int = 0
) -> dict[str, Any]:
    """Run the protocol of the module docstring for every task; write ``compare.json``.

    ``out_dir`` receives ``compare.json`` (per task: each distance's tuned setting,
    held-out Recall@1 and MAP@R with 95% t intervals over ``n_seeds`` seeds, the paired
    comparisons against the first distance; the protocol; provenance), ``tuning.csv``
    (every tuning run) and ``scores.csv`` (every retrained run). A rerun replaces them all
    (there is no resume), so the folder never mixes two settings.

    Raises:
      ValueError: ``out_dir`` holds a collapse run (``done.json`` or ``runs.csv``), whose
        provenance would be overwritten.
    """
    if isinstance(spec, str):
        if spec not in COMPARE_PRESETS:
            raise ValueError(f"unknown preset {spec!r}; valid: {', '.join(COMPARE_PRESETS)}")
        spec = COMPARE_PRESETS[spec]
    out = Path(out_dir)
    other = [name for name in ("done.json", "runs.csv") if (out / name).exists()]
    if other:  # its provenance.json would then describe this run, not the collapse rows
        raise ValueError(
            f"{out} holds the outputs of geotrip collapse ({', '.join(other)}); "
            "use another folder for compare"
        )
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report: dict[str, Any] = {"preset": spec.name, "tasks": {}, "protocol": _PROTOCOL}
    tuning_rows, score_rows = [], []
    seeds = list(range(seed0, seed0 + spec.n_seeds))
    for task in spec.tasks:
        data = make_task_data(task, seed=seed0, **dict(spec.data.get(task, {})))
        tune_data = tuning_split(data, seed=seed0, val_fraction=spec.val_fraction)
        tuned, rows = tune_distances(spec, tune_data, seed0=seed0 + 1000)
        tuning_rows += [dict(task=task, **r) for r in rows]
        scores = _retrain(spec, data, tuned, seeds)
        for dist, s in scores.items():
            for j, seed in enumerate(seeds):
                score_rows.append(
                    dict(task=task, distance=dist, seed=seed)
                    | {"lr": tuned[dist]["lr"], "margin": tuned[dist]["margin"]}
                    | {k: float(v[j]) for k, v in s.items()}
                )
        report["tasks"][task] = _task_report(spec, tuned, scores)
    report["seconds"] = time.perf_counter() - t0
    report["provenance"] = provenance(seed=seed0, extra={"spec": spec.to_json()})
    _write_csv(out / "tuning.csv", tuning_rows)
    _write_csv(out / "scores.csv", score_rows)
    atomic_write_text(out / "compare.json", json.dumps(report, indent=2, default=float) + "\n")
    write_provenance(out / "provenance.json", report["provenance"])
    return report


_PROTOCOL = (
    "per task and distance: grid lr x margin (reference units) trained on a stratified "
    "fitting part of the training split and scored on its validation part (test split "
    "unused); the best mean validation score picks the setting; retrained on the whole "
    "training split with n_seeds new seeds; held-out Recall@1 and MAP@R leave-one-out "
    "within the test split; 95% Student-t intervals over seeds; paired differences per "
    "seed vs the baseline with exact sign-flip and Wilcoxon signed-rank tests, Cohen's dz"
)


def _write_csv(path: Path, rows) -> None:
    import csv

    if not rows:
        return
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
