r"""The sweep engine: any jittable per-configuration function over :math:`N` configurations,
in fixed tiles under ``jit`` + ``vmap``, chunked for bounded memory and sharded over every
device JAX sees (``shard_map`` over a 1-D mesh), bitwise invariant to the chunk size and the
device count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["sweep", "sweep_chunks"]

Array = jax.Array


def _mesh(devices):
    from jax.sharding import Mesh

    devs = list(jax.devices() if devices is None else devices)
    if not devs:
        raise ValueError("no devices to shard over")
    return Mesh(np.asarray(devs), ("configs",)), len(devs)


_TILE = 64


def _shard_map():
    f = getattr(jax, "shard_map", None)
    if f is None:  # older JAX
        from jax.experimental.shard_map import shard_map as f
    return f


def _tiles(key, idx, fn):
    """Evaluate fn on the keys of idx (length a multiple of _TILE) in fixed-size vmapped tiles.

    Every tile is the same compiled computation whatever the chunk size or the device count,
    which is what makes sweeps bitwise reproducible across both.
    """
    t = idx.reshape(-1, _TILE)

    def tile(ids):
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(ids)
        return jax.vmap(fn)(keys)

    out = jax.lax.map(tile, t)
    return jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), out)


@partial(jax.jit, static_argnames=("fn", "size", "mesh", "impl", "gather"))
def _run_chunk(key_data, start, *, fn, size, mesh, impl, gather):
    key = jax.random.wrap_key_data(key_data, impl=impl)
    idx = start + jnp.arange(size, dtype=jnp.uint32)
    if mesh is None:
        return _tiles(key, idx, fn)
    from jax.sharding import PartitionSpec as P

    def body(k, i):
        out = _tiles(k, i, fn)
        if gather:  # several processes: every process receives the whole chunk
            out = jax.tree_util.tree_map(_gather, out)
        return out

    f = _shard_map()(
        body,
        mesh=mesh,
        in_specs=(P(), P("configs")),
        out_specs=P() if gather else P("configs"),
        **(_unchecked() if gather else {}),
    )
    return f(key, idx)


def _gather(x):
    """All-gather along the mesh axis: the result is the same on every device."""
    return jax.lax.all_gather(x, "configs", tiled=True)


def _unchecked():
    """shard_map keyword that turns off its replication check (all_gather's result is
    replicated, but shard_map cannot infer it)."""
    import inspect

    params = inspect.signature(_shard_map()).parameters
    return {"check_vma": False} if "check_vma" in params else {"check_rep": False}


def _global(x, mesh):
    """``x`` (the same host value on every process) as an array replicated over ``mesh``."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, NamedSharding(mesh, P()), lambda i: x[i])


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How a sweep is cut: ``size`` configurations per compiled call over ``ndev`` devices."""

    size: int
    ndev: int
    mesh: Any
    processes: int

    def starts(self, num: int, begin: int = 0):
        return range(begin, num, self.size)


def _plan(num, chunk_size, devices) -> _Plan:
    if not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if num >= 2**32:
        raise ValueError("num must be below 2**32 (configuration indices are uint32)")
    mesh, ndev = _mesh(devices)
    size = int(min(chunk_size, num))
    # per-device rows: whole tiles of _TILE configurations (see _tiles)
    per = -(-size // (_TILE * ndev)) * _TILE
    processes = jax.process_count()
    use_mesh = mesh if (ndev > 1 or devices is not None or processes > 1) else None
    return _Plan(size=per * ndev, ndev=ndev, mesh=use_mesh, processes=processes)


def sweep_chunks(
    fn: Callable[[Array], Mapping[str, Array]],
    num: int,
    *,
    key: Array,
    chunk_size: int = 65536,
    devices: Sequence[Any] | None = None,
    begin: int = 0,
):
    """Yield ``(start, {name: NumPy array of configurations start, start + 1, ...})`` chunk by
    chunk in index order, from configuration ``begin`` (a multiple of the chunk size, for
    resuming). Same values as :func:`sweep`; memory bounded by one chunk.

    With several processes (``jax.distributed``), every process calls it with the same
    arguments; each computes its devices' share and every process receives the whole chunk.
    """
    plan = _plan(num, chunk_size, devices)
    if begin % plan.size:
        raise ValueError(f"begin={begin} is not a multiple of the chunk size {plan.size}")
    impl = str(jax.random.key_impl(key))
    key_data = jax.random.key_data(key)
    gather = plan.processes > 1
    if gather:
        key_data = _global(key_data, plan.mesh)
    for start in plan.starts(num, begin):
        s = _global(np.uint32(start), plan.mesh) if gather else jnp.uint32(start)
        out = _run_chunk(
            key_data, s, fn=fn, size=plan.size, mesh=plan.mesh, impl=impl, gather=gather
        )
        take = min(plan.size, num - start)
        yield start, {k: np.asarray(v)[:take] for k, v in out.items()}


def chunk_size_of(num: int, chunk_size: int, devices: Sequence[Any] | None = None) -> int:
    """The number of configurations per compiled call that :func:`sweep` uses."""
    return _plan(num, chunk_size, devices).size


def sweep(
    fn: Callable[[Array], Mapping[str, Array]],
    num: int,
    *,
    key: Array,
    chunk_size: int = 65536,
    devices: Sequence[Any] | None = None,
    progress: bool | None = None,
) -> dict[str, np.ndarray]:
    r"""Evaluate a per-configuration function over ``num`` configurations, deterministically.

    Configuration :math:`i` (global index, :math:`0 \le i < N`) gets the key
    ``fold_in(key, i)`` and the value ``fn(fold_in(key, i))``. Chunks of
    ``chunk_size`` indices are evaluated by one ``jit(vmap(fn))`` whose index axis is
    sharded over a 1-D mesh of ``devices`` (default: every device JAX sees), so
    memory is bounded by the chunk and the work spreads over GPUs, a TPU slice or
    the host's CPU devices. The result does not depend on the chunk size or the
    number of devices, bitwise: each device evaluates whole tiles of 64 configurations
    with one fixed compiled tile (``lax.map`` over ``vmap``), so every configuration
    goes through the same code whatever the chunking (``shard_map`` over the mesh).

    Several processes (``jax.distributed.initialize()`` in each, see
    :func:`geotrip.init_distributed`): ``jax.devices()`` lists the global devices, each
    process computes its devices' tiles and every process receives the whole result,
    bitwise equal to a single-process run (the tiles are the same computations).

    Args:
      fn: ``key -> dict`` of arrays for one configuration (any fixed shapes); it is
        traced once, so it must be jittable; pass the same function object between
        calls to reuse the compilation.
      num: number of configurations :math:`N \ge 1`.
      key: the base PRNG key.
      chunk_size: configurations per compiled call (rounded up to a multiple of the
        device count).
      devices: devices for the mesh; ``None`` for ``jax.devices()``.
      progress: show a tqdm progress bar in configurations per second (default: when
        there are more than 4 chunks; process 0 only).

    Returns:
      Dict of NumPy arrays with leading axis ``num``.

    >>> import jax, numpy as np, geotrip as gt
    >>> fn = gt.triplet_metric(gt.family_sampler("uniform", dim=8))
    >>> r = gt.sweep(fn, 100, key=jax.random.key(0), chunk_size=64)
    >>> r["riemannian/joint"].shape, r["active/A"].dtype
    ((100,), dtype('bool'))
    """
    plan = _plan(num, chunk_size, devices)
    if progress is None:
        progress = -(-num // plan.size) > 4
    bar = None
    if progress and jax.process_index() == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=num, unit="config", unit_scale=True, desc=f"sweep {num} configs")
    parts: dict[str, list[np.ndarray]] = {}
    for _, out in sweep_chunks(fn, num, key=key, chunk_size=chunk_size, devices=devices):
        for k, v in out.items():
            parts.setdefault(k, []).append(v)
        if bar is not None:
            bar.update(len(next(iter(out.values()))))
    if bar is not None:
        bar.close()
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}
