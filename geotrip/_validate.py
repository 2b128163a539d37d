"""Input checks shared by the public functions, and the check policy under ``jit``.

**The policy** (documented in the README, section "Validation and the check policy"):

* Shapes, dtypes and names are static: they are always checked, at trace time too, and
  raise a one-line ``ValueError``/``TypeError`` naming the argument, what was expected and
  what was given.
* Values (finiteness, unit norm, index range, angle domains, finite margins) are checked
  *eagerly* on concrete arrays, i.e. when a function is called outside ``jit``/``vmap``/
  ``grad`` tracing.
* Inside a trace the values are not known, so nothing can raise. There, the same
  conditions are recorded with :func:`jax.experimental.checkify.debug_check` (a no-op
  under plain ``jit``) and bad values never turn into plausible numbers: NaN and inf
  propagate as NaN, and an out-of-range triplet index gathers a row of NaN (it is never
  clamped). Wrapping the traced computation in :func:`checked` turns every recorded
  condition, and every out-of-bounds gather, into the same one-line ``ValueError``.
"""

from __future__ import annotations

import functools
import numbers
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

__all__ = [
    "is_concrete",
    "as_float_array",
    "check_vectors",
    "check_vector_pair",
    "check_points",
    "check_same_shape",
    "check_triplets",
    "check_margin",
    "check_in_range",
    "check_finite_scalar",
    "checked",
    "unit_tolerance",
]


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def _describe(x: Any) -> str:
    """A short description of a value for an error message."""
    if isinstance(x, (str, bytes)):
        text = repr(x)
        return f"{type(x).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
    if x is None:
        return "None"
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None and dtype is not None:
        return f"an array of shape {tuple(shape)} and dtype {dtype}"
    return f"{type(x).__name__} {x!r}" if len(repr(x)) <= 40 else type(x).__name__


def unit_tolerance(dtype) -> float:
    """Tolerance on | ||x|| - 1 | for a vector to count as unit: ``1e3 * eps``.

    That is about 1.2e-4 in float32 and 2.2e-13 in float64: loose enough for
    vectors normalised in that precision, tight enough to catch raw embeddings.
    """
    return float(1e3 * jnp.finfo(dtype).eps)


def as_float_array(x: Any, name: str) -> jax.Array:
    """``x`` as a floating JAX array; raise ``TypeError`` for other dtypes and non-arrays."""
    if isinstance(x, jax.core.Tracer):
        arr = x
    else:
        if isinstance(x, (str, bytes)) or x is None:
            raise TypeError(
                f"{name} must be a floating-point array (float32 or float64), got {_describe(x)}"
            )
        try:
            arr = jnp.asarray(x)
        except (TypeError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TypeError(
                f"{name} must be a floating-point array (float32 or float64), "
                f"got {_describe(x)} ({first})"
            ) from None
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(
            f"{name} must be a floating-point array (float32 or float64), got dtype {arr.dtype}"
        )
    return arr


def check_vectors(x: Any, name: str) -> jax.Array:
    """``x`` as a floating array of vectors ``(..., d)`` with ``d >= 1``; values unchecked."""
    arr = as_float_array(x, name)
    if arr.ndim < 1:
        raise ValueError(
            f"{name} must be an array of vectors of shape (..., d), got a scalar (shape ())"
        )
    if arr.shape[-1] < 1:
        raise ValueError(
            f"{name} must have a non-empty last (vector) axis, shape (..., d) with d >= 1, "
            f"got shape {arr.shape}"
        )
    return arr


def check_vector_pair(x: Any, y: Any, names: tuple[str, str] = ("x", "y")):
    """Two arrays of vectors with the same ``d`` and broadcastable leading shapes."""
    nx, ny = names
    x = check_vectors(x, nx)
    y = check_vectors(y, ny)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(
            f"{nx} and {ny} must have the same vector length (last axis): "
            f"got {nx} of shape {x.shape} and {ny} of shape {y.shape}"
        )
    try:
        np.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise ValueError(
            f"{nx} and {ny} must have broadcastable shapes (..., d): "
            f"got {nx} of shape {x.shape} and {ny} of shape {y.shape}"
        ) from None
    return x, y


def check_points(x: Any, name: str, *, unit: bool = True, min_ndim: int = 1) -> jax.Array:
    """Check an array of points of shape ``(..., d)``.

    Raises ``ValueError`` naming ``name`` when it has fewer than ``min_ndim`` axes,
    a zero-length last axis, non-finite entries, or (``unit=True``) rows whose norm
    differs from 1 by more than :func:`unit_tolerance`. Under a trace the value
    conditions are recorded for :func:`checked` instead.
    """
    arr = as_float_array(x, name)
    if arr.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} axis (shape (..., d)), got shape {arr.shape}"
        )
    if arr.shape[-1] < 1:
        raise ValueError(f"{name} must have a non-empty last (vector) axis, got shape {arr.shape}")
    tol = unit_tolerance(arr.dtype)
    if is_concrete(arr):
        host = np.asarray(arr)
        if not np.all(np.isfinite(host)):
            bad = int(np.size(host) - np.count_nonzero(np.isfinite(host)))
            raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
        if unit:
            norms = np.linalg.norm(host.astype(np.float64), axis=-1)
            dev = np.abs(norms - 1.0)
            if np.any(dev > tol):
                worst = float(norms.reshape(-1)[np.argmax(dev.reshape(-1))])
                raise ValueError(
                    f"{name} must hold unit vectors (|norm - 1| <= {tol:.1e} in {arr.dtype}); "
                    f"found a row of norm {worst:.6g}. Use geotrip.normalize first."
                )
    else:
        finite = jnp.isfinite(arr)
        checkify.debug_check(
            jnp.all(finite),
            f"{name} contains {{bad}} non-finite value(s) (NaN or inf)",
            bad=jnp.sum(~finite),
        )
        if unit:
            dev = jnp.abs(jnp.sqrt(jnp.sum(arr * arr, axis=-1)) - 1)
            checkify.debug_check(
                jnp.all(jnp.where(jnp.isfinite(dev), dev <= tol, True)),
                f"{name} must hold unit vectors (|norm - 1| <= {tol:.1e} in {arr.dtype}); "
                "found a deviation of {dev}. Use geotrip.normalize first.",
                dev=jnp.max(jnp.where(jnp.isfinite(dev), dev, jnp.zeros_like(dev))),
            )
    return arr


def check_same_shape(**arrays: jax.Array) -> None:
    """Raise ``ValueError`` unless all arrays have the same shape."""
    shapes = {k: tuple(v.shape) for k, v in arrays.items()}
    if len(set(shapes.values())) > 1:
        desc = ", ".join(f"{k}{s}" for k, s in shapes.items())
        raise ValueError(f"shape mismatch: {desc}; the arrays must have the same shape (..., d)")


def check_triplets(triplets: Any, n_points: int, name: str = "triplets") -> jax.Array:
    """Check an integer index array of shape ``(k, 3)`` into ``n_points`` rows.

    Concrete indices outside ``[0, n_points)`` raise ``ValueError``; traced ones are
    recorded for :func:`checked` (and gathered as NaN rows by the losses, never clamped).
    """
    if isinstance(triplets, jax.core.Tracer):
        t = triplets
    else:
        if isinstance(triplets, (str, bytes)) or triplets is None:
            raise TypeError(
                f"{name} must be an integer array of row indices, got {_describe(triplets)}"
            )
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
    if is_concrete(t):
        if t.size:
            host = np.asarray(t)
            lo, hi = int(host.min()), int(host.max())
            if lo < 0 or hi >= n_points:
                raise ValueError(
                    f"{name} has indices in [{lo}, {hi}], outside [0, {n_points - 1}] "
                    f"for {n_points} points"
                )
    elif t.size:
        checkify.debug_check(
            jnp.all((t >= 0) & (t < n_points)),
            f"{name} has indices in [{{lo}}, {{hi}}], outside [0, {n_points - 1}] "
            f"for {n_points} points",
            lo=jnp.min(t),
            hi=jnp.max(t),
        )
    return t


def _real_number_array(value: Any, name: str, what: str) -> Any:
    """Reject non-numeric values (strings, None, bools, complex) with a one-line TypeError."""
    if isinstance(value, jax.core.Tracer):
        if not (
            jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)
        ):
            raise TypeError(f"{name} must be {what}, got a traced array of dtype {value.dtype}")
        return value
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be {what}, got {_describe(value)}")
    if isinstance(value, numbers.Real):
        return value
    if isinstance(value, numbers.Number):
        raise TypeError(f"{name} must be {what}, got {_describe(value)}")
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(value).dtype
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be {what}, got {_describe(value)}") from None
    if np.dtype(dtype).kind not in "fiu":
        raise TypeError(f"{name} must be {what}, got {_describe(value)} of dtype {dtype}")
    return value


def check_margin(margin: Any, name: str = "margin") -> Any:
    """A margin: a finite real number or a real array (broadcastable to the triplets).

    Returns ``margin`` unchanged (Python floats stay weakly typed). Strings, ``None``,
    booleans and complex numbers raise ``TypeError``; NaN or inf raise ``ValueError``
    on concrete values and are recorded for :func:`checked` under a trace.
    """
    value = _real_number_array(margin, name, "a finite real number (or a real array)")
    if is_concrete(value):
        host = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(host)):
            shown = float(host) if host.ndim == 0 else f"an array with {host.size} entries"
            raise ValueError(f"{name} must be finite, got {shown}")
    else:
        checkify.debug_check(
            jnp.all(jnp.isfinite(value)), f"{name} must be finite, got {{v}}", v=value
        )
    return margin


def check_finite_scalar(value: Any, name: str) -> Any:
    """A finite real scalar or array (e.g. a step length); see :func:`check_margin`."""
    return check_margin(value, name)


def check_in_range(
    value: Any, name: str, lo: float, hi: float, *, dtype=None, interval: str | None = None
) -> None:
    """Check that every entry of ``value`` lies in ``[lo, hi]`` (NaN fails).

    ``hi``/``lo`` are compared after rounding to ``dtype`` (so ``np.pi`` rounded to
    float32 passes as :math:`\\pi`). Concrete values raise ``ValueError`` naming
    ``name``, the interval and the offending value; traced ones are recorded for
    :func:`checked`.
    """
    interval = interval or f"[{lo:g}, {hi:g}]"
    if is_concrete(value):
        host = np.asarray(value)
        if host.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be a real number in {interval}, got {_describe(value)}")
        dt = np.dtype(dtype) if dtype is not None else np.result_type(host.dtype, np.float32)
        x = host.astype(dt)
        ok = (x >= dt.type(lo)) & (x <= dt.type(hi))
        if not np.all(ok):
            bad = x[~ok].reshape(-1)[0] if x.ndim else x
            raise ValueError(f"{name} must lie in {interval}, got {float(bad):.6g}")
    else:
        v = jnp.asarray(value)
        dt = v.dtype if dtype is None else dtype
        lo_, hi_ = jnp.asarray(lo, dt), jnp.asarray(hi, dt)
        ok = (v >= lo_) & (v <= hi_)
        checkify.debug_check(
            jnp.all(ok),
            f"{name} must lie in {interval}, got {{v}}",
            v=jnp.ravel(v)[jnp.argmin(jnp.ravel(ok))],
        )


_LOCATION = re.compile(r"\s*\(`check` failed.*$", re.S)


def checked(fn=None, *, nan: bool = False, jit: bool = True, **jit_kwargs):
    r"""Run ``fn`` with geotrip's value checks enforced under ``jit`` (the ``checkify`` policy).

    Inside ``jit``/``vmap``/``grad`` the library cannot raise on values it does not
    know. It records every value condition it checks eagerly on concrete inputs
    (finite, unit-norm points; triplet indices in range; finite margins; angles in
    their domain) with :func:`jax.experimental.checkify.debug_check`, which is a no-op
    under plain ``jit``. ``checked(fn)`` functionalises them with
    :func:`jax.experimental.checkify.checkify` (user checks and out-of-bounds
    indexing; NaN-producing operations too with ``nan=True``) and raises the first
    failure as a one-line ``ValueError``, the same message as the eager check.

    Args:
      fn: the function to run (any JAX-traceable function; it may call ``jax.jit``,
        ``vmap`` and ``grad`` inside). Usable as a decorator, with or without options.
      nan: also fail on any operation that produces a NaN (``checkify.nan_checks``).
        Off by default: functions such as :func:`geotrip.gradient_angles` return NaN
        by design where an angle is undefined.
      jit: compile the checked function with ``jax.jit`` (default). ``jit_kwargs``
        (``static_argnames=...``, ``static_argnums=...``) are passed on.

    Returns:
      A function with the signature and outputs of ``fn`` that raises ``ValueError``
      when a check fails.

    >>> import jax, jax.numpy as jnp, geotrip as gt
    >>> X = gt.uniform_sphere(jax.random.key(0), (4,), 3)
    >>> loss = gt.checked(lambda X, t: gt.batch_loss(X, t, distance="geodesic", margin=0.1))
    >>> float(loss(X, jnp.array([[0, 1, 2]]))) >= 0.0
    True
    >>> loss(X, jnp.array([[0, 1, 99]]))
    Traceback (most recent call last):
    ValueError: triplets has indices in [0, 99], outside [0, 3] for 4 points
    """
    if fn is None:
        return lambda f: checked(f, nan=nan, jit=jit, **jit_kwargs)
    errors = checkify.user_checks | checkify.index_checks
    if nan:
        errors = errors | checkify.nan_checks
    inner = checkify.checkify(fn, errors=errors)
    run = jax.jit(inner, **jit_kwargs) if jit else inner

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        err, out = run(*args, **kwargs)
        msg = err.get()
        if msg:
            first = _LOCATION.sub("", msg).strip().splitlines()[0].strip()
            raise ValueError(first)
        return out

    return wrapper
