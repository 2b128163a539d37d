r"""Latency: first-call and repeat-call time of the public functions, and the CLI's quick runs.

(a) **Functions.** For each of ``gt.angle``, ``gt.triplet_loss``, ``gt.triplet_grads``,
    ``gt.gradient_angles``, ``gt.batch_gradient_angle`` and ``gt.mine_triplets`` on small
    float32 NumPy inputs (one triplet in d = 3; 8 points in 4 classes), a *fresh Python
    process* imports geotrip and JAX, initialises the backend, then times the first call
    (compilation included), ``reps`` repeat calls (median and minimum), and the same
    function under the user's ``jax.jit`` (first call, repeat median), which shows what an
    internally jitted API would give. Each function runs in two processes sharing an empty
    persistent compilation cache folder: ``cold`` (nothing cached) and ``warm`` (the
    second process reads what the first wrote: a notebook that called
    ``gt.enable_compilation_cache()`` before).

(b) **Commands.** Wall time and peak resident memory (``os.wait4``'s ``ru_maxrss`` of the
    child, which includes the descendants it waited for) of the quick form of every
    subcommand (``figures --quick``, ``search``, ``sweep``, ``collapse --preset tiny``,
    ``analyze --example``, ``verify``), each run twice with a fresh persistent
    compilation cache folder: cold, then warm. The outputs of the two runs are compared
    (every ``.npz`` array and every ``.json`` file without its provenance fields).

Targets (issue 11): repeat call ≤ 2 ms, first call ≤ 1 s, ``figures`` ≤ 120 s cold and
≤ 45 s warm (the full run; this suite times ``--quick``), peak memory < 2 GB.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

NAME = "latency"
DESCRIPTION = (
    "first/repeat-call latency of the public functions; cold/warm time and peak memory "
    "of each subcommand's quick run"
)

FUNCTIONS = (
    "angle",
    "triplet_loss",
    "triplet_grads",
    "gradient_angles",
    "batch_gradient_angle",
    "mine_triplets",
)

# name -> argv after ``geotrip`` (``{tmp}``: the run's output folder; ``{certificate}``: a
# committed certificate, see :func:`committed_certificate`).
COMMANDS = {
    "figures": ["figures", "--quick", "--out", "{tmp}/figures"],
    "search": [
        "search",
        "--objective",
        "descent",
        "--triplets",
        "2",
        "--dim",
        "3",
        "--seed",
        "0",
        "--no-progress",
        "--out",
        "{tmp}/descent.json",
    ],
    "sweep": [
        "sweep",
        "--family",
        "uniform",
        "--dim",
        "3",
        "128",
        "--samples",
        "20000",
        "--seed",
        "0",
        "--out",
        "{tmp}/sweep",
    ],
    "collapse": ["collapse", "--preset", "tiny", "--no-progress", "--out", "{tmp}/collapse"],
    "analyze": ["analyze", "--example", "--out", "{tmp}/analyze"],
    "verify": ["verify", "{certificate}"],
}

TARGETS = {
    "repeat_call_ms": 2.0,
    "first_call_s": 1.0,
    "figures_full_cold_s": 120.0,
    "figures_full_warm_s": 45.0,
    "peak_rss_mb": 2048.0,
}

_CHILD = r"""
import functools, json, os, statistics, sys, time
t0 = time.perf_counter()
import numpy as np
import jax
import geotrip as gt
jax.devices()
t_import = time.perf_counter() - t0
cache = os.environ.get("GEOTRIP_LATENCY_CACHE")
if cache:
    gt.enable_compilation_cache(cache, min_compile_time_secs=0.0)
name, reps = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
def unit(*shape):
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)
a, p, n = unit(3), unit(3), unit(3)
X, y = unit(8, 3), np.repeat(np.arange(4, dtype=np.int32), 2)
T = np.array([[0, 1, 2], [0, 1, 4]], np.int32)
fn = getattr(gt, name)
args, kw = {
    "angle": ((a, p), {}),
    "triplet_loss": ((a, p, n), {"distance": "chord_sq", "margin": 0.2}),
    "triplet_grads": ((a, p, n), {"distance": "geodesic", "margin": 0.2}),
    "gradient_angles": ((a, p, n), {}),
    "batch_gradient_angle": ((X, T), {}),
    "mine_triplets": ((X, y), {"strategy": "semihard", "distance": "chord_sq", "margin": 0.2}),
}[name]
def timed(f):
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    return time.perf_counter() - t
call = functools.partial(fn, **kw)
first = timed(call)
rep = [timed(call) for _ in range(reps)]
jitted = jax.jit(call)
jit_first = timed(jitted)
jit_rep = [timed(jitted) for _ in range(reps)]
print(json.dumps({
    "import_s": t_import, "first_call_s": first,
    "repeat_ms_median": 1e3 * statistics.median(rep), "repeat_ms_min": 1e3 * min(rep),
    "jit_first_call_s": jit_first, "jit_repeat_ms_median": 1e3 * statistics.median(jit_rep),
}))
"""


# The children import the same geotrip as this process (not another installed copy).
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JAX_COMPILATION_CACHE_DIR", "GEOTRIP_NO_COMPILATION_CACHE")
    }
    path = os.pathsep.join(filter(None, (str(_SOURCE_ROOT), env.get("PYTHONPATH"))))
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=path, **extra)
    return env


def _vm_hwm_kb(pid: int) -> int:
    """The process's own resident high-water mark (``VmHWM``, kB), 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _run_child(argv: list[str], env: dict, *, cwd: Path, timeout: float) -> dict:
    """Run ``argv``; wall seconds, peak RSS (MB) of the child, exit status, output tail.

    The peak is the child's own ``VmHWM`` polled from ``/proc`` while it runs (Linux),
    falling back to ``wait4``'s ``ru_maxrss``. ``ru_maxrss`` alone is not used where
    ``/proc`` works: Linux carries the *parent's* high-water mark across ``fork``/``exec``
    into it, so a child started from a large process (a test worker) looks large.
    """
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        deadline = t0 + timeout
        hwm_kb = 0
        while True:
            hwm_kb = max(hwm_kb, _vm_hwm_kb(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    return {
        "seconds": wall,
        "peak_rss_mb": (hwm_kb or usage.ru_maxrss) / 1024,  # kilobytes on Linux
        "returncode": proc.returncode,
        "timed_out": wall > timeout,
        "output_tail": text[-2000:],
    }


def function_latency(name: str, *, reps: int, cache_dir: Path, timeout: float = 300) -> dict:
    """First and repeat-call latency of ``gt.<name>``: a cold process, then a warm one."""
    out = {"function": name}
    for phase in ("cold", "warm"):
        env = _clean_env(GEOTRIP_LATENCY_CACHE=str(cache_dir))
        r = _run_child(
            [sys.executable, "-c", _CHILD, name, str(reps)], env, cwd=cache_dir, timeout=timeout
        )
        if r["returncode"] != 0:
            raise RuntimeError(f"latency child for {name} ({phase}) failed:\n{r['output_tail']}")
        out[phase] = json.loads(r["output_tail"].strip().splitlines()[-1])
    return out


def _strip(obj):
    """Drop provenance and timings (keys naming seconds: ``configs_per_second``,
    ``train_seconds``, ...), which legitimately differ between two runs."""
    if isinstance(obj, dict):
        return {
            k: _strip(v)
            for k, v in obj.items()
            if k not in ("provenance", "time_utc", "elapsed_s") and "second" not in k
        }
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def compare_outputs(a: Path, b: Path) -> dict:
    """Compare two output folders: every ``.npz`` array, every ``.json`` minus provenance
    and timings."""
    compared, differ = 0, []
    for fa in sorted(a.rglob("*")):
        rel = fa.relative_to(a)
        fb = b / rel
        if fa.suffix not in (".npz", ".json") or fa.name.endswith(".provenance.json"):
            continue
        compared += 1
        if not fb.exists():
            differ.append(f"{rel} (missing)")
        elif fa.suffix == ".npz":
            with np.load(fa) as za, np.load(fb) as zb:
                same = set(za.files) == set(zb.files) and all(
                    np.array_equal(za[k], zb[k], equal_nan=za[k].dtype.kind in "fc")
                    for k in za.files
                )
            if not same:
                differ.append(str(rel))
        elif _strip(json.loads(fa.read_text())) != _strip(json.loads(fb.read_text())):
            differ.append(str(rel))
    return {"files_compared": compared, "files_differing": differ}


def committed_certificate(root: Path) -> Path | None:
    """A committed certificate for ``verify``: ``descent_min.json`` anywhere under
    ``figures/certificates``, else the first certificate there; ``None`` without any."""
    folder = root / "figures" / "certificates"
    found = sorted(folder.rglob("descent_min.json")) or sorted(folder.rglob("*.json"))
    return found[0] if found else None


def command_latency(
    name: str, argv: list[str], *, workdir: Path, root: Path, timeout: float = 1800
) -> dict:
    """Cold then warm wall time and peak memory of ``geotrip <argv>`` (fresh cache folder)."""
    cache = workdir / f"cache_{name}"
    exe = [sys.executable, "-m", "geotrip"]
    out: dict = {"command": name, "argv": ["geotrip", *argv], "load_1min": os.getloadavg()[0]}
    dirs = {}
    for phase in ("cold", "warm"):
        tmp = workdir / f"{name}_{phase}"
        tmp.mkdir(parents=True)
        dirs[phase] = tmp
        full = [s.format(tmp=tmp, certificate=committed_certificate(root)) for s in argv]
        r = _run_child(
            exe + full, _clean_env(JAX_COMPILATION_CACHE_DIR=str(cache)), cwd=tmp, timeout=timeout
        )
        out[phase] = {k: r[k] for k in ("seconds", "peak_rss_mb", "returncode", "timed_out")}
        if r["returncode"] not in (0, 1):
            out[phase]["output_tail"] = r["output_tail"]
    out["outputs"] = compare_outputs(dirs["cold"], dirs["warm"])
    return out


def run(
    *, quick: bool = False, log: Callable[[str], None] = print, sizes: dict | None = None
) -> dict:
    """Run the suite. ``sizes`` overrides (keys: ``functions``, ``commands``, ``reps``);
    ``quick`` times every function but only the ``search`` and ``verify`` commands."""
    import platform

    import jax

    functions = FUNCTIONS
    commands = ("search", "verify") if quick else tuple(COMMANDS)
    reps = 20
    if sizes:
        unknown = set(sizes) - {"functions", "commands", "reps"}
        if unknown:
            raise ValueError(f"unknown size key(s) {sorted(unknown)}")
        functions = tuple(sizes.get("functions", functions))
        commands = tuple(sizes.get("commands", commands))
        reps = int(sizes.get("reps", reps))
    bad = [f for f in functions if f not in FUNCTIONS] + [c for c in commands if c not in COMMANDS]
    if bad:
        raise ValueError(f"unknown function(s)/command(s) {bad}")
    root = _SOURCE_ROOT
    load_before = list(os.getloadavg())
    funcs, cmds = [], []
    with tempfile.TemporaryDirectory(prefix="geotrip-latency-") as tmp:
        tmp = Path(tmp)
        for name in functions:
            cache = tmp / f"fcache_{name}"
            cache.mkdir()
            r = function_latency(name, reps=reps, cache_dir=cache)
            funcs.append(r)
            c, w = r["cold"], r["warm"]
            log(
                f"{name:22s} first {c['first_call_s']:.3f} s (warm cache "
                f"{w['first_call_s']:.3f} s), repeat {c['repeat_ms_median']:.2f} ms, under "
                f"jax.jit: first {c['jit_first_call_s']:.3f} s, repeat "
                f"{c['jit_repeat_ms_median']:.3f} ms (import {c['import_s']:.2f} s)"
            )
        for name in commands:
            if name == "verify" and committed_certificate(root) is None:
                log("verify: skipped (no committed certificate in this install)")
                continue
            r = command_latency(name, COMMANDS[name], workdir=tmp, root=root)
            cmds.append(r)
            c, w, o = r["cold"], r["warm"], r["outputs"]
            log(
                f"geotrip {name:9s} cold {c['seconds']:7.1f} s, warm {w['seconds']:7.1f} s, "
                f"peak {max(c['peak_rss_mb'], w['peak_rss_mb']):6.0f} MB, exit "
                f"{c['returncode']}/{w['returncode']}; {o['files_compared']} output files "
                f"compared, {len(o['files_differing'])} differ"
            )
    return {
        "suite": NAME,
        "quick": quick,
        "reps": reps,
        "targets": TARGETS,
        "functions": funcs,
        "commands": cmds,
        "summary": _summary(funcs, cmds),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
        "machine": platform.machine(),
    }


def _summary(funcs: list[dict], cmds: list[dict]) -> dict:
    """Which targets the measured numbers meet (worst case over functions and commands)."""
    out: dict = {}
    if funcs:
        rep = max(f["cold"]["repeat_ms_median"] for f in funcs)
        first = max(f["cold"]["first_call_s"] for f in funcs)
        jit_rep = max(f["cold"]["jit_repeat_ms_median"] for f in funcs)
        out["worst_repeat_call_ms"] = rep
        out["worst_first_call_s"] = first
        out["worst_first_call_s_warm_cache"] = max(f["warm"]["first_call_s"] for f in funcs)
        out["worst_jit_repeat_call_ms"] = jit_rep
        out["median_import_s"] = statistics.median(f["cold"]["import_s"] for f in funcs)
        out["repeat_call_target_met"] = rep <= TARGETS["repeat_call_ms"]
        out["first_call_target_met"] = first <= TARGETS["first_call_s"]
    if cmds:
        peak = max(max(c["cold"]["peak_rss_mb"], c["warm"]["peak_rss_mb"]) for c in cmds)
        out["worst_peak_rss_mb"] = peak
        out["peak_rss_target_met"] = peak < TARGETS["peak_rss_mb"]
        out["all_outputs_identical_cold_vs_warm"] = all(
            not c["outputs"]["files_differing"] for c in cmds
        )
    return out
