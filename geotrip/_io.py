"""Atomic file writes shared by every room: a temporary file in the target's folder, then
``os.replace``, so an interruption leaves either the old file or the new one, never half of one.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_text(d / "a.txt", "hello").read_text()
'hello'
>>> sorted(p.name for p in d.iterdir())  # no temporary file left behind
['a.txt']
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_savez",
    "atomic_savefig",
]


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it is flushed,
    synced and renamed onto ``path``; on an exception it is removed and ``path`` is untouched.

    ``mode`` is ``"wb"`` or ``"w"`` (text; ``kwargs`` such as ``newline=""`` pass to ``open``).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes only ('w' or 'wb'), got mode {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a :class:`~pathlib.Path`."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savez(path: str | os.PathLike, *, compressed: bool = True, **arrays: Any) -> Path:
    """``numpy.savez(_compressed)`` to ``path`` atomically (``path`` keeps its own name: no
    ``.npz`` is appended)."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez
    with atomic_open(path, "wb") as f:
        save(f, **arrays)
    return Path(path)


def atomic_savefig(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """``fig.savefig`` to ``path`` atomically; the format comes from the suffix of ``path``."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".") or None)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, **kwargs)
    return path
