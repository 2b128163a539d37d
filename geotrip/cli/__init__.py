"""The ``geotrip`` command line.

Each subcommand lives in its own module ``geotrip/cli/_NAME.py`` exposing
``register(subparsers)``, which adds a parser whose ``func(args) -> int`` runs it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

__all__ = ["main", "build_parser"]

# One line per subcommand module.
_COMMAND_MODULES = (
    "geotrip.cli._figures",
    "geotrip.cli._sweep",
    "geotrip.cli._bench",
    "geotrip.cli._search",
    "geotrip.cli._verify",
    "geotrip.cli._collapse",
    "geotrip.cli._analyze",
)


class CLIError(Exception):
    """An error to report to the user as one line, with exit status 2."""


def _setup_jax(args: argparse.Namespace) -> None:
    """Apply --platform and --x64 before JAX creates any array.

    Subcommands without these options (``verify``) do not import JAX at all.
    """
    if not hasattr(args, "platform") and not hasattr(args, "x64"):
        return
    platform = getattr(args, "platform", None)
    if platform and platform != "auto":
        os.environ["JAX_PLATFORMS"] = platform
    import jax

    if platform and platform != "auto":
        jax.config.update("jax_platforms", platform)
    if getattr(args, "x64", False):
        jax.config.update("jax_enable_x64", True)
    from .._compilation import enable_compilation_cache

    enable_compilation_cache()  # off with GEOTRIP_NO_COMPILATION_CACHE=1


def add_jax_options(
    parser: argparse.ArgumentParser, *, default_platform: str = "cpu", x64: bool = False
) -> None:
    """Add the common ``--platform`` and ``--x64`` options to a subcommand parser."""
    parser.add_argument(
        "--platform",
        choices=("cpu", "gpu", "cuda", "rocm", "tpu", "auto"),
        default=default_platform,
        help=f"JAX platform to run on (default: {default_platform}; 'auto' lets JAX choose)",
    )
    parser.add_argument(
        "--x64",
        action=argparse.BooleanOptionalAction,
        default=x64,
        help=f"enable float64 in JAX (default: {'on' if x64 else 'off'})",
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; with ``command``, only that subcommand's module is imported, so a
    light command (``verify``) does not load the heavy ones (JAX) to build the parser."""
    parser = argparse.ArgumentParser(
        prog="geotrip",
        description="Gradient geometry of triplet losses on the unit hypersphere (JAX).",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"geotrip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _COMMAND_MODULES:
        if command is None or mod.rpartition("._")[2] == command:
            importlib.import_module(mod).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 a failed check, 2 a usage error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    names = {m.rpartition("._")[2] for m in _COMMAND_MODULES}
    parser = build_parser(argv[0] if argv and argv[0] in names else None)
    args = parser.parse_args(argv)
    _setup_jax(args)
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"geotrip {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"geotrip {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
