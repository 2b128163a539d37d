"""``geotrip verify FILE...``: re-check certificates with the independent verifier (no JAX)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "verify",
        help="re-check counterexample certificates in float64 and mpmath "
        "(independent of the search code)",
        description=(
            "Recompute every claim of each certificate from its exactly re-normalised decimal "
            "points with plain closed forms, in float64 (NumPy) and in mpmath at 50 digits, and "
            "check every assertion with a margin of safety. Exit status: 0 all verified, 1 a "
            "claim failed, 2 an unreadable or malformed file. Imports no JAX."
        ),
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="certificate JSON files")
    p.add_argument("--verbose", "-v", action="store_true", help="also list every passed check")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..counterexamples.certificates import CertificateError, verify_certificate

    status = 0
    for f in args.files:
        try:
            res = verify_certificate(f)
        except CertificateError as exc:
            print(f"geotrip verify: error: {exc}", file=sys.stderr)
            status = max(status, 2)
            continue
        except Exception as exc:
            print(
                f"geotrip verify: error: {f}: cannot check this certificate "
                f"({type(exc).__name__}: {exc})",
                file=sys.stderr,
            )
            status = max(status, 2)
            continue
        for line in res.failures:
            print(f"{f}: FAIL {line}")
        if args.verbose:
            for line in res.checked:
                print(f"{f}: ok {line}")
        print(res.summary())
        if not res.ok:
            status = max(status, 1)
    return status
