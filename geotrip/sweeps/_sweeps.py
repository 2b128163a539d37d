r"""Sweeps over many configurations: a fast closed-form gradient-angle path, families, and an
engine that evaluates any per-configuration metric with ``jit`` + ``vmap`` in chunks, sharded
over every device JAX sees.

**Closed-form gradient angles.** Every raw and Riemannian triplet gradient of the
built-in family is a linear combination of :math:`a, p, n`. Write them in the basis

.. math:: b_0 = a,\quad b_1 = \delta_p = p - \sigma_p a,\quad b_2 = \delta_n = n - \sigma_n a,
          \qquad \sigma_x = \operatorname{sign}(a\cdot x)\ (\text{+1 at } 0),

whose Gram matrix, for unit vectors, is

.. math:: M = \begin{pmatrix} 1 & -\sigma_p g_{11}/2 & -\sigma_n g_{22}/2\\
          \cdot & g_{11} & g_{12} \\ \cdot & \cdot & g_{22}\end{pmatrix},\quad
          g_{11} = \|\delta_p\|^2,\ g_{22} = \|\delta_n\|^2,\ g_{12} = \delta_p\cdot\delta_n

(using :math:`a\cdot\delta_p = -\sigma_p\|\delta_p\|^2/2`, exact on the sphere). One
pass over the data computes the eight sums :math:`\|p \mp a\|^2`, :math:`\|n \mp a\|^2`,
:math:`(p \mp a)\cdot(n \mp a)`; everything else (the angles
:math:`\theta_{ap} = 2\operatorname{atan2}(\sqrt{g_{11}}, \sqrt{4 - g_{11}})` for
:math:`\sigma_p = 1`, the tangent directions, the weights, the hinge slopes, the
gradient coefficients and the eight angles between gradients, each by Kahan's
formula :math:`2\operatorname{atan2}(\|\hat u - \hat v\|, \|\hat u + \hat v\|)` with the
norms taken in :math:`M`) costs :math:`O(1)` per triplet. The differences
:math:`p \mp a` are formed elementwise, so near-coincident and near-antipodal pairs
keep full relative accuracy, as in :func:`geotrip.angle`. The path is thus bound by
reading :math:`a, p, n` from memory.

Raw gradients per distance (hinge slope :math:`s`): ``chord_sq``
:math:`(2s(n-p),\, 2s(p-a),\, 2s(a-n))`; ``chord``
:math:`s\big(\tfrac{a-p}{\|a-p\|} - \tfrac{a-n}{\|a-n\|},\, \tfrac{p-a}{\|a-p\|},\, \tfrac{a-n}{\|a-n\|}\big)`;
``cosine`` :math:`s(n-p,\, -a,\, a)`; ``geodesic``, ``geodesic_sq`` (ambient form is the
scale-invariant angle) equal their Riemannian gradients. Riemannian gradients use the
per-pair weights (:func:`geotrip.triplet_grads_closed_form`). User distances made
with :func:`geotrip.make_distance` use their weight for the Riemannian part and
autodiff of their ambient form for the raw part.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import safe_sqrt as _sqrt0
from ..core._distances import DISTANCES, Distance
from ..core._distances import distance as get_distance
from ..core._gradients import _masked_angle, _pair, _raw_triplet_grads, gradient_angles
from ..core._losses import check_triplet_inputs, hinge_slope
from ..core._mining import mine_triplets
from ..core._samplers import clustered_batch, rotated_triplet, spherical_cap, uniform_sphere

__all__ = [
    "gradient_angles_closed_form",
    "sweep",
    "SWEEP_FAMILIES",
    "family_sampler",
    "triplet_metric",
    "summarize",
    "run_sweep",
    "ANGLE_THRESHOLDS_DEG",
]

Array = jax.Array

ANGLE_THRESHOLDS_DEG = (30.0, 60.0, 90.0)


# ----------------------------------------------------------------------------------------
# Closed-form gradient angles
# ----------------------------------------------------------------------------------------


# Coefficient vectors in the basis (a, delta_p, delta_n) are tuples of three arrays (not
# stacked arrays), so that XLA fuses the whole O(1)-per-triplet computation elementwise.


def _div0(c, n):
    """c / n with 0 where n == 0 (c: tuple of three arrays)."""
    nz = n > 0
    inv = jnp.where(nz, 1 / jnp.where(nz, n, jnp.ones_like(n)), jnp.zeros_like(n))
    return tuple(x * inv for x in c)


def _scale(w, c):
    return tuple(w * x for x in c)


def _add(c, e):
    return tuple(x + y for x, y in zip(c, e))


def _sub(c, e):
    return tuple(x - y for x, y in zip(c, e))


class _Basis:
    """The Gram matrix M of (a, delta_p, delta_n) and quadratic forms in it."""

    def __init__(self, g11, g22, g12, sp, sn):
        self.g11, self.g22, self.g12 = g11, g22, g12
        self.g01 = -sp * g11 / 2
        self.g02 = -sn * g22 / 2
        self.sp, self.sn = sp, sn

    def dot(self, c, e):
        return (
            c[0] * e[0]
            + self.g11 * c[1] * e[1]
            + self.g22 * c[2] * e[2]
            + self.g01 * (c[0] * e[1] + c[1] * e[0])
            + self.g02 * (c[0] * e[2] + c[2] * e[0])
            + self.g12 * (c[1] * e[2] + c[2] * e[1])
        )

    def sq(self, c):
        return jnp.maximum(self.dot(c, c), jnp.zeros_like(self.g11))


def _vec(*cs):
    return tuple(jnp.broadcast_arrays(*cs))


def _gram_sums(a, p, n):
    """The eight sums of one pass; returns the basis and (theta_ap, theta_an)."""
    dm_p, dp_p = p - a, p + a
    dm_n, dp_n = n - a, n + a
    prods = (
        dm_p * dm_p,
        dp_p * dp_p,
        dm_n * dm_n,
        dp_n * dp_n,
        dm_p * dm_n,
        dm_p * dp_n,
        dp_p * dm_n,
        dp_p * dp_n,
        a * dm_p,
        a * dp_p,
        a * dm_n,
        a * dp_n,
    )
    # One variadic reduction: XLA fuses the twelve sums into a single pass over a, p, n
    # (separate jnp.sum calls materialise the differences and read them repeatedly).
    zero = jnp.zeros((), prods[0].dtype)
    sums = jax.lax.reduce(
        prods,
        (zero,) * len(prods),
        lambda x, y: tuple(u + v for u, v in zip(x, y)),
        (prods[0].ndim - 1,),
    )
    qmp, qpp, qmn, qpn, cmm, cmp_, cpm, cpp, amp, app, amn, apn = sums
    pos_p = qmp <= qpp
    pos_n = qmn <= qpn
    one = jnp.ones_like(qmp)
    sp = jnp.where(pos_p, one, -one)
    sn = jnp.where(pos_n, one, -one)
    g11 = jnp.where(pos_p, qmp, qpp)
    g22 = jnp.where(pos_n, qmn, qpn)
    g12 = jnp.where(pos_p, jnp.where(pos_n, cmm, cmp_), jnp.where(pos_n, cpm, cpp))
    # Inputs are unit only to rounding (|x| = 1 +- eps): then a.delta differs from the sphere's
    # -sigma |delta|^2 / 2 by r ~ eps, a radial error that is large next to a tiny delta. Remove
    # it, delta' = delta - r a, so that the basis describes the triplet on the sphere.
    ad_p = jnp.where(pos_p, amp, app)
    ad_n = jnp.where(pos_n, amn, apn)
    r_p = ad_p + sp * g11 / 2
    r_n = ad_n + sn * g22 / 2
    g12 = g12 - r_n * ad_p - r_p * ad_n + r_p * r_n
    g11 = jnp.maximum(g11 - 2 * r_p * ad_p + r_p * r_p, jnp.zeros_like(g11))
    g22 = jnp.maximum(g22 - 2 * r_n * ad_n + r_n * r_n, jnp.zeros_like(g22))
    B = _Basis(g11, g22, g12, sp, sn)
    # Kahan: theta = 2 atan2(|a - x|, |a + x|); with sigma = +1, |a - x|^2 = g, |a + x|^2 = 4 - g.
    four = 4 * one
    t_ap = 2 * jnp.arctan2(
        _sqrt0(jnp.where(pos_p, qmp, four - qpp)), _sqrt0(jnp.where(pos_p, four - qmp, qpp))
    )
    t_an = 2 * jnp.arctan2(
        _sqrt0(jnp.where(pos_n, qmn, four - qpn)), _sqrt0(jnp.where(pos_n, four - qmn, qpn))
    )
    return B, t_ap, t_an


def _directions(B):
    """Coefficients of the unit tangents u_{a->p}, u_{a->n}, u_{p->a}, u_{n->a} (0 where undefined)."""
    zero = jnp.zeros_like(B.g11)
    one = jnp.ones_like(B.g11)
    sin_ap = _sqrt0(B.g11 * (1 - B.g11 / 4))
    sin_an = _sqrt0(B.g22 * (1 - B.g22 / 4))
    u_ap = _div0(_vec(-B.g01, one, zero), sin_ap)
    u_an = _div0(_vec(-B.g02, zero, one), sin_an)
    u_pa = _div0(_vec(B.g11 / 2, -B.sp * (1 - B.g11 / 2), zero), sin_ap)
    u_na = _div0(_vec(B.g22 / 2, zero, -B.sn * (1 - B.g22 / 2)), sin_an)
    return u_ap, u_an, u_pa, u_na


def _coef_grads(B, t_ap, t_an, dist: Distance, margin, soft, dirs):
    """(riemannian, raw) gradient coefficients, each a tuple of three blocks, or raw=None."""
    u_ap, u_an, u_pa, u_na = dirs
    s = hinge_slope(dist.profile(t_ap) - dist.profile(t_an) + margin, soft=soft)
    wp = s * dist.weight(t_ap)
    wn = s * dist.weight(t_an)
    riem = (_sub(_scale(wn, u_an), _scale(wp, u_ap)), _scale(-wp, u_pa), _scale(wn, u_na))
    builtin = DISTANCES.get(dist.name) is dist
    if not builtin:
        return riem, None
    zero = jnp.zeros_like(B.g11)
    one = jnp.ones_like(B.g11)
    if dist.name in ("geodesic", "geodesic_sq"):
        raw = riem
    elif dist.name == "chord_sq":
        raw = (
            _scale(2 * s, _vec(B.sn - B.sp, -one, one)),
            _scale(2 * s, _vec(B.sp - one, one, zero)),
            _scale(2 * s, _vec(one - B.sn, zero, -one)),
        )
    elif dist.name == "cosine":
        raw = (
            _scale(s, _vec(B.sn - B.sp, -one, one)),
            _scale(s, _vec(-one, zero, zero)),
            _scale(s, _vec(one, zero, zero)),
        )
    elif dist.name == "chord":
        e_ap = _div0(_vec(one - B.sp, -one, zero), 2 * jnp.sin(t_ap / 2))  # (a - p)/|a - p|
        e_an = _div0(_vec(one - B.sn, zero, -one), 2 * jnp.sin(t_an / 2))  # (a - n)/|a - n|
        raw = (_scale(s, _sub(e_ap, e_an)), _scale(-s, e_ap), _scale(s, e_an))
    else:  # pragma: no cover - every builtin is listed above
        return riem, None
    return riem, raw


def _coef_angle(B, u, v):
    """Angle between the vectors with coefficients u, v (tuples of blocks); NaN where one is zero."""
    nu = _sqrt0(sum(B.sq(x) for x in u))
    nv = _sqrt0(sum(B.sq(x) for x in v))
    uh = [_div0(x, nu) for x in u]
    vh = [_div0(x, nv) for x in v]
    dm = _sqrt0(sum(B.sq(_sub(x, y)) for x, y in zip(uh, vh)))
    dp = _sqrt0(sum(B.sq(_add(x, y)) for x, y in zip(uh, vh)))
    th = 2 * jnp.arctan2(dm, dp)
    ok = (nu > 0) & (nv > 0)
    return jnp.where(ok, th, jnp.full_like(th, jnp.nan)), ok


def gradient_angles_closed_form(
    a: Array,
    p: Array,
    n: Array,
    *,
    distances: Sequence[str | Distance] = ("chord_sq", "geodesic"),
    margins: Sequence[float | Array] = (0.2, 0.2),
    soft: bool = False,
) -> dict[str, Array]:
    r"""Same output as :func:`geotrip.gradient_angles`, from closed forms (module docstring).

    One pass over ``a, p, n`` (eight fused sums of length :math:`d`), then
    :math:`O(1)` work per triplet; no autodiff. Assumes unit vectors (as every
    triplet function does): the Gram entries :math:`a\cdot\delta` use
    :math:`\|a\| = \|x\| = 1` exactly. The hinge activity uses the profile
    :math:`g(\theta)` with the accurate angle, so it can differ from the autodiff
    path (which evaluates the ambient form) only for triplets within rounding of
    the hinge boundary.

    Args:
      a, p, n: unit vectors of shape ``(..., d)``, any :math:`d \ge 1`.
      distances, margins, soft: as in :func:`geotrip.gradient_angles`.

    Returns:
      The dict of :func:`geotrip.gradient_angles` (angles in radians, NaN where
      undefined, ``defined/...`` masks, ``active/A``, ``active/B``).
    """
    dA, dB = (get_distance(d) for d in _pair(distances, "distances"))
    mA, mB = _pair(margins, "margins")
    a, p, n = check_triplet_inputs(a, p, n)
    return _closed_form(a, p, n, dA, dB, mA, mB, soft)


_BLOCK = 1024


def _closed_form(a, p, n, dA, dB, mA, mB, soft, block: int = _BLOCK):
    """Blocked evaluation: rows in blocks of ``block`` (lax.map) keep the O(1)-per-triplet
    intermediates in cache; XLA would otherwise stream ~40 length-N temporaries through memory."""
    lead = a.shape[:-1]
    size = math.prod(lead)
    scalar_margins = all(jnp.ndim(m) == 0 for m in (mA, mB))
    if size <= block or not scalar_margins:
        return _closed_form_flat(a, p, n, dA, dB, mA, mB, soft)
    d = a.shape[-1]
    nb = -(-size // block)
    pad = nb * block - size

    def prep(x):
        x = x.reshape(size, d)
        if pad:
            x = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad, d))], axis=0)
        return x.reshape(nb, block, d)

    out = jax.lax.map(
        lambda t: _closed_form_flat(*t, dA, dB, mA, mB, soft), (prep(a), prep(p), prep(n))
    )
    return {k: v.reshape(nb * block)[:size].reshape(lead) for k, v in out.items()}


def _closed_form_flat(a, p, n, dA, dB, mA, mB, soft):
    B, t_ap, t_an = _gram_sums(a, p, n)
    dirs = _directions(B)
    rA, wA = _coef_grads(B, t_ap, t_an, dA, mA, soft, dirs)
    rB, wB = _coef_grads(B, t_ap, t_an, dB, mB, soft, dirs)
    out: dict[str, Array] = {}
    for block, i in (("anchor", 0), ("positive", 1), ("negative", 2)):
        th, ok = _coef_angle(B, (rA[i],), (rB[i],))
        out[f"riemannian/{block}"], out[f"defined/riemannian/{block}"] = th, ok
    th, ok = _coef_angle(B, rA, rB)
    out["riemannian/joint"], out["defined/riemannian/joint"] = th, ok
    if wA is not None and wB is not None:
        for block, i in (("anchor", 0), ("positive", 1), ("negative", 2)):
            th, ok = _coef_angle(B, (wA[i],), (wB[i],))
            out[f"raw/{block}"], out[f"defined/raw/{block}"] = th, ok
        th, ok = _coef_angle(B, wA, wB)
        out["raw/joint"], out["defined/raw/joint"] = th, ok
    else:  # a user distance: raw gradients by autodiff of its ambient form
        gA = _raw_triplet_grads(a, p, n, dA, mA, soft)
        gB = _raw_triplet_grads(a, p, n, dB, mB, soft)
        for block, u, v in zip(("anchor", "positive", "negative"), gA, gB):
            out[f"raw/{block}"], out[f"defined/raw/{block}"] = _masked_angle(u, v)
        th, ok = _masked_angle(jnp.concatenate(gA, axis=-1), jnp.concatenate(gB, axis=-1))
        out["raw/joint"], out["defined/raw/joint"] = th, ok
    for tag, dist, m in (("A", dA, mA), ("B", dB, mB)):
        z = dist.profile(t_ap) - dist.profile(t_an) + m
        out[f"active/{tag}"] = jnp.ones(z.shape, bool) if soft else z > 0
    return {k: out[k] for k in sorted(out)}


# ----------------------------------------------------------------------------------------
# The sweep engine
# ----------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------
# Families of configurations and the standard triplet metric
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Family:
    name: str
    description: str
    params: Mapping[str, Any]


SWEEP_FAMILIES: Mapping[str, _Family] = {
    f.name: f
    for f in (
        _Family("uniform", "a, p, n i.i.d. uniform on the sphere", {}),
        _Family(
            "parametric",
            "theta_ap, theta_an, psi uniform in [lo, hi] (radians), random frame",
            {"theta_ap": (0.0, math.pi), "theta_an": (0.0, math.pi), "psi": (0.0, math.pi)},
        ),
        _Family(
            "cap",
            "a, p, n uniform in a spherical cap of angular radius `radius` (collapsed start)",
            {"radius": 0.1},
        ),
        _Family(
            "near_coincident",
            "p at angle `eps` from a, n uniform (psi, theta_an random)",
            {"eps": 1e-6},
        ),
        _Family("near_antipodal", "p at angle pi - `eps` from a, n uniform", {"eps": 1e-6}),
        _Family(
            "clustered",
            "one triplet mined by `strategy` from a clustered PK batch "
            "(n_classes x per_class, vMF `concentration`)",
            {
                "strategy": "batch_hard",
                "n_classes": 8,
                "per_class": 4,
                "concentration": None,
                "within_angle": 0.7,
            },
        ),
    )
}
"""Named configuration families for :func:`family_sampler` and ``geotrip sweep``."""


def _family_params(name, params):
    if name not in SWEEP_FAMILIES:
        raise ValueError(f"unknown family {name!r}; valid: {', '.join(SWEEP_FAMILIES)}")
    spec = SWEEP_FAMILIES[name]
    params = dict(params or {})
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for family {name!r}; "
            f"valid: {', '.join(spec.params) or '(none)'}"
        )
    return {**spec.params, **params}


def family_sampler(
    name: str, *, dim: int, dtype=None, **params
) -> Callable[[Array], tuple[Array, Array, Array]]:
    r"""A function ``key -> (a, p, n)`` drawing one triplet of the named family.

    Families (:data:`SWEEP_FAMILIES`) and their parameters:

    * ``uniform``: :math:`a, p, n` i.i.d. uniform on :math:`S^{d-1}` (any :math:`d \ge 2`).
    * ``parametric``: :math:`\theta_{ap}, \theta_{an}, \psi` uniform in the given
      ``(lo, hi)`` ranges, built by :func:`geotrip.rotated_triplet` (:math:`d \ge 3`).
    * ``cap``: three points uniform in a cap of angular radius ``radius`` around a
      uniform random centre (collapsed starts).
    * ``near_coincident`` / ``near_antipodal``: :math:`\theta_{ap} = \varepsilon` or
      :math:`\pi - \varepsilon` (``eps``), :math:`\theta_{an}` and :math:`\psi` with the
      law of a uniform :math:`n` (:math:`d \ge 3`).
    * ``clustered``: a PK batch from :func:`geotrip.clustered_batch` with
      ``n_classes`` × ``per_class`` points and vMF ``concentration`` (default
      :math:`(d-1)/\text{within\_angle}^2`, so the typical angle to the class centre
      is ``within_angle`` whatever :math:`d`); one valid triplet is drawn uniformly
      among those mined by ``strategy`` (:func:`geotrip.mine_triplets` with
      ``chord_sq``, margin 0.2; ``random`` mining uses a derived key).
    """
    p = _family_params(name, params)
    if not isinstance(dim, (int, np.integer)) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2, got {dim!r}")
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    if name == "uniform":
        return lambda key: tuple(uniform_sphere(key, 3, dim, dtype=dtype))
    if name in ("parametric", "near_coincident", "near_antipodal") and dim < 3:
        raise ValueError(f"family {name!r} needs dim >= 3, got {dim}")
    if name == "parametric":
        rng = []
        for k in ("theta_ap", "theta_an", "psi"):
            lo, hi = (float(v) for v in p[k])
            if not 0 <= lo <= hi <= math.pi:
                raise ValueError(f"{k} range must satisfy 0 <= lo <= hi <= pi, got ({lo}, {hi})")
            rng.append((lo, hi))

        def sample(key):
            k1, k2 = jax.random.split(key)
            u = jax.random.uniform(k1, (3,), dtype)
            t = [lo + (hi - lo) * u[i] for i, (lo, hi) in enumerate(rng)]
            return rotated_triplet(k2, t[0], t[1], t[2], dim=dim, dtype=dtype)

        return sample
    if name == "cap":
        r = float(p["radius"])
        if not 0 < r <= math.pi:
            raise ValueError(f"radius must be in (0, pi], got {r}")

        def sample(key):
            k1, k2 = jax.random.split(key)
            c = uniform_sphere(k1, (), dim, dtype=dtype)
            return tuple(spherical_cap(k2, 3, dim, radius=r, center=c, dtype=dtype))

        return sample
    if name in ("near_coincident", "near_antipodal"):
        eps = float(p["eps"])
        if not 0 <= eps <= math.pi:
            raise ValueError(f"eps must be in [0, pi], got {eps}")
        tap = eps if name == "near_coincident" else math.pi - eps

        def sample(key):
            k1, k2, k3 = jax.random.split(key, 3)
            # theta_an and psi with the law they have for a uniform n: the angle between two
            # uniform points, and the polar angle of a uniform direction of the tangent space
            a0, n0 = uniform_sphere(k1, 2, dim, dtype=dtype)
            tan = jnp.arccos(jnp.clip(jnp.sum(a0 * n0), -1, 1))
            g = uniform_sphere(k2, (), dim - 1, dtype=dtype)
            psi = jnp.arccos(jnp.clip(g[0], -1, 1))
            return rotated_triplet(k3, jnp.asarray(tap, dtype), tan, psi, dim=dim, dtype=dtype)

        return sample
    # clustered
    strategy = p["strategy"]
    from ..core._mining import MINING_STRATEGIES

    if strategy not in MINING_STRATEGIES:
        raise ValueError(
            f"unknown mining strategy {strategy!r}; valid: {', '.join(MINING_STRATEGIES)}"
        )
    K, m = int(p["n_classes"]), int(p["per_class"])
    if K < 2 or m < 2:
        raise ValueError(f"clustered family needs n_classes >= 2 and per_class >= 2, got {K}, {m}")
    kappa = p["concentration"]
    if kappa is None:
        kappa = (dim - 1) / float(p["within_angle"]) ** 2
    kappa = float(kappa)

    def sample(key):
        kb, km, kc = jax.random.split(key, 3)
        X, y = clustered_batch(
            kb, n_classes=K, per_class=m, dim=dim, concentration=kappa, dtype=dtype
        )
        t, ok = mine_triplets(X, y, strategy=strategy, distance="chord_sq", margin=0.2, key=km)
        # one valid triplet uniformly at random (Gumbel trick); placeholders never win if any is valid
        g = jax.random.gumbel(kc, ok.shape, dtype)
        i = jnp.argmax(jnp.where(ok, g, jnp.full_like(g, -jnp.inf)))
        tri = t[i]
        return X[tri[0]], X[tri[1]], X[tri[2]]

    return sample


def triplet_metric(
    sampler,
    *,
    distances=("chord_sq", "geodesic"),
    margins=(0.2, 0.2),
    soft=False,
    method: str = "closed_form",
) -> Callable[[Array], dict[str, Array]]:
    r"""Per-configuration metric ``key -> dict``: gradient angles (radians), activities,
    and the configuration's :math:`(\theta_{ap}, \theta_{an})`.

    ``method`` is ``"closed_form"`` (:func:`gradient_angles_closed_form`) or
    ``"autodiff"`` (:func:`geotrip.gradient_angles`).
    """
    if method not in ("closed_form", "autodiff"):
        raise ValueError(f"method must be 'closed_form' or 'autodiff', got {method!r}")
    dA, dB = (get_distance(d) for d in _pair(distances, "distances"))
    mA, mB = _pair(margins, "margins")

    def fn(key):
        a, p, n = sampler(key)
        if method == "closed_form":
            out = _closed_form(a, p, n, dA, dB, mA, mB, soft)
        else:
            out = gradient_angles(a, p, n, distances=(dA, dB), margins=(mA, mB), soft=soft)
        from ..core._geometry import angle

        out["config/theta_ap"] = angle(a, p)
        out["config/theta_an"] = angle(a, n)
        return out

    return fn


# ----------------------------------------------------------------------------------------
# Summaries and the driver used by the CLI
# ----------------------------------------------------------------------------------------

_QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


def summarize(results: Mapping[str, np.ndarray], *, bins_deg: int = 36) -> dict[str, Any]:
    r"""JSON-ready summary of a sweep of :func:`triplet_metric`.

    For each angle key (``raw/...``, ``riemannian/...``), in degrees, over the
    configurations where it is defined: ``count``, ``defined_share``, ``mean``,
    ``quantiles`` (at 0, 1, 5, 25, 50, 75, 95, 99, 100 %), ``histogram`` (``bins_deg``
    equal bins on [0, 180]) and ``share_above`` 30°, 60°, 90° (among defined).
    Boolean keys (``active/...``) give their share; ``config/...`` keys give quantiles.
    """
    out: dict[str, Any] = {"num": int(len(next(iter(results.values()))))}
    edges = np.linspace(0.0, 180.0, bins_deg + 1)
    for k in sorted(results):
        v = np.asarray(results[k])
        if k.startswith("defined/"):
            continue
        if v.dtype == bool:
            out[k] = {"share": float(v.mean())}
            continue
        if k.startswith(("raw/", "riemannian/")):
            ok = np.asarray(results.get(f"defined/{k}", np.isfinite(v)))
            deg = np.degrees(v[ok].astype(np.float64))
            entry: dict[str, Any] = {
                "count": int(ok.sum()),
                "defined_share": float(ok.mean()),
                "unit": "degree",
            }
            if deg.size:
                entry["mean"] = float(deg.mean())
                entry["quantiles"] = {
                    f"{q:g}": float(x) for q, x in zip(_QUANTILES, np.quantile(deg, _QUANTILES))
                }
                entry["share_above"] = {
                    f"{t:g}": float((deg > t).mean()) for t in ANGLE_THRESHOLDS_DEG
                }
            entry["histogram"] = {
                "edges": edges.tolist(),
                "counts": np.histogram(deg, edges)[0].tolist(),
            }
            out[k] = entry
        else:
            fin = v[np.isfinite(v)].astype(np.float64)
            out[k] = {
                "mean": float(fin.mean()) if fin.size else None,
                "quantiles": {
                    f"{q:g}": float(x) for q, x in zip(_QUANTILES, np.quantile(fin, _QUANTILES))
                }
                if fin.size
                else {},
            }
    return out


def run_sweep(
    family: str,
    *,
    dims: Sequence[int],
    samples: int,
    seed: int,
    distances=("chord_sq", "geodesic"),
    margins=(0.2, 0.2),
    soft: bool = False,
    params: Mapping[str, Any] | None = None,
    out: str | os.PathLike | None = None,
    save_arrays: bool = False,
    chunk_size: int = 65536,
    method: str = "closed_form",
    progress: bool | None = None,
    dtype=None,
) -> dict[str, Any]:
    """Sweep one family over several dimensions; write ``summary.json`` (and ``arrays_d{D}.npz``).

    The summary holds, per dimension, :func:`summarize` of the
    :func:`triplet_metric` results, and a provenance record (command line, seed,
    versions, devices, git revision, parameters, time per dimension).

    Returns:
      The summary dict (also written to ``out/summary.json`` when ``out`` is given).
    """
    from .._provenance import provenance

    if not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    merged = _family_params(family, params)
    key = jax.random.key(seed)
    summary: dict[str, Any] = {
        "family": family,
        "description": SWEEP_FAMILIES[family].description,
        "distances": [get_distance(d).name for d in distances],
        "margins": [float(m) for m in margins],
        "soft": soft,
        "params": {k: v for k, v in merged.items()},
        "samples": int(samples),
        "seed": int(seed),
        "by_dim": {},
    }
    outdir = Path(out) if out is not None else None
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
    for d in dims:
        sampler = family_sampler(family, dim=int(d), dtype=dtype, **(params or {}))
        fn = triplet_metric(sampler, distances=distances, margins=margins, soft=soft, method=method)
        t0 = time.perf_counter()
        res = sweep(
            fn,
            samples,
            key=jax.random.fold_in(key, int(d)),
            chunk_size=chunk_size,
            progress=progress,
        )
        dt = time.perf_counter() - t0
        s = summarize(res)
        s["seconds"] = dt
        s["configs_per_second"] = samples / dt
        summary["by_dim"][str(int(d))] = s
        if outdir is not None and save_arrays:
            np.savez_compressed(outdir / f"arrays_d{int(d)}.npz", **res)
    summary["provenance"] = provenance(
        seed=seed,
        extra={
            "family": family,
            "dims": [int(d) for d in dims],
            "chunk_size": chunk_size,
            "method": method,
        },
    )
    if outdir is not None:
        (outdir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary
