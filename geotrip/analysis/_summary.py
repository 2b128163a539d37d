"""Summaries of the report: quantiles, pair-angle statistics, per-strategy shares."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._triplets import StrategyAccumulator

__all__ = [
    "QUANTILES",
    "JOINT_KEYS",
    "quantiles",
    "pair_angles",
    "summarize_strategy",
    "norm_summary",
]

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
JOINT_KEYS = ("riemannian/joint", "raw/joint")


def quantiles(v, *, scale: float = 1.0) -> dict[str, Any]:
    v = np.asarray(v, dtype=np.float64)
    v = v[~np.isnan(v)]
    out: dict[str, Any] = {"n": int(v.size)}
    if v.size == 0:
        return out | {f"p{round(q * 100)}": None for q in QUANTILES} | {"mean": None}
    qs = np.quantile(v, QUANTILES, method="inverted_cdf") * scale
    out |= {f"p{round(q * 100)}": float(x) for q, x in zip(QUANTILES, qs, strict=True)}
    fin = v[np.isfinite(v)]
    out["mean"] = float(fin.mean() * scale) if fin.size else None
    out["min"], out["max"] = float(v.min() * scale), float(v.max() * scale)
    return out


def pair_angles(theta: np.ndarray, codes: np.ndarray) -> dict[str, Any]:
    upper = np.triu(np.ones(theta.shape, dtype=bool), 1)
    t = theta[upper]
    same = (codes[:, None] == codes[None, :])[upper]
    del upper
    edges = np.linspace(0.0, 180.0, 91)
    out: dict[str, Any] = {"histogram_deg": {"edges": edges}}
    for name, sel in (("within_class", same), ("between_class", ~same)):
        out[name] = {
            "radians": quantiles(t[sel]),
            "degrees": quantiles(t[sel], scale=180 / math.pi),
        }
        out["histogram_deg"][name] = np.histogram(np.degrees(t[sel]), bins=edges)[0]
    return out


def summarize_strategy(acc: StrategyAccumulator, mode: str) -> dict[str, Any]:
    arr = acc.arrays()
    c = acc.count

    def share(v):
        return v / c if c else None

    out: dict[str, Any] = {"count": c}
    for k in ("A", "B_same_number", "B_matched"):
        out[f"active_{k}"] = share(acc.active.get(k, 0))
    for tag in ("same_number", "matched"):
        out[f"one_only_{tag}"] = share(acc.one_only.get(tag, 0))
    out["counts"] = {f"active_{k}": v for k, v in acc.active.items()} | {
        f"one_only_{k}": v for k, v in acc.one_only.items()
    }
    out["sampled_triplets"] = int(arr["hard"].size) if "hard" in arr else 0
    deg = 180 / math.pi
    out["gradient_angles_deg"] = {
        tag: {k: quantiles(arr.get(f"{tag}:{k}", []), scale=deg) for k in JOINT_KEYS}
        for tag in ("same_number", "matched")
    }
    hard = arr.get("hard", np.zeros(0)) > 0
    pp: dict[str, Any] = {"hard_share": float(hard.mean()) if hard.size else None}
    for key in ("A", "B"):
        r = arr.get(f"ratio_{key}", np.zeros(0))
        pp[key] = quantiles(r)
        pp[f"push_wins_hard_{key}"] = float((r[hard] > 1).mean()) if hard.any() else None
    out["push_pull_ratio"] = pp
    out["batch_gradient_angle_deg"] = {}
    for tag, vals in acc.batch_angles.items():
        v = np.asarray(vals, dtype=np.float64)
        if mode == "all":
            out["batch_gradient_angle_deg"][tag] = None if np.isnan(v[0]) else float(v[0] * deg)
        else:
            out["batch_gradient_angle_deg"][tag] = quantiles(v, scale=deg)
    return out


def norm_summary(v: np.ndarray) -> dict[str, float]:
    return {
        "min": float(v.min()),
        "mean": float(v.mean()),
        "max": float(v.max()),
        "p50": float(np.median(v)),
    }
