"""Committed outputs reproduce: parts of ``geotrip figures`` regenerated into a temporary
folder and compared with the committed files in ``figures/``.

How each kind of file is compared:

* npz data: the same keys, dtypes and shapes and exactly the same values (bitwise; NaN where
  NaN). The default tests run at conftest's XLA backend optimisation level 0 while the
  committed files were made at XLA's default level, so they regenerate only figures whose
  data do not depend on it (``weights``: measured identical at both levels; ``angle_map``
  differed by up to 1e-12 degrees at level 0). The ``slow`` test runs ``geotrip figures``
  in a subprocess with XLA's default flags and requires exact data for every figure it makes.
* PNG and PDF: bytes, when the installed matplotlib is the version the committed provenance
  names (text rendering and the PDF writer change between versions); otherwise not compared.
* provenance: every field but ``command`` (here the test's own), ``git`` (the checkout
  under test may have uncommitted changes) and, in the default tests, ``device.xla_flags``
  (conftest's); it must hold no run detail (time, host, CPU count), which go to the
  git-ignored ``run_log.json``.
* certificates: points, triplets, losses, assertions and statement exactly; the claims
  (float64 JAX values) to 1e-12 relative when recomputed at level 0 (measured: 3 ulp), exactly
  in the ``slow`` subprocess run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import geotrip as gt

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
RUN_DETAILS = ("time_utc", "cpu_count", "host", "run", "cwd")


def _assert_same_npz(new: Path, ref: Path) -> None:
    a, b = np.load(new), np.load(ref)
    assert sorted(a.files) == sorted(b.files), f"{new.name}: keys differ"
    for key in b.files:
        x, y = a[key], b[key]
        assert x.dtype == y.dtype and x.shape == y.shape, f"{new.name}/{key}: dtype or shape"
        assert np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"), f"{new.name}/{key} differs"


def _no_run_details(record) -> None:
    text = json.dumps(record)
    for key in RUN_DETAILS:
        assert f'"{key}"' not in text, f"run detail {key!r} in a committed record"


def _assert_same_provenance(new: Path, ref: Path) -> None:
    a, b = json.loads(new.read_text()), json.loads(ref.read_text())
    _no_run_details(a)
    assert set(a) == set(b)
    for key in set(b) - {"command", "git"}:
        if key == "device" and a[key]["xla_flags"] != b[key]["xla_flags"]:
            a[key], b[key] = dict(a[key], xla_flags=None), dict(b[key], xla_flags=None)
        assert a[key] == b[key], f"{new.name}: {key} differs"
    assert set(a["git"]) == {"revision", "dirty", "source_digest"}


def _compare_figure(out: Path, name: str) -> None:
    _assert_same_npz(out / f"{name}.npz", FIGURES / f"{name}.npz")
    _assert_same_provenance(out / f"{name}.provenance.json", FIGURES / f"{name}.provenance.json")
    committed = json.loads((FIGURES / f"{name}.provenance.json").read_text())
    if committed["versions"]["matplotlib"] == metadata.version("matplotlib"):
        for ext in ("png", "pdf"):
            new, ref = out / f"{name}.{ext}", FIGURES / f"{name}.{ext}"
            assert new.read_bytes() == ref.read_bytes(), f"{name}.{ext}: bytes differ"


def _assert_same_certificate(new: dict, ref: dict, *, rel: float) -> None:
    _no_run_details(new)
    for key in ("format", "kind", "points", "triplets", "losses", "assertions", "statement"):
        assert new[key] == ref[key], f"certificate {key} differs"
    for key, value in ref["claims"].items():
        got = new["claims"][key]
        if isinstance(value, float):
            assert got == pytest.approx(value, rel=rel, abs=1e-300), key
        elif isinstance(value, list) and value and isinstance(value[0], float):
            np.testing.assert_allclose(got, value, rtol=rel, err_msg=key)
        elif isinstance(value, dict):
            assert got.keys() == value.keys()
            for k, v in value.items():
                assert got[k] == (pytest.approx(v, rel=rel) if isinstance(v, float) else v), k
        else:
            assert got == value, key


def test_weights_figure_reproduces_the_committed_files(tmp_path, capsys):
    from geotrip.cli import main

    assert main(["figures", "--only", "weights", "--out", str(tmp_path)]) == 0
    _compare_figure(tmp_path, "weights")
    # conftest sets XLA_FLAGS (optimisation level 0): the command says it may change results
    assert "XLA_FLAGS='" in capsys.readouterr().err and os.environ["XLA_FLAGS"]
    log = json.loads((tmp_path / "run_log.json").read_text())  # the run details went here
    assert log["figures"][0]["name"] == "weights" and log["run"]["cpu_count"] == os.cpu_count()
    assert "run_log.json" in (ROOT / ".gitignore").read_text().split()


@pytest.mark.slow  # 27 s on the shared 2-core machine, compilation of the claims included
def test_committed_certificate_claims_reproduce(tmp_path):
    """The smallest weighting cell (k = 1, d = 2): its committed decimal rows re-certified
    with today's code give the committed claims, assertions and statement."""
    from geotrip.counterexamples._optimizer import SearchResult

    ref = json.loads((FIGURES / "certificates" / "weighting" / "angle_k1_d2.json").read_text())
    R = np.array([[float(c) for c in row] for row in ref["points"]])
    res = SearchResult(
        points=R / np.linalg.norm(R, axis=1, keepdims=True),
        triplets=np.array(ref["triplets"], np.int32),
        value=ref["objective"]["value_rounded"],
        objective="angle",
        distances=(ref["losses"]["A"]["distance"], ref["losses"]["B"]["distance"]),
        margins=(float(ref["losses"]["A"]["margin"]), float(ref["losses"]["B"]["margin"])),
        soft=False,
        values=np.zeros(1),
        families=[],
        candidates=np.zeros((0,)),
        candidate_values=np.zeros((0,)),
        history=[],
        seed=ref["search"]["seed"],
        restarts=ref["search"]["restarts"],
        steps=ref["search"]["steps"],
        seconds=0.0,
        active=ref["active"],
        match=ref["losses"]["match"]["rule"],
    )
    cert = gt.certify(res, tmp_path / "c.json", rows=ref["points"])
    assert cert.verification.ok
    _assert_same_certificate(cert.content, ref, rel=1e-12)


def test_certificates_and_provenance_hold_no_run_details():
    """Those ``geotrip figures`` writes (the older ``legacy_*`` and ``one_triplet`` certificates
    were made by other runs and keep the provenance of their day)."""
    made = ["angle_k*_d*.json", "descent_min.json"]
    for f in sorted(f for g in made for f in FIGURES.glob(f"certificates/weighting/{g}")):
        _no_run_details(json.loads(f.read_text()))
    for f in sorted(FIGURES.glob("*.provenance.json")):
        _no_run_details(json.loads(f.read_text()))


@pytest.mark.slow
def test_figures_subset_reproduces_exactly_at_default_xla_flags(tmp_path):
    """``geotrip figures`` in a subprocess with XLA's default flags, as the committed files were
    made: every figure below, its data and the first weighting certificate exactly."""
    names = ["weights", "angle_map", "sweep_dimension", "counterexample_active_set"]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    cmd = [sys.executable, "-m", "geotrip", "figures", "--out", str(tmp_path), "--only", *names]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in names:
        _compare_figure(tmp_path, name)
    # the active-set gallery copied its committed input certificates into the fresh folder
    legacy = Path("certificates", "active_set", "legacy_same_number")
    for f in (FIGURES / legacy).glob("*.json"):
        assert (tmp_path / legacy / f.name).read_bytes() == f.read_bytes()
    # the first cell of the weighting gallery, searched afresh (no warm start before it)
    code = (
        "import jax, sys; jax.config.update('jax_enable_x64', True); import geotrip as gt; "
        "gt.monotone_angle_bounds((1,), (2,), restarts=32, steps=200, seed=0, cert_dir=sys.argv[1])"
    )
    cell = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "cell")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert cell.returncode == 0, cell.stderr[-2000:]
    new = json.loads((tmp_path / "cell" / "angle_k1_d2.json").read_text())
    ref = json.loads((FIGURES / "certificates" / "weighting" / "angle_k1_d2.json").read_text())
    _assert_same_certificate(new, ref, rel=0.0)
    assert new["objective"] == ref["objective"] and new["search"] == ref["search"]
