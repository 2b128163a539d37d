"""Bad and unusual inputs (issue 12): one table, each case a clear error or a correct result.

Each row of ``CASES`` is ``(id, thunk, expect)``: ``thunk()`` runs the call, ``expect``
is ``Raises(type, substring)`` (a one-line message naming the argument), ``NaN("all"|
"any")`` (NaN propagates, never a plausible number) or ``Value(predicate)``. Shapes
are small and shared (4 points in d = 3, one triplet) so that little is compiled.
The CLI front door has its own table at the end.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import geotrip as gt
from geotrip.cli import CLIError, check_out_dir, main

NAN, INF = float("nan"), float("inf")


@dataclasses.dataclass(frozen=True)
class Raises:
    exc: type[BaseException]
    match: str


@dataclasses.dataclass(frozen=True)
class NaN:
    how: str = "all"  # "all" or "any" entries NaN


@dataclasses.dataclass(frozen=True)
class Value:
    ok: Callable[[object], bool]


def _X():
    return gt.uniform_sphere(jax.random.key(0), (4,), 3)


def _abc():
    return gt.parametric_triplet(0.5, 0.6, 2.0, dim=3)


E1 = jnp.array([1.0, 0.0, 0.0])
E2 = jnp.array([0.0, 1.0, 0.0])
T_OK = jnp.array([[0, 1, 2]])
T_BIG = jnp.array([[0, 1, 99]])
T_NEG = jnp.array([[0, -1, 2]])

# jitted and checked functions built once, reused by every case (one compilation each)
J_LOSS = jax.jit(lambda X, t: gt.batch_loss(X, t, distance="geodesic", margin=0.1))
J_GRADS = jax.jit(lambda X, t: gt.batch_grads(X, t, distance="geodesic", margin=0.1))
J_ANGLE = jax.jit(lambda X, t: gt.batch_gradient_angle(X, t, margins=(0.2, 0.1)))
J_DESCENT = jax.jit(lambda X, t: gt.descent_disagreement(X, t, margins=(0.2, 0.1)))
J_TRIPLET = jax.jit(lambda a, p, n, m: gt.triplet_loss(a, p, n, distance="geodesic", margin=m))
C_LOSS = gt.checked(lambda X, t, m: gt.batch_loss(X, t, distance="geodesic", margin=m))
C_GRADS = gt.checked(lambda X, t: gt.batch_grads(X, t, distance="geodesic", margin=0.1))
C_ANGLE = gt.checked(lambda X, t: gt.batch_gradient_angle(X, t, margins=(0.2, 0.1)))
C_DESCENT = gt.checked(lambda X, t: gt.descent_disagreement(X, t, margins=(0.2, 0.1)))
C_PARAM = gt.checked(lambda t: gt.parametric_triplet(t, 0.6, 2.0, dim=3))


def _mine_then_loss(X, y):
    t, ok = gt.mine_triplets(X, y, strategy="batch_hard", distance="geodesic", margin=0.1)
    return gt.batch_loss(X, t, mask=ok, distance="geodesic", margin=0.1, reduction="mean")


C_MINE = gt.checked(_mine_then_loss)
Y = jnp.array([0, 0, 1, 1])


def _cert(**change):
    """A small valid certificate (one chord_sq-vs-geodesic triplet), with fields replaced."""
    cert = {
        "format": "geotrip-certificate/1",
        "points": [["1", "0", "0"], ["0", "1", "0"], ["0.8", "0", "0.6"]],
        "triplets": [[0, 1, 2]],
        "losses": {
            "A": {"distance": "chord_sq", "margin": "0.2"},
            "B": {"distance": "geodesic", "margin": "0.1"},
            "soft": False,
        },
        "claims": {"loss_A": 1.8, "angle_deg": 14.036243467926479},
        "assertions": ["angle_deg < 60"],
    }
    return {**cert, **change}


def _isnan_scalar(x):
    return bool(jnp.isnan(x))


CASES = [
    # --- NaN / inf never become plausible numbers -------------------------------------
    ("angle/nan-entry", lambda: gt.angle(jnp.array([1.0, NAN, 0.0]), E2), NaN()),
    ("angle/inf-entry", lambda: gt.angle(jnp.array([1.0, INF, 0.0]), E2), NaN()),
    ("angle/inf-vs-zero", lambda: gt.angle(jnp.array([INF, 0.0, 0.0]), jnp.zeros(3)), NaN()),
    (
        "angle/nan-float32-keeps-dtype",
        lambda: gt.angle(jnp.array([NAN, 1.0], jnp.float32), jnp.array([1.0, 0.0], jnp.float32)),
        Value(lambda r: r.dtype == jnp.float32 and bool(jnp.isnan(r))),
    ),
    (
        "angle/empty-vectors",
        lambda: gt.angle(jnp.zeros(0), jnp.zeros(0)),
        Raises(ValueError, "non-empty last"),
    ),
    (
        "angle/empty-batch",
        lambda: gt.angle(jnp.zeros((0, 3)), jnp.zeros((0, 3))),
        Value(lambda r: r.shape == (0,)),
    ),
    (
        "angle/zero-vector-convention",
        lambda: gt.angle(jnp.zeros(3), E1),
        Value(lambda r: float(r) == math.pi / 2),
    ),
    ("normalize/nan", lambda: gt.normalize(jnp.array([NAN, 1.0, 0.0])), NaN("all")),
    ("normalize/inf", lambda: gt.normalize(jnp.array([INF, 1.0, 0.0])), NaN("any")),
    (
        "normalize/zero-convention",
        lambda: gt.normalize(jnp.zeros(3)),
        Value(lambda r: not jnp.any(r)),
    ),
    (
        "vector_angle/nan",
        lambda: gt.vector_angle(jnp.array([NAN, 1.0]), jnp.array([1.0, 0.0])),
        NaN(),
    ),
    ("safe_norm/nan", lambda: gt.safe_norm(jnp.array([NAN, 0.0])), NaN()),
    ("hinge/nan", lambda: gt.hinge(jnp.array(NAN)), NaN()),
    ("hinge_slope/nan", lambda: gt.hinge_slope(jnp.array(NAN)), NaN()),
    (
        "triplet_loss/margin-nan",
        lambda: gt.triplet_loss(*_abc(), margin=NAN),
        Raises(ValueError, "margin must be finite, got nan"),
    ),
    (
        "triplet_loss/margin-inf",
        lambda: gt.triplet_loss(*_abc(), margin=INF),
        Raises(ValueError, "margin must be finite"),
    ),
    (
        "triplet_loss/margin-array-nan",
        lambda: gt.triplet_loss(*_abc(), margin=jnp.array([NAN])),
        Raises(ValueError, "margin must be finite"),
    ),
    (
        "triplet_loss/margin-str",
        lambda: gt.triplet_loss(*_abc(), margin="0.2"),
        Raises(TypeError, "margin must be a finite real number"),
    ),
    (
        "triplet_loss/margin-None",
        lambda: gt.triplet_loss(*_abc(), margin=None),
        Raises(TypeError, "margin"),
    ),
    (
        "triplet_loss/margin-bool",
        lambda: gt.triplet_loss(*_abc(), margin=True),
        Raises(TypeError, "margin"),
    ),
    (
        "triplet_loss/margin-complex",
        lambda: gt.triplet_loss(*_abc(), margin=1j),
        Raises(TypeError, "margin"),
    ),
    (
        "triplet_loss/margin-int-ok",
        lambda: gt.triplet_loss(*_abc(), margin=1),
        Value(lambda r: float(r) > 0),
    ),
    (
        "triplet_loss/nan-point",
        lambda: gt.triplet_loss(jnp.array([NAN, 0, 0]), E1, E2),
        Raises(ValueError, "anchor a contains 1 non-finite"),
    ),
    ("triplet_loss/jit-nan-point", lambda: J_TRIPLET(jnp.array([NAN, 0, 0]), E1, E2, 0.1), NaN()),
    ("triplet_loss/jit-nan-margin", lambda: J_TRIPLET(*_abc(), NAN), NaN()),
    (
        "triplet_grads/margin-nan",
        lambda: gt.triplet_grads(*_abc(), margin=NAN),
        Raises(ValueError, "margin must be finite"),
    ),
    (
        "triplet_grads_closed_form/margin-str",
        lambda: gt.triplet_grads_closed_form(*_abc(), margin="0.1"),
        Raises(TypeError, "margin"),
    ),
    (
        "gradient_angles/margin-nan",
        lambda: gt.gradient_angles(*_abc(), margins=(0.2, NAN)),
        Raises(ValueError, "margins[1] must be finite"),
    ),
    (
        "gradient_angles/margin-str",
        lambda: gt.gradient_angles(*_abc(), margins=("0.2", 0.1)),
        Raises(TypeError, "margins[0]"),
    ),
    (
        "batch_loss/margin-nan",
        lambda: gt.batch_loss(_X(), T_OK, margin=NAN),
        Raises(ValueError, "margin must be finite"),
    ),
    (
        "batch_grads/margin-inf",
        lambda: gt.batch_grads(_X(), T_OK, margin=-INF),
        Raises(ValueError, "margin must be finite"),
    ),
    (
        "batch_gradient_angle/margin-nan",
        lambda: gt.batch_gradient_angle(_X(), T_OK, margins=(NAN, 0.1)),
        Raises(ValueError, "margins[0]"),
    ),
    (
        "descent_disagreement/step-nan",
        lambda: gt.descent_disagreement(_X(), T_OK, step=NAN),
        Raises(ValueError, "step must be finite"),
    ),
    (
        "mine_triplets/margin-nan",
        lambda: gt.mine_triplets(_X(), Y, strategy="semihard", margin=NAN),
        Raises(ValueError, "margin must be finite"),
    ),
    (
        "mine_triplets/nan-point",
        lambda: gt.mine_triplets(_X().at[1, 1].set(NAN), Y, strategy="batch_hard"),
        Raises(ValueError, "X contains 1 non-finite"),
    ),
    # --- out-of-range indices: eager error, NaN under jit, error under gt.checked ------
    (
        "batch_loss/eager-index-99",
        lambda: gt.batch_loss(_X(), T_BIG),
        Raises(ValueError, "triplets has indices in [0, 99], outside [0, 3] for 4 points"),
    ),
    (
        "batch_loss/eager-index-negative",
        lambda: gt.batch_loss(_X(), T_NEG),
        Raises(ValueError, "outside [0, 3]"),
    ),
    ("batch_loss/jit-index-99", lambda: J_LOSS(_X(), T_BIG), NaN()),
    ("batch_loss/jit-index-negative", lambda: J_LOSS(_X(), T_NEG), NaN()),
    ("batch_grads/jit-index-99", lambda: J_GRADS(_X(), T_BIG), NaN("any")),
    ("batch_gradient_angle/jit-index-99", lambda: J_ANGLE(_X(), T_BIG), NaN()),
    ("descent_disagreement/jit-index-99", lambda: J_DESCENT(_X(), T_BIG)["loss/A"], NaN()),
    (
        "checked/batch_loss-index-99",
        lambda: C_LOSS(_X(), T_BIG, 0.1),
        Raises(ValueError, "triplets has indices in [0, 99], outside [0, 3] for 4 points"),
    ),
    (
        "checked/batch_loss-index-negative",
        lambda: C_LOSS(_X(), T_NEG, 0.1),
        Raises(ValueError, "indices in [-1, 2], outside [0, 3]"),
    ),
    (
        "checked/batch_grads-index-99",
        lambda: C_GRADS(_X(), T_BIG),
        Raises(ValueError, "outside [0, 3]"),
    ),
    (
        "checked/batch_gradient_angle-index-99",
        lambda: C_ANGLE(_X(), T_BIG),
        Raises(ValueError, "outside [0, 3]"),
    ),
    (
        "checked/descent_disagreement-index-99",
        lambda: C_DESCENT(_X(), T_BIG),
        Raises(ValueError, "outside [0, 3]"),
    ),
    (
        "checked/margin-nan",
        lambda: C_LOSS(_X(), T_OK, NAN),
        Raises(ValueError, "margin must be finite"),
    ),
    (
        "checked/nan-point",
        lambda: C_LOSS(_X().at[2, 0].set(NAN), T_OK, 0.1),
        Raises(ValueError, "X contains 1 non-finite value(s)"),
    ),
    (
        "checked/non-unit",
        lambda: C_LOSS(2 * _X(), T_OK, 0.1),
        Raises(ValueError, "X must hold unit vectors"),
    ),
    (
        "checked/mine-then-loss-nan",
        lambda: C_MINE(_X().at[3, 2].set(INF), Y),
        Raises(ValueError, "X contains 1 non-finite"),
    ),
    (
        "checked/valid-equals-eager",
        lambda: (
            C_LOSS(_X(), T_OK, 0.1),
            gt.batch_loss(_X(), T_OK, distance="geodesic", margin=0.1),
        ),
        Value(lambda r: float(r[0]) == float(r[1])),
    ),
    (
        "checked/mine-valid-equals-eager",
        lambda: (C_MINE(_X(), Y), _mine_then_loss(_X(), Y)),
        Value(lambda r: float(r[0]) == float(r[1])),
    ),
    # --- domains: angles in [0, pi] ------------------------------------------------------
    (
        "parametric_triplet/theta_ap-negative",
        lambda: gt.parametric_triplet(-1.0, 0.5, 2.0),
        Raises(ValueError, "theta_ap must lie in [0, pi] (radians), got -1"),
    ),
    (
        "parametric_triplet/theta_ap-4",
        lambda: gt.parametric_triplet(4.0, 0.5, 2.0),
        Raises(ValueError, "theta_ap must lie in [0, pi] (radians), got 4"),
    ),
    (
        "parametric_triplet/theta_an-nan",
        lambda: gt.parametric_triplet(0.3, NAN, 2.0),
        Raises(ValueError, "theta_an must lie in [0, pi]"),
    ),
    (
        "parametric_triplet/psi-4",
        lambda: gt.parametric_triplet(0.3, 0.5, 4.0),
        Raises(ValueError, "psi must lie in [0, pi]"),
    ),
    (
        "parametric_triplet/array-entry",
        lambda: gt.parametric_triplet(jnp.array([0.1, 3.5]), 0.5, 2.0),
        Raises(ValueError, "theta_ap must lie in [0, pi] (radians), got 3.5"),
    ),
    (
        "parametric_triplet/str",
        lambda: gt.parametric_triplet("0.3", 0.5, 2.0),
        Raises(TypeError, "theta_ap"),
    ),
    (
        "parametric_triplet/pi-float32-ok",
        lambda: gt.parametric_triplet(jnp.float32(np.pi), 0.0, np.pi),
        Value(lambda r: r[0].dtype == jnp.float32),
    ),
    (
        "parametric_triplet/dim-2",
        lambda: gt.parametric_triplet(0.3, 0.5, 2.0, dim=2),
        Raises(ValueError, "dim must be an integer >= 3"),
    ),
    (
        "checked/parametric_triplet-4",
        lambda: C_PARAM(jnp.float32(4.0)),
        Raises(ValueError, "theta_ap must lie in [0, pi]"),
    ),
    (
        "rotated_triplet/theta_an-negative",
        lambda: gt.rotated_triplet(jax.random.key(0), 0.3, -0.1, 1.0, dim=3),
        Raises(ValueError, "theta_an must lie in [0, pi]"),
    ),
    (
        "near_degenerate_pairs/angle-negative",
        lambda: gt.near_degenerate_pairs(jax.random.key(0), 2, 3, angle=-1e-3),
        Raises(ValueError, "angle must lie in [0, pi]"),
    ),
    (
        "sample_polar_angle/theta_max-4",
        lambda: gt.sample_polar_angle(jax.random.key(0), (2,), jnp.sin, 4.0),
        Raises(ValueError, "theta_max must lie in (0, pi], got 4"),
    ),
    (
        "random_rotation/dim-0",
        lambda: gt.random_rotation(jax.random.key(0), 0),
        Raises(ValueError, "dim must be a positive integer, got 0"),
    ),
    (
        "num_mined/negative",
        lambda: gt.num_mined(-3, "batch_all"),
        Raises(ValueError, "n must be a non-negative integer"),
    ),
    # --- shapes, types, names ------------------------------------------------------------
    (
        "angle/shapes-3-vs-4",
        lambda: gt.angle(jnp.ones(3), jnp.ones(4)),
        Raises(
            ValueError,
            "x and y must have the same vector length (last axis): "
            "got x of shape (3,) and y of shape (4,)",
        ),
    ),
    (
        "angle/scalars",
        lambda: gt.angle(1.0, 2.0),
        Raises(ValueError, "x must be an array of vectors of shape (..., d), got a scalar"),
    ),
    (
        "angle/leading-shapes",
        lambda: gt.angle(jnp.ones((2, 3)), jnp.ones((5, 3))),
        Raises(ValueError, "broadcastable shapes"),
    ),
    (
        "angle/int-array",
        lambda: gt.angle(jnp.array([1, 0]), jnp.array([0, 1])),
        Raises(TypeError, "x must be a floating-point array"),
    ),
    (
        "angle/string",
        lambda: gt.angle("a", E1),
        Raises(TypeError, "x must be a floating-point array"),
    ),
    (
        "angle/None",
        lambda: gt.angle(E1, None),
        Raises(TypeError, "y must be a floating-point array"),
    ),
    ("normalize/scalar", lambda: gt.normalize(2.0), Raises(ValueError, "got a scalar")),
    (
        "project_tangent/shapes",
        lambda: gt.project_tangent(E1, jnp.ones(4)),
        Raises(ValueError, "x and v must have the same vector length"),
    ),
    (
        "pairwise_angles/1-d",
        lambda: gt.pairwise_angles(E1),
        Raises(ValueError, "shape (..., n, d)"),
    ),
    (
        "triplet_loss/shape-mismatch",
        lambda: gt.triplet_loss(E1, E2, jnp.array([1.0, 0, 0, 0])),
        Raises(ValueError, "shape mismatch"),
    ),
    (
        "triplet_loss/non-unit",
        lambda: gt.triplet_loss(2 * E1, E2, E1),
        Raises(ValueError, "anchor a must hold unit vectors"),
    ),
    (
        "triplet_loss/unknown-distance",
        lambda: gt.triplet_loss(*_abc(), distance="euclid"),
        Raises(ValueError, "unknown distance 'euclid'; valid names"),
    ),
    ("distance/not-a-name", lambda: gt.distance(3), Raises(TypeError, "distance must be a name")),
    (
        "make_distance/not-callable",
        lambda: gt.make_distance("x", 3.0),
        Raises(TypeError, "profile must be a callable"),
    ),
    (
        "batch_loss/float-triplets",
        lambda: gt.batch_loss(_X(), jnp.array([[0.0, 1.0, 2.0]])),
        Raises(TypeError, "triplets must be an integer array"),
    ),
    (
        "batch_loss/triplets-shape",
        lambda: gt.batch_loss(_X(), jnp.array([0, 1, 2])),
        Raises(ValueError, "triplets must have shape (k, 3)"),
    ),
    (
        "batch_loss/reduction",
        lambda: gt.batch_loss(_X(), T_OK, reduction="avg"),
        Raises(ValueError, "unknown reduction 'avg'"),
    ),
    (
        "batch_loss/mask-shape",
        lambda: gt.batch_loss(_X(), T_OK, mask=jnp.ones(2, bool)),
        Raises(ValueError, "mask must have shape (1,)"),
    ),
    (
        "batch_loss/X-1d",
        lambda: gt.batch_loss(E1, T_OK),
        Raises(ValueError, "X must have at least 2 axis"),
    ),
    (
        "gradient_angles/one-distance",
        lambda: gt.gradient_angles(*_abc(), distances=("chord_sq",)),
        Raises(ValueError, "distances must be a pair"),
    ),
    (
        "mine_triplets/strategy",
        lambda: gt.mine_triplets(_X(), Y, strategy="hard"),
        Raises(ValueError, "unknown mining strategy 'hard'; valid"),
    ),
    (
        "mine_triplets/random-no-key",
        lambda: gt.mine_triplets(_X(), Y, strategy="random"),
        Raises(ValueError, "requires a PRNG key"),
    ),
    (
        "mine_triplets/float-labels",
        lambda: gt.mine_triplets(_X(), jnp.zeros(4), strategy="batch_hard"),
        Raises(TypeError, "labels must be an integer array"),
    ),
    (
        "mine_triplets/labels-shape",
        lambda: gt.mine_triplets(_X(), Y[:3], strategy="batch_hard"),
        Raises(ValueError, "labels must have shape (4,)"),
    ),
    (
        "match_margin/beyond-range",
        lambda: gt.match_margin(5.0),
        Raises(ValueError, "margin must lie in [0, 4] (the range of chord_sq"),
    ),
    (
        "match_margin/nan",
        lambda: gt.match_margin(NAN, rule="slope"),
        Raises(ValueError, "margin must be finite, got nan"),
    ),
    (
        "match_margin/no-boundary-at-reference",
        lambda: gt.match_margin(2.5),
        Raises(ValueError, "cannot be matched at theta_ref=1.5708"),
    ),
    (
        "match_margin/string",
        lambda: gt.match_margin("0.2"),
        Raises(TypeError, "margin must be a finite real number"),
    ),
    ("match_margin/in-range", lambda: gt.match_margin(1.9), Value(lambda m: 0 < float(m) < 2)),
    (
        "verify/no-assertions",
        lambda: gt.verify_certificate({**_cert(), "assertions": []}),
        Value(lambda r: not r.ok and "asserts nothing" in r.failures[-1]),
    ),
    (
        "verify/overflowing-number",
        lambda: gt.verify_certificate(_cert(points=[["1e400", "0", "0"], *_cert()["points"][1:]])),
        Raises(gt.CertificateError, "points[0][0] = '1e400' overflows float64"),
    ),
    (
        "verify/underflowing-row",
        lambda: gt.verify_certificate(_cert(points=[["1e-200"] * 3, *_cert()["points"][1:]])),
        Raises(gt.CertificateError, "norm underflows to 0 in float64"),
    ),
    (
        "verify/zero-row",
        lambda: gt.verify_certificate(_cert(points=[["0", "0.0", "0e5"], *_cert()["points"][1:]])),
        Raises(gt.CertificateError, "is the zero vector"),
    ),
    (
        "verify/coincident-points",
        lambda: gt.verify_certificate(
            _cert(points=[["1", "0", "0"], ["0", "1", "0"], ["2", "0", "0"]])
        ),
        Value(
            lambda r: (
                not r.ok and any("anchor-negative pair is (nearly) coinc" in f for f in r.failures)
            )
        ),
    ),
]


@pytest.mark.parametrize("thunk, expect", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(thunk, expect):
    if isinstance(expect, Raises):
        with pytest.raises(expect.exc) as info:
            thunk()
        msg = str(info.value)
        assert expect.match in msg, msg
        assert "\n" not in msg, f"not one line: {msg!r}"
        return
    out = thunk()
    if isinstance(expect, NaN):
        arr = np.asarray(out)
        assert (np.all if expect.how == "all" else np.any)(np.isnan(arr)), arr
    else:
        assert expect.ok(out), out


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


def test_guards_keep_finite_gradients_at_singular_points_and_propagate_nan():
    """Zero vectors, theta = 0 and theta = pi: finite gradients; a NaN input: NaN gradient."""

    @jax.jit
    def grads(x, y):
        return (
            jax.grad(gt.angle)(x, y),
            jax.grad(lambda v: jnp.sum(gt.normalize(v)))(x),
            jax.grad(gt.safe_norm)(x),
        )

    for x, y in ((jnp.zeros(3), E1), (E1, E1), (E1, -E1), (jnp.zeros(3), jnp.zeros(3))):
        for g in grads(x, y):
            assert np.all(np.isfinite(g)), (x, y, g)
    assert all(np.isnan(g).any() for g in grads(jnp.array([NAN, 1.0, 0.0]), E2))
    # the hinge's derivative at the boundary z = 0 is 0 (inactive)
    assert float(jax.grad(gt.hinge)(0.0)) == 0.0
    assert float(jax.grad(gt.hinge)(0.5)) == 1.0


def test_checked_works_as_decorator_and_without_jit():
    @gt.checked(jit=False)
    def positive(theta):
        return gt.parametric_triplet(theta, 0.6, 2.0, dim=3)[1]

    np.testing.assert_array_equal(positive(0.5), gt.parametric_triplet(0.5, 0.6, 2.0)[1])
    with pytest.raises(ValueError, match=r"theta_ap must lie in \[0, pi\]"):
        positive(-0.5)


# --- the CLI front door --------------------------------------------------------------------


def _cli(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err


def test_cli_out_is_an_existing_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    code, err = _cli(["figures", "--only", "weights", "--out", str(f)], capsys)
    assert code == 2
    assert err.strip() == f"geotrip figures: error: --out {f}: exists and is not a directory"


@pytest.mark.parametrize(
    "argv",
    [
        ["sweep", "--family", "uniform", "--dim", "3", "--samples", "10"],
        ["collapse", "--preset", "tiny"],
        ["compare", "--quick"],
        ["analyze", "--example"],
    ],
    ids=lambda a: a[0],
)
def test_cli_out_checked_before_computing(tmp_path, capsys, argv):
    f = tmp_path / "file"
    f.write_text("x")
    code, err = _cli([*argv, "--out", str(f)], capsys)
    assert code == 2, err
    assert err.strip() == f"geotrip {argv[0]}: error: --out {f}: exists and is not a directory"


def test_cli_out_under_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    code, err = _cli(["figures", "--only", "weights", "--out", str(f / "sub")], capsys)
    assert code == 2 and "cannot create the directory" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_debug_shows_the_traceback(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CLIError, match="exists and is not a directory"):
        main(["figures", "--only", "weights", "--out", str(f), "--debug"])
    with pytest.raises(CLIError):
        main(["--debug", "figures", "--only", "weights", "--out", str(f)])


@pytest.mark.parametrize(
    "exc, expected",
    [
        (ValueError("margin must be finite, got nan\nsecond line"), "margin must be finite"),
        (TypeError("margin must be a finite real number, got str '0.2'"), "got str '0.2'"),
        (PermissionError(13, "Permission denied", "/root/x"), "Permission denied: /root/x"),
        (FileExistsError(17, "File exists", "out/x.json"), "File exists: out/x.json"),
    ],
)
def test_cli_user_errors_are_one_line_without_traceback(monkeypatch, capsys, exc, expected):
    import geotrip.cli._figures as figures_cli

    def boom(args):
        raise exc

    monkeypatch.setattr(figures_cli, "run", boom)
    code, err = _cli(["figures"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geotrip figures: error: "), err
    assert expected in lines[0] and "--debug" in lines[0]
    with pytest.raises(type(exc)):
        main(["figures", "--debug"])


def test_cli_help_explains_out_and_x64(capsys):
    with pytest.raises(SystemExit):
        main(["figures", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "OVERWRITES the committed figures" in out
    assert "--x64, --no-x64 enable float64 in JAX (default for this command: on," in out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--margins", "nan", "nan"], "margins must be finite and >= 0, got nan"),
        (["--margin", "-0.1"], "margins must be finite and >= 0, got -0.1"),
        (["--margins", "0.2"], "expected 2 arguments"),
        (["--distances", "chord_sq"], "expected 2 arguments"),
    ],
)
def test_cli_sweep_margins(tmp_path, capsys, argv, expected):
    base = ["sweep", "--family", "uniform", "--dim", "3", "--samples", "10"]
    try:
        code = main([*base, "--out", str(tmp_path / "o"), *argv])
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not (tmp_path / "o" / "summary.json").exists()


def test_check_out_dir(tmp_path):
    new = tmp_path / "a" / "b"
    assert check_out_dir(new) == new and new.is_dir()
    assert list(new.iterdir()) == []  # the write probe leaves nothing behind
    with pytest.raises(CLIError, match="--json .*: no such directory"):
        check_out_dir(tmp_path / "missing", option="--json", create=False)
    probe = tmp_path / "c" / "d"
    assert check_out_dir(probe, keep=False) == probe and not (tmp_path / "c").exists()
