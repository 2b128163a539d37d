"""The CLI skeleton and the core figures."""

import json
import subprocess
import sys

import numpy as np
import pytest

from geotrip.cli import main


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "figures" in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "geotrip", "figures", "--list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "weights" in out.stdout and "angle_map" in out.stdout


@pytest.mark.slow  # 5 s; the default run regenerates weights in tests/test_reproducible.py
def test_core_figures_are_written_with_data_and_provenance(tmp_path, capsys):
    assert (
        main(["figures", "--out", str(tmp_path), "--only", "weights", "angle_map", "--quick"]) == 0
    )
    for name in ("weights", "angle_map"):
        for ext in ("pdf", "png", "npz", "provenance.json"):
            assert (tmp_path / f"{name}.{ext}").stat().st_size > 0
        prov = json.loads((tmp_path / f"{name}.provenance.json").read_text())
        assert {"command", "seed", "versions", "device", "git"} <= set(prov)
        assert "time_utc" not in prov  # run details go to run_log.json, not the provenance
        assert prov["versions"]["jax"]
    data = np.load(tmp_path / "weights.npz")
    np.testing.assert_allclose(data["weight/geodesic"], 1.0)
    np.testing.assert_allclose(data["weight/chord_sq"], 2 * np.sin(data["theta"]), atol=1e-12)
    amap = np.load(tmp_path / "angle_map.npz")
    z = amap["riemannian/anchor/psi=90"]
    assert np.all(np.isfinite(z)) and 0 <= z.min() and z.max() < 180


@pytest.mark.parametrize(
    "argv, message",
    [
        (["figures", "--only", "nope"], "unknown figure"),
        (["figures", "--seed", "-1"], "--seed"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["figures", "--seed", "abc"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
