"""Bounded, clearable caches for compiled functions.

geotrip keeps jitted closures (objectives, step functions, training programs) keyed by
stable values (names, shapes, numbers), so a second call with the same settings reuses
the compiled program. Every such cache is a :func:`functools.lru_cache` with a finite
``maxsize`` registered here, so :func:`clear_caches` empties all of them at once.
This module imports nothing heavy (``geotrip verify`` must not load JAX).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

__all__ = ["bounded_cache", "clear_caches"]

F = TypeVar("F", bound=Callable)

_REGISTRY: list = []


def bounded_cache(maxsize: int = 32) -> Callable[[F], F]:
    """``functools.lru_cache(maxsize)`` registered for :func:`clear_caches`.

    Arguments of the decorated function must be hashable and stable (strings,
    numbers, tuples, :class:`geotrip.Distance` objects, which hash by identity).
    """
    if not isinstance(maxsize, int) or maxsize <= 0:
        raise ValueError(f"bounded_cache: maxsize must be a positive int, got {maxsize!r}")

    def decorate(fn: F) -> F:
        cached = functools.lru_cache(maxsize=maxsize)(fn)
        _REGISTRY.append(cached)
        return cached  # type: ignore[return-value]

    return decorate


def clear_caches(*, jax: bool = True) -> int:
    """Empty every geotrip cache of compiled functions, and (``jax=True``) JAX's own caches.

    Returns the number of geotrip caches cleared. Useful in long notebook sessions
    (memory) and in benchmarks that measure cold compile times.

    >>> import geotrip as gt
    >>> gt.clear_caches(jax=False) >= 0   # keep JAX's in-memory compilations
    True
    """
    for cached in _REGISTRY:
        cached.cache_clear()
    if jax and "jax" in sys.modules:
        sys.modules["jax"].clear_caches()
    return len(_REGISTRY)
