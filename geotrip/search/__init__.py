"""``geotrip.search``: see :mod:`geotrip` for the layout; names listed in :mod:`geotrip._api`.

The room shares its name with its main function :func:`geotrip.search`. Importing any
module of the room (``geotrip.search.certificates``, or ``from geotrip.search import
...``) makes Python bind the attribute ``geotrip.search`` to this package, which would
hide the function; so the package is callable and forwards to the function:
``gt.search(...)`` always runs the search, whichever of the two the attribute holds.
"""

import sys as _sys
import types as _types

from .._api import lazy_exports as _lazy_exports
from .._api import locations as _locations

__getattr__, __dir__, __all__ = _lazy_exports(__name__, _locations("search"))


class _CallableRoom(_types.ModuleType):
    def __call__(self, *args, **kwargs):
        return self.search(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableRoom
