r"""Statistics of the training experiments: binomial intervals and exact paired tests.

* :func:`wilson_interval`, :func:`clopper_pearson_interval`: 95% (by default) intervals
  for a collapse probability :math:`k/n`.
* :func:`mcnemar_exact`: the exact two-sided McNemar test of paired binary outcomes
  (a binomial test of the discordant pairs), and :func:`paired_outcomes`, which pairs
  the runs of two distances on identical seed and hyper-parameters.
* :func:`mean_interval`, :func:`sign_flip_test`, :func:`paired_comparison`: a mean with
  its Student-t interval, and paired differences of a continuous score (per seed) with
  exact sign-flip and Wilcoxon signed-rank tests and the effect size.

The unit of a test is whatever its rows are: when rows are near-deterministic seed
replicates of one hyper-parameter cell, they are *not* independent units, and a
headline test should count cells (or seeds at one fixed, tuned setting) instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "wilson_interval",
    "clopper_pearson_interval",
    "mcnemar_exact",
    "paired_outcomes",
    "mean_interval",
    "sign_flip_test",
    "paired_comparison",
]

PAIR_KEYS = ("regime", "task", "strategy", "soft", "seed", "lr", "margin", "spread")
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

    ``keys`` default to (regime, task, strategy, soft, seed, lr, margin, spread): the same
    seed and hyper-parameters, hence the same start and batches up to data-dependent mining
    (a missing key counts as ``None``).
    """
    idx: dict[tuple, dict] = {}
    for r in rows:
        if r["distance"] in (a, b):
            idx.setdefault(tuple(r.get(k) for k in keys), {})[r["distance"]] = r
    return [(v[a], v[b]) for v in idx.values() if a in v and b in v]


def mean_interval(x, *, confidence: float = 0.95) -> dict[str, Any]:
    r"""Mean of independent values with its Student-t interval.

    .. math:: \bar x \pm t_{n-1,\,1-\alpha/2}\; s/\sqrt n

    Returns ``{"mean", "ci95": [lo, hi], "n", "sd"}`` (the key says 95 whatever
    ``confidence`` is only when it is 0.95; it is named ``"ci"`` otherwise). For ``n = 1``
    the interval is ``[nan, nan]``.

    >>> import geotrip as gt
    >>> r = gt.mean_interval([1.0, 2.0, 3.0])
    >>> r["mean"], [round(v, 4) for v in r["ci95"]]
    (2.0, [-0.4841, 4.4841])
    """
    from scipy.stats import t as student

    x = np.asarray(x, float).reshape(-1)
    n = x.size
    if n == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else float("nan")
    half = float(student.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n)) if n > 1 else np.nan
    key = "ci95" if confidence == 0.95 else "ci"
    return {"mean": mean, key: [mean - half, mean + half], "n": int(n), "sd": sd}


def sign_flip_test(d) -> float:
    r"""Exact two-sided sign-flip (paired permutation) test of :math:`\mathbb E\,d = 0`.

    Enumerates all :math:`2^n` sign assignments of the differences ``d`` (``n <= 20``) and
    returns the share whose :math:`|\sum_i \pm d_i|` reaches the observed
    :math:`|\sum_i d_i|` (with a relative tolerance of 1e-12 for ties).

    >>> import geotrip as gt
    >>> gt.sign_flip_test([1.0, 2.0, 3.0, 4.0])  # only all-plus and all-minus reach 10
    0.125
    """
    d = np.asarray(d, float).reshape(-1)
    n = d.size
    if n == 0 or n > 20:
        raise ValueError(f"sign_flip_test needs 1 <= n <= 20 differences, got {n}")
    signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1)
    stats = np.abs(signs @ d)
    obs = abs(d.sum())
    return float(np.mean(stats >= obs * (1 - 1e-12) - 1e-300))


def paired_comparison(x, y, *, confidence: float = 0.95) -> dict[str, Any]:
    r"""Paired comparison of two scores on the same units (e.g. seeds): :math:`d = x - y`.

    Returns ``n``, ``mean_diff`` with its Student-t ``ci95``, the effect size
    ``cohens_dz`` :math:`= \bar d / s_d` (``nan`` when :math:`s_d = 0`), the exact
    sign-flip p-value (:func:`sign_flip_test`) and the Wilcoxon signed-rank p-value
    (SciPy; exact for ``n <= 50`` without ties or zeros, else its normal approximation;
    1 when every difference is 0).
    """
    from scipy.stats import wilcoxon

    x = np.asarray(x, float).reshape(-1)
    y = np.asarray(y, float).reshape(-1)
    if x.shape != y.shape or x.size < 2:
        raise ValueError("paired_comparison needs two arrays of one length >= 2")
    d = x - y
    mi = mean_interval(d, confidence=confidence)
    sd = mi["sd"]
    if np.all(d == 0):
        p_w = 1.0
    else:
        p_w = float(wilcoxon(x, y, zero_method="wilcox", alternative="two-sided").pvalue)
    out = {
        "n": int(d.size),
        "mean_diff": mi["mean"],
        "cohens_dz": float(mi["mean"] / sd) if sd > 0 else float("nan"),
        "p_sign_flip": sign_flip_test(d) if d.size <= 20 else float("nan"),
        "p_wilcoxon": p_w,
    }
    out["ci95" if confidence == 0.95 else "ci"] = mi["ci95" if confidence == 0.95 else "ci"]
    return out
