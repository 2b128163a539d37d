r"""The ``margins`` pair of the two-loss functions (:func:`geotrip.gradient_angles`,
:func:`geotrip.batch_gradient_angle`, ...): validation, and B's margin matched to A's when it
is ``None`` (the default)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .._validate import check_margin
from ._distances import Distance

__all__: list[str] = []


def _pair(values, name):
    if isinstance(values, (str, Distance)) or not isinstance(values, Sequence) or len(values) != 2:
        raise ValueError(f"{name} must be a pair (A, B), got {values!r}")
    return tuple(values)


DEFAULT_MARGINS = (0.2, None)
"""The default ``margins`` of the two-loss functions: A's is FaceNet's 0.2 (in A's units) and
B's (``None``) is matched to it by ``slope_matched_margin`` (``chord_sq`` 0.2 ↔
``geodesic`` 0.1): two losses are compared with margins in matching units unless both are
given."""


def slope_matched_margin(margin, source: Distance, target: Distance, theta=math.pi / 2):
    r"""B's margin matching A's by the slope rule at :math:`\theta` (default :math:`\pi/2`):
    :math:`m_B = m_A\, g_B'(\theta) / g_A'(\theta)`; a margin of A stays traced under ``jit``.

    >>> import geotrip as gt
    >>> slope_matched_margin(0.2, gt.distance("chord_sq"), gt.distance("geodesic"))
    0.1
    """
    wa = source.weight_at(theta)
    if wa == 0:
        raise ValueError(
            f"{source.name} has zero slope at theta={theta:.6g}: give both margins explicitly"
        )
    ratio = target.weight_at(theta) / wa
    return round(margin * ratio, 15) if isinstance(margin, (int, float)) else margin * ratio


def _margin_pair(margins, dA: Distance, dB: Distance):
    """``(m_A, m_B)`` checked; ``m_B = None`` is slope-matched to ``m_A`` (see
    ``DEFAULT_MARGINS``)."""
    pair = _pair(margins, "margins")
    mA = check_margin(pair[0], "margins[0]")
    if pair[1] is None:
        return mA, slope_matched_margin(mA, dA, dB)
    return mA, check_margin(pair[1], "margins[1]")
