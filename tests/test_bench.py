"""The benchmark suite: its peers agree with the closed form, the runner and the CLI."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import geotrip as gt
from geotrip.benchmarks import _angles, load_suites, run_suites
from geotrip.cli import main


def _data(d, N=180, dtype=jnp.float64):
    # 200 rows in d = 3 or 16, float64: the shapes of tests/test_sweeps.py's closed-form tests,
    # so the programs compiled there (or in the shared compilation cache) serve here
    a, p, n = gt.uniform_sphere(jax.random.key(d), (3, N), d, dtype=dtype)
    # include near-coincident positives
    a2, p2, n2 = gt.rotated_triplet(
        jax.random.key(1),
        jnp.full((20,), 1e-5),
        jnp.linspace(0.2, 3, 20),
        jnp.linspace(0.1, 3, 20),
        dim=d,
    )
    return (
        jnp.concatenate([a, a2.astype(dtype)]),
        jnp.concatenate([p, p2.astype(dtype)]),
        jnp.concatenate([n, n2.astype(dtype)]),
    )


@pytest.mark.parametrize("d", [3, 16])
def test_numpy_peer_matches_closed_form(d):
    a, p, n = _data(d)
    ref = gt.gradient_angles_closed_form(a, p, n, margins=_angles.MARGINS)
    got = _angles.numpy_closed_form(np.asarray(a), np.asarray(p), np.asarray(n))
    for k in _angles.KEYS:
        np.testing.assert_allclose(got[k], ref[k], atol=1e-9, equal_nan=True)


def test_torch_peer_matches_autodiff():
    torch = pytest.importorskip("torch", reason="torch not installed (optional extra 'torch')")
    a, p, n = _data(16)
    ref = gt.gradient_angles(a, p, n, margins=_angles.MARGINS)
    got = _angles.torch_autograd(torch, *(torch.from_numpy(np.array(x)) for x in (a, p, n)))
    for k in _angles.KEYS:
        r, g = np.asarray(ref[k]), got[k].numpy()
        ok = np.isfinite(r) & np.isfinite(g)
        assert ok.mean() > 0.3
        np.testing.assert_allclose(g[ok], r[ok], atol=1e-6)


@pytest.mark.slow  # the whole angles suite at tiny sizes: ~8 s; run with -m slow
def test_suite_runs_with_tiny_sizes():
    lines = []
    tiny = {
        "elems": 2**13,
        "n_cap": 2**11,
        "elems_ad": 2**12,
        "copy_bytes": 2**22,
        "reps": 1,
        "dims": (8,),
        "small_n": 1024,  # N itself: the programs compiled for the main rows serve
    }
    res = _angles.run(quick=True, log=lines.append, sizes=tiny)
    assert res["suite"] == "angles" and [r["dim"] for r in res["rows"]] == [8]
    assert _angles.DIMS == (3, 128, 1024)
    for row in res["rows"]:
        c = row["configs_per_s"]
        assert all(v > 0 for v in c.values())
        assert row["agreement"]["numpy_vs_closed_form"]["within_tolerance"]
        assert row["agreement"]["autodiff_vs_closed_form"]["within_tolerance"]
        assert row["ratios"]["closed_form_over_read_limit"] == pytest.approx(
            c["closed_form"] / c["read_bandwidth_limit"]
        )
        assert row["ratios"]["closed_form_over_autodiff"] == pytest.approx(
            c["closed_form"] / c["autodiff"]
        )
        small = row["small"]
        assert small["N"] == 1024 and all(v > 0 for v in small.values())
    assert any("ratios" in s for s in lines)
    json.dumps(res)


def test_registry_and_cli_errors(capsys):
    assert "angles" in load_suites()
    with pytest.raises(ValueError, match="valid: angles"):
        run_suites(["nope"])
    assert main(["bench", "--list"]) == 0
    assert "angles" in capsys.readouterr().out
    assert main(["bench", "--suite", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown suite" in err and err.count("\n") == 1
    with pytest.raises(ValueError, match="unknown size"):
        _angles.run(sizes={"bogus": 1})


def test_device_check_exits_clearly_on_cpu(tmp_path, capsys):
    import subprocess

    from geotrip.benchmarks._device import main as device_check

    if jax.default_backend() != "cpu":
        pytest.skip("an accelerator is present: the device check would run")
    out = tmp_path / "dc.json"
    assert device_check(["--out", str(out)]) == 3
    assert "no accelerator" in capsys.readouterr().err and not out.exists()
    assert subprocess.run(["bash", "-n", "benchmarks/device_check.sh"]).returncode == 0
