"""``geotrip sweep``: gradient-angle statistics over many configurations of a family."""

from __future__ import annotations

import argparse
import ast
import math
import sys
import time
from pathlib import Path

from . import (
    CLIError,
    add_comparison_options,
    add_distributed_options,
    add_jax_options,
    check_out_dir,
    margins_from_args,
    start_distributed,
)


def _value(text: str):
    """Parse a parameter value: number, tuple (lo,hi), None, or a bare string."""
    t = text.strip()
    if t.lower() in ("pi", "π"):
        return math.pi
    try:
        v = ast.literal_eval(t)
    except (ValueError, SyntaxError):
        return t
    return v


def register(sub) -> None:
    from ..sweeps._families import SWEEP_FAMILIES

    def params(v):
        return ", ".join(f"{p}={d!r}" for p, d in v.params.items()) or "none"

    fams = "; ".join(
        f"{k}: {v.description} (params: {params(v)})" for k, v in SWEEP_FAMILIES.items()
    )
    p = sub.add_parser(
        "sweep",
        help="gradient-angle statistics over N configurations of a family (jit+vmap, sharded)",
        description="Evaluate the angles between the gradients of two triplet losses over N random "
        "configurations of a family, for one or more dimensions; write summary.json "
        "(quantiles, histograms, shares above 30/60/90 degrees, provenance) and, with "
        f"--save-arrays, per-configuration arrays. Families: {fams}.",
    )
    p.add_argument("--family", required=True, help=f"one of: {', '.join(SWEEP_FAMILIES)}")
    p.add_argument("--dim", type=int, nargs="+", required=True, metavar="D", help="dimension(s) d")
    p.add_argument(
        "--samples",
        type=int,
        default=100_000,
        help="configurations per dimension (default 100000); for --family clustered, batches: "
        "every valid mined triplet of a batch counts once, so a batch weighs its number of "
        "valid triplets (the summary reports num batches and triplets)",
    )
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="family parameter, e.g. radius=0.1, theta_ap=(0,0.5), strategy=semihard (repeatable)",
    )
    add_comparison_options(
        p, active_share="; active_share matches on uniform triplets of the first --dim"
    )
    p.add_argument("--soft", action="store_true", help="soft-margin losses")
    p.add_argument(
        "--method",
        choices=("closed_form", "autodiff"),
        default="closed_form",
        help="gradient-angle path (default closed_form)",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=65536,
        help="configurations per compiled call (clustered: triplet slots, chunk/k batches)",
    )
    p.add_argument("--save-arrays", action="store_true", help="also write arrays_d{D}.npz")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint.npz (same settings) to the same final numbers",
    )
    p.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=30.0,
        metavar="S",
        help="write a checkpoint after a chunk when S seconds have passed (default 30; 0: every "
        "chunk)",
    )
    add_distributed_options(p)
    add_jax_options(p, x64=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._distributed import is_writer
    from ..core._distances import distance as get_distance
    from ..sweeps import SWEEP_FAMILIES, run_sweep

    if args.family not in SWEEP_FAMILIES:
        raise CLIError(f"unknown family {args.family!r}; valid: {', '.join(SWEEP_FAMILIES)}")
    if args.samples < 1:
        raise CLIError(f"--samples must be >= 1, got {args.samples}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    if args.chunk_size < 1:
        raise CLIError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    if any(d < 2 for d in args.dim):
        raise CLIError(f"--dim values must be >= 2, got {args.dim}")
    margins = margins_from_args(args)
    for name in args.distances:
        get_distance(name)  # ValueError lists the valid names
    params = {}
    for item in args.param:
        if "=" not in item:
            raise CLIError(f"--param must be KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        params[k.strip()] = _value(v)
    if args.checkpoint_seconds < 0:
        raise CLIError(f"--checkpoint-seconds must be >= 0, got {args.checkpoint_seconds}")
    start_distributed(args)
    if is_writer():
        args.out = check_out_dir(args.out)  # before any computation
    t0 = time.perf_counter()
    s = run_sweep(
        args.family,
        dims=args.dim,
        samples=args.samples,
        seed=args.seed,
        distances=tuple(args.distances),
        margins=margins,
        match=args.match,
        soft=args.soft,
        params=params,
        out=args.out,
        save_arrays=args.save_arrays,
        chunk_size=args.chunk_size,
        method=args.method,
        progress=False if args.no_progress else None,
        resume=args.resume,
        checkpoint_seconds=args.checkpoint_seconds,
    )
    if not is_writer():
        return 0
    if s.get("margin_note"):
        print(f"margins: {s['margin_note']}", file=sys.stderr)
    for d, e in s["by_dim"].items():
        rj, wj = e.get("riemannian/joint", {}), e.get("raw/joint", {})
        med = lambda x: f"{x['quantiles']['0.5']:.2f}°" if "quantiles" in x else "n/a"
        above = lambda x: f"{x['share_above']['90']:.4f}" if "share_above" in x else "n/a"
        if "triplets" in e:
            count = (
                f"{e['num']} batches, {e['triplets']} valid triplets "
                f"({e['triplets_per_second'] or 0:.3g}/s)"
            )
        else:
            count = f"{e['num']} configs, {e['configs_per_second'] or 0:.3g}/s"
        print(
            f"{args.family} d={d}: {count}; "
            f"joint angle median riemannian {med(rj)}, raw {med(wj)}; share > 90°: "
            f"riemannian {above(rj)}, raw {above(wj)}; defined {rj.get('defined_share', 0):.3f}"
        )
    print(f"wrote {args.out / 'summary.json'} ({time.perf_counter() - t0:.1f} s)")
    return 0
