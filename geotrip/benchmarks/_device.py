"""The device check run by ``benchmarks/device_check.sh`` on an accelerator.

Measures, on whatever device JAX uses: (1) the device's memory bandwidth (a jitted
read + write over a large array) and the closed-form gradient-angle throughput against the
rate at which its inputs can be read (12 d bytes per configuration in float32); (2) a
streaming sweep of ``--sweep-samples`` configurations (default 1e8) through
:func:`geotrip.run_sweep`; (3) the vmapped-seeds training throughput against sequential
runs (the ``training`` benchmark suite); optionally (4) ``geotrip collapse --preset full``
under a time budget. Everything lands in one JSON with provenance.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .._io import atomic_write_text

__all__ = ["main"]


def _best(fn, reps):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def device_bandwidth(nbytes: int, reps: int = 5) -> float:
    """Bytes read + written per second by a jitted ``x + 1`` over ``nbytes`` of float32."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones((nbytes // 4,), jnp.float32)
    f = jax.jit(lambda x: x + 1)
    jax.block_until_ready(f(x))
    return 2 * x.size * 4 / _best(lambda: jax.block_until_ready(f(x)), reps)


def angle_throughput(dims, elems: int, reps: int, bandwidth: float, log) -> list[dict]:
    """Closed-form gradient angles (chord_sq vs geodesic, float32) per dimension."""
    import jax
    import jax.numpy as jnp

    import geotrip as gt

    closed = jax.jit(lambda a, p, n: gt.gradient_angles_closed_form(a, p, n))
    rows = []
    for d in dims:
        N = max(1024, elems // d)
        a, p, n = gt.uniform_sphere(jax.random.key(d), (3, N), d, dtype=jnp.float32)
        jax.block_until_ready(closed(a, p, n))
        t = _best(lambda: jax.block_until_ready(closed(a, p, n)), reps)
        limit = bandwidth / (12 * d)
        rows.append(
            {
                "dim": d,
                "N": N,
                "configs_per_s": N / t,
                "read_limit_configs_per_s": limit,
                "share_of_read_limit": (N / t) / limit,
            }
        )
        log(f"angles d={d}: {N / t:.3g} configs/s, {(N / t) / limit:.2f} of the read limit")
    return rows


def sweep_throughput(samples: int, dim: int, chunk: int, log) -> dict:
    import geotrip as gt

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        s = gt.run_sweep("uniform", dims=(dim,), samples=samples, seed=0, chunk_size=chunk, out=tmp)
        wall = time.perf_counter() - t0
    e = s["by_dim"][str(dim)]
    med = e["riemannian/joint"].get("quantiles", {}).get("0.5")
    log(f"sweep: {samples:.3g} configs (d={dim}) in {wall:.1f} s, {samples / wall:.3g}/s")
    return {
        "family": "uniform",
        "dim": dim,
        "samples": samples,
        "chunk_size": chunk,
        "seconds": wall,
        "configs_per_s": samples / wall,
        "riemannian_joint_median_deg": med,
    }


def collapse_full(budget_s: float, log) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "geotrip", "collapse", "--preset", "full", "--out", tmp]
        cmd += ["--no-figures", "--no-progress", "--platform", "auto"]
        t0 = time.perf_counter()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=budget_s)
            done, rc, tail = True, r.returncode, (r.stdout + r.stderr)[-1000:]
        except subprocess.TimeoutExpired:
            done, rc, tail = False, None, ""
        wall = time.perf_counter() - t0
    log(f"collapse --preset full: {'finished' if done else 'stopped at the budget'} {wall:.0f} s")
    return {"finished": done, "returncode": rc, "seconds": wall, "budget_s": budget_s, "tail": tail}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="the JSON to write")
    ap.add_argument("--sweep-samples", type=int, default=10**8)
    ap.add_argument("--sweep-dim", type=int, default=16)
    ap.add_argument("--chunk-size", type=int, default=2**22)
    ap.add_argument("--angle-dims", type=int, nargs="+", default=[3, 16, 128, 1024])
    ap.add_argument("--angle-elems", type=int, default=2**27, help="N * d per input array")
    ap.add_argument("--bandwidth-bytes", type=int, default=2**31)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--collapse-budget", type=float, default=0, help="seconds; 0: skip it")
    ap.add_argument("--quick-training", action="store_true", help="quick training suite")
    ap.add_argument("--allow-cpu", action="store_true", help="run on the CPU (tiny sizes)")
    args = ap.parse_args(argv)

    import jax

    backend = jax.default_backend()
    if backend == "cpu" and not args.allow_cpu:
        print(
            "device_check: JAX sees no accelerator (backend: cpu; devices: "
            f"{jax.devices()}). Install jax[cuda12] (NVIDIA) or jax[tpu] and run it on a machine "
            "with a GPU/TPU; nothing was measured.",
            file=sys.stderr,
        )
        return 3
    from .._provenance import provenance
    from ..benchmarks import run_suites

    log = lambda s: print(s, flush=True)
    t0 = time.perf_counter()
    record = {"backend": backend, "devices": [str(d) for d in jax.devices()]}
    bw = device_bandwidth(args.bandwidth_bytes, args.reps)
    log(f"{backend}: memory bandwidth {bw / 1e9:.1f} GB/s (jitted x + 1, read + write)")
    record["bandwidth_bytes_per_s"] = bw
    record["angles"] = angle_throughput(args.angle_dims, args.angle_elems, args.reps, bw, log)
    record["sweep"] = sweep_throughput(args.sweep_samples, args.sweep_dim, args.chunk_size, log)
    record["training"] = run_suites(["training"], quick=args.quick_training, log=log)["training"]
    if args.collapse_budget > 0:
        record["collapse_full"] = collapse_full(args.collapse_budget, log)
    record["seconds"] = time.perf_counter() - t0
    record["provenance"] = provenance(
        seed=0, extra={k: str(v) for k, v in vars(args).items()}, run=True
    )
    atomic_write_text(args.out, json.dumps(record, indent=2, default=str) + "\n")
    log(f"wrote {args.out} ({record['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
