r"""Numerical guards shared by every module: one place for the double-``where`` trick.

``jnp.where(ok, f(x), 0)`` alone does not protect reverse mode: the gradient of the
unselected branch is still evaluated at the bad point and ``0 * inf = nan`` leaks
through. The fix (JAX FAQ, "Gradients contain NaN where using where"; optax
``safe_norm``) is to also replace the *input* of ``f`` at the bad points by a harmless
value. Every guard below does that, so its value and its gradient are finite
everywhere, with the convention stated in each docstring.

The guards replace only the *singular* points (zero, or a non-positive argument), never
a NaN: a NaN input gives a NaN output, so bad data cannot turn into a plausible number.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["float_dtype", "safe_sqrt", "safe_div", "safe_norm", "safe_log"]


def float_dtype(dtype=None):
    """The floating dtype to compute in: ``dtype``, or JAX's default float for ``None``.

    The default is float32, or float64 when x64 is enabled.

    Raises:
      TypeError: for a dtype that is not floating (integers would truncate).
    """
    if dtype is None:
        return jnp.dtype(jnp.result_type(float))
    dt = jnp.dtype(dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(f"dtype must be a floating dtype, got {dt}")
    return dt


def safe_sqrt(q: jax.Array) -> jax.Array:
    r""":math:`\sqrt{\max(q, 0)}`, with value and gradient 0 where :math:`q \le 0`.

    NaN stays NaN."""
    pos = q > 0
    out = jnp.where(pos, jnp.sqrt(jnp.where(pos, q, jnp.ones_like(q))), jnp.zeros_like(q))
    return jnp.where(jnp.isnan(q), q, out)


def safe_div(num: jax.Array, den: jax.Array, *, fill=0.0) -> jax.Array:
    r""":math:`\mathrm{num}/\mathrm{den}` where :math:`\mathrm{den} \ne 0`, else ``fill``.

    The gradient is finite everywhere (0 with respect to both arguments where
    ``den == 0``). A NaN denominator gives NaN (it is not zero). Shapes broadcast; the
    result has the promoted dtype.
    """
    nz = den != 0
    out = num / jnp.where(nz, den, jnp.ones_like(den))
    return jnp.where(nz, out, jnp.full_like(out, fill))


def safe_log(x: jax.Array) -> jax.Array:
    r""":math:`\log x` where :math:`x > 0`, else 0 (so :math:`x \log x \to 0` at 0).

    NaN stays NaN."""
    pos = x > 0
    out = jnp.where(pos, jnp.log(jnp.where(pos, x, jnp.ones_like(x))), jnp.zeros_like(x))
    return jnp.where(jnp.isnan(x), x, out)


def safe_norm(x: jax.Array, *, axis: int = -1, keepdims: bool = False) -> jax.Array:
    r"""Euclidean norm :math:`\|x\|_2` along ``axis`` with a finite gradient at 0.

    .. math:: \|x\| = \sqrt{\textstyle\sum_i x_i^2}, \qquad
       \nabla\|x\| = x/\|x\| \ (x \neq 0),\ 0\ (x = 0).

    The value at ``x = 0`` is 0 and its gradient there is 0 by convention (a
    subgradient). Vectors whose squared norm underflows (below about 1e-38 in
    float32) count as zero. A vector with a NaN entry has norm NaN.

    Args:
      x: array of shape ``(..., d)``.
      axis: the vector axis.
      keepdims: keep the reduced axis with length 1.

    Returns:
      Array of shape ``(...)`` (or ``(..., 1)`` with ``keepdims``), dtype of ``x``.

    >>> import jax, jax.numpy as jnp
    >>> from geotrip import safe_norm
    >>> float(safe_norm(jnp.array([3.0, 4.0])))
    5.0
    >>> jax.grad(safe_norm)(jnp.zeros(3)).tolist()
    [0.0, 0.0, 0.0]
    >>> float(safe_norm(jnp.array([jnp.nan, 0.0])))
    nan
    """
    return safe_sqrt(jnp.sum(x * x, axis=axis, keepdims=keepdims))
