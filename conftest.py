"""pytest configuration for the tests and the docstring examples (``--doctest-modules``).

As in equinox/diffrax: float64 enabled (references compare in double precision),
strict dtype promotion (mixing int and float arrays raises: cast explicitly) and
rank promotion raising (no silent broadcasting of arrays of different ranks).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

collect_ignore_glob = ["benchmarks/*", "notebooks/*", "docs/*", "results/*", "figures/*"]
