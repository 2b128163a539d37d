"""Provenance records written beside every figure, table and certificate.

A provenance record is a plain JSON-serialisable ``dict`` holding what a reader needs to
reproduce a result: the command line, the seed, the package versions, the devices JAX
used and the revision of the code. It holds nothing that changes from one run of the same
code to the next (no time stamp, no host name, no CPU count, no absolute path), so a
committed output that a rerun reproduces is rewritten byte for byte and ``git status``
stays clean. Those details go to a run log instead (``run_details``; ``geotrip
figures`` writes ``OUT/run_log.json``, which git ignores).

The code revision (``git_revision``) is that of the *package source*, not of the
checkout: the last commit that touched ``geotrip/`` or ``pyproject.toml`` (committing
figures or documentation does not change it), whether those paths differ from that commit
(``dirty``), and a digest of their content (the same code gives the same digest, committed
or not).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from ._io import atomic_write_text

__all__ = ["provenance", "write_provenance", "git_revision", "portable_command", "run_details"]

_PACKAGES = ("geotrip", "jax", "jaxlib", "numpy", "scipy", "matplotlib", "optax")
_ROOT = Path(__file__).resolve().parent.parent
_PKG = Path(__file__).resolve().parent
# The paths whose content is "the code" of a result: the package and its build metadata.
_SOURCE_PATHS = ("geotrip", "pyproject.toml")


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(_ROOT), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout


def _source_files() -> list[Path]:
    """The package's source files, sorted: git's tracked and unignored files under
    ``geotrip/`` and ``pyproject.toml`` in a work tree, else every ``*.py`` of the package."""
    try:
        listed = _git("ls-files", "-co", "--exclude-standard", "--", *_SOURCE_PATHS)
        files = [_ROOT / f for f in listed.splitlines() if f]
    except (OSError, subprocess.SubprocessError):
        files = list(_PKG.rglob("*.py"))
    return sorted(f for f in files if f.is_file())


def source_digest() -> str:
    """SHA-256 (first 16 hex digits) over the relative paths and bytes of the package source.

    Stable when the code did not change, whether committed or not; differs after any
    edit of a source file (including files git does not track yet, unless ignored).
    """
    h = hashlib.sha256()
    base = _ROOT if (_ROOT / "pyproject.toml").exists() else _PKG.parent
    for f in _source_files():
        try:
            rel = f.relative_to(base).as_posix()
        except ValueError:
            rel = f.name
        h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def git_revision() -> dict[str, Any]:
    """The revision of the geotrip package source.

    Returns:
      ``{"revision": R, "dirty": D, "source_digest": S}``: ``R`` is the last commit that
      touched ``geotrip/`` or ``pyproject.toml`` (not ``HEAD``: a commit of figures, data or
      documentation leaves it unchanged); ``D`` is whether those paths differ from ``HEAD``
      (modified, staged or untracked unignored files); ``S`` is ``source_digest()``.
      ``R`` and ``D`` are ``None`` when the code is not in a git work tree (an installed
      wheel, say).
    """
    digest = source_digest()
    try:
        rev = _git("log", "-1", "--format=%H", "--", *_SOURCE_PATHS).strip() or None
        status = _git("status", "--porcelain", "--", *_SOURCE_PATHS).strip()
        return {"revision": rev, "dirty": bool(status), "source_digest": digest}
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None, "source_digest": digest}


def portable_command(argv: list[str]) -> list[str]:
    """The command line with no absolute path of this machine in it.

    The program becomes its base name (``/home/u/.venv/bin/geotrip`` -> ``geotrip``;
    ``python -m geotrip`` -> ``geotrip``) and arguments that are absolute paths inside
    the repository become relative to its root; other absolute paths keep only their
    base name. Committed provenance
    then changes only when the command really changed.
    """
    out = []
    for i, arg in enumerate(argv):
        arg = str(arg)
        if i == 0:
            name = os.path.basename(arg) or arg
            # `python -m geotrip ...` runs geotrip/__main__.py: the same command as `geotrip ...`
            out.append(
                "geotrip" if Path(arg).parent.name == "geotrip" and name == "__main__.py" else name
            )
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
        # XLA's flags change compiled programs, hence round-off (e.g. the tests' lower
        # backend optimisation level): part of what reproduces a result
        "xla_flags": os.environ.get("XLA_FLAGS", "").strip(),
    }


def provenance(
    *,
    seed: int | None = None,
    command: list[str] | None = None,
    extra: Mapping[str, Any] | None = None,
    packages: tuple[str, ...] = (),
    run: bool = False,
) -> dict[str, Any]:
    """A provenance record for a result: the same for every run of the same code and command.

    No time stamp, host, CPU count or absolute path is recorded (module docstring), unless
    ``run=True`` adds them under ``"run"`` (for records that are about one run, such as
    benchmark timings).

    Args:
      seed: the PRNG seed the result was drawn with (``None`` for deterministic results).
      command: the command line; defaults to ``sys.argv`` (made portable:
        ``portable_command``).
      extra: further fields (parameters of the run), merged in under ``"parameters"``.
      packages: further package names whose versions to record (e.g. ``("torch",)``).
      run: also record ``run_details`` under ``"run"``.

    Returns:
      A JSON-serialisable dict with keys ``command``, ``seed``, ``versions``, ``device``
      (backend, device kinds and count, float64 on or off, process count, ``XLA_FLAGS``),
      ``git``
      (``git_revision``), ``platform`` (operating system and machine architecture)
      and ``parameters`` (and ``run`` if asked).
    """
    record = {
        "command": portable_command(list(sys.argv if command is None else command)),
        "seed": seed,
        "versions": _versions(packages),
        "device": _devices(),
        "git": git_revision(),
        "platform": {"system": platform.system(), "machine": platform.machine()},
        "parameters": dict(extra or {}),
    }
    if run:
        record["run"] = run_details()
    return record


def run_details(*, command: list[str] | None = None) -> dict[str, Any]:
    """What changes from one run to the next: for run logs, never for committed outputs.

    Returns:
      ``time_utc`` (ISO 8601, seconds), ``host``, ``cpu_count``, ``cwd`` and ``argv``
      (absolute, as given), ``head`` (the checkout's ``HEAD`` commit, or ``None``), and the
      thread-related environment (``XLA_FLAGS``, ``OMP_NUM_THREADS``, ...) when set.
    """
    try:
        head = _git("rev-parse", "HEAD").strip() or None
    except (OSError, subprocess.SubprocessError):
        head = None
    env_keys = ("XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "JAX_PLATFORMS")
    return {
        "time_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "cwd": os.getcwd(),
        "argv": [str(a) for a in (sys.argv if command is None else command)],
        "head": head,
        "env": {k: os.environ[k] for k in env_keys if k in os.environ},
    }


def write_provenance(path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write a provenance record as indented JSON to ``path`` and return the path."""
    path = Path(path)
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return path
