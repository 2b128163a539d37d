"""The independent certificate verifier: agreement with geotrip's JAX code, and rejections."""

import ast
import copy
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

import geotrip as gt

ROOT = Path(__file__).resolve().parent.parent


def _rows(X, q=12):
    return gt.format_decimal_points(X, q)


def _cert(
    X, t, dA="chord_sq", dB="geodesic", mA=0.2, mB=0.2, soft=False, claims=None, assertions=()
):
    rows = _rows(X)
    c = {
        "format": gt.CERTIFICATE_FORMAT,
        "points": rows,
        "triplets": np.asarray(t).tolist(),
        "losses": {
            "A": {"distance": dA, "margin": repr(mA)},
            "B": {"distance": dB, "margin": repr(mB)},
            "soft": soft,
        },
        "claims": claims or {"loss_A": 0.0},
        "assertions": list(assertions),
    }
    return c


def _exact_points(rows):
    R = np.asarray([[float(c) for c in r] for r in rows])
    return R / np.linalg.norm(R, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def both_cert(tmp_path_factory):
    # A committed weighting certificate (k = 2, d = 3, matched margins, both hinges active):
    # the verifier is tested on it without paying for a search; tests/test_search.py
    # certifies fresh search results (and the slow set re-runs the whole gallery).
    src = ROOT / "figures" / "certificates" / "weighting" / "angle_k2_d3.json"
    path = tmp_path_factory.mktemp("cert") / "both.json"
    path.write_text(src.read_text())
    return path, json.loads(path.read_text())


_VERIFIER = ("certificates.py", "_format.py", "_closed_forms.py")


def test_verifier_is_independent_of_jax_and_geotrip_numerics():
    """The verifier and what it imports: only the standard library, NumPy, mpmath and each
    other; no autodiff (no "grad" beyond the names of the closed-form gradients)."""
    allowed_relative = {"." + f.removesuffix(".py") for f in _VERIFIER}
    # geotrip/_io.py (atomic file writes, standard library only) is the one shared helper.
    io_text = (ROOT / "geotrip" / "_io.py").read_text()
    io_mods = {
        n.module or "" for n in ast.walk(ast.parse(io_text)) if isinstance(n, ast.ImportFrom)
    }
    io_mods |= {
        a.name for n in ast.walk(ast.parse(io_text)) if isinstance(n, ast.Import) for a in n.names
    }
    assert not {m for m in io_mods if m.startswith(("jax", "geotrip")) or m == ""}, io_mods
    for name in _VERIFIER:
        text = (ROOT / "geotrip" / "counterexamples" / name).read_text()
        mods = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                mods |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                mods.add(("." * node.level) + (node.module or ""))
        mods.discard(".._io")
        bad = {m for m in mods if m.startswith(("jax", "geotrip", "..")) or m == "."}
        bad |= {m for m in mods if m.startswith(".") and m not in allowed_relative}
        assert not bad, (name, bad)
        for word in ("grads(", "grad_", "gradient", "Grad", "GRAD", "_grad"):
            text = text.replace(word, "")
        assert "grad" not in text, name


def test_cli_verify_imports_no_jax():
    """``geotrip verify`` runs without importing JAX (checked with -X importtime)."""
    cert = ROOT / "figures" / "certificates" / "weighting" / "angle_k2_d3.json"
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "geotrip", "verify", str(cert)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "certificate verified" in out.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()]
    assert "geotrip.counterexamples.certificates" in imported
    jax_mods = [m for m in imported if m == "jax" or m.startswith(("jax.", "jaxlib"))]
    assert not jax_mods, jax_mods[:5]


@pytest.mark.parametrize(
    "pair", [("chord_sq", "geodesic"), ("geodesic_sq", "chord"), ("cosine", "chord_sq")]
)
@pytest.mark.parametrize("soft", [False, True])
def test_closed_forms_match_geotrip(pair, soft):
    rng = np.random.default_rng(3)
    t = np.array([[0, 1, 2], [0, 3, 4], [2, 1, 5]])
    X = _exact_points(_rows(rng.normal(size=(6, 4))))
    cert = _cert(
        X,
        t,
        *pair,
        mA=0.3,
        mB=0.1,
        soft=soft,
        claims={"step": {"size": 0.01, "along": "A", "delta_A": 0.0, "delta_B": 0.0}},
    )
    Xj, tj = jnp.asarray(X), jnp.asarray(t, dtype=jnp.int32)
    for backend in ("float64", "mpmath"):
        q = gt.certificate_quantities(cert, backend=backend)
        dd = gt.descent_disagreement(
            Xj, tj, distances=pair, margins=(0.3, 0.1), step=0.01, soft=soft
        )
        ang = gt.batch_gradient_angle(Xj, tj, distances=pair, margins=(0.3, 0.1), soft=soft)
        raw = gt.batch_gradient_angle(
            Xj, tj, distances=pair, margins=(0.3, 0.1), soft=soft, riemannian=False
        )
        if np.isfinite(float(ang)):
            assert q["angle_deg"] == pytest.approx(np.degrees(float(ang)), abs=1e-9)
            assert q["raw_angle_deg"] == pytest.approx(np.degrees(float(raw)), abs=1e-9)
        for k1, k2 in (
            ("loss_A", "loss/A"),
            ("loss_B", "loss/B"),
            ("grad_norm_A", "grad_norm/A"),
            ("grad_norm_B", "grad_norm/B"),
            ("slope_B_along_A", "slope/B_along_A"),
            ("slope_A_along_B", "slope/A_along_B"),
            ("step.delta_A", "step/A_along_A"),
            ("step.delta_B", "step/B_along_A"),
        ):
            if k1 in q:
                assert q[k1] == pytest.approx(float(dd[k2]), rel=1e-9, abs=1e-12), (backend, k1)


def test_good_certificate_verifies(both_cert):
    path, doc = both_cert
    res = gt.verify_certificate(path)
    assert res.ok and not res.failures
    assert res.values["angle_deg"] > 90
    assert "angle_deg > 90" in doc["assertions"] and "step.delta_B > 0" in doc["assertions"]
    # Points are short decimals and are re-normalised exactly in mpmath.
    assert all(len(c.lstrip("-").split(".")[-1]) <= 12 for r in doc["points"] for c in r)
    with mpmath.workdps(50):
        row = [mpmath.mpf(c) for c in doc["points"][0]]
        nrm = mpmath.sqrt(sum(x * x for x in row))
        assert abs(sum((x / nrm) ** 2 for x in row) - 1) < mpmath.mpf(10) ** -45


@pytest.mark.parametrize(
    "edit, needle",
    [
        (
            lambda d: d["claims"].__setitem__("angle_deg", d["claims"]["angle_deg"] + 1e-3),
            "angle_deg: claimed",
        ),
        (
            lambda d: d["claims"].__setitem__("slope_B_along_A", -d["claims"]["slope_B_along_A"]),
            "slope_B_along_A",
        ),
        (
            lambda d: d["claims"]["step"].__setitem__("delta_B", -d["claims"]["step"]["delta_B"]),
            "step.delta_B",
        ),
        (lambda d: d["claims"]["z_A"].__setitem__(0, d["claims"]["z_A"][0] + 0.01), "z_A[0]"),
        (lambda d: d["assertions"].append("angle_deg > 179"), "is false"),
        (lambda d: d["points"][1].__setitem__(0, str(float(d["points"][1][0]) + 0.01)), "claimed"),
        (lambda d: d["losses"]["A"].__setitem__("margin", "0.25"), "claimed"),
        (lambda d: d["losses"]["B"].__setitem__("distance", "chord"), "claimed"),
    ],
)
def test_rejects_false_claims(both_cert, edit, needle):
    _, doc = both_cert
    bad = copy.deepcopy(doc)
    edit(bad)
    res = gt.verify_certificate(bad)
    assert not res.ok
    assert any(needle in f for f in res.failures), res.failures


def test_rejects_a_pattern_that_does_not_hold(both_cert):
    _, doc = both_cert
    assert doc["active"] == "both" and doc["claims"]["pattern"] == ["both", "both"]
    bad = copy.deepcopy(doc)
    bad["claims"]["pattern"][0] = "A"
    res = gt.verify_certificate(bad)
    assert not res.ok and any(f.startswith("pattern: claimed ['A', 'both']") for f in res.failures)
    # A larger margin of B would keep every triplet active: tampering breaks the slope rule
    bad = copy.deepcopy(doc)
    bad["losses"]["B"]["margin"] = "0.2"
    res = gt.verify_certificate(bad)
    assert any("slope rule gives 0.1" in f for f in res.failures), res.failures
    # A triplet active under chord_sq only, in a certificate that requires "both"
    a, p, n = gt.parametric_triplet(0.3, 0.45, 0.7, dim=3)
    X = _exact_points(_rows(np.stack([a, p, n])))
    cert = _cert(X, [[0, 1, 2]], mA=0.2, mB=0.1, claims={"pattern": ["A"]})
    q = gt.certificate_quantities(cert)
    cert["claims"].update(z_A=q["z_A"], z_B=q["z_B"], share_one_only_A=1.0)
    cert["assertions"] = ["z_A[0] > 0.001", "z_B[0] > 0.001"]
    res = gt.verify_certificate(cert)  # "any": the pattern is only stated, but z_B[0] < 0
    assert [f for f in res.failures if "is false" not in f] == []
    cert["assertions"] = ["z_A[0] > 0.001"]
    assert gt.verify_certificate(cert).ok
    cert["assertions"] = ["z_A[0] > 0.001", "z_B[0] > 0.001"]
    cert["active"] = "both"
    res = gt.verify_certificate(cert)
    assert not res.ok
    assert any("required pattern 'both' does not hold: triplet(s) [0]" in f for f in res.failures)
    assert any("'z_B[0] > 0.001' is false" in f for f in res.failures)
    cert["active"] = "disjoint"
    cert["assertions"] = ["z_A[0] > 0.001", "z_B[0] < -0.001"]
    assert gt.verify_certificate(cert).ok
    with pytest.raises(gt.CertificateError, match="past the last triplet"):
        gt.verify_certificate({**cert, "assertions": ["z_A[1] > 0"]})
    with pytest.raises(gt.CertificateError, match="'active'"):
        gt.verify_certificate({**cert, "active": "all"})


@pytest.mark.parametrize("seed, mB, one_only", [(1, 0.1, "A"), (17, 0.2, "B")])
def test_decomposition_matches_geotrip(seed, mB, one_only):
    """Pattern, angle over the both-active triplets and one-only shares, against geotrip's
    gradients of the sub-batches (JAX autodiff), on batches with mixed patterns."""
    rng = np.random.default_rng(seed)
    t = np.array([[0, 1, 2], [0, 3, 4], [2, 1, 5], [3, 5, 1], [4, 0, 5], [1, 2, 3]])
    X = _exact_points(_rows(rng.normal(size=(6, 3)) * 0.3 + [1.0, 0, 0]))
    mA = 0.2
    q = gt.certificate_quantities(_cert(X, t, mA=mA, mB=mB), backend="float64")
    Xj = jnp.asarray(X)
    pattern = q["pattern"]
    assert {"both", one_only} <= set(pattern), pattern  # a mixed batch

    grads_fn = jax.jit(gt.batch_grads, static_argnames=("distance",))

    def grads(dist, margin, keep):
        mask = jnp.asarray([p in keep for p in pattern], dtype=Xj.dtype)
        tj = jnp.asarray(t, dtype=jnp.int32)
        return np.asarray(grads_fn(Xj, tj, distance=dist, margin=margin, mask=mask)).ravel()

    GA2, GB2 = grads("chord_sq", mA, ("both",)), grads("geodesic", mB, ("both",))
    cosb = GA2 @ GB2 / np.linalg.norm(GA2) / np.linalg.norm(GB2)
    assert q["angle_both_deg"] == pytest.approx(np.degrees(np.arccos(cosb)), abs=1e-8)
    for tag, dist, m in (("A", "chord_sq", mA), ("B", "geodesic", mB)):
        G, only = grads(dist, m, ("both", tag)), grads(dist, m, (tag,))
        assert q[f"share_one_only_{tag}"] == pytest.approx(only @ only / (G @ G), abs=1e-12)
    assert q[f"share_one_only_{one_only}"] > 0.05
    mp = gt.certificate_quantities(_cert(X, t, mA=mA, mB=mB))
    assert mp["pattern"] == pattern
    assert mp["share_one_only_A"] == pytest.approx(q["share_one_only_A"], rel=1e-12)


def test_rejects_assertion_without_safety_margin(both_cert):
    _, doc = both_cert
    bad = copy.deepcopy(doc)
    v = gt.certificate_quantities(doc)["angle_deg"]
    bad["assertions"] = [f"angle_deg > {v - 1e-9!r}"]
    res = gt.verify_certificate(bad)
    assert not res.ok and "safety margin" in res.failures[0]


def test_k1_chord_sq_vs_geodesic_claim_of_obtuse_angle_is_rejected():
    a, p, n = gt.parametric_triplet(1.0, 0.05, 0.01, dim=3)  # near the 60-degree supremum
    X = _exact_points(_rows(np.stack([a, p, n])))
    cert = _cert(X, [[0, 1, 2]], claims={"angle_deg": 95.0}, assertions=["angle_deg > 90"])
    res = gt.verify_certificate(cert)
    assert not res.ok
    assert any("angle_deg: claimed 95.0" in f for f in res.failures)
    assert any("'angle_deg > 90' is false" in f for f in res.failures)
    assert 55 < res.values["angle_deg"] < 60


def test_k1_bound_over_random_configurations():
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(40):
        X = _exact_points(
            _rows(rng.normal(size=(3, 3)) * [1, 1, 1] + [[0, 0, 0], [0.5, 0, 0], [0.9, 0, 0]])
        )
        q = gt.certificate_quantities(_cert(X, [[0, 1, 2]], mA=4.5, mB=3.5), backend="float64")
        if "angle_deg" in q:
            worst = max(worst, q["angle_deg"])
    assert 0 < worst < 60


def test_hinge_boundary_is_not_certifiable():
    a, p, n = gt.parametric_triplet(0.7, 0.9, 1.0, dim=3)
    rows = _rows(np.stack([a, p, n]))
    with mpmath.workdps(60):
        P = [[mpmath.mpf(c) for c in r] for r in rows]
        P = [[x / mpmath.sqrt(sum(y * y for y in r)) for x in r] for r in P]
        ang = lambda x, y: (
            2
            * mpmath.atan2(
                mpmath.norm([u - v for u, v in zip(x, y)]),
                mpmath.norm([u + v for u, v in zip(x, y)]),
            )
        )
        m = ang(P[0], P[2]) - ang(P[0], P[1])  # geodesic z = 0 exactly (to 60 digits)
        margin = mpmath.nstr(m, 40)
    cert = _cert(np.zeros((3, 3)) + 1, [[0, 1, 2]], claims={"loss_B": 0.0})
    cert["points"] = rows
    cert["losses"]["B"]["margin"] = margin
    res = gt.verify_certificate(cert)
    assert any("hinge boundary of loss B" in f for f in res.failures), res.failures


def test_coincident_pair_is_not_certifiable():
    rows = [["1", "0", "0"], ["1", "0", "0"], ["0", "1", "0"]]
    cert = {
        "format": gt.CERTIFICATE_FORMAT,
        "points": rows,
        "triplets": [[0, 1, 2]],
        "losses": {
            "A": {"distance": "chord_sq", "margin": "3"},
            "B": {"distance": "geodesic", "margin": "3"},
            "soft": False,
        },
        "claims": {"loss_A": 0.0},
    }
    res = gt.verify_certificate(cert)
    assert any("coincident or antipodal" in f for f in res.failures)


_HEAD = '{"format": "geotrip-certificate/1", '
_P3 = '"points": [["1","0"],["0","1"],["1","1"]], "triplets": [[0,1,2]], '
_CHORDS = (
    '"losses": {"A": {"distance": "chord", "margin": 1}, "B": {"distance": "chord", "margin": 1}}, '
)


@pytest.mark.parametrize(
    "text, needle",
    [
        (_HEAD + '"points": [["1", "0"', "not valid JSON"),
        ("[1, 2, 3]", "JSON object"),
        ('{"format": "other"}', "unknown certificate format"),
        (
            _HEAD + '"points": [["1","0"]], "triplets": [[0,1,2]], "losses": {}, '
            '"claims": {"loss_A": 0}}',
            "index outside",
        ),
        (
            _HEAD + '"points": [["1","0"],["0","1"],["x","1"]], "triplets": [[0,1,2]], '
            '"losses": {}, "claims": {"loss_A": 0}}',
            "decimal number",
        ),
        (
            _HEAD + _P3 + '"losses": {"A": {"distance": "euclid", "margin": 1}, '
            '"B": {"distance": "chord", "margin": 1}}, "claims": {"loss_A": 0}}',
            "valid: chord_sq",
        ),
        (_HEAD + _P3 + _CHORDS + '"claims": {"angle_deg": NaN}}', "must be finite"),
        (
            _HEAD + _P3 + _CHORDS + '"claims": {"loss_A": 0}, "assertions": ["rm -rf > 1"]}',
            "cannot read assertion",
        ),
    ],
)
def test_corrupt_files_give_clear_errors(tmp_path, text, needle):
    f = tmp_path / "c.json"
    f.write_text(text)
    with pytest.raises(gt.CertificateError, match=needle):
        gt.verify_certificate(f)


def test_cli_verify_exit_codes(both_cert, tmp_path):
    path, doc = both_cert
    bad = copy.deepcopy(doc)
    bad["claims"]["angle_deg"] = 80.0
    badf = tmp_path / "bad.json"
    badf.write_text(json.dumps(bad))
    trunc = tmp_path / "trunc.json"
    trunc.write_text(path.read_text()[: len(path.read_text()) // 2])
    from geotrip.cli import main

    assert main(["verify", str(path)]) == 0
    assert main(["verify", str(badf)]) == 1
    assert main(["verify", str(trunc)]) == 2
    out = subprocess.run(
        [sys.executable, "-m", "geotrip", "verify", str(badf), str(trunc)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr + out.stdout
    assert "FAIL angle_deg: claimed 80.0" in out.stdout
    assert "not valid JSON" in out.stderr and len(out.stderr.strip().splitlines()) == 1
