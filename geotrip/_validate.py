"""Input checks shared by the public functions.

Shape and dtype checks always run (shapes are static under ``jit``). Value checks
(finiteness, unit norm, index range) run only on concrete arrays, i.e. outside
``jit``/``vmap``/``grad`` tracing: inside a trace the values are not known.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "is_concrete",
    "as_float_array",
    "check_points",
    "check_same_shape",
    "check_triplets",
    "unit_tolerance",
]


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def unit_tolerance(dtype) -> float:
    """Tolerance on | ||x|| - 1 | for a vector to count as unit: ``1e3 * eps``.

    That is about 1.2e-4 in float32 and 2.2e-13 in float64: loose enough for
    vectors normalised in that precision, tight enough to catch raw embeddings.
    """
    return float(1e3 * jnp.finfo(dtype).eps)


def as_float_array(x: Any, name: str) -> jax.Array:
    """``x`` as a floating JAX array; raise ``TypeError`` for other dtypes."""
    if isinstance(x, jax.core.Tracer):
        arr = x
    else:
        arr = jnp.asarray(x)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(
            f"{name} must be a floating-point array (float32 or float64), got dtype {arr.dtype}"
        )
    return arr


def check_points(x: Any, name: str, *, unit: bool = True, min_ndim: int = 1) -> jax.Array:
    """Check an array of points of shape ``(..., d)``.

    Raises ``ValueError`` naming ``name`` when it has fewer than ``min_ndim`` axes,
    a zero-length last axis, non-finite entries, or (``unit=True``) rows whose norm
    differs from 1 by more than :func:`unit_tolerance`.
    """
    arr = as_float_array(x, name)
    if arr.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} axis (shape (..., d)), got shape {arr.shape}"
        )
    if arr.shape[-1] < 1:
        raise ValueError(f"{name} must have a non-empty last (vector) axis, got shape {arr.shape}")
    if is_concrete(arr):
        host = np.asarray(arr)
        if not np.all(np.isfinite(host)):
            bad = int(np.size(host) - np.count_nonzero(np.isfinite(host)))
            raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
        if unit:
            norms = np.linalg.norm(host.astype(np.float64), axis=-1)
            tol = unit_tolerance(arr.dtype)
            dev = np.abs(norms - 1.0)
            if np.any(dev > tol):
                worst = float(norms.reshape(-1)[np.argmax(dev.reshape(-1))])
                raise ValueError(
                    f"{name} must hold unit vectors (|norm - 1| <= {tol:.1e} in {arr.dtype}); "
                    f"found a row of norm {worst:.6g}. Use geotrip.normalize first."
                )
    return arr


def check_same_shape(**arrays: jax.Array) -> None:
    """Raise ``ValueError`` unless all arrays have the same shape."""
    shapes = {k: tuple(v.shape) for k, v in arrays.items()}
    if len(set(shapes.values())) > 1:
        desc = ", ".join(f"{k}{s}" for k, s in shapes.items())
        raise ValueError(f"shape mismatch: {desc}; the arrays must have the same shape (..., d)")


def check_triplets(triplets: Any, n_points: int, name: str = "triplets") -> jax.Array:
    """Check an integer index array of shape ``(k, 3)`` into ``n_points`` rows."""
    if isinstance(triplets, jax.core.Tracer):
        t = triplets
    else:
        raw = np.asarray(triplets)
        if raw.dtype.kind == "f":
            if raw.size and not np.all(np.isfinite(raw)):
                raise ValueError(f"{name} must be integer indices, got non-finite floats")
            raise TypeError(
                f"{name} must be an integer array of row indices, got dtype {raw.dtype}"
            )
        if raw.dtype.kind not in "iu":
            raise TypeError(
                f"{name} must be an integer array of row indices, got dtype {raw.dtype}"
            )
        t = jnp.asarray(raw)
    if not jnp.issubdtype(t.dtype, jnp.integer):
        raise TypeError(f"{name} must be an integer array of row indices, got dtype {t.dtype}")
    if t.ndim != 2 or t.shape[-1] != 3:
        raise ValueError(
            f"{name} must have shape (k, 3) of (anchor, positive, negative) indices, got {t.shape}"
        )
    if is_concrete(t) and t.size:
        host = np.asarray(t)
        lo, hi = int(host.min()), int(host.max())
        if lo < 0 or hi >= n_points:
            raise ValueError(
                f"{name} has indices in [{lo}, {hi}], outside [0, {n_points - 1}] "
                f"for {n_points} points"
            )
    return t
