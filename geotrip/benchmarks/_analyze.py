r"""``geotrip analyze`` at scale: wall time and peak memory on a memory-mapped file.

A synthetic ``N x 512`` float32 embedding file (``.npy``, read memory-mapped, 2 GB at
``N = 10^6``) of 100 Gaussian classes, with integer labels, is written to a temporary
folder; then ``geotrip analyze --triplets batches --batches 8 4 100 --no-figures`` runs on
it in a fresh process, timed, with its own peak resident memory (``VmHWM`` polled from
``/proc``, as in the latency suite). Reported against the targets of the issue that asked
for it: under 10 minutes and 4 GB at ``N = 10^6`` on a 2-core CPU. ``--quick`` uses
``N = 10^5`` (200 MB).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._latency import _clean_env, _run_child

NAME = "analyze"
DESCRIPTION = "geotrip analyze on a memory-mapped N x 512 file: wall time and peak memory"

TARGETS = {"seconds": 600.0, "peak_rss_mb": 4096.0, "n": 1_000_000}
SIZES = {"n": 1_000_000, "dim": 512, "classes": 100, "batches": (8, 4, 100), "timeout": 1800}
QUICK = {"n": 100_000}


def write_embeddings(folder: Path, *, n: int, dim: int, classes: int, seed: int = 0) -> tuple:
    """Write ``emb.npy`` (float32, chunked, never all in memory) and ``labels.npy``."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)).astype(np.float32)
    labels = np.arange(n, dtype=np.int64) % classes
    emb_path, lab_path = folder / "emb.npy", folder / "labels.npy"
    out = np.lib.format.open_memmap(emb_path, mode="w+", dtype=np.float32, shape=(n, dim))
    step = 65536
    for i in range(0, n, step):
        j = min(n, i + step)
        noise = rng.normal(scale=1.5, size=(j - i, dim)).astype(np.float32)
        out[i:j] = centers[labels[i:j]] + noise
    out.flush()
    del out
    np.save(lab_path, labels)
    return emb_path, lab_path


def run(*, quick: bool = False, log: Callable[[str], None] = print, sizes=None) -> dict:
    """Time ``geotrip analyze`` in batches mode on a synthetic memory-mapped file."""
    cfg = dict(SIZES, **(QUICK if quick else {}), **(sizes or {}))
    unknown = set(cfg) - set(SIZES)
    if unknown:
        raise ValueError(f"unknown size(s) {sorted(unknown)}; valid: {sorted(SIZES)}")
    with tempfile.TemporaryDirectory(prefix="geotrip-bench-analyze-") as tmp:
        tmp = Path(tmp)
        emb, lab = write_embeddings(tmp, n=cfg["n"], dim=cfg["dim"], classes=cfg["classes"])
        p, k, count = cfg["batches"]
        argv = [sys.executable, "-m", "geotrip", "analyze", "--embeddings", str(emb)]
        argv += ["--labels", str(lab), "--out", str(tmp / "report"), "--triplets", "batches"]
        argv += ["--batches", str(p), str(k), str(count), "--no-figures", "--platform", "cpu"]
        r = _run_child(argv, _clean_env(), cwd=tmp, timeout=cfg["timeout"])
        size_mb = emb.stat().st_size / 2**20
    ok = r["returncode"] == 0
    res = {
        "suite": NAME,
        "n": cfg["n"],
        "dim": cfg["dim"],
        "file_mb": size_mb,
        "batches": list(cfg["batches"]),
        "seconds": r["seconds"],
        "peak_rss_mb": r["peak_rss_mb"],
        "returncode": r["returncode"],
        "targets": TARGETS,
        "targets_apply": cfg["n"] == TARGETS["n"],
        "seconds_target_met": ok and r["seconds"] <= TARGETS["seconds"],
        "peak_rss_target_met": ok and r["peak_rss_mb"] <= TARGETS["peak_rss_mb"],
    }
    if not ok:
        res["output_tail"] = r["output_tail"]
    log(
        f"analyze: N = {cfg['n']:,} x {cfg['dim']} ({size_mb:,.0f} MB memory-mapped), "
        f"{r['seconds']:.1f} s, peak {r['peak_rss_mb']:,.0f} MB, exit {r['returncode']}"
    )
    return res
