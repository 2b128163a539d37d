r"""A small, pure multilayer perceptron that embeds inputs on the unit sphere.

Parameters are a plain pytree (a list of ``{"w": (fan_in, fan_out), "b": (fan_out,)}``
dicts), so they vmap over seeds and hyper-parameters and feed optax directly. The
last layer is linear and is followed by L2 normalisation (:func:`geotrip.normalize`):

.. math:: f(x) = \frac{z(x)}{\|z(x)\|}, \qquad
          z(x) = W_L\,\sigma(\cdots\sigma(W_1 x + b_1)\cdots) + b_L,

with :math:`\sigma = \mathrm{ReLU}`. Back-propagation through the normalisation
gives :math:`\partial L/\partial z = (I - f f^\top)\,\partial L/\partial f / \|z\|`
(:func:`geotrip.normalize_vjp`): only the Riemannian gradient reaches the network.

The *initial angular spread* knob (:func:`cap_last_layer`) rescales the last layer
so that the embeddings of a reference batch start inside a spherical cap of a given
angular radius: the starting condition under which Hermans et al. (2017) observed
collapse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from .._numerics import float_dtype, safe_div
from .._validate import as_float_array
from ..core._geometry import normalize, safe_norm

__all__ = ["init_mlp", "mlp_features", "mlp_embed", "cap_last_layer", "init_features"]

Array = jax.Array


def init_mlp(key: Array, sizes: Sequence[int], *, dtype=None) -> list[dict[str, Array]]:
    r"""Initialise an MLP with layer widths ``sizes = (d_in, h_1, ..., h_{L-1}, d_out)``.

    Hidden layers use He-normal weights :math:`W \sim \mathcal N(0, 2/\text{fan\_in})`
    (ReLU), the last layer :math:`\mathcal N(0, 1/\text{fan\_in})`; all biases are 0.

    Args:
      key: a PRNG key.
      sizes: at least two positive integers (static).
      dtype: floating dtype of the parameters (default: JAX's default float).

    Returns:
      A list of ``len(sizes) - 1`` dicts ``{"w": (fan_in, fan_out), "b": (fan_out,)}``.
    """
    sizes = tuple(sizes)
    if len(sizes) < 2 or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise ValueError(
            f"sizes must be at least two positive integers (d_in, ..., d_out), got {sizes!r}"
        )
    dtype = float_dtype(dtype)
    keys = jax.random.split(key, len(sizes) - 1)
    params = []
    for i, (k, fi, fo) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        gain = 2.0 if i < len(sizes) - 2 else 1.0
        w = jax.random.normal(k, (fi, fo), dtype) * jnp.asarray(math.sqrt(gain / fi), dtype)
        params.append({"w": w, "b": jnp.zeros((fo,), dtype)})
    return params


def _affine(h, layer):
    """:math:`h W + b`, the bias broadcast explicitly over the leading axes of ``h``."""
    z = h @ layer["w"]
    return z + layer["b"].reshape((1,) * (z.ndim - 1) + (-1,))


def _hidden(params, x):
    h = x
    for layer in params[:-1]:
        h = jax.nn.relu(_affine(h, layer))
    return h


def mlp_features(params: list[dict[str, Array]], x: Array) -> Array:
    r"""Pre-normalisation output :math:`z(x)` of the MLP, shape ``(..., d_out)``."""
    x = as_float_array(x, "x")
    last = params[-1]
    return _affine(_hidden(params, x), last)


def mlp_embed(params: list[dict[str, Array]], x: Array) -> Array:
    r"""Embeddings :math:`f(x) = z(x)/\|z(x)\|` on the unit sphere.

    Args:
      params: from :func:`init_mlp` (or :func:`cap_last_layer`).
      x: inputs of shape ``(..., d_in)`` in the parameters' dtype.

    Returns:
      Unit vectors of shape ``(..., d_out)`` (0 where :math:`z = 0`, by the
      convention of :func:`geotrip.normalize`).
    """
    return normalize(mlp_features(params, x))


def cap_last_layer(
    params: list[dict[str, Array]], x_ref: Array, spread: Array | float, *, key: Array
) -> list[dict[str, Array]]:
    r"""Rescale the last layer so the embeddings of ``x_ref`` lie in a cap of radius ``spread``.

    With a random unit centre :math:`c` (from ``key``), the last layer becomes

    .. math:: W_L \leftarrow \alpha\, W_L (I - c c^\top), \qquad b_L \leftarrow c, \qquad
              \alpha = \frac{\tan r}{\max_i \|h_i W_L (I - c c^\top)\|},

    where :math:`h_i` are the hidden activations of ``x_ref`` and :math:`r` is
    ``spread``. Then :math:`z_i = c + v_i` with :math:`v_i \perp c`, so the angle of
    :math:`f(x_i)` from :math:`c` is :math:`\arctan\|v_i\| \le r`, with equality for
    the farthest reference input: the reference embeddings fill a cap of angular
    radius exactly :math:`r`, and pairwise angles are at most :math:`2r`.

    ``spread`` must lie in :math:`(0, \pi/2)`; ``spread = inf`` (or any value
    :math:`\ge \pi/2`) leaves the parameters unchanged (the default, uncapped
    initialisation). Works under ``jit``/``vmap`` (``spread`` may be traced).

    Args:
      params: MLP parameters.
      x_ref: reference inputs ``(n, d_in)`` (e.g. the training set).
      spread: angular radius of the cap in radians, a scalar.
      key: PRNG key for the centre :math:`c`.

    Returns:
      New parameters (same structure, shapes and dtypes).
    """
    last = params[-1]
    dtype = last["w"].dtype
    spread = jnp.asarray(spread, dtype)
    d_out = last["w"].shape[1]
    c = normalize(jax.random.normal(key, (d_out,), dtype))
    w_perp = last["w"] - (last["w"] @ c)[:, None] * c[None, :]
    v = _hidden(params, x_ref.astype(dtype)) @ w_perp
    vmax = jnp.max(safe_norm(v))
    capped = spread < jnp.asarray(jnp.pi / 2, dtype)
    tan_r = jnp.tan(jnp.where(capped, spread, jnp.zeros_like(spread)))
    alpha = safe_div(tan_r, vmax)  # vmax = 0 (all reference inputs map to c): alpha = 0
    new_last = {
        "w": jnp.where(capped, alpha * w_perp, last["w"]),
        "b": jnp.where(capped, c, last["b"]),
    }
    return list(params[:-1]) + [new_last]


def init_features(key: Array, n: int, dim: int, spread: Array | float, *, dtype=None) -> Array:
    r"""``n`` free points on :math:`S^{dim-1}` inside a cap of angular radius ``spread``.

    With a random centre :math:`c` and independent uniform unit tangents
    :math:`v_i \perp c`,

    .. math:: x_i = \cos\rho_i\, c + \sin\rho_i\, v_i, \qquad
              \rho_i = r\, u_i^{1/(dim-1)},\ u_i \sim U(0, 1),

    so every point is within angle :math:`r` of :math:`c` (the radial law is the
    uniform law of a small cap, in the flat approximation). ``spread = inf`` (any
    value :math:`\ge \pi`) draws the points uniformly on the whole sphere.
    ``spread`` may be traced (vmap over it).

    Returns:
      Unit vectors of shape ``(n, dim)``.
    """
    if not isinstance(dim, int) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2, got {dim!r}")
    dtype = float_dtype(dtype)
    spread = jnp.asarray(spread, dtype)
    kc, kv, ku, kg = jax.random.split(key, 4)
    c = normalize(jax.random.normal(kc, (dim,), dtype))
    g = jax.random.normal(kv, (n, dim), dtype)
    v = normalize(g - (g @ c)[:, None] * c[None, :])
    u = jax.random.uniform(ku, (n,), dtype)
    capped = spread < jnp.asarray(jnp.pi, dtype)
    r = jnp.where(capped, spread, jnp.zeros_like(spread))
    rho = r * u ** jnp.asarray(1.0 / (dim - 1), dtype)
    cap = jnp.cos(rho)[:, None] * c[None, :] + jnp.sin(rho)[:, None] * v
    uniform = normalize(jax.random.normal(kg, (n, dim), dtype))
    return normalize(jnp.where(capped, cap, uniform))
