"""``geotrip search``: find a configuration where two triplet losses disagree, and certify it."""

from __future__ import annotations

import argparse
import importlib
import sys
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


def register(sub) -> None:
    p = sub.add_parser(
        "search",
        help="search for a counterexample (gradient angle, descent/active/raw disagreement) "
        "and certify it",
        description=(
            "Riemannian gradient ascent from many random restarts on (S^{d-1})^n, then "
            "rounding to short decimals, a certificate (JSON) and its independent "
            "verification. Exit status 0 when the certificate verifies, 1 when it does not."
        ),
    )
    p.add_argument(
        "--objective",
        default="angle",
        help="angle, descent, active, raw, or MODULE:FUNCTION for a JAX function f(X, triplets) "
        "-> scalar to maximise (default: angle)",
    )
    p.add_argument(
        "--triplets", "-k", type=int, default=2, help="number of triplets k (default: 2)"
    )
    p.add_argument(
        "--dim",
        "-d",
        type=int,
        default=3,
        help="ambient dimension d, points on S^{d-1} (default: 3)",
    )
    p.add_argument(
        "--structure",
        default="shared_anchor",
        help="shared_anchor, chain, cycle, labeled:L0,L1,... (all triplets of a labeled batch), "
        "or explicit:a,p,n;a,p,n;... (default: shared_anchor)",
    )
    add_comparison_options(p)
    p.add_argument(
        "--active",
        default="any",
        choices=("any", "both", "disjoint"),
        help="activity pattern every triplet must follow: any (no constraint), both (active "
        "under both hinges: the weighting effect alone), disjoint (under exactly one); "
        "default: any",
    )
    p.add_argument(
        "--gap",
        type=float,
        default=1e-3,
        help="least |hinge argument| of the pattern, in each distance's units (default: 1e-3)",
    )
    p.add_argument("--soft", action="store_true", help="soft-margin losses log(1 + exp(z))")
    p.add_argument(
        "--restarts", type=int, default=256, help="parallel random restarts (default: 256)"
    )
    p.add_argument("--steps", type=int, default=400, help="optimiser steps (default: 400)")
    p.add_argument("--lr", type=float, default=0.02, help="Adam learning rate (default: 0.02)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (default: 0)")
    p.add_argument(
        "--simplify",
        action="store_true",
        help="shrink to the fewest triplets and the smallest dimension keeping the property",
    )
    p.add_argument(
        "--decimals",
        type=int,
        default=None,
        help="round to exactly this many decimals (default: the fewest that keep the property)",
    )
    p.add_argument("--out", type=Path, required=True, help="certificate file to write (JSON)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_distributed_options(p)
    add_jax_options(p, x64=True)
    p.set_defaults(func=run)


def _structure(spec: str, k: int):
    from ..counterexamples import triplet_structure

    if spec.startswith("labeled:"):
        try:
            labels = [int(x) for x in spec.split(":", 1)[1].split(",")]
        except ValueError:
            raise CLIError(
                f"cannot read labels in {spec!r}; expected labeled:0,0,1,1,..."
            ) from None
        return triplet_structure("labeled", labels=labels)
    if spec.startswith("explicit:"):
        import numpy as np

        try:
            rows = [
                [int(x) for x in r.split(",")]
                for r in spec.split(":", 1)[1].split(";")
                if r.strip()
            ]
            return triplet_structure(np.asarray(rows, dtype=np.int64))
        except ValueError as exc:
            raise CLIError(f"cannot read triplets in {spec!r}: {exc}") from None
    return triplet_structure(spec, k)


def _objective(spec: str):
    from ..counterexamples import OBJECTIVES

    if spec in OBJECTIVES:
        return spec
    if ":" in spec:
        mod, _, name = spec.partition(":")
        try:
            fn = getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError) as exc:
            raise CLIError(f"cannot load objective {spec!r}: {exc}") from None
        if not callable(fn):
            raise CLIError(f"objective {spec!r} is not callable")
        return fn
    raise CLIError(f"unknown objective {spec!r}; valid: {', '.join(OBJECTIVES)} or MODULE:FUNCTION")


def run(args: argparse.Namespace) -> int:
    import jax

    from .._provenance import provenance
    from ..counterexamples import CertificateError, certify, search, simplify

    if not jax.config.jax_enable_x64:
        raise CLIError("certificates need float64; do not pass --no-x64")
    for name in ("triplets", "dim", "restarts", "steps"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.dim < 2:
        raise CLIError(f"--dim must be at least 2, got {args.dim}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    if args.out.is_dir():
        raise CLIError(f"--out {args.out}: is a directory; give the certificate file to write")
    start_distributed(args)  # before any JAX computation
    writer = jax.process_index() == 0
    if writer:  # the other processes write nothing
        check_out_dir(args.out.parent, option="--out")
    objective = _objective(args.objective)
    triplets = _structure(args.structure, args.triplets)
    margins = margins_from_args(args)
    res = search(
        objective,
        triplets=triplets,
        dim=args.dim,
        distances=tuple(args.distances),
        margins=margins,
        match=args.match,
        active=args.active,
        gap=args.gap,
        soft=args.soft,
        restarts=args.restarts,
        steps=args.steps,
        learning_rate=args.lr,
        seed=args.seed,
        progress=writer and not args.no_progress,
        distributed=True,
    )
    if not writer:
        return 0
    for note in res.notes:
        if "different units" in note:
            print(f"geotrip search: note: {note}", file=sys.stderr)
    print(res.describe())
    if not res.candidates.size:
        print("no valid configuration found (all restarts degenerate); nothing to certify")
        return 1
    if args.simplify:
        try:
            res = simplify(res)
            print(
                f"simplified: k={res.k}, d={res.dim}, value {res.value:.6g} "
                f"({'; '.join(res.notes) or 'no change'})"
            )
        except ValueError as exc:
            print(f"not simplified: {exc}")
    try:
        prov = provenance(seed=args.seed, extra={"processes": jax.process_count()})
        cert = certify(res, args.out, decimals=args.decimals, provenance=prov)
    except (ValueError, CertificateError) as exc:
        print(f"no certificate: {exc}")
        return 1
    ver = cert.verification
    status = "verified" if ver.ok else "REJECTED by the verifier"
    print(
        f"certificate {args.out} ({cert.decimals} decimals, "
        f"{len(cert.content['assertions'])} assertions): "
        f"{status} independently in float64 and mpmath; {cert.content['statement']}"
    )
    if ver.ok:
        print(_certified_line(cert))
    for line in ver.failures:
        print(f"  FAIL {line}")
    return 0 if ver.ok else 1


def _certified_line(cert) -> str:
    """Which number the certificate certifies, at what precision, and how far it is from the
    search's best (the unrounded float64 configuration printed first)."""
    obj = cert.content["objective"]
    angle = cert.verification.values.get("angle_deg")
    what = (
        f"Riemannian gradient angle {angle:.4f} deg"
        if isinstance(angle, float)
        else f"{obj['name']} {obj['value_rounded']:.6g}"
    )
    moved = obj["value_rounded"] - obj["value_unrounded"]
    return (
        f"certified value: {what}, at the certificate's points as written ({cert.decimals} "
        f"decimals, re-normalised exactly) and recomputed in mpmath at 50 digits; the search's "
        f"best above ({obj['name']} {obj['value_unrounded']:.6g}) is the unrounded float64 "
        f"configuration, which rounding to {cert.decimals} decimals moved by {moved:+.2g}"
    )
