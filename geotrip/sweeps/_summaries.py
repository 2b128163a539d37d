"""Summaries of sweeps (quantiles, histograms, shares above thresholds) and the driver
``run_sweep`` used by ``geotrip sweep``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ..core._distances import distance as get_distance
from ._engine import sweep
from ._families import SWEEP_FAMILIES, _family_params, family_sampler, triplet_metric

__all__ = ["ANGLE_THRESHOLDS_DEG", "summarize", "run_sweep"]

ANGLE_THRESHOLDS_DEG = (30.0, 60.0, 90.0)

_QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


def _quantiles(x: np.ndarray) -> dict[str, float]:
    return {f"{q:g}": float(v) for q, v in zip(_QUANTILES, np.quantile(x, _QUANTILES))}


def _angle_entry(v: np.ndarray, ok: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    """Summary of one angle key (radians) over the configurations where it is defined."""
    deg = np.degrees(v[ok].astype(np.float64))
    entry: dict[str, Any] = {
        "count": int(ok.sum()),
        "defined_share": float(ok.mean()),
        "unit": "degree",
    }
    if deg.size:
        entry["mean"] = float(deg.mean())
        entry["quantiles"] = _quantiles(deg)
        entry["share_above"] = {f"{t:g}": float((deg > t).mean()) for t in ANGLE_THRESHOLDS_DEG}
    entry["histogram"] = {"edges": edges.tolist(), "counts": np.histogram(deg, edges)[0].tolist()}
    return entry


def _value_entry(v: np.ndarray) -> dict[str, Any]:
    """Mean and quantiles of a real-valued key over its finite values."""
    fin = v[np.isfinite(v)].astype(np.float64)
    return {
        "mean": float(fin.mean()) if fin.size else None,
        "quantiles": _quantiles(fin) if fin.size else {},
    }


def summarize(results: Mapping[str, np.ndarray], *, bins_deg: int = 36) -> dict[str, Any]:
    r"""JSON-ready summary of a sweep of :func:`geotrip.triplet_metric`.

    For each angle key (``raw/...``, ``riemannian/...``), in degrees, over the
    configurations where it is defined: ``count``, ``defined_share``, ``mean``,
    ``quantiles`` (at 0, 1, 5, 25, 50, 75, 95, 99, 100 %), ``histogram`` (``bins_deg``
    equal bins on [0, 180]) and ``share_above`` 30°, 60°, 90° (among defined).
    Boolean keys (``active/...``) give their share; ``config/...`` keys give quantiles.
    """
    out: dict[str, Any] = {"num": int(len(next(iter(results.values()))))}
    edges = np.linspace(0.0, 180.0, bins_deg + 1)
    for k in sorted(results):
        v = np.asarray(results[k])
        if k.startswith("defined/"):
            continue
        if v.dtype == bool:
            out[k] = {"share": float(v.mean())}
        elif k.startswith(("raw/", "riemannian/")):
            ok = np.asarray(results.get(f"defined/{k}", np.isfinite(v)))
            out[k] = _angle_entry(v, ok, edges)
        else:
            out[k] = _value_entry(v)
    return out


def run_sweep(
    family: str,
    *,
    dims: Sequence[int],
    samples: int,
    seed: int,
    distances=("chord_sq", "geodesic"),
    margins=(0.2, 0.2),
    soft: bool = False,
    params: Mapping[str, Any] | None = None,
    out: str | os.PathLike | None = None,
    save_arrays: bool = False,
    chunk_size: int = 65536,
    method: str = "closed_form",
    progress: bool | None = None,
    dtype=None,
) -> dict[str, Any]:
    """Sweep one family over several dimensions; write ``summary.json`` (and ``arrays_d{D}.npz``).

    The summary holds, per dimension, :func:`summarize` of the
    :func:`triplet_metric` results, and a provenance record (command line, seed,
    versions, devices, git revision, parameters, time per dimension).

    Returns:
      The summary dict (also written to ``out/summary.json`` when ``out`` is given).
    """
    from .._provenance import provenance

    if not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    merged = _family_params(family, params)
    key = jax.random.key(seed)
    summary = _header(family, merged, distances, margins, soft, samples, seed)
    outdir = Path(out) if out is not None else None
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
    for d in dims:
        sampler = family_sampler(family, dim=int(d), dtype=dtype, **(params or {}))
        fn = triplet_metric(sampler, distances=distances, margins=margins, soft=soft, method=method)
        t0 = time.perf_counter()
        res = sweep(
            fn,
            samples,
            key=jax.random.fold_in(key, int(d)),
            chunk_size=chunk_size,
            progress=progress,
        )
        dt = time.perf_counter() - t0
        s = summarize(res)
        s["seconds"] = dt
        s["configs_per_second"] = samples / dt
        summary["by_dim"][str(int(d))] = s
        if outdir is not None and save_arrays:
            np.savez_compressed(outdir / f"arrays_d{int(d)}.npz", **res)
    summary["provenance"] = provenance(
        seed=seed,
        extra={
            "family": family,
            "dims": [int(d) for d in dims],
            "chunk_size": chunk_size,
            "method": method,
        },
    )
    if outdir is not None:
        (outdir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _header(family, merged, distances, margins, soft, samples, seed) -> dict[str, Any]:
    """The run's settings, the top of ``summary.json``."""
    return {
        "family": family,
        "description": SWEEP_FAMILIES[family].description,
        "distances": [get_distance(d).name for d in distances],
        "margins": [float(m) for m in margins],
        "soft": soft,
        "params": {k: v for k, v in merged.items()},
        "samples": int(samples),
        "seed": int(seed),
        "by_dim": {},
    }
