r"""Margins of the two compared losses: matched by a rule unless both are given.

A margin lives in its distance's units (``chord_sq`` 0.2 is not ``geodesic`` 0.2), so
comparing two losses with the same *number* as margin mixes a weighting effect with an
active-set effect. By default the search derives B's margin from A's with
:func:`geotrip.match_margin` (rule ``"slope"``: :math:`m_B = m_A\,g_B'(\pi/2)/g_A'(\pi/2)`,
so ``chord_sq`` 0.2 matches ``geodesic`` 0.1). The rule ``"active_share"`` matches the
share of active triplets over uniform random triplets on :math:`S^{d-1}` (4096 of them,
a fixed NumPy seed).

The rule lives with the other margin-matching code in :mod:`geotrip.sweeps._matching` (the
sweep uses it too); this module keeps the search room's import of it.
"""

from ..sweeps._matching import DEFAULT_MARGIN, resolve_margins

__all__ = ["DEFAULT_MARGIN", "resolve_margins"]
