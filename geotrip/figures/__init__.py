"""The paper's figures: thin plotting code over functions geotrip exports.

Each module below registers its figures in :data:`FIGURES` on import. To add a
figure, write a module ``_NAME.py`` that uses :func:`register_figure` and
:func:`save_figure`, and add it to ``_FIGURE_MODULES``.
"""

from __future__ import annotations

import importlib

from ._registry import FIGURES, FigureSpec, register_figure, save_figure, save_table

__all__ = [
    "FIGURES",
    "FigureSpec",
    "register_figure",
    "save_figure",
    "save_table",
    "load_all",
    "angle_map_data",
    "plot_collapse",
]

# Plot-data and plotting helpers that notebooks reuse, imported on first use.
_LAZY = {
    "angle_map_data": "geotrip.figures._core",
    "plot_collapse": "geotrip.figures._collapse",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'geotrip.figures' has no attribute {name!r}")


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
