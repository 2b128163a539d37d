r"""Run folders that resume safely: the settings that change the numbers are recorded, and
a resume with other settings is refused.

A collapse run folder holds ``done.json``::

    {"settings": {...}, "cells": [CELL, ...], "runs_csv_bytes": N}

``settings`` are everything that changes the rows (the sweep spec, with its seed count,
the first seed, the float dtype); ``cells`` the finished cells, in order; ``runs_csv_bytes``
the length of ``runs.csv`` once the last finished cell's rows were appended (and fsync'ed).
``done.json`` is written atomically *after* the rows, so a crash part-way through appending
leaves bytes past ``runs_csv_bytes`` (a half row, or rows of an unfinished cell): a resume
cuts ``runs.csv`` back to ``runs_csv_bytes`` before appending, and no reader sees them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._distributed import allgather_objects
from .._io import atomic_write_text

__all__ = [
    "RunFolderError",
    "settings_differences",
    "open_run",
    "open_folder",
    "record_cells",
    "describe_differences",
]

DONE = "done.json"
RUNS = "runs.csv"


class RunFolderError(ValueError):
    """A run folder that cannot be resumed with these settings (start afresh instead), or
    that holds another command's outputs.

    Attributes:
      folder: the run folder.
      what: what it holds, e.g. ``"a collapse run with other settings (spec.n_seeds: 2
        recorded, 3 now)"``.
      differences: ``[(setting, recorded, requested), ...]`` (empty when the folder records
        no settings or is damaged).
      fresh_start_helps: whether starting afresh (deleting the old rows) resolves it.
    """

    def __init__(
        self,
        folder,
        what: str,
        differences: Sequence[tuple[str, Any, Any]] = (),
        fresh_start_helps: bool = True,
    ):
        self.folder, self.what, self.differences = Path(folder), what, list(differences)
        self.fresh_start_helps = fresh_start_helps
        hint = (
            "resuming would mix its rows with these settings' (start afresh, which deletes "
            "its rows, or use another folder)"
            if fresh_start_helps
            else "use another folder"
        )
        super().__init__(f"{folder} holds {what}; {hint}")

    def __reduce__(self):  # travels pickled between processes
        args = (self.folder, self.what, self.differences, self.fresh_start_helps)
        return type(self), args


_FIRST = ("spec.name", "spec.n_seeds", "seed0", "dtype")


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_differences(differences, names: Mapping[str, str] | None = None) -> str:
    """``"NAME: RECORDED recorded, REQUESTED now; ..."`` for the first four differences,
    the main settings (preset name, seed count, first seed, dtype) first; ``names`` maps
    a setting to the name shown (e.g. ``{"spec.n_seeds": "--seeds"}``)."""
    names = names or {}
    diff = sorted(differences, key=lambda d: (_FIRST + (d[0],)).index(d[0]))
    shown = "; ".join(
        f"{names.get(n, n)}: {_short(a)} recorded, {_short(b)} now" for n, a, b in diff[:4]
    )
    return shown + (f" (and {len(diff) - 4} more)" if len(diff) > 4 else "")


def settings_differences(
    recorded: Mapping[str, Any], requested: Mapping[str, Any], prefix: str = ""
) -> list[tuple[str, Any, Any]]:
    """The settings that differ, as ``(dotted name, recorded, requested)``, sorted by name.

    Nested mappings (the spec) are compared key by key, so a different seed count shows
    as ``spec.n_seeds``, not as the whole spec; a key present on one side only differs
    (its missing side is ``None``).

    >>> settings_differences(
    ...     {"seed0": 0, "spec": {"n_seeds": 2, "name": "tiny"}},
    ...     {"seed0": 0, "spec": {"n_seeds": 3, "name": "tiny"}},
    ... )
    [('spec.n_seeds', 2, 3)]
    """
    out = []
    for key in sorted(set(recorded) | set(requested)):
        a, b = recorded.get(key), requested.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += settings_differences(a, b, prefix=name + ".")
        elif a != b:
            out.append((name, a, b))
    return out


def _clear(out: Path, outputs: Sequence[str]) -> None:
    """Delete a previous run's outputs (known names or patterns) and its cell histories."""
    for pattern in (DONE, RUNS, *outputs, "history/*.npz"):
        for p in out.glob(pattern):
            if p.is_file():
                p.unlink()


def open_run(
    out: Path,
    settings: Mapping[str, Any],
    *,
    resume: bool,
    outputs: Sequence[str] = (),
    foreign: Sequence[str] = (),
    distributed: bool = False,
) -> list[str]:
    """:func:`open_folder` by process 0, which creates ``out/history``; in a run of several
    processes (``distributed``) the others get its finished cells, or its error, through a
    collective (their ``out`` may be another folder, or on another host) and touch no file."""
    import jax

    writer = not distributed or jax.process_index() == 0
    got = None
    if writer:
        try:
            (out / "history").mkdir(parents=True, exist_ok=True)
            got = open_folder(out, settings, resume=resume, outputs=outputs, foreign=foreign)
        except RunFolderError as exc:
            got = exc
    if distributed:
        got = allgather_objects(got)[0]
    if isinstance(got, RunFolderError):
        raise got
    return got


def open_folder(
    out: Path,
    settings: Mapping[str, Any],
    *,
    resume: bool,
    outputs: Sequence[str] = (),
    foreign: Sequence[str] = (),
) -> list[str]:
    """Prepare ``out`` for a run with ``settings``; returns the cells already finished.

    A folder holding one of the files ``foreign`` (another command's outputs, e.g.
    ``compare.json``) is refused, resume or not: its provenance would be overwritten.

    With ``resume`` and a ``done.json`` recording the same ``settings``: the finished
    cells, ``runs.csv`` cut back to the recorded length (the bytes of an interrupted
    append dropped). Without ``done.json`` (a new folder, or a run interrupted before
    its first cell finished) or without ``resume``: the previous outputs (``done.json``,
    ``runs.csv``, the names or glob patterns ``outputs``, ``history/*.npz``) are deleted
    and ``[]`` returned.

    Raises:
      RunFolderError: with ``resume``, a ``done.json`` recording other settings (the
        message names them), none (a folder of an older geotrip), or a ``runs.csv``
        shorter than recorded (damaged).
    """
    done_path, runs_path = out / DONE, out / RUNS
    other = [name for name in foreign if (out / name).exists()]
    if other:
        what = f"the outputs of another command ({', '.join(other)})"
        raise RunFolderError(out, what, fresh_start_helps=False)
    if resume and done_path.exists():
        record = json.loads(done_path.read_text())
        if "settings" not in record:
            what = "a collapse run without recorded settings (written by an older geotrip)"
            raise RunFolderError(out, what)
        diff = settings_differences(record["settings"], settings)
        if diff:
            what = f"a collapse run with other settings ({describe_differences(diff)})"
            raise RunFolderError(out, what, diff)
        cells = list(record["cells"])
        size = int(record.get("runs_csv_bytes", 0))
        have = runs_path.stat().st_size if runs_path.exists() else 0
        if have < size:
            what = f"a collapse run whose runs.csv is shorter than recorded ({have} < {size} B)"
            raise RunFolderError(out, what)
        if have > size:
            with runs_path.open("r+b") as fh:  # an interrupted append: drop its bytes
                fh.truncate(size)
                fh.flush()
                os.fsync(fh.fileno())
        return cells
    _clear(out, outputs)
    return []


def record_cells(out: Path, settings: Mapping[str, Any], cells: Sequence[str]) -> None:
    """Write ``done.json`` (atomically) after the rows of ``cells`` were appended."""
    runs_path = out / RUNS
    size = runs_path.stat().st_size if runs_path.exists() else 0
    record = {"settings": dict(settings), "cells": list(cells), "runs_csv_bytes": size}
    atomic_write_text(out / DONE, json.dumps(record, indent=2, sort_keys=True) + "\n")
