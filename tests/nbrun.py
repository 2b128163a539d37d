"""Execute a notebook of ``notebooks/`` with nbclient (shared by the notebook tests)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_notebook(name: str, *, timeout: int = 600, env: dict[str, str] | None = None):
    """Run ``notebooks/NAME`` top to bottom in a fresh kernel; raise on any cell error.

    Environment variables in ``env`` (e.g. ``GEOTRIP_NOTEBOOK_QUICK=1`` for small
    budgets) are set for the kernel. Returns the executed notebook.
    """
    import nbformat
    from nbclient import NotebookClient

    path = ROOT / "notebooks" / name
    nb = nbformat.read(path, as_version=4)
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb
