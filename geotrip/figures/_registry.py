"""Registry of the paper's figures and the helper that writes one figure's files.

A figure is a function ``make(*, out_dir: Path, seed: int, quick: bool) -> list[Path]``
registered with :func:`register_figure`. It computes its data with functions the
library exports, plots it, and calls :func:`save_figure`, which writes
``NAME.pdf``, ``NAME.png``, ``NAME.npz`` (the plotted data) and
``NAME.provenance.json`` (command, seed, versions, device, git revision).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_open, atomic_savefig, atomic_savez
from .._provenance import provenance, write_provenance

__all__ = [
    "FigureSpec",
    "FIGURES",
    "register_figure",
    "save_figure",
    "save_table",
    "progress",
    "show_bars",
]


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    name: str
    make: Callable[..., list[Path]]
    description: str
    group: str


FIGURES: dict[str, FigureSpec] = {}

# Where progress() goes while make_figures runs a figure (one log line each); else nowhere.
_PROGRESS_HOOK: list[Callable[[str], None] | None] = [None]


def progress(message: str) -> None:
    """Report progress inside a long figure: a line of ``make_figures``' log, else nothing."""
    hook = _PROGRESS_HOOK[0]
    if hook is not None:
        hook(message)


def show_bars() -> bool:
    """Whether a figure should show the tqdm bars of the searches and training it runs: when
    ``make_figures`` runs it and standard error is a terminal (bars change no result)."""
    import sys

    return _PROGRESS_HOOK[0] is not None and sys.stderr.isatty()


def register_figure(name: str, *, description: str, group: str = "core"):
    """Decorator registering a figure-making function under ``name``."""

    def deco(fn):
        if name in FIGURES:
            raise ValueError(f"figure {name!r} registered twice")
        FIGURES[name] = FigureSpec(name, fn, description, group)
        return fn

    return deco


def save_figure(
    fig,
    out_dir: str | Path,
    name: str,
    *,
    data: Mapping[str, Any],
    seed: int | None,
    parameters: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``fig`` as PDF and PNG with its data (npz) and provenance (json).

    Returns the list of written paths.
    """
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        out / f"{name}.pdf",
        out / f"{name}.png",
        out / f"{name}.npz",
        out / f"{name}.provenance.json",
    ]
    atomic_savefig(fig, paths[0], bbox_inches="tight", metadata={"CreationDate": None})
    atomic_savefig(fig, paths[1], bbox_inches="tight", dpi=150)
    plt.close(fig)
    atomic_savez(paths[2], **{k: np.asarray(v) for k, v in data.items()})
    write_provenance(
        paths[3], provenance(seed=seed, extra={"figure": name, **dict(parameters or {})})
    )
    return paths


def save_table(
    out_dir: str | Path,
    name: str,
    rows: list[Mapping[str, Any]],
    *,
    seed: int | None,
    parameters: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write a table as CSV with a provenance json beside it."""
    import csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.csv"
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    prov = write_provenance(
        out / f"{name}.provenance.json",
        provenance(seed=seed, extra={"table": name, **dict(parameters or {})}),
    )
    return [path, prov]
