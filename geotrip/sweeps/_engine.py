r"""The sweep engine: any jittable per-configuration function over :math:`N` configurations,
in fixed tiles under ``jit`` + ``vmap``, chunked for bounded memory and sharded over every
device JAX sees (``shard_map`` over a 1-D mesh), bitwise invariant to the chunk size and the
device count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["sweep"]

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


@partial(jax.jit, static_argnames=("fn", "size", "mesh"))
def _run_chunk(key, start, *, fn, size, mesh):
    idx = start + jnp.arange(size, dtype=jnp.uint32)
    if mesh is None:
        return _tiles(key, idx, fn)
    from jax.sharding import PartitionSpec as P

    f = _shard_map()(
        lambda k, i: _tiles(k, i, fn),
        mesh=mesh,
        in_specs=(P(), P("configs")),
        out_specs=P("configs"),
    )
    return f(key, idx)


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

    Multi-host (``jax.distributed.initialize()`` on every host): ``jax.devices()``
    lists the global devices and each host computes its shard; the gathered result
    is available on every host.

    Args:
      fn: ``key -> dict`` of arrays for one configuration (any fixed shapes); it is
        traced once, so it must be jittable; pass the same function object between
        calls to reuse the compilation.
      num: number of configurations :math:`N \ge 1`.
      key: the base PRNG key.
      chunk_size: configurations per compiled call (rounded up to a multiple of the
        device count).
      devices: devices for the mesh; ``None`` for ``jax.devices()``.
      progress: show a tqdm progress bar (default: when there are more than 4 chunks).

    Returns:
      Dict of NumPy arrays with leading axis ``num``.

    >>> import jax, numpy as np, geotrip as gt
    >>> fn = gt.triplet_metric(gt.family_sampler("uniform", dim=8))
    >>> r = gt.sweep(fn, 100, key=jax.random.key(0), chunk_size=64)
    >>> r["riemannian/joint"].shape, r["active/A"].dtype
    ((100,), dtype('bool'))
    >>> r2 = gt.sweep(fn, 100, key=jax.random.key(0), chunk_size=100)  # other chunking
    >>> all(np.array_equal(r[k], r2[k], equal_nan=r[k].dtype.kind == "f") for k in r)
    True
    """
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
    size = per * ndev
    use_mesh = mesh if (ndev > 1 or devices is not None) else None
    n_chunks = -(-num // size)
    if progress is None:
        progress = n_chunks > 4
    starts = range(0, num, size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, total=n_chunks, unit="chunk", desc=f"sweep {num} configs")
    parts: dict[str, list[np.ndarray]] = {}
    for start in starts:
        out = _run_chunk(key, jnp.uint32(start), fn=fn, size=size, mesh=use_mesh)
        take = min(size, num - start)
        for k, v in out.items():
            parts.setdefault(k, []).append(np.asarray(v)[:take])
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}
