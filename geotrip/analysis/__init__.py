"""``geotrip.analysis``: see :mod:`geotrip` for the layout; names listed in :mod:`geotrip._api`."""

from .._api import lazy_exports as _lazy_exports
from .._api import locations as _locations

__getattr__, __dir__, __all__ = _lazy_exports(__name__, _locations("analysis"))
