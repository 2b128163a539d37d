"""``geotrip bench``: throughput benchmarks (see benchmarks/README.md)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .._io import atomic_write_text
from . import CLIError, add_jax_options


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="throughput benchmarks "
        "(gradient angles: closed form, autodiff, NumPy, PyTorch, bandwidth)",
        description="Run the benchmark suites (default: all) and print configurations per second "
        "and ratios; --json saves them with provenance.",
    )
    p.add_argument(
        "--suite", nargs="+", metavar="NAME", help="suites to run (default: all; see --list)"
    )
    p.add_argument("--list", action="store_true", help="list the suites and exit")
    p.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    add_jax_options(p, x64=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._provenance import provenance
    from ..benchmarks import load_suites, run_suites

    suites = load_suites()
    if args.list:
        for name, mod in suites.items():
            print(f"{name:12s} {mod.DESCRIPTION}")
        return 0
    if args.suite:
        unknown = [s for s in args.suite if s not in suites]
        if unknown:
            raise CLIError(f"unknown suite(s) {', '.join(unknown)}; valid: {', '.join(suites)}")
    if args.json is not None and args.json.exists() and args.json.is_dir():
        raise CLIError(f"--json must be a file path, got the folder {args.json}")
    t0 = time.perf_counter()
    results = run_suites(args.suite, quick=args.quick, log=lambda s: print(s, flush=True))
    total = time.perf_counter() - t0
    print(f"bench: {len(results)} suite(s) in {total:.1f} s")
    if args.json is not None:
        record = {
            "results": results,
            "seconds": total,
            "provenance": provenance(
                seed=None,
                extra={"suites": list(results), "quick": args.quick},
                packages=("torch",),
                run=True,
            ),
        }
        atomic_write_text(args.json, json.dumps(record, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0
