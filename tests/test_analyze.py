"""gt.analyze against brute-force NumPy: counts, shares, angles, batch gradients, MAP@R."""

import math

import numpy as np
import pytest

import geotrip as gt
from geotrip.analysis import _report

M_A, M_B = 0.2, 0.1  # chord_sq margin and its slope-matched geodesic margin at pi/2


def _data(seed=0, sizes=(5, 4, 6, 3), dim=5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    X = np.concatenate([c + 0.6 * rng.normal(size=(s, dim)) for c, s in zip(centres, sizes)])
    y = np.repeat(np.arange(len(sizes)), sizes)
    perm = rng.permutation(y.size)
    return X[perm] * rng.uniform(0.5, 3.0, size=(y.size, 1)), y[perm]  # any norms


def _brute_shares(U, triplets):
    """Active counts from the ambient formulas (independent of geotrip's angles)."""
    a, p, n = U[triplets[:, 0]], U[triplets[:, 1]], U[triplets[:, 2]]
    csq = lambda x, z: np.sum((x - z) ** 2, axis=1)
    geo = lambda x, z: np.arccos(np.clip(np.sum(x * z, axis=1), -1, 1))
    act_a = csq(a, p) - csq(a, n) + M_A > 0
    act_bs = geo(a, p) - geo(a, n) + M_A > 0
    act_bm = geo(a, p) - geo(a, n) + M_B > 0
    return {
        "count": len(triplets),
        "active_A": act_a.sum(),
        "active_B_same_number": act_bs.sum(),
        "active_B_matched": act_bm.sum(),
        "one_only_same_number": (act_a ^ act_bs).sum(),
        "one_only_matched": (act_a ^ act_bm).sum(),
    }


def _all_triplets_brute(y):
    out = []
    for a in range(y.size):
        for p in range(y.size):
            for n in range(y.size):
                if p != a and y[p] == y[a] and y[n] != y[a]:
                    out.append((a, p, n))
    return np.array(out)


@pytest.fixture(scope="module")
def case():
    X, y = _data()
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    rep = gt.analyze(X, y, strategies=gt.MINING_STRATEGIES, triplets="all", max_sample=10**6)
    return X, U, y, rep


def test_all_triplets_counts_and_shares_match_brute_force(case):
    X, U, y, rep = case
    assert rep["margins"]["B_matched"] == pytest.approx(M_B, rel=1e-12)
    T = _all_triplets_brute(y)
    ref = _brute_shares(U, T)
    got = rep["triplets"]["batch_all"]
    assert got["count"] == ref["count"]
    for k in ("active_A", "active_B_same_number", "active_B_matched"):
        assert got["counts"][k] == ref[k]
        assert got[k] == pytest.approx(ref[k] / ref["count"], abs=1e-15)
    for k in ("one_only_same_number", "one_only_matched"):
        assert got["counts"][k] == ref[k]
        assert got[k] == pytest.approx(ref[k] / ref["count"], abs=1e-15)
    assert 0 < ref["active_A"] < ref["count"]  # the case is not trivial
    assert ref["one_only_same_number"] > 0


KPAD = 1024  # one padded triplet count, so the library's batch gradient compiles once


def _batch_angle_deg(U, T, m_b):
    pad = np.zeros((KPAD - len(T), 3), dtype=np.int64)
    mask = np.arange(KPAD) < len(T)
    phi = gt.batch_gradient_angle(
        U,
        np.concatenate([T, pad]),
        distances=("chord_sq", "geodesic"),
        margins=(M_A, m_b),
        mask=mask,
    )
    return math.degrees(float(phi))


def test_mined_strategies_match_mine_triplets(case):
    X, U, y, rep = case
    for strategy in ("batch_hard", "semihard", "hardest_negative", "easy"):
        t, ok = gt.mine_triplets(
            U, y.astype(np.int32), strategy=strategy, distance="chord_sq", margin=M_A
        )
        T = np.asarray(t)[np.asarray(ok)]
        ref = _brute_shares(U, T)
        got = rep["triplets"][strategy]
        assert got["count"] == ref["count"], strategy
        for k, v in ref.items():
            if k != "count":
                assert got["counts"][k] == v, (strategy, k)
        # batch gradient angle of the summed losses (matched margins) = the library's autodiff
        want = _batch_angle_deg(U, T, M_B)
        got_phi = got["batch_gradient_angle_deg"]["matched"]
        if got_phi is None:
            assert got["counts"]["active_A"] == 0 or got["counts"]["active_B_matched"] == 0
        else:
            assert got_phi == pytest.approx(want, abs=1e-6), strategy


def test_random_strategy_counts_positive_pairs(case):
    X, U, y, rep = case
    sizes = np.bincount(y)
    assert rep["triplets"]["random"]["count"] == int(np.sum(sizes * (sizes - 1)))


def test_batch_all_gradient_angle_and_per_triplet_quantiles(case):
    X, U, y, rep = case
    T = _all_triplets_brute(y)
    assert len(T) <= KPAD
    for tag, mb in (("same_number", M_A), ("matched", M_B)):
        got = rep["triplets"]["batch_all"]["batch_gradient_angle_deg"][tag]
        assert got == pytest.approx(_batch_angle_deg(U, T, mb), abs=1e-6)
    # every triplet sampled (max_sample > count): quantiles equal the autodiff path's
    ang = gt.gradient_angles(
        U[T[:, 0]], U[T[:, 1]], U[T[:, 2]], distances=("chord_sq", "geodesic"), margins=(M_A, M_B)
    )
    for key in ("riemannian/joint", "raw/joint"):
        v = np.degrees(np.asarray(ang[key]))
        v = v[~np.isnan(v)]
        q = rep["triplets"]["batch_all"]["gradient_angles_deg"]["matched"][key]
        assert q["n"] == v.size
        for name, level in (("p5", 0.05), ("p50", 0.5), ("p95", 0.95)):
            assert q[name] == pytest.approx(np.quantile(v, level, method="inverted_cdf"), abs=1e-5)
    # push-pull ratio of chord_sq: sin(theta_an) / sin(theta_ap)
    a, p, n = U[T[:, 0]], U[T[:, 1]], U[T[:, 2]]
    ratio = _sin(a, n) / _sin(a, p)
    q = rep["triplets"]["batch_all"]["push_pull_ratio"]["A"]
    assert q["p50"] == pytest.approx(np.quantile(ratio, 0.5, method="inverted_cdf"), rel=1e-9)
    assert rep["triplets"]["batch_all"]["push_pull_ratio"]["B"]["p50"] == pytest.approx(1.0)


def _sin(x, z):
    c = np.clip(np.sum(x * z, axis=-1), -1, 1)
    return np.sqrt(1 - c * c)


def test_pair_angles_and_metrics(case):
    X, U, y, rep = case
    G = np.clip(U @ U.T, -1, 1)
    i, j = np.triu_indices(len(y), 1)
    within = np.arccos(G[i, j][y[i] == y[j]])
    q = rep["angles"]["within_class"]["radians"]
    assert q["p50"] == pytest.approx(np.quantile(within, 0.5, method="inverted_cdf"), abs=1e-9)
    assert rep["angles"]["within_class"]["degrees"]["p50"] == pytest.approx(math.degrees(q["p50"]))
    assert rep["n_points"] == len(y) and rep["dim"] == X.shape[1] and rep["n_classes"] == 4
    nr = np.linalg.norm(X, axis=1)
    assert rep["norms"]["min"] == pytest.approx(nr.min()) and rep["norms"]["max"] == pytest.approx(
        nr.max()
    )
    assert rep["collapse"]["mean_pairwise_cosine"] == pytest.approx(
        float(gt.mean_pairwise_cosine(U)), rel=1e-9
    )
    assert rep["map_at_r"] == pytest.approx(_map_at_r_brute(X, y), abs=1e-12)
    assert rep["recall_at_1"] == pytest.approx(float(gt.recall_at_1(U, y.astype(np.int32))))


def _map_at_r_brute(X, y):
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    ap = []
    for i in range(len(y)):
        others = [j for j in range(len(y)) if j != i]
        ang = [math.acos(max(-1.0, min(1.0, float(U[i] @ U[j])))) for j in others]
        ranked = [others[k] for k in np.argsort(ang, kind="stable")]
        R = sum(1 for j in others if y[j] == y[i])
        if R == 0:
            continue
        hits, s = 0, 0.0
        for k, j in enumerate(ranked[:R], start=1):
            if y[j] == y[i]:
                hits += 1
                s += hits / k
        ap.append(s / R)
    return float(np.mean(ap))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_at_r_brute_force(seed):
    X, y = _data(seed, sizes=(6, 1, 7, 4), dim=4)
    assert _report.map_at_r(X, y) == pytest.approx(_map_at_r_brute(X, y), abs=1e-12)


def test_map_at_r_known_value():
    # query 0: ranking 1 (rel), 2 (not): R = 1 -> AP 1; query 2 (class 1, R = 1): nearest is 3.
    X = np.array([[1.0, 0.0], [0.95, 0.05], [0.0, 1.0], [0.6, 0.4]])
    y = np.array([0, 0, 1, 1])
    # query 3 at 33.7 deg: nearest is 1 (18.2 deg from it) -> AP 0; query 2: nearest 3 -> 1
    assert _report.map_at_r(X, y) == pytest.approx(_map_at_r_brute(X, y))
    assert 0 < _report.map_at_r(X, y) < 1


def test_batches_mode_counts_and_memmap(tmp_path):
    X, y = _data(1, sizes=(10, 10, 10, 10, 10, 10), dim=8)
    X = X.astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    P, K, C = 3, 4, 5
    kw = dict(strategies=("batch_all", "batch_hard"), triplets="batches", batches=(P, K, C))
    r1 = gt.analyze(mm, np.asarray(y), **kw)
    r2 = gt.analyze(X, np.asarray(y), **kw)
    assert r1["mode"] == "batches"
    assert r1["triplets"]["batch_all"]["count"] == C * P * K * (K - 1) * (P - 1) * K
    assert r1["triplets"]["batch_hard"]["count"] == C * P * K
    assert r1["triplets"] == r2["triplets"]
    b = r1["triplets"]["batch_all"]["batch_gradient_angle_deg"]["matched"]
    assert b["n"] <= C


def test_sampled_quantiles_when_triplets_exceed_max_sample(case):
    X, U, y, rep = case
    small = gt.analyze(X, y, strategies=("batch_all",), max_sample=300, seed=3)
    got, full = small["triplets"]["batch_all"], rep["triplets"]["batch_all"]
    assert got["count"] == full["count"] > 300 and got["sampled_triplets"] == 300
    assert got["counts"] == full["counts"]  # counts stay exact
    q, f = got["push_pull_ratio"]["A"], full["push_pull_ratio"]["A"]
    assert f["p25"] <= q["p50"] <= f["p75"]


def test_evaluation_subset_takes_whole_classes():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 50, 5000)
    kept = np.flatnonzero(codes != 3)
    ev = _report._class_subset(codes, kept, 400, rng)
    assert ev.size == 400 and np.all(np.diff(ev) > 0) and 3 not in codes[ev]
    sizes, full = np.bincount(codes[ev]), np.bincount(codes)
    partial = [c for c in np.flatnonzero(sizes) if sizes[c] != full[c]]
    assert len(partial) <= 1 and sizes[partial].min(initial=2) >= 2  # whole classes but one
