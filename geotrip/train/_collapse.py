r"""Running a collapse sweep cell by cell, reading its results, and testing its hypotheses.

:func:`run_collapse_sweep` writes ``runs.csv`` (one row per run), per-cell histories,
phase tables with binomial intervals and ``summary.json`` incrementally;
:func:`collapse_phase_table` and :func:`collapse_summary` analyse the rows.

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
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._distributed import allgather_objects
from .._io import atomic_open, atomic_savez, atomic_write_text
from .._numerics import float_dtype
from .._provenance import provenance, write_provenance
from ..core._distances import distance as get_distance
from ._presets import COLLAPSE_PRESETS, CollapseSweep
from ._rundir import open_run, record_cells
from ._runner import train_grid
from ._statistics import clopper_pearson_interval, mcnemar_exact, paired_outcomes, wilson_interval
from ._steps import TrainSetup
from ._tasks import make_task_data

__all__ = [
    "run_collapse_sweep",
    "collapse_phase_table",
    "collapse_summary",
    "read_collapse_runs",
]


def _cell_id(cell) -> str:
    task, s, soft = cell
    return f"{task}__{s}__{'soft' if soft else 'hinge'}"


def _fmt(v):
    if isinstance(v, float):
        return "inf" if math.isinf(v) else repr(v)
    return v


def _append_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    new = not path.exists()
    fields = list(rows[0])
    if not new:
        with path.open() as fh:
            old = next(csv.reader(fh), [])
        if old != fields:  # new columns: rewrite the file once with the union of the columns
            with path.open(newline="") as fh:
                kept = list(csv.DictReader(fh))
            fields = old + [f for f in fields if f not in old]
            with atomic_open(path, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=fields, restval="")
                w.writeheader()
                w.writerows(kept)
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, restval="")
        if new:
            w.writeheader()
        w.writerows({k: _fmt(v) for k, v in r.items()} for r in rows)
        fh.flush()
        os.fsync(fh.fileno())


def read_collapse_runs(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a ``runs.csv`` written by :func:`run_collapse_sweep`.

    Numbers are parsed; ``soft`` becomes a bool; text columns stay strings.
    """
    rows = []
    with Path(path).open() as fh:
        for r in csv.DictReader(fh):
            out: dict[str, Any] = {}
            for k, v in r.items():
                if k in ("task", "distance", "strategy", "cell", "regime", "optimizer"):
                    out[k] = v
                elif v == "":
                    out[k] = float("nan")
                elif k == "soft":
                    out[k] = v in ("True", "1", "true")
                elif k in ("seed", "collapsed"):
                    out[k] = int(v)
                else:
                    out[k] = float(v)
            out.setdefault("regime", out.get("task"))
            rows.append(out)
    return rows


def _group(rows, keys):
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
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


SQUARED_PAIRS = (("chord_sq", "chord"), ("geodesic_sq", "geodesic"))
"""The (squared, root) pairs of the built-in family compared by :func:`collapse_summary`."""


def _sorted_groups(rows, keys):
    return sorted(_group(rows, keys).items(), key=lambda kv: str(kv[0]))


def _gprime0_rates(rows, confidence):
    """Collapse rates of distances with g'(0) = 0 vs g'(0) > 0 per task, loss and spread."""
    keys = ("task", "strategy", "soft", "spread")
    out = []
    for key, grp in _sorted_groups(rows, keys):
        entry = dict(zip(keys, key))
        for tag, vanishes in (("zero", True), ("positive", False)):
            sel = [
                r for r in grp if get_distance(r["distance"]).weight_vanishes_at_zero == vanishes
            ]
            n, k = len(sel), sum(int(r["collapsed"]) for r in sel)
            lo, hi = wilson_interval(k, n, confidence=confidence)
            entry[tag] = dict(
                n=n, collapsed=k, p=(k / n if n else float("nan")), lo=float(lo), hi=float(hi)
            )
        out.append(entry)
    return out


def _squared_vs_root(rows):
    """Paired collapse counts and exact McNemar p-values, squared vs root, per task and pooled."""
    out = []
    tasks = sorted({r["task"] for r in rows})
    for sq, root in SQUARED_PAIRS:
        for task in tasks + ["all"]:
            sel = [r for r in rows if task == "all" or r["task"] == task]
            pairs = paired_outcomes(sel, sq, root)
            if not pairs:
                continue
            both = sum(1 for x, y in pairs if x["collapsed"] and y["collapsed"])
            only_sq = sum(1 for x, y in pairs if x["collapsed"] and not y["collapsed"])
            only_root = sum(1 for x, y in pairs if y["collapsed"] and not x["collapsed"])
            out.append(
                dict(
                    task=task,
                    squared=sq,
                    root=root,
                    pairs=len(pairs),
                    both=both,
                    neither=len(pairs) - both - only_sq - only_root,
                    only_squared=only_sq,
                    only_root=only_root,
                    mcnemar_p=mcnemar_exact(only_sq, only_root),
                )
            )
    return out


CELL_KEYS = ("regime", "task", "strategy", "soft", "lr", "margin", "spread")
"""Columns of one hyper-parameter cell: the independent unit of the cell-level tests."""


def _squared_vs_root_cells(rows):
    """Cell-level sign tests: in how many cells did the squared distance collapse more often.

    The unit is a hyper-parameter cell (:data:`CELL_KEYS`), not a run: seed replicates within a
    cell are often near-deterministic (all 0/8 or 8/8), so counting them as independent pairs
    overstates the evidence. ``p`` is the exact two-sided sign test on the cells that differ.
    """
    out = []
    tasks = sorted({r["task"] for r in rows})
    for sq, root in SQUARED_PAIRS:
        for task in tasks + ["all"]:
            cells: dict[tuple, dict[str, list]] = {}
            for r in rows:
                if r["distance"] in (sq, root) and (task == "all" or r["task"] == task):
                    key = tuple(r.get(k) for k in CELL_KEYS)
                    cells.setdefault(key, {}).setdefault(r["distance"], []).append(r["collapsed"])
            both = [v for v in cells.values() if sq in v and root in v]
            if not both:
                continue
            more_sq = sum(1 for v in both if np.mean(v[sq]) > np.mean(v[root]))
            more_root = sum(1 for v in both if np.mean(v[sq]) < np.mean(v[root]))
            out.append(
                dict(
                    task=task,
                    squared=sq,
                    root=root,
                    cells=len(both),
                    squared_more=more_sq,
                    root_more=more_root,
                    equal=len(both) - more_sq - more_root,
                    sign_test_p=mcnemar_exact(more_sq, more_root),
                )
            )
    return out


def _recall_table(rows):
    keys = ("task", "strategy", "soft", "distance")
    out = []
    for key, grp in _sorted_groups(rows, keys):
        rec = np.array([r["final_recall_at_1"] for r in grp])
        out.append(
            dict(
                zip(keys, key),
                n=int(rec.size),
                mean=float(rec.mean()),
                std=float(rec.std(ddof=1)) if rec.size > 1 else 0.0,
            )
        )
    return out


def collapse_summary(
    rows: Sequence[Mapping[str, Any]], *, confidence: float = 0.95
) -> dict[str, Any]:
    r"""Tests of the two hypotheses on finished runs.

    * ``gprime0``: collapse rates of the distances with :math:`g'(0) = 0`
      (:attr:`geotrip.Distance.weight_vanishes_at_zero`: ``chord_sq``, ``geodesic_sq``,
      ``cosine``) versus :math:`g'(0) > 0` (``chord``, ``geodesic``), per task,
      strategy/soft and spread, with Wilson intervals.
    * ``squared_vs_root``: for the pairs (``chord_sq``, ``chord``) and
      (``geodesic_sq``, ``geodesic``), paired on identical seed and hyper-parameters:
      both/neither/only-squared/only-root collapse counts and the exact two-sided
      McNemar p-value (binomial test on the discordant pairs), per task and overall.
      The pairs are runs: seed replicates of one cell may be near-deterministic, so
      these p-values count runs, not independent hyper-parameter cells.
    * ``squared_vs_root_cells``: the same comparison with the hyper-parameter cell as the
      unit (collapse share of the squared vs the root distance per cell; exact sign test).
    * ``recall``: mean final Recall@1 per task, strategy/soft and distance.
    """
    return {
        "criterion": "mean pairwise cosine > 0.99 or effective rank < 1.5 "
        "on the evaluation embeddings at the end of training",
        "confidence": confidence,
        "gprime0": _gprime0_rates(rows, confidence),
        "squared_vs_root": _squared_vs_root(rows),
        "squared_vs_root_cells": _squared_vs_root_cells(rows),
        "recall": _recall_table(rows),
    }


def _write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_fmt) + "\n")


def _resolve_spec(spec: CollapseSweep | str) -> CollapseSweep:
    if not isinstance(spec, str):
        return spec
    try:
        return COLLAPSE_PRESETS[spec]
    except KeyError:
        raise ValueError(f"unknown preset {spec!r}; valid: {', '.join(COLLAPSE_PRESETS)}") from None


def _cell_setup(spec: CollapseSweep, cell) -> tuple[TrainSetup, dict[str, Any]]:
    """The :class:`TrainSetup` and the grid (with per-strategy overrides) of one cell."""
    regime, strategy, soft = cell
    g = dict(spec.grids[regime])
    g.update(dict(g.get("per_strategy", {}).get(strategy, {})))
    setup = TrainSetup(
        distances=tuple(spec.distances),
        strategy=strategy,
        soft=soft,
        steps=int(g["steps"]),
        eval_every=int(g["eval_every"]),
        **(dict(spec.setup) | dict(g.get("setup", {}))),
    )
    return setup, g


def _train_cell(spec, cell, data, seeds, dtype) -> tuple[str, list[dict], dict, float]:
    """Train one cell: ``(cell id, rows, history arrays, seconds)``."""
    regime, strategy, soft = cell
    setup, g = _cell_setup(spec, cell)
    task = g.get("task", regime)
    t0 = time.perf_counter()
    rows, hist = train_grid(
        task,
        setup,
        data,
        seeds=seeds,
        lrs=g["lrs"],
        margins=g["margins"],
        spreads=g["spreads"],
        dtype=dtype,
        max_batch=g.get("max_batch"),
    )
    secs = time.perf_counter() - t0
    cid = _cell_id(cell)
    about = dict(
        cell=cid,
        task=task,
        regime=regime,
        strategy=strategy,
        soft=soft,
        optimizer="riemannian_gd" if task == "features" else setup.optimizer,
        depth=0 if task == "features" else len(setup.hidden),
    )
    rows = [dict(about, **r, seconds=secs) for r in rows]
    return cid, rows, {k: np.asarray(v) for k, v in hist.items()}, secs


# outputs of a run besides done.json and runs.csv (deleted when a run starts afresh)
_OUTPUTS = (
    *("phase.csv", "phase_by_spread.csv", "summary.json", "provenance.json", "timing.json"),
    "collapse_*.*",  # figures
)
_FOREIGN = ("compare.json", "tuning.csv", "scores.csv")  # geotrip compare's outputs


def run_collapse_sweep(
    spec: CollapseSweep | str,
    out_dir: str | os.PathLike,
    *,
    seed0: int = 0,
    dtype=None,
    resume: bool = True,
    progress: bool = True,
    max_cells: int | None = None,
    distributed: bool = False,
) -> dict[str, Any]:
    r"""Run a collapse sweep cell by cell, writing results incrementally to ``out_dir``.

    After each cell (task, strategy, soft) finishes, its rows are appended
    to ``runs.csv`` (one row per run, fsync'ed), its history to
    ``history/CELL.npz``, its id to ``done.json``, and ``phase.csv``,
    ``phase_by_spread.csv``, ``summary.json`` and ``provenance.json`` are rewritten
    (atomically). An interrupted sweep keeps every finished cell; with ``resume`` a rerun
    skips them. ``provenance.json`` records the command, versions, device, git revision,
    the spec and the finished cells: it describes the rows that are there.

    **Safe resume.** ``done.json`` records the settings that change the rows (the spec,
    its seed count included, ``seed0`` and the float dtype) and the length of ``runs.csv``
    after the last finished cell; resuming with other settings raises instead of mixing
    rows of two settings, and the bytes of an append interrupted by a crash are dropped.

    Args:
      spec: a :class:`CollapseSweep` or a name in :data:`COLLAPSE_PRESETS`.
      out_dir: output folder.
      seed0: first seed.
      dtype: float dtype of training (default: JAX's default float).
      resume: skip cells listed in ``done.json``; otherwise start afresh (a previous run's
        rows, tables, histories and figures in ``out_dir`` are deleted).
      progress: show tqdm progress bars.
      max_cells: stop after this many newly run cells (resume later).
      distributed: in a run of several processes (:func:`geotrip.init_distributed`), the
        cells still to run are dealt in rounds, one cell per process per round; each round's
        rows and histories are gathered through JAX's collectives and process 0 writes them
        in cell order, so the outputs equal the single-process run's (a cell's runs depend
        only on its settings and seeds), but for the ``seconds`` column. The other processes
        write nothing and return process 0's summary. Every process must call it.

    Returns:
      The summary of :func:`collapse_summary`, plus ``"cells"``, ``"cells_total"``,
      ``"seconds"``.

    Raises:
      ValueError: (a ``RunFolderError``, whose ``differences`` list the differing
        settings) resuming a folder that holds a run with other settings, with none
        recorded, or with a damaged ``runs.csv``.
    """
    import jax

    spec = _resolve_spec(spec)
    out = Path(out_dir)
    count = jax.process_count() if distributed else 1
    pid = jax.process_index() if distributed else 0
    writer = pid == 0
    settings = {"spec": spec.to_json(), "seed0": int(seed0), "dtype": str(float_dtype(dtype))}
    done = open_run(
        out, settings, resume=resume, outputs=_OUTPUTS, foreign=_FOREIGN, distributed=distributed
    )
    resumed = bool(done)
    params = {
        **settings,
        "units": "reference: g / g'(pi/2); margins and learning rates comparable across distances",
        "processes": count,
    }

    def record():
        extra = dict(params, cells_done=list(done), resumed=resumed)
        write_provenance(out / "provenance.json", provenance(seed=seed0, extra=extra))

    if writer:
        record()
    datas = {
        t: make_task_data(
            spec.grids[t].get("task", t), seed=seed0, dtype=dtype, **dict(spec.data.get(t, {}))
        )
        for t in spec.tasks
    }
    cells = spec.cells()
    todo = [c for c in cells if _cell_id(c) not in done][:max_cells]
    t_start = time.perf_counter()
    bar = None
    if progress and writer:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=f"collapse[{spec.name}]")
    seeds = np.arange(seed0, seed0 + spec.n_seeds)
    for first in range(0, len(todo), count):
        mine = todo[first + pid] if first + pid < len(todo) else None
        got = _train_cell(spec, mine, datas[mine[0]], seeds, dtype) if mine else None
        results = allgather_objects(got) if distributed else [got]
        for cid, rows, hist, secs in (r for r in results if r is not None):
            if writer:
                atomic_savez(out / "history" / f"{cid}.npz", **hist)
                _append_csv(out / "runs.csv", rows)
            done.append(cid)
            if writer:
                record_cells(out, settings, done)
                _write_tables(out, read_collapse_runs(out / "runs.csv"))
                record()
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{cid} {secs:.1f}s")
    if bar is not None:
        bar.close()
    if writer:
        runs_path = out / "runs.csv"
        all_rows = read_collapse_runs(runs_path) if runs_path.exists() else []
        summary = collapse_summary(all_rows) if all_rows else {}
    else:
        summary = {}
    if distributed:
        summary = allgather_objects(summary)[0]
    summary.update(cells=len(done), cells_total=len(cells), seconds=time.perf_counter() - t_start)
    return summary


def _write_tables(out: Path, rows) -> None:
    for name, by in (
        ("phase", ("regime", "task", "distance", "strategy", "soft", "spread", "lr", "margin")),
        ("phase_by_spread", ("regime", "task", "distance", "strategy", "soft", "spread")),
    ):
        table = collapse_phase_table(rows, by=by)
        with atomic_open(out / f"{name}.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows({k: _fmt(v) for k, v in r.items()} for r in table)
    _write_json(out / "summary.json", collapse_summary(rows))
