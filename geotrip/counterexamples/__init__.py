"""``geotrip.counterexamples``: counterexample search, simplification and certification.

Names are listed in :mod:`geotrip._api` and re-exported lazily (``gt.search``,
``gt.certify``, ``gt.verify_certificate``, ...). :mod:`geotrip.counterexamples.certificates`,
the independent verifier, imports no JAX. The room is not called ``search``: a
subpackage named like a public function would replace that function on ``geotrip``
as soon as any of its modules is imported.
"""

from .._api import lazy_exports as _lazy_exports
from .._api import locations as _locations

__getattr__, __dir__, __all__ = _lazy_exports(__name__, _locations("counterexamples"))
