r"""``gt.analyze``: geotrip's diagnosis of a user's embeddings, as one JSON-ready dict.

Pipeline: check the array and labels (one streaming pass over the rows: norms, NaN/inf
and zero rows), drop singleton classes (with a warning), normalise, then

* on an evaluation set (all points, or a seeded random subset of ``eval_points``):
  collapse metrics (:func:`geotrip.mean_pairwise_cosine`, :func:`geotrip.effective_rank`,
  :func:`geotrip.uniformity`, :func:`geotrip.alignment`, :func:`geotrip.is_collapsed`),
  leave-one-out :func:`geotrip.recall_at_1` and MAP@R (by angle), quantiles of within- and
  between-class pair angles;
* per mining strategy, over all valid triplets of the whole set (``triplets="all"``) or
  of ``COUNT`` seeded P x K batches (``"batches"``, :func:`geotrip.sample_pk`): exact
  counts of triplets active under the user's hinge (A) and the alternative's with the same
  number as margin or the margin matched by :func:`geotrip.match_margin`, the shares
  active under exactly one, the batch gradient angle of the summed losses, and, on a
  uniform sample of at most ``max_sample`` triplets, quantiles of the joint Riemannian
  and raw gradient angles (:func:`geotrip.gradient_angles_closed_form`) and of the
  push-pull ratio :math:`g'(\theta_{an})/g'(\theta_{ap})`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._caches import bounded_cache
from ._io import check_embeddings, encode_labels, jsonable, scan_rows, take_rows
from ._summary import JOINT_KEYS as _JOINT_KEYS
from ._summary import norm_summary as _norm_summary
from ._summary import pair_angles as _pair_angles
from ._summary import summarize_strategy as _summarize_strategy
from ._triplets import (
    Loss,
    StrategyAccumulator,
    angle_matrix,
    loss_matrices,
    map_at_r_from_angles,
    strategy_stats,
)

__all__ = ["analyze", "map_at_r"]

_CHUNK = 4096


def map_at_r(X: Any, labels: Any) -> float:
    r"""MAP@R (Musgrave, Belongie & Lim 2020) of embeddings, leave-one-out, by angle.

    NumPy, float64, row-chunked (not public: the report's value; ``geotrip.train`` has a
    JAX version).

    For each point :math:`i` with :math:`R_i \ge 1` other points of its class, the other
    points are ranked by angle to :math:`x_i` (ties: lowest index first) and
    :math:`\mathrm{AP@R}_i = \frac{1}{R_i}\sum_{k=1}^{R_i} \mathrm{rel}_k\,P@k`
    (:math:`P@k` the precision of the first :math:`k`); MAP@R is its mean over the points
    with :math:`R_i \ge 1`.

    Args:
      X: embeddings ``(n, d)`` of any norm (normalised here); labels: ``(n,)``.

    Returns:
      A float in :math:`[0, 1]` (NaN if no class has two points).

    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> map_at_r(X, [0, 0, 1, 1])
    1.0
    """
    X = check_embeddings(X, "X")
    codes, _ = encode_labels(labels, X.shape[0])
    U = np.asarray(X, dtype=np.float64)
    nrm = np.linalg.norm(U, axis=1, keepdims=True)
    U = np.divide(U, nrm, out=np.zeros_like(U), where=nrm > 0)
    return map_at_r_from_angles(angle_matrix(U), codes)


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _jax_dtype():
    import jax

    return np.float64 if jax.config.jax_enable_x64 else np.float32


@bounded_cache(4)
def _metrics_fn():
    import jax

    import geotrip as gt

    def fn(X, y):
        return {
            "mean_pairwise_cosine": gt.mean_pairwise_cosine(X),
            "effective_rank": gt.effective_rank(X),
            "uniformity": gt.uniformity(X),
            "alignment": gt.alignment(X, y),
            "is_collapsed": gt.is_collapsed(X),
            "recall_at_1": gt.recall_at_1(X, y),
        }

    return jax.jit(fn)  # one compilation instead of one per primitive


def _collapse_metrics(U: np.ndarray, codes: np.ndarray) -> dict[str, Any]:
    import jax.numpy as jnp

    Xj = jnp.asarray(U.astype(_jax_dtype()))
    y = jnp.asarray(codes.astype(np.int32))
    res = _metrics_fn()(Xj, y)
    return {k: (bool(v) if k == "is_collapsed" else float(v)) for k, v in res.items()}


@bounded_cache(4)
def _sample_pk_fn(p: int, k: int):
    import jax

    import geotrip as gt

    return jax.jit(lambda key, table, counts: gt.sample_pk(key, table, counts, p=p, k=k))


@bounded_cache(8)
def _angles_fn(dists):
    import jax

    import geotrip as gt

    def fn(U, trip, margins):
        """Gathers inside jit; ``margins`` (2, 2): rows (m_A, m_B) for same_number, matched."""
        a, p, n = U[trip[:, 0]], U[trip[:, 1]], U[trip[:, 2]]
        out = {}
        for i, tag in enumerate(("same_number", "matched")):
            res = gt.gradient_angles_closed_form(
                a, p, n, distances=dists, margins=(margins[i, 0], margins[i, 1])
            )
            out |= {f"{tag}:{k}": res[k] for k in _JOINT_KEYS}
        return out

    return jax.jit(fn)


def _gradient_angles(U, trip, losses, dists) -> dict[str, np.ndarray]:
    """Joint Riemannian and raw angles (radians) of sampled triplets, in fixed-size chunks.

    Chunks of 1024 or 4096 triplets, the last one padded, so a run compiles at most twice
    per point-set shape."""
    import jax.numpy as jnp

    s = trip.shape[0]
    dt = _jax_dtype()
    m = np.array(
        [[losses["A"].margin, losses[f"B_{t}"].margin] for t in ("same_number", "matched")],
        dtype=dt,
    )
    chunk = 1024 if s <= 1024 else 4096  # two shapes: few compilations
    Uj, mj = jnp.asarray(U.astype(dt)), jnp.asarray(m)
    out: dict[str, np.ndarray] = {}
    for start in range(0, s, chunk):
        t = trip[start : start + chunk]
        pad = chunk - t.shape[0]
        t = np.concatenate([t, np.repeat(t[:1], pad, axis=0)]) if pad else t
        res = _angles_fn(dists)(Uj, jnp.asarray(t.astype(np.int32)), mj)
        for k, v in res.items():
            out.setdefault(k, []).append(np.asarray(v)[: chunk - pad])
    return {k: np.concatenate(v) for k, v in out.items()}


def _per_triplet(U, theta, trip, losses, dists, mats) -> dict[str, np.ndarray]:
    ap, an = (trip[:, 0], trip[:, 1]), (trip[:, 0], trip[:, 2])
    out: dict[str, np.ndarray] = {"hard": (theta[an] < theta[ap]).astype(np.float64)}
    for key, loss_key in (("A", "A"), ("B", "B_matched")):
        dgm = mats[loss_key][1]
        num, den = dgm[an], dgm[ap]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"ratio_{key}"] = np.where(
                den > 0, num / np.where(den > 0, den, 1.0), np.where(num > 0, np.inf, np.nan)
            )
    if trip.shape[0]:
        out |= _gradient_angles(U, trip, losses, dists)
    return out


def _check_options(distance, margin, compare, match, strategies, triplets, batches):
    import geotrip as gt

    dA, dB = gt.distance(distance), gt.distance(compare)
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    if match not in gt.MATCHING_RULES:
        raise ValueError(f"unknown matching rule {match!r}; valid: {', '.join(gt.MATCHING_RULES)}")
    strategies = (strategies,) if isinstance(strategies, str) else tuple(strategies)
    for s in strategies:
        if s not in gt.MINING_STRATEGIES:
            raise ValueError(
                f"unknown mining strategy {s!r}; valid: {', '.join(gt.MINING_STRATEGIES)}"
            )
    if not strategies:
        raise ValueError("give at least one mining strategy")
    if triplets not in ("auto", "all", "batches"):
        raise ValueError(f"triplets must be 'auto', 'all' or 'batches', got {triplets!r}")
    P, K, count = (int(v) for v in batches)
    if P < 2 or K < 2 or count < 1:
        raise ValueError(f"batches (P, K, COUNT) need P >= 2, K >= 2, COUNT >= 1, got {batches}")
    return dA, dB, strategies, (P, K, count)


def _valid_rows(X, codes, classes, drop_invalid, progress, notes):
    norms, nonfinite, zero = scan_rows(X, progress=progress)
    bad = np.union1d(nonfinite, zero)
    if bad.size and not drop_invalid:
        parts = []
        for what, idx in (("NaN/inf", nonfinite), ("zero norm", zero)):
            if idx.size:
                head = ", ".join(str(i) for i in idx[:10]) + (", ..." if idx.size > 10 else "")
                parts.append(f"{idx.size} with {what} at rows [{head}]")
        raise ValueError(
            f"embeddings: {bad.size} invalid rows ({'; '.join(parts)}); "
            "fix them or drop them with drop_invalid=True (--drop-invalid)"
        )
    keep = np.ones(X.shape[0], dtype=bool)
    keep[bad] = False
    if bad.size:
        notes.append(f"dropped {bad.size} invalid rows (NaN/inf or zero norm)")
    counts = np.bincount(codes[keep], minlength=classes.size)
    single = np.flatnonzero(counts == 1)
    if single.size:
        names = ", ".join(str(classes[c]) for c in single[:10]) + (
            ", ..." if single.size > 10 else ""
        )
        msg = f"excluded {single.size} classes with a single sample ({names})"
        warnings.warn(msg, stacklevel=3)
        notes.append(msg)
        keep &= ~np.isin(codes, single)
    n_cls = int(np.sum(counts >= 2))
    if n_cls < 2:
        raise ValueError(
            f"labels: need at least 2 classes with 2 or more valid points, found {n_cls}"
        )
    return norms, keep, {"dropped_invalid": int(bad.size), "singleton_classes": int(single.size)}


def analyze(
    X: Any,
    labels: Any,
    *,
    distance: str = "chord_sq",
    margin: float = 0.2,
    compare: str = "geodesic",
    match: str = "slope",
    strategies: Sequence[str] | str = ("batch_all", "batch_hard", "semihard"),
    triplets: str = "auto",
    batches: Sequence[int] = (8, 4, 100),
    seed: int = 0,
    drop_invalid: bool = False,
    max_exact: int = 3000,
    eval_points: int = 4096,
    max_sample: int = 100_000,
    progress: bool = False,
) -> dict[str, Any]:
    r"""Diagnose embeddings trained with a triplet loss: does the distance's choice matter here?

    Compares the user's loss A (``distance``, ``margin``; FaceNet's chord² with 0.2 by
    default) with the alternative B (``compare``, the geodesic by default) whose margin
    is either the same number (``B_same_number``) or matched by ``match``
    (:data:`geotrip.MATCHING_RULES`; ``B_matched``). See the module docstring for the
    pipeline; shares are of the strategy's valid triplets, angles in degrees.

    Args:
      X: embeddings ``(n, d)`` of any norm (NumPy array or memory map; read in chunks).
      labels: ``(n,)`` integers or strings.
      distance, margin, compare, match: the two losses and the margin rule.
      strategies: names of :data:`geotrip.MINING_STRATEGIES` (the miners rank with A).
      triplets: ``"all"`` (every valid triplet of the whole set: exact, :math:`O(n^2)`
        memory, at most ``max_exact`` points), ``"batches"`` (``COUNT`` P x K batches),
        or ``"auto"`` (``"all"`` up to ``max_exact`` points).
      batches: ``(P, K, COUNT)``.
      seed: seeds every random choice (subsets, batches, ``random`` mining, samples).
      drop_invalid: drop NaN/inf and zero rows instead of raising.
      eval_points: size of the evaluation subset in batches mode.
      max_sample: per strategy, triplets sampled for the per-triplet quantiles.
      progress: tqdm progress bars.

    Returns:
      A JSON-serialisable dict (see the README section "Diagnose your own embeddings").

    Raises:
      ValueError: bad input, one line naming the problem (NaN/inf or zero rows with their
        indices, label count, fewer than 2 classes, array shape or dtype, options).

    >>> import numpy as np, geotrip as gt
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 8)) + 3 * np.repeat(np.eye(8)[:4], 5, axis=0)
    >>> y = np.repeat(["cat", "dog", "eel", "fox"], 5)   # string labels are fine
    >>> r = gt.analyze(X, y, strategies=("batch_all",))
    >>> r["n_points"], r["n_classes"], r["triplets"]["batch_all"]["count"]
    (20, 4, 1200)
    >>> r["margins"]["B_matched"], r["mode"]
    (0.1, 'all')
    """
    import jax

    import geotrip as gt

    dA, dB, strategies, (P, K, count) = _check_options(
        distance, margin, compare, match, strategies, triplets, batches
    )
    X = check_embeddings(X, "embeddings")
    n_in, dim = X.shape
    codes, classes = encode_labels(labels, n_in)
    notes: list[str] = []
    norms, keep, excluded = _valid_rows(X, codes, classes, drop_invalid, progress, notes)
    kept = np.flatnonzero(keep)
    n = kept.size
    mode = triplets if triplets != "auto" else ("all" if n <= max_exact else "batches")
    if mode == "all" and n > max_exact:
        raise ValueError(
            f"triplets='all' is limited to max_exact={max_exact} points (got {n}); "
            "use triplets='batches' or raise max_exact"
        )
    if mode == "batches":
        _eligible_classes(codes[kept], P, K)  # fail before any heavy work
    rng = np.random.default_rng(seed)
    ev = (
        kept
        if (mode == "all" or n <= eval_points)
        else _class_subset(codes, kept, eval_points, rng)
    )
    U = _unit(take_rows(X, ev))
    ycodes = codes[ev]
    theta = angle_matrix(U)
    metrics = _collapse_metrics(U, ycodes)
    if ev.size < n:
        notes.append(
            f"collapse, retrieval and pair-angle figures use a random subset of "
            f"{np.unique(codes[ev]).size} whole classes ({ev.size} points)"
        )

    # margins
    theta_ap = theta_an = None
    if match == "active_share":
        same = ycodes[:, None] == ycodes[None, :]
        i_a = rng.integers(0, ev.size, 200_000)
        i_p, i_n = rng.integers(0, ev.size, 200_000), rng.integers(0, ev.size, 200_000)
        ok = same[i_a, i_p] & ~same[i_a, i_n] & (i_a != i_p)
        theta_ap, theta_an = theta[i_a[ok], i_p[ok]], theta[i_a[ok], i_n[ok]]
    with jax.enable_x64(True):
        m_matched = float(
            gt.match_margin(
                float(margin),
                source=dA,
                target=dB,
                rule=match,
                theta_ap=theta_ap,
                theta_an=theta_an,
            )
        )
    losses = {
        "A": Loss.of(dA, margin),
        "B_same_number": Loss.of(dB, margin),
        "B_matched": Loss.of(dB, m_matched),
    }
    dists = (dA, dB)
    accs = {s: StrategyAccumulator() for s in strategies}
    if mode == "all":
        mats = loss_matrices(theta, losses)
        for s in strategies:
            st = strategy_stats(U, theta, ycodes, s, losses, mats, rng=rng, sample=max_sample)
            accs[s].add(st, _per_triplet(U, theta, st["sample"], losses, dists, mats))
    else:
        _run_batches(
            X, codes, kept, (P, K, count), seed, rng, losses, dists, accs, max_sample, progress
        )

    report: dict[str, Any] = {
        "mode": mode,
        "n_points": int(n),
        "dim": int(dim),
        "n_classes": int(np.unique(codes[kept]).size),
        "input": {"rows": int(n_in), **excluded},
        "norms": _norm_summary(norms[kept]),
        "evaluation_points": int(ev.size),
        "collapse": {k: v for k, v in metrics.items() if k != "recall_at_1"},
        "recall_at_1": metrics["recall_at_1"],
        "map_at_r": map_at_r_from_angles(theta, ycodes),
        "angles": _pair_angles(theta, ycodes),
        "margins": {
            "A": float(margin),
            "B_same_number": float(margin),
            "B_matched": m_matched,
            "rule": match,
            "distance": dA.name,
            "compare": dB.name,
        },
        "triplets": {s: _summarize_strategy(accs[s], mode) for s in strategies},
        "settings": {
            "strategies": list(strategies),
            "batches": [P, K, count] if mode == "batches" else None,
            "seed": int(seed),
            "max_sample": int(max_sample),
            "quantile_method": "inverted_cdf",
        },
        "notes": notes,
        "provenance": gt.provenance(seed=seed),
    }
    return jsonable(report)


def _class_subset(codes, kept, budget: int, rng) -> np.ndarray:
    """Sorted row indices of whole classes in random order, up to ``budget`` points.

    Whole classes keep every query's relevant set, so Recall@1 and MAP@R on the subset
    measure the model, not the sampling (a random subset of points of many classes leaves
    most queries without a same-class neighbour). A class larger than the remaining
    budget contributes a random part of it (at least 2 points)."""
    kc = codes[kept]
    by_class = np.argsort(kc, kind="stable")
    grouped = kept[by_class]
    _, starts, sizes = np.unique(kc[by_class], return_index=True, return_counts=True)
    chosen, left = [], budget
    for j in rng.permutation(starts.size):
        if left < 2:
            break
        rows = grouped[starts[j] : starts[j] + sizes[j]]
        if rows.size > left:
            rows = rng.choice(rows, left, replace=False)
        chosen.append(rows)
        left -= rows.size
    return np.sort(np.concatenate(chosen))


def _eligible_classes(codes: np.ndarray, P: int, K: int) -> np.ndarray:
    eligible = np.flatnonzero(np.bincount(codes) >= K)
    if eligible.size < P:
        raise ValueError(
            f"batches: P={P} classes of K={K} points need {P} classes with >= {K} points, "
            f"found {eligible.size}; lower P or K"
        )
    return eligible


def _run_batches(X, codes, kept, pkc, seed, rng, losses, dists, accs, max_sample, progress):
    import jax
    import jax.numpy as jnp

    import geotrip as gt

    P, K, count = pkc
    eligible = _eligible_classes(codes[kept], P, K)
    pool = kept[np.isin(codes[kept], eligible)]
    _, table, cnt = gt.class_table(jnp.asarray(codes[pool].astype(np.int32)))
    key = jax.random.key(seed)
    per_batch = max(1, math.ceil(max_sample / count))
    it = range(count)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="batches", unit="batch")
    for b in it:
        local = np.asarray(_sample_pk_fn(P, K)(jax.random.fold_in(key, b), table, cnt))
        ids = pool[local]
        U = _unit(take_rows(X, ids))
        y = codes[ids]
        theta = angle_matrix(U)
        mats = loss_matrices(theta, losses)
        for s, acc in accs.items():
            st = strategy_stats(U, theta, y, s, losses, mats, rng=rng, sample=per_batch)
            acc.add(st, _per_triplet(U, theta, st["sample"], losses, dists, mats))
