r"""Mergeable, bounded-memory summaries of a sweep, accumulated chunk by chunk.

Per angle key (``raw/...``, ``riemannian/...``, radians in, degrees out): the number of
configurations and of defined values, exact counts above 30°, 60°, 90°, the exact minimum
and maximum, a sum for the mean, and a histogram of :data:`FINE_BINS` equal bins on
[0°, 180°] (bin width 0.01°). Quantiles are read from that histogram: each is the
interpolation, as in ``numpy.quantile``, between the midpoints of the bins of the two
order statistics that ``numpy.quantile`` interpolates, so it is within half a bin
(**0.005°**) of the exact sample quantile (and exact at 0 and 1: the minimum and maximum).
``config/...`` keys (angles in radians on :math:`[0, \pi]`) use the same bins on
:math:`[0, \pi]` (error at most :math:`\pi/36000` rad); boolean keys count their share.

A configuration may hold several triplets (``(n, k)`` arrays, the ``clustered`` family's
mined batches) with a mask under the key ``valid``: then every value counts where its
triplet is valid, each valid triplet once (counts, shares, extremes, sums and histograms
are over valid triplets; ``num`` stays the number of configurations, ``triplets`` is the
number of valid triplets and ``empty`` that of configurations without one).

Memory is constant in the number of configurations. Counts are integers and the minimum
and maximum are order independent; sums run over fixed tiles of 64 configurations, tile
sums added one after the other in configuration order, so the final summary is bitwise the
same whatever the chunk size, the number of devices or processes, and across a resume.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["StreamingSummary", "FINE_BINS", "QUANTILE_ERROR_DEG"]

FINE_BINS = 18_000
QUANTILE_ERROR_DEG = 0.5 * 180.0 / FINE_BINS
ANGLE_THRESHOLDS_DEG = (30.0, 60.0, 90.0)
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
_TILE = 64


def _ordered_sum(total: float, values: np.ndarray) -> float:
    """``total`` plus ``values`` (a chunk starting at a multiple of 64, shape ``(n,)`` or
    ``(n, k)``: k values per configuration), summed tile by tile of 64 configurations in
    index order (row-major within a tile): the result does not depend on how the
    configurations were chunked."""
    pad = (-len(values)) % _TILE
    v = np.concatenate([values, np.zeros((pad,) + values.shape[1:])]) if pad else values
    tiles = np.cumsum(v.reshape(-1, _TILE * int(np.prod(v.shape[1:]))), axis=1)[:, -1]
    return float(np.cumsum(np.concatenate([[total], tiles]))[-1])


class _Hist:
    """Counts, extremes, ordered sum and fine histogram of the values of one key on [0, hi]."""

    def __init__(self, hi: float, thresholds=()):
        self.hi = hi
        self.thresholds = tuple(thresholds)
        self.n = 0  # configurations (triplets, with a mask: valid ones) seen
        self.count = 0  # defined values
        self.total = 0.0
        self.lo_val = np.inf
        self.hi_val = -np.inf
        self.bins = np.zeros(FINE_BINS, np.int64)
        self.above = np.zeros(len(self.thresholds), np.int64)

    def update(self, values: np.ndarray, ok: np.ndarray, seen: int) -> None:
        """Add ``values`` where ``ok`` (same shape); ``seen`` values were drawn (the
        denominator of the defined share)."""
        self.n += seen
        x = values[ok]
        self.count += int(x.size)
        self.total = _ordered_sum(self.total, np.where(ok, values, 0.0))
        if x.size:
            self.lo_val = min(self.lo_val, float(x.min()))
            self.hi_val = max(self.hi_val, float(x.max()))
            idx = np.clip(np.floor(x * (FINE_BINS / self.hi)), 0, FINE_BINS - 1).astype(np.int64)
            self.bins += np.bincount(idx, minlength=FINE_BINS)
            for i, t in enumerate(self.thresholds):
                self.above[i] += int(np.count_nonzero(x > t))

    def quantiles(self) -> dict[str, float]:
        cum = np.cumsum(self.bins)
        width = self.hi / FINE_BINS

        def order_stat(r):  # midpoint of the bin of the r-th smallest value (0-based)
            b = int(np.searchsorted(cum, r, side="right"))
            return min(max((b + 0.5) * width, self.lo_val), self.hi_val)

        out = {}
        for q in QUANTILES:
            h = (self.count - 1) * q
            f = int(np.floor(h))
            c = min(f + 1, self.count - 1)
            lo, hi = order_stat(f), order_stat(c)
            v = lo + (h - f) * (hi - lo)
            if q == 0.0:
                v = self.lo_val
            elif q == 1.0:
                v = self.hi_val
            out[f"{q:g}"] = float(v)
        return out

    def state(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "count": self.count,
            "total": self.total.hex(),
            "lo_val": float(self.lo_val).hex(),
            "hi_val": float(self.hi_val).hex(),
            "bins": self.bins,
            "above": self.above,
        }

    def load(self, st: Mapping[str, Any]) -> None:
        self.n, self.count = int(st["n"]), int(st["count"])
        self.total = float.fromhex(str(st["total"]))
        self.lo_val = float.fromhex(str(st["lo_val"]))
        self.hi_val = float.fromhex(str(st["hi_val"]))
        self.bins = np.asarray(st["bins"], np.int64).copy()
        self.above = np.asarray(st["above"], np.int64).copy()


class StreamingSummary:
    """Accumulate :func:`geotrip.triplet_metric` results chunk by chunk; :meth:`result` gives
    the JSON-ready summary (the layout of :func:`geotrip.summarize`, quantiles within
    :data:`QUANTILE_ERROR_DEG`); :meth:`state` / :meth:`load` save and restore it."""

    def __init__(self, *, bins_deg: int = 36):
        if FINE_BINS % bins_deg:
            raise ValueError(f"bins_deg must divide {FINE_BINS}, got {bins_deg}")
        self.bins_deg = bins_deg
        self.num = 0
        self.hists: dict[str, _Hist] = {}
        self.flags: dict[str, list[int]] = {}
        self.masked = False  # chunks came with a mask "valid" (several triplets each)
        self.triplets = 0  # valid triplets (with a mask)
        self.empty = 0  # configurations without a valid triplet (with a mask)

    def update(self, chunk: Mapping[str, np.ndarray]) -> None:
        """Add one chunk (configurations in index order, starting at a multiple of 64).

        Values of shape ``(n,)``, or ``(n, k)`` with a boolean mask ``chunk["valid"]`` of
        that shape: only valid entries count."""
        n = len(next(iter(chunk.values())))
        mask = chunk.get("valid")
        if mask is not None:
            mask = np.asarray(mask, bool)
            if mask.ndim != 2 or mask.shape[0] != n:
                raise ValueError(f"valid must have shape (configurations, k), got {mask.shape}")
            self.masked = True
            self.triplets += int(np.count_nonzero(mask))
            self.empty += int(np.count_nonzero(~mask.any(axis=1)))
        for k in sorted(chunk):
            v = np.asarray(chunk[k])
            if k.startswith("defined/") or k == "valid":
                continue
            if mask is not None and v.shape != mask.shape:
                raise ValueError(f"{k} has shape {v.shape}, the mask valid {mask.shape}")
            seen = v.size if mask is None else int(np.count_nonzero(mask))
            if v.dtype == bool:
                c = self.flags.setdefault(k, [0, 0])
                c[0] += int(np.count_nonzero(v if mask is None else v & mask))
                c[1] += seen
                continue
            if k.startswith(("raw/", "riemannian/")):
                ok = np.asarray(chunk.get(f"defined/{k}", np.isfinite(v)))
                v = np.degrees(v.astype(np.float64))
                h = self.hists.setdefault(k, _Hist(180.0, ANGLE_THRESHOLDS_DEG))
            else:
                ok = np.isfinite(v)
                v = v.astype(np.float64)
                h = self.hists.setdefault(k, _Hist(np.pi))
            h.update(v, ok if mask is None else ok & mask, seen)
        self.num += n

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"num": self.num}
        if self.masked:
            out["triplets"], out["empty"] = self.triplets, self.empty
        edges = np.linspace(0.0, 180.0, self.bins_deg + 1)
        for k in sorted(set(self.flags) | set(self.hists)):
            if k in self.flags:
                t, n = self.flags[k]
                out[k] = {"share": t / n if n else 0.0}
                continue
            h = self.hists[k]
            if k.startswith(("raw/", "riemannian/")):
                e: dict[str, Any] = {
                    "count": h.count,
                    "defined_share": h.count / h.n if h.n else 0.0,
                    "unit": "degree",
                    "quantile_error_deg": QUANTILE_ERROR_DEG,
                }
                if h.count:
                    e["mean"] = h.total / h.count
                    e["quantiles"] = h.quantiles()
                    e["share_above"] = {
                        f"{t:g}": int(a) / h.count for t, a in zip(h.thresholds, h.above)
                    }
                coarse = h.bins.reshape(self.bins_deg, -1).sum(axis=1)
                e["histogram"] = {"edges": edges.tolist(), "counts": coarse.tolist()}
            else:
                e = {
                    "mean": h.total / h.count if h.count else None,
                    "quantiles": h.quantiles() if h.count else {},
                    "quantile_error": 0.5 * np.pi / FINE_BINS,
                }
            out[k] = e
        return out

    def state(self) -> dict[str, Any]:
        return {
            "num": self.num,
            "bins_deg": self.bins_deg,
            "masked": self.masked,
            "triplets": self.triplets,
            "empty": self.empty,
            "flags": {k: list(v) for k, v in self.flags.items()},
            "hists": {k: h.state() for k, h in self.hists.items()},
            "hist_ranges": {k: h.hi for k, h in self.hists.items()},
        }

    @classmethod
    def from_state(cls, st: Mapping[str, Any]) -> StreamingSummary:
        s = cls(bins_deg=int(st["bins_deg"]))
        s.num = int(st["num"])
        s.masked = bool(st.get("masked", False))
        s.triplets, s.empty = int(st.get("triplets", 0)), int(st.get("empty", 0))
        s.flags = {k: [int(a), int(b)] for k, (a, b) in st["flags"].items()}
        for k, hs in st["hists"].items():
            hi = float(st["hist_ranges"][k])
            h = _Hist(hi, ANGLE_THRESHOLDS_DEG if hi == 180.0 else ())
            h.load(hs)
            s.hists[k] = h
        return s
