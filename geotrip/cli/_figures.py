"""``geotrip figures``: regenerate the paper's figures."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import CLIError, add_jax_options, check_out_dir


def register(sub) -> None:
    p = sub.add_parser(
        "figures",
        help="regenerate the paper's figures (PDF, PNG, data, provenance)",
        description="Regenerate every registered figure (or those named with --only) into --out.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("figures"),
        help="output folder (default: figures/ in the current directory: run from the "
        "repository root, this OVERWRITES the committed figures, data and certificates; "
        "pass another folder to compare with them)",
    )
    p.add_argument("--only", nargs="+", metavar="NAME", help="only these figures (see --list)")
    p.add_argument("--list", action="store_true", help="list the figures and exit")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (default: 0)")
    p.add_argument(
        "--quick", action="store_true", help="smaller grids and budgets (for tests and previews)"
    )
    add_jax_options(
        p,
        x64=True,
        x64_why="the geometry figures and certificates are computed in float64; "
        "the training figures run in float32 either way",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..figures import load_all, make_figures

    figs = load_all()
    if args.list:
        for name, spec in figs.items():
            print(f"{name:24s} [{spec.group}] {spec.description}")
        return 0
    names = list(figs) if not args.only else args.only
    unknown = [n for n in names if n not in figs]
    if unknown:
        raise CLIError(f"unknown figure(s) {', '.join(unknown)}; valid: {', '.join(figs)}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    check_out_dir(args.out)  # before any computation
    flags = os.environ.get("XLA_FLAGS", "").strip()
    if flags:
        print(
            f"geotrip figures: note: XLA_FLAGS={flags!r} is set (recorded in each provenance "
            "file); the committed figures were made without it, and flags that change "
            "compilation change round-off and, through the searches, certified values "
            "(--xla_backend_optimization_level=0 moved the k=8, d=3 cell from 134.1173 to "
            "133.7510 deg)",
            file=sys.stderr,
        )
    make_figures(names, out_dir=args.out, seed=args.seed, quick=args.quick)  # logs progress
    return 0
