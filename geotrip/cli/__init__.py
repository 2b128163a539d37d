"""The ``geotrip`` command line.

Each subcommand lives in its own module ``geotrip/cli/_NAME.py`` exposing
``register(subparsers)``, which adds a parser whose ``func(args) -> int`` runs it.

User errors (:class:`CLIError`, ``ValueError``, ``TypeError`` and file-system errors
such as a missing input or an unwritable ``--out``) are reported as one line
``geotrip COMMAND: error: ...`` with exit status 2, never as a Python traceback;
``--debug`` (anywhere on the command line) re-raises them with the traceback.
Subcommands that write into a folder call :func:`check_out_dir` *before* computing.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import tempfile
from pathlib import Path

__all__ = [
    "main",
    "build_parser",
    "add_jax_options",
    "add_distributed_options",
    "add_comparison_options",
    "margins_from_args",
    "start_distributed",
    "check_out_dir",
    "CLIError",
]

# One line per subcommand module.
_COMMAND_MODULES = (
    "geotrip.cli._figures",
    "geotrip.cli._sweep",
    "geotrip.cli._bench",
    "geotrip.cli._search",
    "geotrip.cli._verify",
    "geotrip.cli._collapse",
    "geotrip.cli._compare",
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


def check_out_dir(path, *, option: str = "--out", create: bool = True, keep: bool = True) -> Path:
    """Check, before any computation, that ``path`` is (or can be) a writable folder.

    Creates the folder (and its parents) when ``create``, then proves it is writable by
    creating and removing a temporary file in it (``os.access`` is not enough: it says
    yes to root and knows nothing of read-only file systems). With ``keep=False`` the
    folders this call created are removed again (for a command that may still refuse its
    inputs and should then leave nothing behind).

    Returns:
      ``path`` as a :class:`~pathlib.Path`.

    Raises:
      CLIError: one line naming ``option``, the path and the reason (an existing file,
        a parent that is a file, permission denied, a read-only file system, ...).
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{option} {out}: exists and is not a directory")
    created = []
    if not out.exists():
        if not create:
            raise CLIError(f"{option} {out}: no such directory")
        created = [p for p in (out, *out.parents) if not p.exists()]
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CLIError(
                f"{option} {out}: cannot create the directory ({exc.strerror or exc})"
            ) from None
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".geotrip-write-test-"):
            pass
    except OSError as exc:
        raise CLIError(f"{option} {out}: not writable ({exc.strerror or exc})") from None
    finally:
        if not keep:
            for p in created:  # innermost first; each is empty again
                p.rmdir()
    return out


_X64_WHY = {
    True: "float64 for reference-quality numbers; --no-x64 is faster, in float32",
    False: "float32, JAX's default, is faster; --x64 computes in float64 for reference numbers",
}


def preset_spec(args: argparse.Namespace, presets, *, min_seeds: int = 1):
    """``(name, spec)`` of the preset chosen by ``--preset``/``--quick``, ``--seeds`` applied.

    Shared by the subcommands that run a preset (``collapse``, ``compare``); the default
    preset is ``quick``. Raises :class:`CLIError` for a conflicting ``--quick``, an unknown
    preset, a negative ``--seed`` or fewer than ``min_seeds`` ``--seeds``.
    """
    import dataclasses

    if args.quick and args.preset not in (None, "quick"):
        raise CLIError("--quick conflicts with --preset " + str(args.preset))
    name = "quick" if args.quick else (args.preset or "quick")
    if name not in presets:
        raise CLIError(f"unknown preset {name!r}; valid: {', '.join(presets)}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    spec = presets[name]
    if args.seeds is not None:
        if args.seeds < min_seeds:
            raise CLIError(f"--seeds must be >= {min_seeds}, got {args.seeds}")
        spec = dataclasses.replace(spec, n_seeds=args.seeds)
    return name, spec


def add_jax_options(
    parser: argparse.ArgumentParser,
    *,
    default_platform: str = "auto",
    x64: bool = False,
    x64_why: str | None = None,
) -> None:
    """Add the common ``--platform`` and ``--x64`` options to a subcommand parser.

    ``x64_why`` says in the help why this subcommand's default is what it is (the
    defaults differ between subcommands); a generic reason is used without it.
    """
    parser.add_argument(
        "--platform",
        choices=("cpu", "gpu", "cuda", "rocm", "tpu", "auto"),
        default=default_platform,
        help=f"JAX platform to run on (default: {default_platform}; 'auto' lets JAX choose)",
    )
    why = x64_why or _X64_WHY[bool(x64)]
    parser.add_argument(
        "--x64",
        action=argparse.BooleanOptionalAction,
        default=x64,
        help=f"enable float64 in JAX (default for this command: {'on' if x64 else 'off'}, {why})",
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
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the Python traceback of an error (accepted anywhere on the command line)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _COMMAND_MODULES:
        if command is None or mod.rpartition("._")[2] == command:
            importlib.import_module(mod).register(sub)
    return parser


_USER_ERRORS = (CLIError, ValueError, TypeError, OSError)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename is not None else ""
        return f"{exc.strerror}{':' if where else ''}{where}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 a failed check, 2 a usage error).

    A user error prints one line (``geotrip COMMAND: error: ...``) and returns 2; with
    ``--debug`` it is re-raised with its traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    names = {m.rpartition("._")[2] for m in _COMMAND_MODULES}
    parser = build_parser(argv[0] if argv and argv[0] in names else None)
    args = parser.parse_args(argv)
    args.debug = debug
    try:
        _setup_jax(args)
        return int(args.func(args) or 0)
    except _USER_ERRORS as exc:
        if debug:
            raise
        hint = "" if isinstance(exc, CLIError) else " (run with --debug for the traceback)"
        print(f"geotrip {args.command}: error: {_one_line(exc)}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def add_distributed_options(p: argparse.ArgumentParser) -> None:
    """``--coordinator``, ``--num-processes``, ``--process-id``, ``--cluster``: a run over
    several processes on JAX's distributed runtime (see :func:`geotrip.init_distributed`)."""
    g = p.add_argument_group(
        "several processes",
        "run the same command in every process; process 0 writes the outputs. Also from "
        "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID.",
    )
    g.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0")
    g.add_argument("--num-processes", type=int, metavar="N", help="number of processes")
    g.add_argument("--process-id", type=int, metavar="I", help="this process, 0 <= I < N")
    g.add_argument(
        "--cluster",
        action="store_true",
        help="let JAX detect the processes (SLURM, Open MPI, Cloud TPU pods, Kubernetes)",
    )


def start_distributed(args: argparse.Namespace) -> dict:
    """Join the multi-process run the options describe (nothing for a single process)."""
    from .._distributed import init_distributed

    try:
        return init_distributed(
            args.coordinator, args.num_processes, args.process_id, auto=args.cluster
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def add_comparison_options(p: argparse.ArgumentParser, *, active_share: str = "") -> None:
    """``--distances A B``, ``--margin MA``, ``--match RULE``, ``--margins MA MB``: the two
    compared losses, B's margin matched to A's unless both are given (see
    :func:`margins_from_args`). ``active_share`` completes that rule's help text."""
    p.add_argument(
        "--distances",
        nargs=2,
        default=["chord_sq", "geodesic"],
        metavar=("A", "B"),
        help="the two distances (default: chord_sq geodesic)",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.2,
        metavar="MA",
        help="margin of loss A; B's is matched to it by --match (default: 0.2)",
    )
    p.add_argument(
        "--match",
        default="slope",
        choices=("reference", "slope", "active_share"),
        help="rule deriving B's margin from A's (geotrip.match_margin; default: slope, "
        f"m_B = m_A g_B'(pi/2) / g_A'(pi/2){active_share})",
    )
    p.add_argument(
        "--margins",
        nargs=2,
        type=float,
        default=None,
        metavar=("MA", "MB"),
        help="both margins explicitly, each in its distance's units (overrides --margin and "
        "--match; a note on stderr when the two distances' units differ)",
    )


def margins_from_args(args: argparse.Namespace) -> tuple:
    """``(m_A, m_B)`` from :func:`add_comparison_options`' options (``m_B`` ``None``: to be
    matched by ``args.match``); raises :class:`CLIError` for a margin that is not finite
    and non-negative."""
    margins = tuple(args.margins) if args.margins is not None else (args.margin, None)
    for m in margins:
        if m is not None and not (math.isfinite(m) and m >= 0):
            raise CLIError(f"margins must be finite and >= 0, got {m}")
    return margins
