"""``geotrip collapse``: training experiments on collapse (phase diagrams over seeds and
hyper-parameters)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .._io import atomic_write_text
from . import (
    CLIError,
    add_distributed_options,
    add_jax_options,
    check_out_dir,
    preset_spec,
    start_distributed,
)


def register(sub) -> None:
    p = sub.add_parser(
        "collapse",
        help="train triplet embeddings over distances, mining, spreads, learning rates and "
        "margins; measure collapse",
        description=(
            "Run a collapse sweep (free features on the sphere and MLPs on synthetic clusters "
            "and sklearn digits), vectorised over distances, seeds and hyper-parameters, writing "
            "runs.csv, phase tables with binomial confidence intervals, summary.json, histories "
            "and provenance to --out "
            "incrementally (an interrupted sweep resumes), then the figures."
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--preset",
        default=None,
        metavar="NAME",
        help="one of: tiny (seconds; tests), quick (collapsed starts + healthy-start cells; "
        "minutes on 2 CPU cores), healthy (the healthy-start FaceNet-regime cells alone), "
        "full (GPU), figure-quick, figure (the registered figures); default: quick",
    )
    p.add_argument("--quick", action="store_true", help="same as --preset quick")
    p.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    p.add_argument(
        "--seeds", type=int, default=None, help="number of seeds (default: the preset's)"
    )
    p.add_argument(
        "--force",
        "--no-resume",
        dest="force",
        action="store_true",
        help="start afresh: delete the rows, tables, histories and figures of a previous run in "
        "--out (by default a run resumes, skipping finished cells, and refuses a folder whose "
        "run had other settings)",
    )
    p.add_argument("--no-figures", action="store_true", help="do not draw the figures")
    p.add_argument(
        "--max-cells", type=int, default=None, help="stop after this many cells (resume later)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_distributed_options(p)
    add_jax_options(p, x64=False)
    p.set_defaults(func=run)


# the options behind the settings a run folder records (geotrip.train._rundir)
_OPTION_OF = {
    "spec.name": "--preset",
    "spec.n_seeds": "--seeds",
    "seed0": "--seed",
    "dtype": "--x64",
}

PRESET_NAMES = ("tiny", "quick", "healthy", "full", "figure-quick", "figure")
"""The names listed by ``--preset``'s help (a test checks them against COLLAPSE_PRESETS)."""


def run(args: argparse.Namespace) -> int:
    from .._distributed import is_writer
    from ..train import COLLAPSE_PRESETS, run_collapse_sweep
    from ..train._rundir import RunFolderError, describe_differences

    name, spec = preset_spec(args, COLLAPSE_PRESETS, min_seeds=1)
    if args.max_cells is not None and args.max_cells < 1:
        raise CLIError(f"--max-cells must be >= 1, got {args.max_cells}")
    start_distributed(args)  # before any JAX computation
    writer = is_writer()
    if writer:  # the other processes write nothing
        check_out_dir(args.out)
    t0 = time.perf_counter()
    try:
        summary = run_collapse_sweep(
            spec,
            args.out,
            seed0=args.seed,
            resume=not args.force,
            progress=writer and not args.no_progress,
            max_cells=args.max_cells,
            distributed=True,
        )
    except RunFolderError as exc:
        what = exc.what
        if exc.differences:
            diff = describe_differences(exc.differences, _OPTION_OF)
            what = f"a collapse run with other settings ({diff})"
        hint = "--force starts afresh (deletes its rows), or " if exc.fresh_start_helps else ""
        raise CLIError(f"--out {args.out} holds {what}; {hint}choose another --out") from None
    if not writer:
        return 0
    secs = time.perf_counter() - t0
    print(
        f"collapse[{name}]: {summary['cells']}/{summary['cells_total']} cells "
        f"in {args.out} ({secs:.1f} s)"
    )
    for e in summary.get("squared_vs_root", []):
        print(
            f"  {e['task']:9s} {e['squared']:>11s} vs {e['root']:8s}: pairs={e['pairs']} "
            f"only-squared={e['only_squared']} only-root={e['only_root']} both={e['both']} "
            f"McNemar p={e['mcnemar_p']:.3g}"
        )
    if not args.no_figures and summary["cells"] > 0:
        from ..figures._collapse import plot_collapse

        paths = plot_collapse(args.out, args.out, seed=args.seed, parameters={"preset": name})
        print(f"figures: {len(paths)} files in {args.out}")
    atomic_write_text(
        Path(args.out) / "timing.json",
        json.dumps(
            {
                "preset": name,
                "seconds": secs,
                "cells": summary["cells"],
                "cells_total": summary["cells_total"],
            },
            indent=2,
        )
        + "\n",
    )
    return 0
