r"""Compiling a search's programs ahead of their first call, in background threads.

A cold ``geotrip search`` spends most of its time in XLA compiling a handful of programs
one after the other (the restart draw, the optimiser's chunk, the certification's score,
validity, descent-step and claims programs), each on one core. XLA compiles without the
Python lock, so programs whose argument shapes are known in advance can be compiled in
other threads while the main thread compiles or runs something else.

:func:`ahead` lowers a jitted function for given arguments (concrete arrays or
:class:`jax.ShapeDtypeStruct`) and compiles it in a worker thread; a later ordinary call with
arguments of the same shapes and dtypes reuses that executable from JAX's in-memory
cache (the same program, compiled with the same options: results are bit for bit those
of a call that compiled it). Callers :func:`settle` the futures before the first call,
so a program is never compiled twice at once. A failed background compilation is
ignored: the ordinary call then compiles as it would have.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable

import jax

__all__ = ["ahead", "compile_search_ahead", "settle", "worker"]


def ahead(jitted, *args, pool: concurrent.futures.Executor) -> concurrent.futures.Future:
    r"""Lower ``jitted`` for ``args`` here and submit its compilation to ``pool``.

    Tracing and lowering stay in the calling thread, in program order: JAX numbers some
    constants of a lowered program (the error codes of ``checkify.debug_check``) in the
    order programs are traced, and the persistent compilation cache keys on that text, so
    tracing in several threads at once would make a warm run miss the cache. The float64
    switch and the dtype promotion mode (thread-local contexts) are the caller's in the worker.
    """
    try:
        lowered = jitted.lower(*args)
    except Exception as exc:  # the ordinary call will raise or compile it
        failed: concurrent.futures.Future = concurrent.futures.Future()
        failed.set_exception(exc)
        return failed
    x64 = bool(jax.config.jax_enable_x64)
    promotion = jax.config.jax_numpy_dtype_promotion

    def job():
        with jax.enable_x64(x64), jax.numpy_dtype_promotion(promotion):
            return lowered.compile()

    return pool.submit(job)


def settle(futures: Iterable[concurrent.futures.Future]) -> None:
    r"""Wait for every future; exceptions are dropped (the program compiles on first call)."""
    for f in futures:
        try:
            f.result()
        except Exception:  # a background compile is only an optimisation
            pass


def worker() -> concurrent.futures.ThreadPoolExecutor:
    r"""A one-thread pool for background compilations (shut it down when done)."""
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="geotrip-compile")


def compile_search_ahead(draw, init_fn, run_chunk, spec: jax.ShapeDtypeStruct) -> None:
    r"""Compile a search's programs before their first calls, two at a time.

    ``draw`` (``(jitted, *args)`` of the restart draw, or None) compiles in a worker thread
    while this thread compiles the optimiser's initialiser and chunk for starting
    configurations of shape ``spec`` (under the standard dtype promotion, as the search
    calls them). Returns when both are done.
    """
    pool = worker()
    try:
        futures = [] if draw is None else [ahead(*draw, pool=pool)]
        with jax.numpy_dtype_promotion("standard"):
            try:
                state, best = jax.eval_shape(init_fn, spec)
                init_fn.lower(spec).compile()
                run_chunk.lower(spec, state, spec, best).compile()
            except Exception:  # only an optimisation: the calls compile then
                pass
        settle(futures)
    finally:
        pool.shutdown()
