"""Search for collapse from healthy (default, uncapped) starts under hard mining.

Run from the repository root:  nice -n 5 .venv/bin/python results/healthy_start/search.py
Writes results/healthy_start/runs.csv (one row per run, appended config by config),
history/CONFIG.npz and provenance.json. Every run: an MLP at its default initialisation
(He-normal ReLU layers, no cap: spread = inf), L2-normalised output, PK batches, online
mining, distances in reference units g/g'(pi/2), float32, collapse = mean pairwise cosine
> 0.99 or effective rank < 1.5 on the held-out split at the end. Seeds pair the distances
(same initialisation and batches for one seed).
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

import geotrip as gt

OUT = Path(__file__).resolve().parent
ALL5 = tuple(gt.DISTANCES)
MOMENTUM_LRS = (0.01, 0.05, 0.2)
ADAM_LRS = (1e-3, 1e-2)
MARGINS = (0.1, 0.5)
SEEDS = range(3)
BASE = dict(hidden=(64, 64, 64), embed_dim=16, p=8, k=4, steps=400, eval_every=100)

# (name, task, data kwargs, strategy, optimizer, lrs, margins, setup overrides, distances)
CONFIGS = [
    ("digits_bh_mom", "digits", {}, "batch_hard", "momentum", MOMENTUM_LRS, MARGINS, {}, ALL5),
    (
        "digits_hn_mom",
        "digits",
        {},
        "hardest_negative",
        "momentum",
        MOMENTUM_LRS,
        MARGINS,
        {},
        ALL5,
    ),
    ("digits_bh_adam", "digits", {}, "batch_hard", "adam", ADAM_LRS, MARGINS, {}, ALL5),
    ("digits_hn_adam", "digits", {}, "hardest_negative", "adam", ADAM_LRS, MARGINS, {}, ALL5),
    (
        "clusters_bh_mom",
        "clusters",
        dict(n_classes=8, cluster_size=64, dim=32),
        "batch_hard",
        "momentum",
        MOMENTUM_LRS,
        MARGINS,
        {},
        ALL5,
    ),
    (
        "clusters_hn_mom",
        "clusters",
        dict(n_classes=8, cluster_size=64, dim=32),
        "hardest_negative",
        "momentum",
        MOMENTUM_LRS,
        MARGINS,
        {},
        ALL5,
    ),
    # pushing further: larger learning rates, label noise, batch layout, embedding dimension
    (
        "digits_hn_mom_biglr",
        "digits",
        {},
        "hardest_negative",
        "momentum",
        (0.5, 1.0),
        MARGINS,
        {},
        ALL5,
    ),
    (
        "clusters_hn_mom_noise30",
        "clusters",
        dict(n_classes=8, cluster_size=64, dim=32, label_noise=0.3),
        "hardest_negative",
        "momentum",
        MOMENTUM_LRS,
        MARGINS,
        {},
        ALL5,
    ),
    (
        "digits_hn_mom_pk16x2",
        "digits",
        {},
        "hardest_negative",
        "momentum",
        MOMENTUM_LRS,
        MARGINS,
        dict(p=10, k=2),
        ALL5,
    ),
    (
        "digits_hn_mom_dim4",
        "digits",
        {},
        "hardest_negative",
        "momentum",
        MOMENTUM_LRS,
        MARGINS,
        dict(embed_dim=4),
        ALL5,
    ),
    (
        "digits_hn_mom_dim64",
        "digits",
        {},
        "hardest_negative",
        "momentum",
        MOMENTUM_LRS,
        MARGINS,
        dict(embed_dim=64),
        ALL5,
    ),
]


def main(names=None):
    prov = gt.provenance(
        seed=0,
        extra={
            "script": "results/healthy_start/search.py",
            "base": {k: list(v) if isinstance(v, tuple) else v for k, v in BASE.items()},
            "seeds": list(SEEDS),
            "configs": [
                dict(
                    name=c[0],
                    task=c[1],
                    data=c[2],
                    strategy=c[3],
                    optimizer=c[4],
                    lrs=list(c[5]),
                    margins=list(c[6]),
                    setup=c[7],
                )
                for c in CONFIGS
            ],
        },
    )
    gt.write_provenance(OUT / "provenance.json", prov)
    (OUT / "history").mkdir(exist_ok=True)
    runs = OUT / "runs.csv"
    done = set()
    if runs.exists():
        with runs.open() as fh:
            done = {r["config"] for r in csv.DictReader(fh)}
    for name, task, dkw, strategy, opt, lrs, margins, over, dists in CONFIGS:
        if name in done or (names and name not in names):
            continue
        kw = dict(BASE, **over)
        setup = gt.TrainSetup(distances=dists, strategy=strategy, optimizer=opt, **kw)
        data = gt.make_task_data(task, seed=0, **dkw)
        t0 = time.perf_counter()
        rows, hist = gt.train_grid(
            task, setup, data, seeds=SEEDS, lrs=lrs, margins=margins, spreads=(math.inf,)
        )
        secs = time.perf_counter() - t0
        np.savez_compressed(OUT / "history" / f"{name}.npz", **hist)
        extra = dict(
            config=name,
            task=task,
            strategy=strategy,
            optimizer=opt,
            depth=len(kw["hidden"]),
            width=kw["hidden"][0],
            embed_dim=kw["embed_dim"],
            p=kw["p"],
            k=kw["k"],
            label_noise=dkw.get("label_noise", 0.0),
            steps=kw["steps"],
        )
        rows = [dict(extra, **r, seconds=round(secs, 1)) for r in rows]
        new = not runs.exists()
        with runs.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            if new:
                w.writeheader()
            w.writerows(rows)
        n_col = sum(r["collapsed"] for r in rows)
        print(f"{name}: {len(rows)} runs, {n_col} collapsed, {secs:.0f} s", flush=True)
        by = {}
        for r in rows:
            by.setdefault(r["distance"], []).append(r["collapsed"])
        print("   ", json.dumps({d: f"{sum(v)}/{len(v)}" for d, v in by.items()}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or None)
