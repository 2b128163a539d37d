r"""Margins of the two compared losses: matched by a rule unless both are given.

A margin lives in its distance's units (``chord_sq`` 0.2 is not ``geodesic`` 0.2), so
comparing two losses with the same *number* as margin mixes a weighting effect with an
active-set effect. By default the search derives B's margin from A's with
:func:`geotrip.match_margin` (rule ``"slope"``: :math:`m_B = m_A\,g_B'(\pi/2)/g_A'(\pi/2)`,
so ``chord_sq`` 0.2 matches ``geodesic`` 0.1). The rule ``"active_share"`` matches the
share of active triplets over uniform random triplets on :math:`S^{d-1}` (4096 of them,
a fixed NumPy seed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..core._distances import distance as get_distance

__all__ = ["DEFAULT_MARGIN", "resolve_margins"]

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
    from ..sweeps._matching import MATCHING_RULES, match_margin

    if margins is None:
        margins = (DEFAULT_MARGIN, None)
    if len(margins) != 2:
        raise ValueError("margins must be a pair (A, B); B may be None (matched)")
    mA, mB = margins
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
