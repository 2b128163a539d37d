"""Benchmarks run by ``geotrip bench`` (thin runners and committed results live in ``benchmarks/``).

Each suite is a module with ``NAME`` (str), ``DESCRIPTION`` (str) and
``run(*, quick: bool, log: Callable[[str], None]) -> dict`` returning a JSON-ready
dict of measurements. Register a suite by adding its module to :data:`_SUITES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

__all__ = ["load_suites", "run_suites"]

# One line per benchmark suite module.
_SUITES = (
    "geotrip.benchmarks._angles",
    "geotrip.benchmarks._training",
    "geotrip.benchmarks._latency",
    "geotrip.benchmarks._analyze",
)


def load_suites() -> dict:
    """Import every suite module and return ``{NAME: module}``."""
    out = {}
    for mod_name in _SUITES:
        mod = importlib.import_module(mod_name)
        out[mod.NAME] = mod
    return out


def run_suites(names=None, *, quick: bool = False, log: Callable[[str], None] = print) -> dict:
    """Run the named suites (default: all) and return ``{name: results}``.

    Raises:
      ValueError: for an unknown suite name (the message lists the valid ones).
    """
    suites = load_suites()
    names = list(suites) if not names else list(names)
    unknown = [n for n in names if n not in suites]
    if unknown:
        raise ValueError(
            f"unknown benchmark suite(s) {', '.join(unknown)}; valid: {', '.join(suites)}"
        )
    return {n: suites[n].run(quick=quick, log=log) for n in names}
