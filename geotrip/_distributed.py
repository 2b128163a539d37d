"""Multi-process runs on JAX's own distributed runtime (``jax.distributed``).

One process per host (or per accelerator): every process runs the same program; JAX's
coordinator joins them, ``jax.devices()`` then lists the devices of all processes, and
computations over a mesh of those devices exchange data with JAX's collectives (NCCL on
GPUs, ICI on TPUs, Gloo between CPU processes). geotrip's sweep engine spreads its fixed
tiles over that mesh, so a sweep gives bitwise the same numbers whatever the number of
processes; process 0 writes the outputs. ``geotrip search`` splits its restarts and
``geotrip collapse`` its cells between the processes (``process_share``) and gathers
the results with ``allgather_objects``.
"""

from __future__ import annotations

import os
import pickle

import numpy as np

__all__ = ["init_distributed", "is_writer", "process_share", "allgather_objects"]

ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"  # read by jax.distributed.initialize itself


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def init_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = False,
    timeout_s: int = 300,
) -> dict:
    """Join a multi-process run (``jax.distributed.initialize``), before any JAX computation.

    The settings come from the arguments, else from the environment variables
    ``JAX_COORDINATOR_ADDRESS`` (``HOST:PORT`` of process 0), ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID``; with ``auto=True`` and none of them given, JAX detects the cluster
    (SLURM, Open MPI, Cloud TPU pods, Kubernetes). With nothing given and ``auto=False``
    it does nothing: a single-process run.

    On CPU, processes exchange data through Gloo (set here before the backend starts).

    Returns:
      ``{"process_id", "num_processes", "coordinator"}`` (``num_processes`` 1 and the
      rest ``None`` for a single-process run).

    Raises:
      ValueError: an incomplete or inconsistent setting (a coordinator without the
        number of processes, a process id outside ``[0, num_processes)``, a coordinator
        not of the form ``HOST:PORT``).

    >>> import geotrip as gt
    >>> gt.init_distributed()  # nothing given: a single-process run, nothing to join
    {'process_id': None, 'num_processes': 1, 'coordinator': None}
    """
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR) or None
    if num_processes is None:
        num_processes = _env_int(ENV_NUM_PROCESSES)
    if process_id is None:
        process_id = _env_int(ENV_PROCESS_ID)
    given = (coordinator, num_processes, process_id)
    if not auto and all(v is None for v in given):
        return {"process_id": None, "num_processes": 1, "coordinator": None}
    if not auto and any(v is None for v in given):
        raise ValueError(
            "a multi-process run needs the coordinator (HOST:PORT), the number of processes "
            "and this process's id (options --coordinator, --num-processes, --process-id or "
            f"{ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}); "
            "or cluster auto-detection"
        )
    if coordinator is not None:
        host, sep, port = coordinator.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"coordinator must be HOST:PORT, got {coordinator!r}")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if num_processes is not None and process_id is not None:
        if not 0 <= process_id < num_processes:
            raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
    import jax

    # CPU processes exchange data through Gloo (JAX's default in recent versions; set for
    # older ones); the setting only concerns the CPU backend
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=timeout_s,
    )
    return {
        "process_id": jax.process_index(),
        "num_processes": jax.process_count(),
        "coordinator": coordinator,
    }


def is_writer() -> bool:
    """Whether this process writes outputs: process 0 (or the only process)."""
    import jax

    return jax.process_index() == 0


def process_share(n: int) -> np.ndarray:
    """Indices of the ``n`` work items (restarts, cells) this process runs.

    Items are dealt in equal contiguous blocks of ``ceil(n / P)`` over the ``P`` processes
    (process ``i`` gets ``i * ceil(n / P) ...``); a last block that runs past ``n`` is
    padded with the index ``n - 1``, so every process runs the same number of items (one
    compiled shape) and the padding is dropped when the results are gathered. A single
    process gets ``arange(n)``.

    Returns:
      ``(ceil(n / P),)`` int64 indices in ``[0, n)``.
    """
    import jax

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    count, pid = jax.process_count(), jax.process_index()
    share = -(-n // count)
    return np.minimum(np.arange(pid * share, (pid + 1) * share), n - 1)


def allgather_objects(obj) -> list:
    """Every process's ``obj``, in process order (a collective: all processes must call it).

    The objects (numpy arrays, dicts of numbers, lists of rows) travel pickled, as bytes,
    through JAX's collectives (``process_allgather``: Gloo between CPU processes), so no
    file is shared; floats arrive bit for bit. A single process gets ``[obj]``.
    """
    import jax

    if jax.process_count() == 1:
        return [obj]
    from jax.experimental import multihost_utils

    blob = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.int32(blob.size))).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: blob.size] = blob
    blobs = np.asarray(multihost_utils.process_allgather(padded))
    return [pickle.loads(blobs[i, : int(m)].tobytes()) for i, m in enumerate(sizes)]
