"""Summarise results/healthy_start/runs.csv into summary.json (and print it).

Run from the repository root:  .venv/bin/python results/healthy_start/summarize.py
Units: a *cell* is (config, lr, margin); its 3 seeds are replicates. Cell-level sign tests
compare each squared distance with its root (chord_sq vs chord, geodesic_sq vs geodesic) on
the share of collapsed seeds per cell.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

import geotrip as gt

OUT = Path(__file__).resolve().parent


def main():
    runs = list(csv.DictReader((OUT / "runs.csv").open()))
    for r in runs:
        for k in (
            "lr",
            "margin",
            "collapsed",
            "init_mean_cos",
            "final_mean_cos",
            "final_push_pull",
            "final_recall_at_1",
            "final_map_at_r",
        ):
            r[k] = float(r[k])
    configs = list(dict.fromkeys(r["config"] for r in runs))
    out = {"source": "results/healthy_start/runs.csv", "configs": {}, "cells": {}}
    for c in configs:
        sel = [r for r in runs if r["config"] == c]
        entry = {"init_mean_cos": float(np.mean([r["init_mean_cos"] for r in sel]))}
        for d in gt.DISTANCES:
            s = [r for r in sel if r["distance"] == d]
            k = int(sum(r["collapsed"] for r in s))
            lo, hi = gt.wilson_interval(k, len(s))
            entry[d] = dict(
                collapsed=k,
                n=len(s),
                wilson95=[float(lo), float(hi)],
                push_pull=float(np.mean([r["final_push_pull"] for r in s])),
                final_mean_cos=float(np.mean([r["final_mean_cos"] for r in s])),
                recall_at_1=float(np.mean([r["final_recall_at_1"] for r in s])),
                map_at_r=float(np.mean([r["final_map_at_r"] for r in s])),
            )
        out["configs"][c] = entry
    for sq, root in (("chord_sq", "chord"), ("geodesic_sq", "geodesic"), ("cosine", "chord")):
        cells = {}
        for r in runs:
            if r["distance"] in (sq, root):
                key = (r["config"], r["lr"], r["margin"])
                cells.setdefault(key, {}).setdefault(r["distance"], []).append(r["collapsed"])
        more_sq = sum(1 for v in cells.values() if np.mean(v[sq]) > np.mean(v[root]))
        more_root = sum(1 for v in cells.values() if np.mean(v[sq]) < np.mean(v[root]))
        where = sorted({k[0] for k, v in cells.items() if np.mean(v[sq]) != np.mean(v[root])})
        out["cells"][f"{sq}_vs_{root}"] = dict(
            cells=len(cells),
            squared_more=more_sq,
            root_more=more_root,
            sign_test_p=gt.mcnemar_exact(more_sq, more_root),
            differing_configs=where,
        )
    # the push-pull prediction, run by run: collapse rate below / above ratio 0.9
    lo = [r for r in runs if r["final_push_pull"] < 0.9]
    hi = [r for r in runs if r["final_push_pull"] >= 0.9]
    out["push_pull_split"] = {
        "ratio<0.9": dict(n=len(lo), collapsed=int(sum(r["collapsed"] for r in lo))),
        "ratio>=0.9": dict(n=len(hi), collapsed=int(sum(r["collapsed"] for r in hi))),
    }
    # the prediction proper: the ratio over the FIRST chunk (steps 0-99, before outcomes
    # diverge) against the final outcome; rows and histories share their order per config
    early = []
    for c in configs:
        h = np.load(OUT / "history" / f"{c}.npz")
        sel = [r for r in runs if r["config"] == c]
        early += [(float(h["push_pull"][i, 1]), r) for i, r in enumerate(sel)]
    split = {}
    for tag, keep in (
        ("all", lambda r: True),
        ("g'(0)=0 only", lambda r: gt.distance(r["distance"]).weight_vanishes_at_zero),
    ):
        e = [(x, r) for x, r in early if keep(r)]
        a = [r for x, r in e if x < 1.0]
        b = [r for x, r in e if x >= 1.0]
        split[tag] = {
            "early_ratio<1": dict(n=len(a), collapsed=int(sum(r["collapsed"] for r in a))),
            "early_ratio>=1": dict(n=len(b), collapsed=int(sum(r["collapsed"] for r in b))),
        }
    out["push_pull_first_chunk"] = split
    (OUT / "summary.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
