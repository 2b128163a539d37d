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

from .._numerics import float_dtype
from .._provenance import provenance, write_provenance
from ..core._distances import distance as get_distance
from ._presets import COLLAPSE_PRESETS, CollapseSweep
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
            kept = list(csv.DictReader(path.open()))
            fields = old + [f for f in fields if f not in old]
            tmp = path.with_suffix(".csv.tmp")
            with tmp.open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=fields, restval="")
                w.writeheader()
                w.writerows(kept)
            os.replace(tmp, path)
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
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_fmt) + "\n")
    os.replace(tmp, path)


def _resolve_spec(spec: CollapseSweep | str) -> CollapseSweep:
    if not isinstance(spec, str):
        return spec
    try:
        return COLLAPSE_PRESETS[spec]
    except KeyError:
        raise ValueError(f"unknown preset {spec!r}; valid: {', '.join(COLLAPSE_PRESETS)}") from None


def _finished_cells(out: Path, resume: bool) -> list[str]:
    """The cells already done (``done.json``), or none (and old outputs removed) without resume."""
    done_path, runs_path = out / "done.json", out / "runs.csv"
    if resume and done_path.exists():
        done = json.loads(done_path.read_text())["cells"]
        return done if (not done or runs_path.exists()) else []
    if not resume:
        for p in (done_path, runs_path):
            if p.exists():
                p.unlink()
    return []


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


def _run_cell(out: Path, spec, cell, data, seeds, dtype) -> tuple[str, float]:
    """Train one cell; append its rows and save its history. Returns ``(cell id, seconds)``."""
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
    np.savez_compressed(out / "history" / f"{cid}.npz", **hist)
    _append_csv(out / "runs.csv", rows)
    return cid, secs


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
    spec = _resolve_spec(spec)
    out = Path(out_dir)
    (out / "history").mkdir(parents=True, exist_ok=True)
    runs_path = out / "runs.csv"
    done = _finished_cells(out, resume)
    params = {
        "spec": spec.to_json(),
        "seed0": seed0,
        "dtype": str(float_dtype(dtype)),
        "units": "reference: g / g'(pi/2); margins and learning rates comparable across distances",
    }
    write_provenance(out / "provenance.json", provenance(seed=seed0, extra=params))
    datas = {
        t: make_task_data(
            spec.grids[t].get("task", t), seed=seed0, dtype=dtype, **dict(spec.data.get(t, {}))
        )
        for t in spec.tasks
    }
    cells = spec.cells()
    todo = [c for c in cells if _cell_id(c) not in done]
    t_start = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=f"collapse[{spec.name}]")
    seeds = np.arange(seed0, seed0 + spec.n_seeds)
    for ran, cell in enumerate(todo):
        if max_cells is not None and ran >= max_cells:
            break
        cid, secs = _run_cell(out, spec, cell, datas[cell[0]], seeds, dtype)
        done.append(cid)
        _write_json(out / "done.json", {"cells": done})
        _write_tables(out, read_collapse_runs(runs_path))
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
        ("phase", ("regime", "task", "distance", "strategy", "soft", "spread", "lr", "margin")),
        ("phase_by_spread", ("regime", "task", "distance", "strategy", "soft", "spread")),
    ):
        table = collapse_phase_table(rows, by=by)
        tmp = out / f"{name}.csv.tmp"
        with tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows({k: _fmt(v) for k, v in r.items()} for r in table)
        os.replace(tmp, out / f"{name}.csv")
    _write_json(out / "summary.json", collapse_summary(rows))
