"""pytest configuration for the tests and the docstring examples (``--doctest-modules``).

As in equinox/diffrax: float64 enabled (references compare in double precision),
strict dtype promotion (mixing int and float arrays raises: cast explicitly) and
rank promotion raising (no silent broadcasting of arrays of different ranks).

Compile time dominates the suite on CPU, so (unless the caller set them) the run uses
XLA flags that make programs compile faster (backend optimisation level 0, the older CPU
emitters, no parallel-codegen split; results agree with the default build to the
tolerances the tests use) and one persistent compilation cache in a
fresh temporary folder shared by the pytest-xdist workers and every subprocess the tests
start, removed at the end of the run.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")


def _jaxlib_at_least(major: int, minor: int) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        parts = version("jaxlib").split(".")[:2]
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (PackageNotFoundError, ValueError, IndexError):
        return False


# Compile-time flags (each only where the caller did not set it): LLVM optimisation level
# 0; XLA's older elemental emitters instead of the MLIR fusion emitters (about half the
# backend compile time of geotrip's small programs; the same HLO, and the suite's checks
# pass either way); no splitting of a program's LLVM module for parallel codegen (the
# programs are small and the 2-core CI machine runs 2 workers: the split only costs).
# XLA aborts on a flag it does not know, so the two newer ones are set only for a jaxlib
# known to have them (0.7 or later; older versions allowed by pyproject.toml run without).
_FAST_COMPILE = [("xla_backend_optimization_level", "0")]
if _jaxlib_at_least(0, 7):
    _FAST_COMPILE += [
        ("xla_cpu_use_fusion_emitters", "false"),
        ("xla_cpu_parallel_codegen_split_count", "1"),
    ]
for _flag, _value in _FAST_COMPILE:
    if _flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --{_flag}={_value}").strip()
if "JAX_COMPILATION_CACHE_DIR" not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="geotrip-test-jax-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    # every program, however small: the workers compile many of the same ones
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

collect_ignore_glob = ["benchmarks/*", "notebooks/*", "docs/*", "results/*", "figures/*"]
