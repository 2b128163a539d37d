"""The paper's figures: thin plotting code over functions geotrip exports.

Each module below registers its figures in :data:`FIGURES` on import. To add a
figure, write a module ``_NAME.py`` that uses :func:`register_figure` and
:func:`save_figure`, and add it to ``_FIGURE_MODULES``.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .._api import lazy_exports as _lazy_exports
from .._io import atomic_write_text
from .._provenance import run_details
from . import _registry
from ._registry import FIGURES, FigureSpec, register_figure, save_figure, save_table

__all__ = [
    "FIGURES",
    "FigureSpec",
    "register_figure",
    "save_figure",
    "save_table",
    "load_all",
    "make_figures",
    "angle_map_data",
    "plot_collapse",
]

# Plot-data and plotting helpers that notebooks reuse, imported on first use.
_LAZY = {
    "angle_map_data": "geotrip.figures._core",
    "plot_collapse": "geotrip.figures._collapse",
}
__getattr__ = _lazy_exports(__name__, _LAZY)[0]


# One line per figure module (one per issue/topic); keep this list sorted by layer.
_FIGURE_MODULES = (
    "geotrip.figures._core",
    "geotrip.figures._sweeps",
    "geotrip.figures._counterexamples",
    "geotrip.figures._collapse",
)


def load_all() -> dict[str, FigureSpec]:
    """Import every figure module and return the registry."""
    for mod in _FIGURE_MODULES:
        importlib.import_module(mod)
    return FIGURES


def _rss_mb() -> tuple[float | None, float]:
    """(current, peak) resident memory of this process in MB (current: Linux only)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    try:
        with open("/proc/self/statm") as fh:
            current = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        current = None
    return current, peak


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) so far."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _libc_malloc_trim():
    """glibc's ``malloc_trim`` (returns freed heap pages to the system), or None elsewhere."""
    try:
        fn = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


class _Releaser:
    """Returns freed heap memory to the system while figures run (glibc only).

    XLA's compiler and runtime free most of what they allocate, but glibc keeps the freed
    pages of its per-thread arenas: without this, a full ``geotrip figures`` held 3.6 GB
    resident of which about 2 GB was free heap (``malloc_trim`` dropped a process holding
    2.6 GB after ``counterexample_angles`` to 0.6 GB). A daemon thread calls
    ``malloc_trim(0)`` every ``interval`` seconds, and :meth:`release` once between figures
    together with ``jax.clear_caches()`` and a garbage collection. Changes no result.
    """

    def __init__(self, interval: float = 1.0):
        self.figure_peak_mb = 0.0  # largest resident size sampled since the caller reset it
        self.inside = None  # the running figure's _Inside (heartbeat lines), if any
        self._trim = _libc_malloc_trim()
        self._stop = threading.Event()
        self._thread = None
        if interval > 0:
            self._thread = threading.Thread(
                target=self._loop, args=(interval,), name="geotrip-malloc-trim", daemon=True
            )
            self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            rss = _rss_mb()[0] or 0.0
            self.figure_peak_mb = max(self.figure_peak_mb, rss)
            if self._trim is not None:
                self._trim(0)
            inside = self.inside
            if inside is not None:
                inside.heartbeat()

    def release(self) -> None:
        import jax

        jax.clear_caches()  # compiled programs of the finished figure (reloaded from disk)
        gc.collect()
        if self._trim is not None:
            self._trim(0)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class _Inside:
    """Where :func:`geotrip.figures._registry.progress` writes while one figure runs; the
    releaser's thread calls :meth:`heartbeat`, which logs a line after ``quiet`` seconds
    without one (a figure that reports nothing itself, e.g. the searches)."""

    def __init__(self, log: Callable[[str], None], prefix: str, quiet: float = 30.0):
        self.log, self.prefix, self.quiet = log, prefix, quiet
        self.t0 = self.last = time.perf_counter()

    def __call__(self, msg: str) -> None:
        self.last = time.perf_counter()
        self.log(f"{self.prefix}: {msg} ({self.last - self.t0:.1f} s)")

    def heartbeat(self) -> None:
        if time.perf_counter() - self.last >= self.quiet:
            rss = _rss_mb()[0]
            self(f"running{'' if rss is None else f', {rss:.0f} MB resident'}")


def make_figures(
    names: Sequence[str] | None = None,
    *,
    out_dir: str | Path,
    seed: int = 0,
    quick: bool = False,
    log: Callable[[str], None] = lambda s: print(s, flush=True),
) -> list[dict]:
    """Make the named figures (default: all) one after another, reporting progress.

    Logs one line when each figure starts, lines from inside the long ones
    (:func:`geotrip.figures._registry.progress`; tqdm bars of the searches and training when
    standard error is a terminal; a heartbeat line after 30 s without one), and one when
    it ends (files written, wall and
    CPU seconds, resident memory after the release, the figure's peak sampled every second
    and the process's peak so far), and releases each figure's memory (matplotlib figures,
    JAX's compiled programs, Python garbage, freed heap pages: :class:`_Releaser`) before
    the next one starts. The run's
    details (time, host, CPU count, absolute paths, the records below) go to
    ``out_dir/run_log.json`` (git-ignored), never into the figures' provenance, so a
    rerun that reproduces the data leaves the committed files byte for byte unchanged.

    Returns:
      One record per figure: ``name``, ``files``, ``seconds``, ``cpu_seconds``, ``rss_mb``
      (after the release), ``figure_peak_rss_mb``, ``peak_rss_mb`` (the process's so far).

    Raises:
      ValueError: for an unknown figure name (the message lists the valid ones).
    """
    import matplotlib.pyplot as plt

    figs = load_all()
    names = list(figs) if names is None else list(names)
    unknown = [n for n in names if n not in figs]
    if unknown:
        raise ValueError(f"unknown figure(s) {', '.join(unknown)}; valid: {', '.join(figs)}")
    records = []
    t_all = time.perf_counter()
    releaser = _Releaser()
    try:
        for i, name in enumerate(names, 1):
            log(f"[{i}/{len(names)}] {name}: started")
            t0, c0 = time.perf_counter(), _cpu_seconds()
            releaser.figure_peak_mb = 0.0
            inside = _Inside(log, f"[{i}/{len(names)}] {name}")
            _registry._PROGRESS_HOOK[0] = releaser.inside = inside
            try:
                paths = figs[name].make(out_dir=Path(out_dir), seed=seed, quick=quick)
            finally:
                _registry._PROGRESS_HOOK[0] = releaser.inside = None
            seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
            plt.close("all")
            fig_peak = max(releaser.figure_peak_mb, _rss_mb()[0] or 0.0)
            releaser.release()
            rss, peak = _rss_mb()
            now = "" if rss is None else f"{rss:.0f} MB resident after release, "
            log(
                f"[{i}/{len(names)}] {name}: {len(paths)} files in {out_dir} ({seconds:.1f} s, "
                f"{cpu:.1f} s CPU; {now}figure peak {fig_peak:.0f} MB, process peak "
                f"{peak:.0f} MB)"
            )
            records.append(
                {
                    "name": name,
                    "files": len(paths),
                    "seconds": seconds,
                    "cpu_seconds": cpu,
                    "rss_mb": rss,
                    "figure_peak_rss_mb": fig_peak,
                    "peak_rss_mb": peak,
                }
            )
    finally:
        releaser.close()
    total = time.perf_counter() - t_all
    log(f"{len(names)} figure(s) in {total:.1f} s")
    run_log = {
        "run": run_details(),
        "figures": records,
        "seconds": total,
        "seed": seed,
        "quick": quick,
        "out_dir": str(Path(out_dir).resolve()),
    }
    atomic_write_text(Path(out_dir) / "run_log.json", json.dumps(run_log, indent=2) + "\n")
    return records
