"""Provenance records written beside every figure, table and certificate.

A provenance record is a plain JSON-serialisable ``dict`` holding what a reader
needs to reproduce a result: the command line, the seed, the package versions,
the devices JAX used, the git revision of the code, and a UTC time stamp.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from ._io import atomic_write_text

__all__ = ["provenance", "write_provenance", "git_revision", "portable_command"]

_PACKAGES = ("geotrip", "jax", "jaxlib", "numpy", "scipy", "matplotlib", "optax")


def git_revision() -> dict[str, Any]:
    """The git revision of the geotrip source tree, and whether it has uncommitted changes.

    Returns ``{"revision": None, "dirty": None}`` when the code is not in a git
    work tree (an installed wheel, say).
    """
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return {"revision": rev, "dirty": bool(status)}
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}


_ROOT = Path(__file__).resolve().parent.parent


def portable_command(argv: list[str]) -> list[str]:
    """The command line with no absolute path of this machine in it.

    The program becomes its base name (``/home/u/.venv/bin/geotrip`` -> ``geotrip``)
    and arguments that are absolute paths inside the repository become relative to
    its root; other absolute paths keep only their base name. Committed provenance
    then changes only when the command really changed.
    """
    out = []
    for i, arg in enumerate(argv):
        arg = str(arg)
        if i == 0:
            out.append(os.path.basename(arg) or arg)
            continue
        head, sep, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        if not sep:
            head, value = "", arg
        if os.path.isabs(value):
            path = Path(value).resolve()
            try:
                value = path.relative_to(_ROOT).as_posix()
            except ValueError:
                value = path.name
        out.append(f"{head}{sep}{value}" if sep else value)
    return out


def _versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES + tuple(extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _devices() -> dict[str, Any]:
    import jax

    devs = jax.devices()
    return {
        "backend": jax.default_backend(),
        "count": len(devs),
        "kinds": sorted({getattr(d, "device_kind", str(d)) for d in devs}),
        "x64": bool(jax.config.jax_enable_x64),
        "process_count": jax.process_count(),
    }


def provenance(
    *,
    seed: int | None = None,
    command: list[str] | None = None,
    extra: Mapping[str, Any] | None = None,
    packages: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A provenance record for a result (no absolute path of the machine is recorded).

    Args:
      seed: the PRNG seed the result was drawn with (``None`` for deterministic results).
      command: the command line; defaults to ``sys.argv``.
      extra: further fields (parameters of the run), merged in under ``"parameters"``.
      packages: further package names whose versions to record (e.g. ``("torch",)``).

    Returns:
      A JSON-serialisable dict with keys ``command``, ``seed``, ``versions``,
      ``device``, ``git``, ``platform``, ``time_utc`` and ``parameters``.
    """
    return {
        "command": portable_command(list(sys.argv if command is None else command)),
        "seed": seed,
        "versions": _versions(packages),
        "device": _devices(),
        "git": git_revision(),
        "platform": {
            "system": platform.system(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "time_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "parameters": dict(extra or {}),
    }


def write_provenance(path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write a provenance record as indented JSON to ``path`` and return the path."""
    path = Path(path)
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return path
