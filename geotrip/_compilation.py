"""A persistent compilation cache for geotrip's runs (JAX's own, in a per-user folder).

Most of the wall time of a short geotrip run is XLA compilation. JAX can keep compiled
executables on disk and reuse them in later processes (its *persistent compilation
cache*); :func:`enable_compilation_cache` switches it on in a per-user cache folder.
The CLI calls it for every subcommand that sets up JAX (``geotrip verify`` loads no JAX
and is left alone); notebooks call ``gt.enable_compilation_cache()`` once.

Where the cache lives, first match wins:

1. ``GEOTRIP_NO_COMPILATION_CACHE`` set to anything but ``""``, ``0``, ``false``,
   ``no`` or ``off``: no cache (the off switch);
2. the ``path`` argument of :func:`enable_compilation_cache`;
3. ``JAX_COMPILATION_CACHE_DIR`` (JAX's own variable);
4. ``$XDG_CACHE_HOME/geotrip/jax``, else ``~/.cache/geotrip/jax``.

The cache changes no result: a cached executable is the one XLA compiled for the same
program, options and backend (``tests/test_compilation.py`` checks equality of a
warm run with an uncached one). JAX treats the folder as trusted code: do not point it
at a folder that others can write to.

This module imports JAX only inside :func:`enable_compilation_cache`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["compilation_cache_dir", "compilation_cache_disabled", "enable_compilation_cache"]

OFF_SWITCH = "GEOTRIP_NO_COMPILATION_CACHE"
_FALSE = ("", "0", "false", "no", "off")

# Programs compiling faster than this are not written: reading a cache entry costs
# ~1-10 ms, and most of geotrip's many small programs compile in 0.05-0.5 s on a CPU.
MIN_COMPILE_TIME_SECS = 0.05


def compilation_cache_disabled(environ: os._Environ | dict | None = None) -> bool:
    """Whether the off switch ``GEOTRIP_NO_COMPILATION_CACHE`` is set (to a true value)."""
    env = os.environ if environ is None else environ
    return env.get(OFF_SWITCH, "").strip().lower() not in _FALSE


def compilation_cache_dir(environ: os._Environ | dict | None = None) -> Path | None:
    """The folder geotrip's persistent compilation cache uses, or ``None`` when switched off.

    Resolution order: the off switch ``GEOTRIP_NO_COMPILATION_CACHE``, then
    ``JAX_COMPILATION_CACHE_DIR``, then ``$XDG_CACHE_HOME/geotrip/jax`` (when
    ``XDG_CACHE_HOME`` is an absolute path), then ``~/.cache/geotrip/jax``.

    >>> str(compilation_cache_dir({"XDG_CACHE_HOME": "/c"}))
    '/c/geotrip/jax'
    >>> compilation_cache_dir({"GEOTRIP_NO_COMPILATION_CACHE": "1"}) is None
    True
    """
    env = os.environ if environ is None else environ
    if compilation_cache_disabled(env):
        return None
    explicit = env.get("JAX_COMPILATION_CACHE_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "geotrip" / "jax"
    return Path.home() / ".cache" / "geotrip" / "jax"


def enable_compilation_cache(
    path: str | os.PathLike | None = None,
    *,
    min_compile_time_secs: float = MIN_COMPILE_TIME_SECS,
) -> Path | None:
    """Switch on JAX's persistent compilation cache in geotrip's per-user cache folder.

    Compiled programs are then written to disk and reused by later processes, which
    skips most of the compilation time of a repeated run (``geotrip figures``, the
    search, the tests of a notebook). Safe to call more than once, and after other
    computations (a later call with another folder moves the cache there).

    Args:
      path: the cache folder; default: ``compilation_cache_dir()`` of this module.
      min_compile_time_secs: programs that compile faster than this are not written.

    Returns:
      The cache folder, or ``None`` when ``GEOTRIP_NO_COMPILATION_CACHE`` is set (the
      cache is then left as JAX has it: off unless the user configured JAX directly).

    Raises:
      ValueError: if ``min_compile_time_secs`` is negative.
    """
    if min_compile_time_secs < 0:
        raise ValueError(f"min_compile_time_secs must be >= 0, got {min_compile_time_secs}")
    if compilation_cache_disabled():
        return None
    folder = Path(path).expanduser() if path is not None else compilation_cache_dir()
    assert folder is not None
    folder = folder.resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None  # read-only home, say: run uncached rather than fail
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current is not None and Path(current).expanduser().resolve() != folder:
        _reset_jax_cache()
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    # -1: cache entries of every size (JAX's default may pick a file-system minimum).
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return folder


def _reset_jax_cache() -> None:
    """Forget an already-opened cache folder so that the new one is used (JAX internals)."""
    try:
        from jax._src import compilation_cache
    except ImportError:  # pragma: no cover - layout of a future JAX
        return
    reset = getattr(compilation_cache, "reset_cache", None)
    if reset is not None:
        reset()
