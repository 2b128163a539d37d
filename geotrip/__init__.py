"""geotrip: the gradient geometry of triplet losses on the unit hypersphere, in JAX.

The folders are the architecture (imports go one way, left to right):

* :mod:`geotrip.core` -- geometry, distances, losses, gradients, samplers, mining;
  re-exported flat: ``gt.angle``, ``gt.triplet_loss``, ``gt.gradient_angles``, ...
* :mod:`geotrip.sweeps` -- the closed-form angle kernel, the sharded sweep engine,
  configuration families, summaries, margin matching.
* :mod:`geotrip.counterexamples` -- counterexample search, simplification,
  certification; :mod:`geotrip.counterexamples.certificates` is the independent
  verifier (NumPy + mpmath, no JAX).
* :mod:`geotrip.train` -- models, data, metrics, the vectorised training runner,
  statistics, collapse sweeps and the tuned comparison.
* :mod:`geotrip.analysis` -- diagnosis of a user's own embeddings (``gt.analyze``).
* :mod:`geotrip.figures`, :mod:`geotrip.cli`, :mod:`geotrip.benchmarks` -- thin layers
  over the rooms above.

Every public name is listed once, in :mod:`geotrip._api`, and re-exported here lazily
(PEP 562): ``import geotrip`` is cheap and loads JAX only when a JAX-backed name is used.
"""

from ._api import lazy_exports as _lazy_exports
from ._api import locations as _locations

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = _lazy_exports(__name__, _locations())
