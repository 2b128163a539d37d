"""The persistent compilation cache: folder resolution, off switch, reuse, same results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geotrip._compilation import compilation_cache_dir, compilation_cache_disabled


def test_folder_resolution_order(tmp_path):
    home = Path.home()
    assert compilation_cache_dir({}) == home / ".cache" / "geotrip" / "jax"
    assert compilation_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/geotrip/jax")
    # a relative XDG_CACHE_HOME is invalid by the XDG spec and ignored
    assert compilation_cache_dir({"XDG_CACHE_HOME": "rel"}) == home / ".cache" / "geotrip" / "jax"
    both = {"XDG_CACHE_HOME": "/x", "JAX_COMPILATION_CACHE_DIR": str(tmp_path)}
    assert compilation_cache_dir(both) == tmp_path
    for on in ("1", "yes", "true", "ON"):
        assert compilation_cache_disabled({"GEOTRIP_NO_COMPILATION_CACHE": on})
        assert compilation_cache_dir({**both, "GEOTRIP_NO_COMPILATION_CACHE": on}) is None
    for off in ("", "0", "false", "no", "off"):
        assert not compilation_cache_disabled({"GEOTRIP_NO_COMPILATION_CACHE": off})


def test_negative_threshold_rejected():
    from geotrip._compilation import enable_compilation_cache

    with pytest.raises(ValueError, match="min_compile_time_secs"):
        enable_compilation_cache(min_compile_time_secs=-1)


_SCRIPT = r"""
import json, sys, time
import jax, jax.numpy as jnp
import geotrip as gt
folder = gt.enable_compilation_cache(min_compile_time_secs=0.0)
a, p, n = gt.uniform_sphere(jax.random.key(0), (3, 64), 5)
t0 = time.perf_counter()
out = jax.jit(gt.gradient_angles_closed_form)(a, p, n)
seconds = time.perf_counter() - t0
print(json.dumps({
    "folder": None if folder is None else str(folder),
    "seconds": seconds,
    "values": {k: jnp.asarray(v).tolist() for k, v in sorted(out.items())},
}))
"""


def _run(env_extra, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "GEOTRIP_", "XDG_C"))}
    env.update(JAX_PLATFORMS="cpu", **env_extra)
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # three fresh processes compiling a search: ~13 s; run with -m slow
def test_cache_written_reused_and_results_unchanged(tmp_path):
    xdg = tmp_path / "xdg"
    cold = _run({"XDG_CACHE_HOME": str(xdg)}, tmp_path)
    folder = xdg / "geotrip" / "jax"
    assert cold["folder"] == str(folder)
    entries = sorted(p.name for p in folder.iterdir())
    assert entries, "nothing was written to the cache"
    warm = _run({"XDG_CACHE_HOME": str(xdg)}, tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == entries  # reused, nothing new
    off = _run({"XDG_CACHE_HOME": str(xdg), "GEOTRIP_NO_COMPILATION_CACHE": "1"}, tmp_path)
    assert off["folder"] is None
    assert cold["values"] == warm["values"] == off["values"]  # bit for bit (json of floats)
