"""Summaries of sweeps (quantiles, histograms, shares above thresholds) and the driver
``run_sweep`` used by ``geotrip sweep``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .._caches import bounded_cache
from .._io import atomic_savez, atomic_write_text
from .._numerics import float_dtype
from ..core._distances import distance as get_distance
from ._checkpoint import read_checkpoint, write_checkpoint
from ._engine import chunk_size_of, sweep_chunks
from ._families import SWEEP_FAMILIES, _family_params, family_sampler, triplet_metric
from ._matching import resolve_margins
from ._streaming import ANGLE_THRESHOLDS_DEG, QUANTILES, StreamingSummary

__all__ = ["ANGLE_THRESHOLDS_DEG", "summarize", "run_sweep"]

_QUANTILES = QUANTILES


def _quantiles(x: np.ndarray) -> dict[str, float]:
    return {f"{q:g}": float(v) for q, v in zip(_QUANTILES, np.quantile(x, _QUANTILES))}


def _angle_entry(v: np.ndarray, ok: np.ndarray, seen: int, edges: np.ndarray) -> dict[str, Any]:
    """Summary of one angle key (radians) over the values where it is defined (``ok``) among
    ``seen`` drawn."""
    deg = np.degrees(v[ok].astype(np.float64))
    entry: dict[str, Any] = {
        "count": int(ok.sum()),
        "defined_share": float(ok.sum() / seen) if seen else 0.0,
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

    Results with a mask ``valid`` (shape ``(N, k)``: the ``clustered`` family, k mined
    triplets per batch) are summarised over the valid triplets, each counted once
    (``defined_share`` among valid ones); ``num`` is then the number of batches,
    ``triplets`` that of valid triplets and ``empty`` that of batches without one.
    """
    out: dict[str, Any] = {"num": int(len(next(iter(results.values()))))}
    mask = results.get("valid")
    if mask is not None:
        mask = np.asarray(mask, bool)
        out["triplets"] = int(mask.sum())
        out["empty"] = int((~mask.any(axis=1)).sum())
    edges = np.linspace(0.0, 180.0, bins_deg + 1)
    for k in sorted(results):
        v = np.asarray(results[k])
        if k.startswith("defined/") or k == "valid":
            continue
        keep = np.ones(v.shape, bool) if mask is None else mask
        if v.dtype == bool:
            out[k] = {"share": float(v[keep].mean())}
        elif k.startswith(("raw/", "riemannian/")):
            ok = np.asarray(results.get(f"defined/{k}", np.isfinite(v)))
            out[k] = _angle_entry(v, ok & keep, int(keep.sum()), edges)
        else:
            out[k] = _value_entry(v[keep])
    return out


def run_sweep(
    family: str,
    *,
    dims: Sequence[int],
    samples: int,
    seed: int,
    distances=("chord_sq", "geodesic"),
    margins=(0.2, None),
    match: str | None = "slope",
    soft: bool = False,
    params: Mapping[str, Any] | None = None,
    out: str | os.PathLike | None = None,
    save_arrays: bool = False,
    chunk_size: int = 65536,
    method: str = "closed_form",
    progress: bool | None = None,
    dtype=None,
    resume: bool = False,
    checkpoint_seconds: float = 30.0,
    on_chunk: Callable[[int, int, int], None] | None = None,
) -> dict[str, Any]:
    """Sweep one family over several dimensions, streaming; write ``summary.json``.

    Each dimension's :func:`triplet_metric` results are summarised chunk by chunk in
    constant memory (exact counts, shares and extremes; quantiles within 0.005° read from
    0.01° bins; see the README, "Sweeps, mining and margin matching"); the numbers are bitwise
    the same whatever the chunk size, the devices and the processes. The summary holds,
    per dimension, that summary, and a provenance record (command line, seed, versions,
    devices, git revision, parameters, time per dimension).

    With ``out``, a checkpoint ``out/checkpoint.npz`` is written after a chunk when
    ``checkpoint_seconds`` have passed since the last one (0: after every chunk) and after
    each dimension; ``resume=True`` continues from it (same settings required) to the same
    final numbers as an uninterrupted run. ``save_arrays`` also writes every configuration
    (``arrays_d{D}.npz``): memory then grows with ``samples``, and a resume restarts the
    unfinished dimension. With several processes (:func:`geotrip.init_distributed`), every
    process runs this call; only process 0 writes.

    Margins are matched by default: ``margins=(m_A, None)`` derives B's margin from A's
    with :func:`geotrip.match_margin` by rule ``match`` (default ``"slope"``: ``chord_sq``
    0.2 ↔ ``geodesic`` 0.1), so the sweep does not compare margins in different units;
    ``margins=(m_A, m_B)`` uses both as given (``summary["margin_note"]`` then says when
    their units differ). ``"active_share"`` matches on uniform triplets of the first
    dimension.

    The ``clustered`` family yields every valid mined triplet of each generated batch:
    ``samples`` counts batches (configurations), every valid triplet counts once (a batch
    weighs its number of valid triplets; ``summary["weighting"]`` says so), each dimension
    reports ``num`` (batches), ``triplets`` (valid triplets) and ``empty`` (batches
    without one), and ``chunk_size`` counts triplet slots per compiled call
    (``chunk_size // k`` batches, rounded up to whole tiles of 64).

    Args:
      margins: ``(m_A, m_B)``, ``m_B`` may be ``None`` (matched by ``match``).
      match: a rule of :data:`geotrip.MATCHING_RULES` for ``m_B = None``.
      on_chunk: called as ``on_chunk(dim, configurations done, samples)`` after each chunk.

    Returns:
      The summary dict (also written to ``out/summary.json`` when ``out`` is given).
    """
    from .._distributed import is_writer
    from .._provenance import provenance

    if not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    merged = _family_params(family, params)
    key = jax.random.key(seed)
    dims = [int(d) for d in dims]
    if not dims:
        raise ValueError("dims must name at least one dimension")
    margins, rule, note = resolve_margins(distances, margins, match=match, dim=dims[0])
    summary = _header(family, merged, distances, margins, soft, samples, seed)
    summary["margin_rule"], summary["margin_note"] = rule, note
    settings = _settings(summary, dims, method, dtype)
    outdir = Path(out) if out is not None else None
    writer = outdir is not None and is_writer()
    if writer:
        outdir.mkdir(parents=True, exist_ok=True)
    start = _resume_point(outdir, settings, summary) if resume else None
    for d in dims:
        if str(int(d)) in summary["by_dim"]:
            continue  # finished before the interruption
        fn = _metric(
            family,
            int(d),
            str(float_dtype(dtype)),
            json.dumps(params or {}, sort_keys=True, default=str),
            tuple(get_distance(x) for x in distances),
            tuple(float(m) for m in margins),
            bool(soft),
            method,
        )
        per = _triplets_per_config(fn)
        if per > 1:
            summary["samples_unit"] = "batch"
            summary["weighting"] = _WEIGHTING
        run = _DimRun(int(d), samples, key, max(1, chunk_size // per), save_arrays, start)
        run.unit = "batch" if per > 1 else "config"
        start = None
        run.execute(
            fn,
            progress=progress,
            on_chunk=on_chunk,
            checkpoint=(
                (lambda st, run=run: _save(outdir, settings, summary, run, st)) if writer else None
            ),
            checkpoint_seconds=checkpoint_seconds,
        )
        summary["by_dim"][str(int(d))] = run.result()
        if writer:
            if save_arrays:
                atomic_savez(outdir / f"arrays_d{int(d)}.npz", **run.arrays())
            write_checkpoint(outdir, {"settings": settings, "by_dim": summary["by_dim"]}, None)
    summary["provenance"] = provenance(
        seed=seed,
        extra={
            "family": family,
            "dims": [int(d) for d in dims],
            "chunk_size": chunk_size,
            "method": method,
            "processes": jax.process_count(),
            "resumed": bool(resume),
        },
    )
    if writer:
        atomic_write_text(
            outdir / "summary.json", json.dumps(summary, indent=2, default=str) + "\n"
        )
    return summary


_WEIGHTING = (
    "every valid mined triplet of each batch counts once (a batch weighs its number of valid "
    "triplets); num counts batches, triplets the valid triplets, empty the batches without one"
)


def _triplets_per_config(fn) -> int:
    """k, the triplets per configuration of a metric that returns a mask ``valid`` of shape
    ``(k,)`` (the clustered family); 1 otherwise."""
    shapes = jax.eval_shape(fn, jax.random.key(0))
    return int(shapes["valid"].shape[0]) if "valid" in shapes else 1


@bounded_cache(16)
def _metric(family, dim, dtype, params_json, distances, margins, soft, method):
    """The per-configuration function of one dimension, cached so that repeated runs (a
    resume in the same process, a notebook) reuse its compilation."""
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(params_json).items()}
    sampler = family_sampler(family, dim=dim, dtype=dtype, **params)
    return triplet_metric(sampler, distances=distances, margins=margins, soft=soft, method=method)


def _settings(summary, dims, method, dtype) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: every setting that changes the numbers."""
    keys = ("family", "distances", "margins", "soft", "params", "samples", "seed")
    return json.loads(
        json.dumps(
            {
                **{k: summary[k] for k in keys},
                "dims": [int(d) for d in dims],
                "method": method,
                "dtype": str(float_dtype(dtype)),
            },
            default=str,
        )
    )


def _resume_point(outdir, settings, summary):
    """Restore finished dimensions into ``summary``; return the running state, if any."""
    if outdir is None:
        raise ValueError("resume needs the output folder (out) that holds the checkpoint")
    ck = read_checkpoint(outdir)
    if ck is None:
        return None  # nothing to resume: start from the beginning
    meta, state = ck
    if meta["settings"] != settings:
        diff = sorted(k for k in settings if meta["settings"].get(k) != settings[k])
        raise ValueError(
            f"the checkpoint in {outdir} was written with other settings ({', '.join(diff)}); "
            "use another --out or rerun without --resume"
        )
    summary["by_dim"].update(meta["by_dim"])
    if state is None:
        return None
    return {"dim": meta["dim"], "done": meta["done"], "seconds": meta["seconds"], "state": state}


def _save(outdir, settings, summary, run, state):
    meta = {
        "settings": settings,
        "by_dim": summary["by_dim"],
        "dim": run.dim,
        "done": run.done,
        "seconds": run.seconds,
    }
    write_checkpoint(outdir, meta, state)


class _DimRun:
    """One dimension of a streaming sweep: chunks in, a running summary out."""

    def __init__(self, dim, samples, key, chunk_size, save_arrays, start):
        self.dim, self.samples, self.save_arrays = dim, samples, save_arrays
        self.key = jax.random.fold_in(key, dim)
        self.chunk_size = chunk_size
        self.unit = "config"
        self.done, self.seconds = 0, 0.0
        self.acc = StreamingSummary()
        self.parts: dict[str, list[np.ndarray]] = {}
        if start is not None and start["dim"] == dim and not save_arrays:
            self.acc = StreamingSummary.from_state(start["state"])
            self.done, self.seconds = int(start["done"]), float(start["seconds"])

    def execute(self, fn, *, progress, on_chunk, checkpoint, checkpoint_seconds):
        bar = self._bar(progress)
        last = time.perf_counter()
        t0 = time.perf_counter() - self.seconds
        chunks = sweep_chunks(
            fn, self.samples, key=self.key, chunk_size=self.chunk_size, begin=self.done
        )
        for begin, out in chunks:
            self.acc.update(out)
            if self.save_arrays:
                for k, v in out.items():
                    self.parts.setdefault(k, []).append(v)
            self.done = begin + len(next(iter(out.values())))
            self.seconds = time.perf_counter() - t0
            if bar is not None:
                bar.update(len(next(iter(out.values()))))
            now = time.perf_counter()
            if checkpoint and not self.save_arrays and now - last >= checkpoint_seconds:
                checkpoint(self.acc.state())
                last = now
            if on_chunk is not None:
                on_chunk(self.dim, self.done, self.samples)
        if bar is not None:
            bar.close()

    def _bar(self, progress):
        n_chunks = -(-(self.samples - self.done) // chunk_size_of(self.samples, self.chunk_size))
        if progress is None:
            progress = n_chunks > 4
        if not progress or jax.process_index() != 0:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=self.samples,
            initial=self.done,
            unit=self.unit,
            unit_scale=True,
            desc=f"sweep d={self.dim}",
        )

    def result(self) -> dict[str, Any]:
        s = self.acc.result()
        s["seconds"] = self.seconds
        s["configs_per_second"] = self.samples / self.seconds if self.seconds > 0 else None
        if "triplets" in s:
            s["triplets_per_second"] = s["triplets"] / self.seconds if self.seconds > 0 else None
        return s

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v, axis=0) for k, v in self.parts.items()}


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
