r"""Named families of triplet configurations for sweeps, and the standard per-configuration
triplet metric (gradient angles, hinge activities, the configuration's angles).

Each family is one sampler builder ``(params, dim, dtype) -> (key -> (a, p, n))``, listed with
its description and default parameters in :data:`SWEEP_FAMILIES`. The ``clustered`` family's
sampler gives every triplet mined from one batch, ``key -> Mined(X, triplets, valid)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import float_dtype
from ..core._closed_form import _closed_form
from ..core._distances import distance as get_distance
from ..core._geometry import angle
from ..core._gradients import DEFAULT_MARGINS, _margin_pair, _pair, gradient_angles
from ..core._mining import MINING_STRATEGIES, _pairs, mine_triplets
from ..core._samplers import clustered_batch, rotated_triplet, spherical_cap, uniform_sphere

__all__ = ["SWEEP_FAMILIES", "family_sampler", "triplet_metric"]

Array = jax.Array
# key -> (a, p, n) of shape (d,), or Mined(X, triplets, valid): k triplets of one batch
Sampler = Callable[[Array], tuple[Array, ...]]


# ----------------------------------------------------------------------------------------
# One sampler builder per family: (merged params, dim, dtype) -> key -> (a, p, n)
# ----------------------------------------------------------------------------------------


def _uniform_sampler(p, dim, dtype) -> Sampler:
    return lambda key: tuple(uniform_sphere(key, 3, dim, dtype=dtype))


def _angle_range(name, value):
    lo, hi = (float(v) for v in value)
    if not 0 <= lo <= hi <= math.pi:
        raise ValueError(f"{name} range must satisfy 0 <= lo <= hi <= pi, got ({lo}, {hi})")
    return lo, hi


def _parametric_sampler(p, dim, dtype) -> Sampler:
    rng = [_angle_range(k, p[k]) for k in ("theta_ap", "theta_an", "psi")]

    def sample(key):
        k1, k2 = jax.random.split(key)
        u = jax.random.uniform(k1, (3,), dtype)
        t = [lo + (hi - lo) * u[i] for i, (lo, hi) in enumerate(rng)]
        return rotated_triplet(k2, t[0], t[1], t[2], dim=dim, dtype=dtype)

    return sample


def _cap_sampler(p, dim, dtype) -> Sampler:
    r = float(p["radius"])
    if not 0 < r <= math.pi:
        raise ValueError(f"radius must be in (0, pi], got {r}")

    def sample(key):
        k1, k2 = jax.random.split(key)
        c = uniform_sphere(k1, (), dim, dtype=dtype)
        return tuple(spherical_cap(k2, 3, dim, radius=r, center=c, dtype=dtype))

    return sample


def _near_sampler(p, dim, dtype, *, antipodal: bool) -> Sampler:
    eps = float(p["eps"])
    if not 0 <= eps <= math.pi:
        raise ValueError(f"eps must be in [0, pi], got {eps}")
    tap = math.pi - eps if antipodal else eps

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


def _near_coincident_sampler(p, dim, dtype) -> Sampler:
    return _near_sampler(p, dim, dtype, antipodal=False)


def _near_antipodal_sampler(p, dim, dtype) -> Sampler:
    return _near_sampler(p, dim, dtype, antipodal=True)


def _clustered_settings(p, dim):
    """Validated (strategy, n_classes, per_class, concentration) of the clustered family."""
    strategy = p["strategy"]
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
    return strategy, K, m, float(kappa)


def _possible_rows(strategy, K, m):
    """Static indices of the rows of ``mine_triplets``' output that can be valid for a PK batch
    with rows grouped by class (``labels = [0]*m + [1]*m + ...``, as
    :func:`geotrip.clustered_batch` returns them): the others have no positive (or, for
    ``batch_all``, a negative of the anchor's class) and are invalid for every batch.

    Counts: ``batch_hard`` n; ``batch_all`` n (m-1) (n-m); the per-pair strategies n (m-1),
    with n = K m."""
    n = K * m
    y = np.repeat(np.arange(K), m)
    if strategy == "batch_hard":
        return np.arange(n, dtype=np.int32)
    a, o = _pairs(n)
    if strategy == "batch_all":  # the enumeration of core._mining._mine
        aa, pp = np.repeat(a, n - 1), np.repeat(o, n - 1)
        qq = o.reshape(n, n - 1)[aa, np.tile(np.arange(n - 1), a.shape[0])]
        ok = (y[aa] == y[pp]) & (y[aa] != y[qq])
    else:
        ok = y[a] == y[o]
    return np.flatnonzero(ok).astype(np.int32)


def _clustered_sampler(p, dim, dtype) -> Sampler:
    strategy, K, m, kappa = _clustered_settings(p, dim)
    rows = _possible_rows(strategy, K, m)

    def sample(key):
        kb, km = jax.random.split(key, 3)[:2]  # the keys of the one-triplet version
        X, y = clustered_batch(
            kb, n_classes=K, per_class=m, dim=dim, concentration=kappa, dtype=dtype
        )
        t, ok = mine_triplets(X, y, strategy=strategy, distance="chord_sq", margin=0.2, key=km)
        return Mined(X, t[rows], ok[rows])

    return sample


class Mined(NamedTuple):
    """Every triplet mined from one batch: points ``X`` ``(n, d)``, index triplets ``(k, 3)``
    and the miner's mask ``valid`` ``(k,)`` (what a multi-triplet sampler returns)."""

    X: Array
    triplets: Array
    valid: Array


# triplets of one batch evaluated together (lax.map over blocks of rows): bounds the gathered
# (rows, d) points per step, e.g. batch_all (k = 2688) at d = 1024 under the engine's 64-batch tile
_ROW_BLOCK = 128


def _per_row(one, mined: Mined):
    """``one(a, p, n)`` on every triplet of ``mined``, blocks of ``_ROW_BLOCK`` rows at a
    time (the last padded with row 0 and cut off); values of shape ``(k,)``."""
    X, t = mined.X, mined.triplets
    k = t.shape[0]
    block = min(k, _ROW_BLOCK)
    pad = (-k) % block
    if pad:
        t = jnp.concatenate([t, jnp.broadcast_to(t[:1], (pad, 3))])

    def rows(tb):
        return jax.vmap(one)(X[tb[:, 0]], X[tb[:, 1]], X[tb[:, 2]])

    out = jax.lax.map(rows, t.reshape(-1, block, 3))
    return {name: v.reshape(-1)[:k] for name, v in out.items()}


# ----------------------------------------------------------------------------------------
# The family table
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Family:
    name: str
    description: str
    params: Mapping[str, Any]
    build: Callable[..., Sampler] = dataclasses.field(repr=False, compare=False, default=None)
    min_dim: int = 2


SWEEP_FAMILIES: Mapping[str, _Family] = {
    f.name: f
    for f in (
        _Family("uniform", "a, p, n i.i.d. uniform on the sphere", {}, _uniform_sampler),
        _Family(
            "parametric",
            "theta_ap, theta_an, psi uniform in [lo, hi] (radians), random frame",
            {"theta_ap": (0.0, math.pi), "theta_an": (0.0, math.pi), "psi": (0.0, math.pi)},
            _parametric_sampler,
            min_dim=3,
        ),
        _Family(
            "cap",
            "a, p, n uniform in a spherical cap of angular radius `radius` (collapsed start)",
            {"radius": 0.1},
            _cap_sampler,
        ),
        _Family(
            "near_coincident",
            "p at angle `eps` from a, n uniform (psi, theta_an random)",
            {"eps": 1e-6},
            _near_coincident_sampler,
            min_dim=3,
        ),
        _Family(
            "near_antipodal",
            "p at angle pi - `eps` from a, n uniform",
            {"eps": 1e-6},
            _near_antipodal_sampler,
            min_dim=3,
        ),
        _Family(
            "clustered",
            "every valid triplet mined by `strategy` from a clustered PK batch "
            "(n_classes x per_class, vMF `concentration`); one configuration = one batch, "
            "each valid triplet counts once",
            {
                "strategy": "batch_hard",
                "n_classes": 8,
                "per_class": 4,
                "concentration": None,
                "within_angle": 0.7,
            },
            _clustered_sampler,
        ),
    )
}
"""Named configuration families for :func:`family_sampler` and ``geotrip sweep``."""


def _family_params(name, params):
    """The family's defaults updated with ``params``; ValueError for unknown names."""
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


def family_sampler(name: str, *, dim: int, dtype=None, **params) -> Sampler:
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
      is ``within_angle`` whatever :math:`d`), mined by ``strategy``
      (:func:`geotrip.mine_triplets` with ``chord_sq``, margin 0.2; ``random`` mining uses
      a derived key). This sampler returns **every** mined triplet of the batch that can be
      valid, ``key -> Mined(X, triplets, valid)``: the batch ``(n, d)``, index triplets
      ``(k, 3)`` and the miner's mask ``(k,)``, the rows of ``mine_triplets`` whose labels allow a
      valid triplet, :math:`k = n` (``batch_hard``), :math:`n(m-1)(n-m)` (``batch_all``)
      or :math:`n(m-1)` (the per-pair strategies), with :math:`n = Km`; the rows it drops
      are invalid for every batch. :func:`triplet_metric` passes ``valid`` on, and the
      summaries (:func:`geotrip.summarize`, :func:`geotrip.run_sweep`) count every valid
      triplet once: a batch with more valid triplets weighs more, as in a loss averaged
      over the valid triplets of the batches.

    Raises:
      ValueError: unknown family or parameter, ``dim`` below the family's minimum, or a
        parameter out of range (the message names it).
    """
    merged = _family_params(name, params)
    if not isinstance(dim, (int, np.integer)) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2, got {dim!r}")
    dtype = float_dtype(dtype)
    spec = SWEEP_FAMILIES[name]
    if dim < spec.min_dim:
        raise ValueError(f"family {name!r} needs dim >= {spec.min_dim}, got {dim}")
    return spec.build(merged, dim, dtype)


def triplet_metric(
    sampler,
    *,
    distances=("chord_sq", "geodesic"),
    margins=DEFAULT_MARGINS,
    soft=False,
    method: str = "closed_form",
) -> Callable[[Array], dict[str, Array]]:
    r"""Per-configuration metric ``key -> dict``: gradient angles (radians), activities,
    and the configuration's :math:`(\theta_{ap}, \theta_{an})`.

    ``method`` is ``"closed_form"`` (:func:`geotrip.gradient_angles_closed_form`, in the
    Gram basis for each triplet) or ``"autodiff"`` (:func:`geotrip.gradient_angles`).
    A sampler that returns ``Mined(X, triplets, valid)`` (the ``clustered`` family: k
    triplets of one batch) gives every value with shape ``(k,)`` and the mask under the key
    ``"valid"``; each triplet's values are those of the one-triplet metric on its points,
    evaluated in blocks of 128 rows (bounded memory).
    """
    if method not in ("closed_form", "autodiff"):
        raise ValueError(f"method must be 'closed_form' or 'autodiff', got {method!r}")
    dA, dB = (get_distance(d) for d in _pair(distances, "distances"))
    mA, mB = _margin_pair(margins, dA, dB)

    def one(a, p, n):
        if method == "closed_form":
            # one triplet per call (the engine vmaps it): the Gram basis, O(1) after the sums
            out = _closed_form(a, p, n, dA, dB, mA, mB, soft, repair=False)
        else:
            out = gradient_angles(
                a, p, n, distances=(dA, dB), margins=(mA, mB), soft=soft, method="autodiff"
            )
        out["config/theta_ap"] = angle(a, p)
        out["config/theta_an"] = angle(a, n)
        return out

    def fn(key):
        drawn = sampler(key)
        if not isinstance(drawn, Mined):
            return one(*drawn)
        out = _per_row(one, drawn)
        out["valid"] = drawn.valid
        return out

    return fn
