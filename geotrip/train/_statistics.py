r"""Statistics of the training experiments: binomial intervals and exact paired tests.

* :func:`wilson_interval`, :func:`clopper_pearson_interval`: 95% (by default) intervals
  for a collapse probability :math:`k/n`.
* :func:`mcnemar_exact`: the exact two-sided McNemar test of paired binary outcomes
  (a binomial test of the discordant pairs), and :func:`paired_outcomes`, which pairs
  the runs of two distances on identical seed and hyper-parameters.

The unit of a test is whatever its rows are: when rows are near-deterministic seed
replicates of one hyper-parameter cell, they are *not* independent units, and a
headline test should count cells (or seeds at one fixed, tuned setting) instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["wilson_interval", "clopper_pearson_interval", "mcnemar_exact", "paired_outcomes"]

PAIR_KEYS = ("task", "strategy", "soft", "seed", "lr", "margin", "spread")
"""Columns that identify one paired trial across distances in a collapse ``runs.csv``."""


def wilson_interval(k, n, *, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    r"""Wilson score interval for a binomial proportion :math:`k/n`.

    .. math:: \frac{\hat p + \frac{z^2}{2n} \pm
              z\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}}{1 + z^2/n}

    with :math:`z` the two-sided normal quantile. Vectorised; ``n = 0`` gives [0, 1].

    >>> import geotrip as gt
    >>> lo, hi = gt.wilson_interval(5, 10)
    >>> round(float(lo), 4), round(float(hi), 4)
    (0.2366, 0.7634)
    """
    from scipy.stats import norm

    k = np.asarray(k, float)
    n = np.asarray(n, float)
    z = norm.ppf(0.5 + confidence / 2)
    nn = np.where(n > 0, n, 1.0)
    p = k / nn
    den = 1 + z * z / nn
    mid = (p + z * z / (2 * nn)) / den
    half = z * np.sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn)) / den
    # exact ends (no rounding past p)
    lo = np.where((n > 0) & (k > 0), np.clip(mid - half, 0, 1), 0.0)
    hi = np.where((n > 0) & (k < n), np.clip(mid + half, 0, 1), 1.0)
    lo, hi = np.minimum(lo, p), np.maximum(hi, p)
    return lo, hi


def clopper_pearson_interval(k, n, *, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    r"""Exact (Clopper–Pearson) interval for a binomial proportion :math:`k/n`.

    .. math:: \big[B(\tfrac{\alpha}{2};\ k,\ n-k+1),\ B(1-\tfrac{\alpha}{2};\ k+1,\ n-k)\big]

    with :math:`B(q; a, b)` the Beta quantile and :math:`\alpha = 1 -` ``confidence``
    (0 below for :math:`k = 0`, 1 above for :math:`k = n`). Vectorised.

    >>> import geotrip as gt
    >>> lo, hi = gt.clopper_pearson_interval(0, 10)
    >>> float(lo), round(float(hi), 4)
    (0.0, 0.3085)
    """
    from scipy.stats import beta

    k = np.asarray(k, float)
    n = np.asarray(n, float)
    a = 1 - confidence
    lo = np.where(k > 0, beta.ppf(a / 2, np.maximum(k, 1e-300), n - k + 1), 0.0)
    hi = np.where(k < n, beta.ppf(1 - a / 2, k + 1, np.maximum(n - k, 1e-300)), 1.0)
    return np.nan_to_num(lo), np.nan_to_num(hi, nan=1.0)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    r"""Exact two-sided McNemar p-value from the discordant counts of paired binary outcomes.

    Under the null (both members of a pair equally likely to be the one that "fails"),
    ``only_a`` is :math:`\mathrm{Binomial}(b, 1/2)` with :math:`b` = ``only_a + only_b``;
    the p-value is the two-sided binomial test (1 when there are no discordant pairs).

    >>> import geotrip as gt
    >>> gt.mcnemar_exact(5, 0)
    0.0625
    """
    from scipy.stats import binomtest

    only_a, only_b = int(only_a), int(only_b)
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_a}, {only_b}")
    disc = only_a + only_b
    return float(binomtest(only_a, disc, 0.5).pvalue) if disc else 1.0


def paired_outcomes(
    rows: Sequence[Mapping[str, Any]], a: str, b: str, *, keys: Sequence[str] = PAIR_KEYS
) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """Pairs ``(row of a, row of b)`` of distances ``a`` and ``b`` on identical ``keys``.

    ``keys`` default to (task, strategy, soft, seed, lr, margin, spread): the same seed and
    hyper-parameters, hence the same start and batches up to data-dependent mining.
    """
    idx: dict[tuple, dict] = {}
    for r in rows:
        if r["distance"] in (a, b):
            idx.setdefault(tuple(r[k] for k in keys), {})[r["distance"]] = r
    return [(v[a], v[b]) for v in idx.values() if a in v and b in v]
