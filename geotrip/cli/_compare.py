"""``geotrip compare``: each distance tuned on a validation split, retrained over seeds, tested."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .._io import atomic_write_text
from . import add_jax_options, check_out_dir, preset_spec


def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="fair test of learning: tune each distance (lr x margin) on a validation split, "
        "retrain with many seeds, compare held-out Recall@1 and MAP@R",
        description=(
            "For each task and distance: tune learning rate x margin on a validation split of "
            "the training data (the test split is not read), retrain at the tuned setting with "
            "--seeds seeds, and report held-out Recall@1 and MAP@R with 95% intervals and "
            "paired tests against chord_sq (compare.json, tuning.csv, scores.csv, figure)."
        ),
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder (the outputs of a previous compare run there are replaced)",
    )
    p.add_argument(
        "--preset",
        default=None,
        metavar="NAME",
        help="one of: tiny (seconds), quick (digits and clusters, about 15 min on 2 CPU cores), "
        "digits_wide (the digits over a 5 x 6 grid bracketing quick's optima), full (sized for "
        "a GPU); default: quick",
    )
    p.add_argument("--quick", action="store_true", help="same as --preset quick")
    p.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    p.add_argument("--seeds", type=int, default=None, help="retraining seeds (default: preset)")
    p.add_argument("--no-figures", action="store_true", help="do not draw the figure")
    add_jax_options(p, x64=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import COMPARE_PRESETS, run_compare

    name, spec = preset_spec(args, COMPARE_PRESETS, min_seeds=2)
    # before computing; a run rewrites every output of a previous one in --out (it does not
    # resume), so the folder never mixes two settings
    check_out_dir(args.out)
    t0 = time.perf_counter()
    report = run_compare(spec, args.out, seed0=args.seed)
    print(f"compare[{name}] in {args.out} ({time.perf_counter() - t0:.1f} s)")
    for task, rep in report["tasks"].items():
        base = spec.distances[0]
        for dist, e in rep["distances"].items():
            r, m = e["recall_at_1"], e["map_at_r"]
            line = (
                f"  {task:8s} {dist:11s} lr={e['tuned']['lr']:g} m={e['tuned']['margin']:g} "
                f"R@1={r['mean']:.3f} [{r['ci95'][0]:.3f},{r['ci95'][1]:.3f}] "
                f"MAP@R={m['mean']:.3f} [{m['ci95'][0]:.3f},{m['ci95'][1]:.3f}]"
            )
            pc = rep[f"paired_vs_{base}"].get(dist)
            if pc:
                d = pc["map_at_r"]
                line += f"  dMAP@R={d['mean_diff']:+.3f} p={d['p_sign_flip']:.3g}"
            if e["at_grid_edge"]:
                line += f"  [tuned at the grid's {' and '.join(e['at_grid_edge'])}]"
            print(line)
    edges = sorted(
        {
            d
            for rep in report["tasks"].values()
            for d, e in rep["distances"].items()
            if e.get("at_grid_edge")
        }
    )
    if edges:
        print(
            f"warning: {', '.join(edges)} tuned at an end of the grid: the best setting may lie "
            "outside it; widen --preset's grid before concluding",
            file=sys.stderr,
        )
    if not args.no_figures:
        from ..figures._compare import plot_compare

        paths = plot_compare(report, args.out, seed=args.seed, parameters={"preset": name})
        print(f"figures: {len(paths)} files in {args.out}")
    atomic_write_text(
        Path(args.out) / "timing.json",
        json.dumps({"preset": name, "seconds": report["seconds"]}, indent=2) + "\n",
    )
    return 0
