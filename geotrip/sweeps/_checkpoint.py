"""Checkpoints of a streaming sweep: settings, finished dimensions, and the running summary of
the current one, written atomically (temporary file, then rename) so that an interruption at
any moment (SIGINT, kill) leaves either the previous or the new checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CHECKPOINT", "write_checkpoint", "read_checkpoint"]

CHECKPOINT = "checkpoint.npz"


def _flatten(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split a summary state into JSON (small values) and arrays (histograms)."""
    arrays = {}
    js = {k: v for k, v in state.items() if k != "hists"}
    js["hists"] = {}
    for name, h in state.get("hists", {}).items():
        i = len(arrays) // 2
        arrays[f"bins_{i}"] = h["bins"]
        arrays[f"above_{i}"] = h["above"]
        js["hists"][name] = {k: v for k, v in h.items() if k not in ("bins", "above")}
        js["hists"][name]["_index"] = i
    return js, arrays


def write_checkpoint(outdir: Path, meta: dict[str, Any], state: dict[str, Any] | None) -> None:
    """Write ``outdir/checkpoint.npz`` holding ``meta`` (JSON) and a running summary state."""
    js, arrays = _flatten(state or {})
    payload = json.dumps({"meta": meta, "state": js if state is not None else None}, default=str)
    tmp = outdir / (CHECKPOINT + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, meta=np.asarray(payload), **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, outdir / CHECKPOINT)


def read_checkpoint(outdir: Path) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """``(meta, state)`` from ``outdir/checkpoint.npz``, or ``None`` if there is none."""
    path = outdir / CHECKPOINT
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        payload = json.loads(str(z["meta"]))
        state = payload["state"]
        if state is not None:
            for h in state["hists"].values():
                i = h.pop("_index")
                h["bins"] = z[f"bins_{i}"]
                h["above"] = z[f"above_{i}"]
    return payload["meta"], state
