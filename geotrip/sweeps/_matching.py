r"""Margin matching between distances of the family, and hinge active-set disagreement.

A margin lives in its distance's units: ``chord_sq`` margin 0.2 is not ``geodesic``
margin 0.2. The hinge of loss A is active when

.. math:: z_A = g_A(\theta_{ap}) - g_A(\theta_{an}) + m_A > 0
          \iff \Delta_A := g_A(\theta_{an}) - g_A(\theta_{ap}) < m_A .

Rules to choose :math:`m_B` from :math:`m_A` (:data:`MATCHING_RULES`):

* ``"reference"``: the two active-set boundaries coincide at the reference positive
  angle :math:`\theta_\text{ref}`: with
  :math:`\theta^* = g_A^{-1}\big(g_A(\theta_\text{ref}) + m_A\big)` (clipped to
  :math:`\pi`), :math:`m_B = g_B(\theta^*) - g_B(\theta_\text{ref})`.
* ``"slope"``: first order of the same at :math:`\theta_\text{ref}`:
  :math:`m_B = m_A\, g_B'(\theta_\text{ref}) / g_A'(\theta_\text{ref})`. E.g.
  ``chord_sq`` → ``geodesic`` at :math:`\pi/2`: :math:`m_B = m_A/2`.
* ``"active_share"`` (equal on average over a configuration family): given samples
  :math:`(\theta_{ap}, \theta_{an})` of the family, :math:`m_B` is the quantile of
  :math:`\Delta_B` at the share of triplets active under A, so both losses have the
  same share of active triplets on the family.

Even with matched margins the active *sets* differ (the boundaries
:math:`\Delta_A = m_A` and :math:`\Delta_B = m_B` are different curves in the
:math:`(\theta_{ap}, \theta_{an})` plane); :func:`active_set_disagreement` measures by
how much.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import check_in_range, check_margin, is_concrete
from ..core._distances import Distance
from ..core._distances import distance as get_distance
from ..core._gradients import DEFAULT_MARGINS, _margin_pair

__all__ = [
    "MATCHING_RULES",
    "DEFAULT_MARGIN",
    "match_margin",
    "active_set_disagreement",
    "resolve_margins",
]

Array = jax.Array

MATCHING_RULES = ("reference", "slope", "active_share")


def _inverse_profile(dist: Distance, value, iters: int = 80):
    """theta in [0, pi] with g(theta) = value, by bisection (g increasing); clipped at the ends."""
    value = jnp.asarray(value)
    lo = jnp.zeros_like(value)
    hi = jnp.full_like(value, jnp.pi)

    def body(_, lh):
        lo, hi = lh
        mid = (lo + hi) / 2
        up = dist.profile(mid) < value
        return jnp.where(up, mid, lo), jnp.where(up, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return (lo + hi) / 2


def match_margin(
    margin,
    *,
    source: str | Distance = "chord_sq",
    target: str | Distance = "geodesic",
    rule: str = "reference",
    theta_ref=math.pi / 2,
    theta_ap: Array | None = None,
    theta_an: Array | None = None,
) -> Array:
    r"""The margin of ``target`` that matches ``margin`` of ``source`` under ``rule``.

    Args:
      margin: :math:`m_A \ge 0` of the source distance (scalar or array).
      source, target: distances A and B (names or :class:`geotrip.Distance`).
      rule: one of :data:`MATCHING_RULES` (see the module docstring).
      theta_ref: reference positive angle in :math:`(0, \pi)` for ``"reference"`` and
        ``"slope"`` (default :math:`\pi/2`, where uniform points concentrate).
      theta_ap, theta_an: samples of the family (same shape) for ``"active_share"``.

    Returns:
      :math:`m_B`, shape of ``margin`` (floating).

    Raises:
      ValueError: unknown rule (the message lists the valid ones), a margin that is not
        finite or outside :math:`[0, g_A(\pi)]` (checked on concrete values; recorded for
        :func:`geotrip.checked` under a trace), for ``"reference"`` a margin with
        :math:`g_A(\theta_\text{ref}) + m_A > g_A(\pi)` (no boundary to match), a
        reference angle outside :math:`(0, \pi)`, a zero source slope, or missing samples.
      TypeError: a margin that is not a real number.

    >>> import geotrip as gt
    >>> round(float(gt.match_margin(0.2, source="chord_sq", target="geodesic", rule="slope")), 6)
    0.1
    >>> round(float(gt.match_margin(0.2, rule="reference")), 4)  # boundaries meet at pi/2
    0.1002
    >>> import jax.numpy as jnp
    >>> tap, tan = jnp.linspace(0.2, 1.4, 50), jnp.linspace(0.5, 1.7, 50)
    >>> m = gt.match_margin(0.2, rule="active_share", theta_ap=tap, theta_an=tan)
    >>> s = gt.active_set_disagreement(tap, tan, margins=(0.2, m))
    >>> bool(s["active/A"] == s["active/B"])  # the same share of active triplets
    True
    """
    if rule not in MATCHING_RULES:
        raise ValueError(f"unknown matching rule {rule!r}; valid: {', '.join(MATCHING_RULES)}")
    A, B = get_distance(source), get_distance(target)
    check_margin(margin)
    m = jnp.asarray(margin)
    if not jnp.issubdtype(m.dtype, jnp.floating):
        m = m.astype(jnp.result_type(float))
    top = A.range_max
    check_in_range(
        m, "margin", 0.0, top, interval=f"[0, {top:g}] (the range of {A.name}: g(0) to g(pi))"
    )
    if rule in ("reference", "slope"):
        tr = float(theta_ref)
        if not 0 < tr < math.pi:
            raise ValueError(f"theta_ref must be in (0, pi), got {tr}")
        if rule == "reference" and is_concrete(m):
            room = top - A.profile(tr)
            worst = float(np.max(np.asarray(m, np.float64))) if m.size else 0.0
            if worst > room * (1 + 1e-6):
                raise ValueError(
                    f"margin {worst:g} of {A.name} cannot be matched at theta_ref={tr:.6g}: "
                    f"g(theta_ref) + margin exceeds g(pi) = {top:g} (at most {room:.6g} fits); "
                    'use rule="slope" or a smaller theta_ref'
                )
        t = jnp.asarray(tr, m.dtype)
        if rule == "slope":
            wa = A.weight(t)
            if float(wa) == 0:
                raise ValueError(
                    f"{A.name} has zero slope at theta_ref={tr}; pick another reference angle"
                )
            return m * B.weight(t) / wa
        target_value = A.profile(t) + m
        ts = _inverse_profile(A, jnp.broadcast_to(target_value, m.shape).astype(m.dtype))
        return B.profile(ts) - B.profile(t)
    if theta_ap is None or theta_an is None:
        raise ValueError('rule "active_share" needs samples theta_ap and theta_an of the family')
    tap = jnp.asarray(theta_ap)
    tan = jnp.asarray(theta_an)
    if tap.shape != tan.shape or tap.size == 0:
        raise ValueError(
            "theta_ap and theta_an must be non-empty and of one shape, "
            f"got {tap.shape}, {tan.shape}"
        )
    dA = (A.profile(tan) - A.profile(tap)).reshape(-1)
    dB = jnp.sort((B.profile(tan) - B.profile(tap)).reshape(-1))
    N = dB.shape[0]

    def one(mi):
        k = jnp.sum(dA < mi)  # number active under A
        lo = jnp.where(k > 0, dB[jnp.clip(k - 1, 0, N - 1)], dB[0] - 1)
        hi = jnp.where(k < N, dB[jnp.clip(k, 0, N - 1)], dB[N - 1] + 1)
        return ((lo + hi) / 2).astype(m.dtype)

    return jax.vmap(one)(m.reshape(-1)).reshape(m.shape)


def active_set_disagreement(
    theta_ap: Array,
    theta_an: Array,
    *,
    distances: Sequence[str | Distance] = ("chord_sq", "geodesic"),
    margins: Sequence = DEFAULT_MARGINS,
    mask: Array | None = None,
) -> dict[str, Array]:
    r"""Shares of triplets active under each hinge, and under one but not the other.

    With :math:`z_X = g_X(\theta_{ap}) - g_X(\theta_{an}) + m_X` and active
    :math:`\{z_X > 0\}`, over the (masked) triplets:

    ``"active/A"``, ``"active/B"``: shares active under each; ``"only_A"``,
    ``"only_B"``: active under one and not the other; ``"disagreement"``:
    ``only_A + only_B``; ``"count"``: the number of triplets counted.

    Args:
      theta_ap, theta_an: angles of the triplets, any one shape.
      distances: (A, B); margins: (m_A, m_B) in each distance's units; ``m_B = None``
        (the default, ``(0.2, None)``) is slope-matched to ``m_A`` at :math:`\pi/2`.
      mask: optional boolean array of the same shape (e.g. a miner's ``valid``).

    Returns:
      Dict of scalars (shares in [0, 1]; 0 when no triplet is counted).
    """
    if isinstance(distances, (str, Distance)) or len(distances) != 2:
        raise ValueError(f"distances must be a pair (A, B), got {distances!r}")
    if isinstance(margins, (str, Distance)) or len(margins) != 2:
        raise ValueError(f"margins must be a pair (m_A, m_B), got {margins!r}")
    A, B = (get_distance(d) for d in distances)
    margins = _margin_pair(margins, A, B)  # B's None: slope-matched to A's
    tap, tan = jnp.asarray(theta_ap), jnp.asarray(theta_an)
    if tap.shape != tan.shape:
        raise ValueError(f"theta_ap and theta_an must have one shape, got {tap.shape}, {tan.shape}")
    actA = A.profile(tap) - A.profile(tan) + margins[0] > 0
    actB = B.profile(tap) - B.profile(tan) + margins[1] > 0
    w = jnp.ones(tap.shape, tap.dtype) if mask is None else jnp.asarray(mask).astype(tap.dtype)
    cnt = jnp.sum(w)
    den = jnp.maximum(cnt, jnp.ones_like(cnt))
    share = lambda b: jnp.sum(w * b.astype(tap.dtype)) / den
    out = {
        "active/A": share(actA),
        "active/B": share(actB),
        "only_A": share(actA & ~actB),
        "only_B": share(actB & ~actA),
        "count": cnt,
    }
    out["disagreement"] = out["only_A"] + out["only_B"]
    return out


DEFAULT_MARGIN = 0.2
"""A's margin when none is given (FaceNet's 0.2, in ``chord_sq`` units)."""


def _uniform_triplet_angles(dim: int, n: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, n, dim))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)

    def ang(u, v):
        return 2 * np.arctan2(np.linalg.norm(u - v, axis=-1), np.linalg.norm(u + v, axis=-1))

    return ang(x[0], x[1]), ang(x[0], x[2])


def resolve_margins(
    distances: Sequence, margins: Sequence | None, *, match: str | None, dim: int
) -> tuple[tuple[float, float], str | None, str]:
    """``((m_A, m_B), rule used or None, note)`` for the two losses.

    ``margins`` is ``None`` (A gets :data:`DEFAULT_MARGIN`, B is matched), ``(m_A, None)``
    (B matched) or ``(m_A, m_B)`` (both explicit: ``match`` is not used). The note says
    what was done, and warns when explicit margins of two different distances are
    compared (their units differ).

    Raises:
      ValueError: malformed margins, a negative margin, or B to be matched with
        ``match=None``.
    """
    if margins is None:
        margins = (DEFAULT_MARGIN, None)
    if len(margins) != 2:
        raise ValueError("margins must be a pair (A, B); B may be None (matched)")
    mA, mB = margins
    for which, m in (("A", mA), ("B", mB)):
        if m is not None:
            check_margin(m, f"{which}'s margin")
    if mA is None or not float(mA) >= 0:
        raise ValueError(f"A's margin must be a non-negative number, got {mA!r}")
    A, B = (get_distance(d) for d in distances)
    if mB is not None:
        if not float(mB) >= 0:
            raise ValueError(f"B's margin must be a non-negative number, got {mB!r}")
        note = ""
        if A is not B:
            slope = float(match_margin(float(mA), source=A, target=B, rule="slope"))
            note = (
                f"explicit margins {float(mA):g} ({A.name}) and {float(mB):g} ({B.name}) are in "
                f"different units; the slope-matched margin of {B.name} would be {slope:.6g}"
            )
        return (float(mA), float(mB)), None, note
    if match is None:
        raise ValueError("B's margin is None: give it, or a matching rule (match='slope')")
    if match not in MATCHING_RULES:
        raise ValueError(f"unknown matching rule {match!r}; valid: {', '.join(MATCHING_RULES)}")
    if match == "active_share":
        tap, tan = _uniform_triplet_angles(dim)
        mB = match_margin(float(mA), source=A, target=B, rule=match, theta_ap=tap, theta_an=tan)
    else:
        mB = match_margin(float(mA), source=A, target=B, rule=match, theta_ref=math.pi / 2)
    mB = float(mB)
    note = f"margin of {B.name} {mB:.6g} matched to {A.name} {float(mA):g} by rule {match}"
    return (float(mA), mB), match, note
