"""The paper's figures: thin plotting code over functions geotrip exports.

Each module below registers its figures in :data:`FIGURES` on import. To add a
figure, write a module ``_NAME.py`` that uses :func:`register_figure` and
:func:`save_figure`, and add it to ``_FIGURE_MODULES``.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .._api import lazy_exports as _lazy_exports
from .._io import atomic_write_text
from .._provenance import run_details
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


def make_figures(
    names: Sequence[str] | None = None,
    *,
    out_dir: str | Path,
    seed: int = 0,
    quick: bool = False,
    log: Callable[[str], None] = lambda s: print(s, flush=True),
) -> list[dict]:
    """Make the named figures (default: all) one after another, reporting progress.

    Logs one line when each figure starts and one when it ends (files written, seconds,
    resident memory now and the process's peak so far), and releases each figure's
    memory (matplotlib figures, Python garbage) before the next one starts. The run's
    details (time, host, CPU count, absolute paths, the records below) go to
    ``out_dir/run_log.json`` (git-ignored), never into the figures' provenance, so a
    rerun that reproduces the data leaves the committed files byte for byte unchanged.

    Returns:
      One record per figure: ``name``, ``files``, ``seconds``, ``rss_mb``, ``peak_rss_mb``.

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
    for i, name in enumerate(names, 1):
        log(f"[{i}/{len(names)}] {name}: started")
        t0 = time.perf_counter()
        paths = figs[name].make(out_dir=Path(out_dir), seed=seed, quick=quick)
        seconds = time.perf_counter() - t0
        plt.close("all")
        gc.collect()
        rss, peak = _rss_mb()
        now = "" if rss is None else f"{rss:.0f} MB resident, "
        log(
            f"[{i}/{len(names)}] {name}: {len(paths)} files in {out_dir} ({seconds:.1f} s; "
            f"{now}peak {peak:.0f} MB)"
        )
        records.append(
            {
                "name": name,
                "files": len(paths),
                "seconds": seconds,
                "rss_mb": rss,
                "peak_rss_mb": peak,
            }
        )
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
