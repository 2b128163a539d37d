r"""The largest gradient angle as certified lower bounds, monotone in d by construction.

For a pair of losses, a number of triplets :math:`k` sharing one anchor and a dimension
:math:`d`, let :math:`\Phi(k, d)` be the supremum of the joint Riemannian gradient angle
over configurations on :math:`S^{d-1}` whose triplets follow an activity pattern
(``active="both"``: the *weighting* gallery). :math:`\Phi` is non-decreasing in
:math:`d`: a configuration of :math:`S^{d-1}` embeds in :math:`S^{d}` (a zero coordinate
appended) with the same gradients. In :math:`k` there is no such exact embedding for
triplets with their own positives and negatives: a new triplet adds rows of its own to
the flattened gradients (for the geodesic with weight 1, never negligible), so
monotonicity in :math:`k` is not a theorem here and the bounds are only warm-started.

:func:`monotone_angle_bounds` walks the grid in order. A cell starts from the certified
cell of the previous dimension embedded exactly (restart 0 exactly there, the others
perturbed with noise scales up to ``init_noise``), or, in the first dimension, from the
previous k's certificate with the new triplet's positive and negative copied from the
last triplet's. When the search does not beat the exactly embedded neighbour, the
neighbour's decimal rows are certified again in the larger dimension, so the certified
values never decrease with :math:`d`.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from ._certify import certify
from ._objectives import triplet_structure
from ._optimizer import search

__all__ = ["monotone_angle_bounds"]


def _embed_rows(rows: list[list[str]], k_from: int, k_to: int, d_to: int) -> list[list[str]]:
    """Decimal rows of a shared-anchor configuration in more dimensions (exact: zero
    coordinates) and more triplets (a warm start: copies of the last positive/negative)."""
    out = [list(r) + ["0"] * (d_to - len(r)) for r in rows]
    for _ in range(k_to - k_from):  # copies of the last triplet's positive and negative
        out += [list(out[-2]), list(out[-1])]
    return out


def _rows_points(rows) -> np.ndarray:
    R = np.asarray([[float(c) for c in r] for r in rows])
    return R / np.linalg.norm(R, axis=1, keepdims=True)


def monotone_angle_bounds(
    ks,
    dims,
    *,
    distances=("chord_sq", "geodesic"),
    margins=None,
    match: str | None = "slope",
    active: str = "both",
    restarts: int = 64,
    steps: int = 300,
    init_noise: float = 0.5,
    seed: int = 0,
    cert_dir: str | Path | None = None,
    progress: bool = False,
    release: bool = False,
) -> list[dict]:
    r"""Certified lower bounds of the largest ``angle``, shared-anchor triplets, each (k, d).

    Cells are done in order of ``dims`` then ``ks`` (both sorted ascending); each starts
    from cell ``(k, d')`` of the previous dimension embedded exactly, else from cell
    ``(k-1, d)`` (warm start), else from random restarts (module docstring). Certified
    values are non-decreasing in ``d``; in ``k`` they are what the search found.

    Args:
      ks, dims: numbers of triplets and ambient dimensions.
      distances, margins, match, active: the problem (:func:`geotrip.search`).
      restarts, steps, init_noise, seed: the budget of each cell.
      cert_dir: where to write ``angle_k{k}_d{d}.json`` (None: not written).
      progress: a progress bar per cell's search.
      release: after each cell, drop JAX's in-memory compiled programs
        (:func:`jax.clear_caches`). Each cell has its own shapes, so its programs are
        not reused by the next; without this, resident memory grows by about 100 MB per
        cell (``geotrip figures`` passes ``True``). Results are unchanged: a program
        compiled again (or read from the persistent cache) is the same program.

    Returns:
      One dict per cell: ``k``, ``dim``, ``angle_deg`` (the verified 50-digit value),
      ``source`` (``"search"`` or the embedded neighbour it kept), ``angle_both_deg``,
      ``pattern``, ``decimals``, ``margins``, ``certificate`` (file name), ``seconds``.

    Raises:
      RuntimeError: a certificate fails verification.
    """
    ks, dims = sorted(ks), sorted(dims)
    done: dict[tuple[int, int], dict] = {}
    rows_of: dict[tuple[int, int], list] = {}
    out = []
    for d in dims:
        for k in ks:
            t0 = time.perf_counter()
            exact = _prev_dim(dims, k, d)
            warm = (ks[ks.index(k) - 1], d) if ks.index(k) else None
            neighbours = [(done[exact]["angle_deg"], exact)] if exact in done else []
            init, embedded = None, None
            key = exact if exact in done else (warm if warm in done else None)
            if key is not None:
                embedded = _embed_rows(rows_of[key], key[0], k, d)
                init = _rows_points(embedded)
            res = search(
                "angle",
                triplets=triplet_structure("shared_anchor", k),
                dim=d,
                distances=distances,
                margins=margins,
                match=match,
                active=active,
                restarts=restarts,
                steps=steps,
                seed=seed,
                init=init,
                init_noise=init_noise,
                progress=progress,
            )
            path = None if cert_dir is None else Path(cert_dir) / f"angle_k{k}_d{d}.json"
            cert, source = _certify_or_none(res, path), "search"
            best_neighbour = max(neighbours)[0] if neighbours else -np.inf
            if cert is None or cert.verification.values["angle_deg"] < best_neighbour:
                if not neighbours:
                    raise RuntimeError(f"no certifiable configuration for k={k}, d={d}")
                res.notes.append(f"kept the embedded certificate of cell (k, d) = {key}")
                res.points = init
                cert, source = certify(res, path, rows=embedded), f"embedded (k, d) = {key}"
            if not cert.verification.ok:
                raise RuntimeError(f"certificate k={k}, d={d} failed: {cert.verification.failures}")
            claims = cert.content["claims"]
            row = {
                "k": k,
                "dim": d,
                "angle_deg": cert.verification.values["angle_deg"],
                "angle_search_deg": float(res.value),
                "source": source,
                "angle_both_deg": claims.get("angle_both_deg", float("nan")),
                "pattern": claims["pattern"],
                "decimals": cert.decimals,
                "margins": list(res.margins),
                "certificate": "" if path is None else path.name,
                "seconds": time.perf_counter() - t0,
            }
            done[(k, d)] = row
            rows_of[(k, d)] = cert.content["points"]
            out.append(row)
            if release:
                jax.clear_caches()
    return out


def _certify_or_none(res, path):
    if not np.isfinite(res.value):
        return None
    try:
        cert = certify(res, path)
    except ValueError:
        return None
    return cert if cert.verification.ok else None


def _prev_dim(dims, k, d):
    i = dims.index(d)
    return (k, dims[i - 1]) if i else None


PROVED_ONE_TRIPLET_SUP = {"geodesic": 60.0, "proportional": 0.0, "other": 120.0}
r"""The supremum (degrees, never attained) of the joint Riemannian angle of one triplet
active under both hinges, margin-free, per kind of pair (see :func:`one_triplet_bound`)."""


def one_triplet_bound(a, b) -> tuple[float, str]:
    r"""The proved supremum of the one-triplet angle for distances ``a`` and ``b``, and why.

    With :math:`w = (g'(\theta_{ap}), g'(\theta_{an}))` for A and :math:`w'` for B, and
    :math:`c = \cos\psi`, the Riemannian gradients satisfy
    :math:`\langle G^A, G^B\rangle = w^\top M_c w'` with :math:`M_c = [[2, -c], [-c, 2]]`
    (positive definite), so the angle is the :math:`M_c`-angle between two vectors of the
    closed non-negative quadrant: at most the angle between its edge rays,
    :math:`\arccos(-c/2) \le 120^\circ`. It is 0 when the weights are proportional
    (``chord_sq`` and ``cosine``), below :math:`60^\circ` when one loss is the geodesic
    (:math:`w' = (1, 1)`; :mod:`geotrip.core._gradients`), and otherwise its supremum is
    :math:`120^\circ`: take :math:`\psi \to 0` and angles where A's weight vanishes at one
    pair while B's vanishes at the other, relative to the other pair (e.g. ``chord_sq``
    vs ``geodesic_sq``: :math:`\theta_{ap} = \epsilon`, :math:`\theta_{an} = \pi - \delta`,
    :math:`\delta \ll \epsilon \ll 1`), which every other pair of the family allows.
    Margin-free: the margins must be large enough for such a triplet to be active under
    both hinges (above :math:`g(\pi) - g(0)`); with smaller margins the supremum can be
    lower. Only the five built-in distances are covered.
    """
    a, b = sorted((str(a), str(b)))
    if a == b or (a, b) == ("chord_sq", "cosine"):
        return PROVED_ONE_TRIPLET_SUP["proportional"], "proportional weights: angle 0"
    if "geodesic" in (a, b):
        return PROVED_ONE_TRIPLET_SUP["geodesic"], "cos >= 1/2 with the geodesic (core theorem)"
    return PROVED_ONE_TRIPLET_SUP["other"], "M_c-angle of the quadrant's edges, psi -> 0"


def one_triplet_table(
    names=("chord_sq", "chord", "geodesic", "geodesic_sq", "cosine"),
    *,
    restarts: int = 64,
    steps: int = 300,
    seed: int = 0,
    cert_dir: str | Path | None = None,
) -> list[dict]:
    """The one-triplet table: for each pair, the proved supremum (:func:`one_triplet_bound`)
    and a certified lower bound from :func:`geotrip.search` (k = 1, d = 3, ``active="both"``,
    margins :math:`g(\\pi) + 0.5` for both losses so that the active set does not bind:
    the margin-free setting of the bound). Pairs with supremum 0 are not searched.

    Returns one dict per unordered pair: ``A``, ``B``, ``sup_deg``, ``proof``, ``margins``
    and, when searched, ``lower_bound_deg`` (verified), ``certificate``, ``decimals``,
    ``seconds``.
    """
    import itertools

    from ..core._distances import distance as get_distance

    out = []
    for a, b in itertools.combinations(names, 2):
        sup, why = one_triplet_bound(a, b)
        t0 = time.perf_counter()
        margins = (get_distance(a).range_max + 0.5, get_distance(b).range_max + 0.5)
        row = {"A": a, "B": b, "sup_deg": sup, "proof": why, "margins": margins}
        if sup > 0:
            res = search(
                "angle",
                k=1,
                dim=3,
                distances=(a, b),
                margins=margins,
                active="both",
                restarts=restarts,
                steps=steps,
                seed=seed,
                progress=False,
            )
            path = None if cert_dir is None else Path(cert_dir) / f"{a}_vs_{b}.json"
            cert = certify(res, path, value_tolerance=1e-6)
            if not cert.verification.ok:
                raise RuntimeError(f"{a} vs {b}: {cert.verification.failures}")
            row.update(
                lower_bound_deg=cert.verification.values["angle_deg"],
                certificate="" if path is None else path.name,
                decimals=cert.decimals,
                seconds=round(time.perf_counter() - t0, 1),
            )
        out.append(row)
    return out
