"""Counterexample figures: the largest gradient angles found, and the smallest certified
descent disagreement.

Both figures write their certificates under ``OUT/certificates/`` and verify them with the
independent verifier; a figure fails loudly if a certificate does not verify.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes
from ._registry import register_figure, save_figure, show_bars

_PAIR = ("chord_sq", "geodesic")
_SAME_NUMBER = (0.2, 0.2)  # the old convention: one number for both losses (units differ)


@register_figure(
    "counterexample_angles",
    group="counterexamples",
    description="weighting gallery: certified monotone lower bounds of the largest chord_sq-vs-"
    "geodesic gradient angle, matched margins, every triplet active under both hinges",
)
def make_angles(*, out_dir: Path, seed: int, quick: bool) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geotrip.counterexamples._bounds import monotone_angle_bounds

    # Full mode: 18 cells, 1 to 4 min on a 2-core CPU (compile-bound; much longer when shared)
    ks = (1, 2) if quick else (1, 2, 3, 4, 6, 8)
    dims = (2, 3) if quick else (2, 3, 8)
    restarts, steps = (16, 60) if quick else (32, 200)
    cert_dir = Path(out_dir) / "certificates" / "weighting"
    rows = monotone_angle_bounds(
        ks,
        dims,
        distances=_PAIR,
        restarts=restarts,
        steps=steps,
        seed=seed,
        cert_dir=cert_dir,
        progress=show_bars(),  # one bar per (k, d) cell
        release=True,  # each cell's compiled programs freed: ~100 MB per cell otherwise
    )
    margins = rows[0]["margins"]
    fig, ax = plt.subplots(figsize=(6.4, 4.1), constrained_layout=True)
    markers = {2: "s", 3: "o", 8: "^"}
    for d in dims:
        rr = [r for r in rows if r["dim"] == d]
        ax.plot(
            [r["k"] for r in rr],
            [r["angle_deg"] for r in rr],
            marker=markers.get(d, "o"),
            ms=6,
            label=f"d = {d} (S$^{{{d - 1}}}$)",
        )
    ax.axhline(90, color="k", lw=0.8, ls="--")
    ax.text(
        ks[-1],
        91.5,
        "90°: a descent step on one loss raises the other",
        ha="right",
        va="bottom",
        fontsize=8,
    )
    ax.axhline(60, color="0.5", lw=0.8, ls=":")
    ax.text(
        ks[-1],
        58.5,
        "60°: supremum for one triplet (never reached)",
        ha="right",
        va="top",
        fontsize=8,
        color="0.3",
    )
    ax.set_xticks(list(ks))
    ax.set_xlabel("number k of triplets sharing one anchor")
    ax.set_ylabel("largest Riemannian gradient angle (degrees)")
    ax.set_ylim(0, 180)
    ax.set_yticks(range(0, 181, 30))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(
        f"weighting only: chord_sq (margin {margins[0]:g}) vs geodesic ({margins[1]:g}, "
        "slope-matched),\nevery triplet active under both hinges; each point a verified "
        "certified lower bound",
        fontsize=9,
    )
    data = {
        "k": np.array([r["k"] for r in rows]),
        "dim": np.array([r["dim"] for r in rows]),
        "angle_deg": np.array([r["angle_deg"] for r in rows]),
        "angle_search_deg": np.array([r["angle_search_deg"] for r in rows]),
        "decimals": np.array([r["decimals"] for r in rows]),
    }
    paths = save_figure(
        fig,
        out_dir,
        "counterexample_angles",
        data=data,
        seed=seed,
        parameters={
            "ks": list(ks),
            "dims": list(dims),
            "restarts": restarts,
            "steps": steps,
            "distances": list(_PAIR),
            "margins": margins,
            "match": "slope",
            "active": "both",
            "sources": [r["source"] for r in rows],
            "certificates": [f"weighting/{r['certificate']}" for r in rows],
        },
    )
    return paths + sorted(cert_dir.glob("angle_k*_d*.json"))


def legacy_decomposition(cert_dir: Path) -> list[dict]:
    """Pattern and decomposition of the same-number certificates (recomputed, no JAX)."""
    import json

    import geotrip as gt

    rows = []
    for f in sorted(Path(cert_dir).glob("angle_k*_d*.json")):
        doc = json.loads(f.read_text())
        q = gt.certificate_quantities(doc)
        rows.append(
            {
                "k": len(doc["triplets"]),
                "dim": len(doc["points"][0]),
                "angle_deg": q["angle_deg"],
                "angle_both_deg": q.get("angle_both_deg", float("nan")),
                "one_only": sum(p in ("A", "B") for p in q["pattern"]),
                "share_one_only": max(q["share_one_only_A"], q["share_one_only_B"]),
                "certificate": f.name,
            }
        )
    return sorted(rows, key=lambda r: (r["dim"], r["k"]))


_LEGACY = Path("certificates") / "active_set" / "legacy_same_number"


def _legacy_certificates(out_dir: Path) -> Path:
    """``OUT/certificates/active_set/legacy_same_number``, filled from the repository's
    committed copy when ``OUT`` has none (a fresh ``--out``); an error if neither exists."""
    target = out_dir / _LEGACY
    if any(target.glob("angle_k*_d*.json")):
        return target
    committed = Path(__file__).resolve().parents[2] / "figures" / _LEGACY
    files = sorted(committed.glob("*.json"))
    if not files:
        raise FileNotFoundError(
            f"counterexample_active_set draws from the committed certificates in {_LEGACY}, "
            f"found neither in {out_dir} nor in the repository"
        )
    for f in files:
        atomic_write_bytes(target / f.name, f.read_bytes())
    return target


@register_figure(
    "counterexample_active_set",
    group="counterexamples",
    description="active-set gallery: the same-number (0.2 / 0.2) certificates, total angle vs the "
    "angle over triplets active under both hinges, and the share from one-hinge-only triplets",
)
def make_active_set(*, out_dir: Path, seed: int, quick: bool) -> list[Path]:
    """Drawn from the committed certificates of ``certificates/active_set/legacy_same_number``
    (256 restarts x 400 steps, margins 0.2 for both losses, any pattern); no search."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cert_dir = _legacy_certificates(Path(out_dir))
    rows = legacy_decomposition(cert_dir)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9), constrained_layout=True)
    for d, col in ((2, "C0"), (3, "C1"), (8, "C2")):
        rr = [r for r in rows if r["dim"] == d]
        ks = [r["k"] for r in rr]
        axes[0].plot(ks, [r["angle_deg"] for r in rr], "o-", color=col, label=f"d = {d}: all")
        axes[0].plot(
            ks,
            [r["angle_both_deg"] for r in rr],
            "x--",
            color=col,
            alpha=0.7,
            label=f"d = {d}: over triplets active under both",
        )
        axes[1].plot(ks, [r["share_one_only"] for r in rr], "o-", color=col, label=f"d = {d}")
    axes[0].axhline(90, color="k", lw=0.8, ls="--")
    axes[0].set_ylim(0, 180)
    axes[0].set_yticks(range(0, 181, 30))
    axes[0].set_xlabel("k triplets sharing one anchor")
    axes[0].set_ylabel("Riemannian gradient angle (degrees)")
    axes[0].legend(fontsize=6.5, loc="lower right", ncol=2)
    axes[0].grid(alpha=0.3)
    axes[0].set_title("same number 0.2 for both margins: largest angles found", fontsize=10)
    axes[1].set_xlabel("k")
    axes[1].set_ylabel("share of |G|² from one-hinge-only triplets")
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)
    axes[1].set_title("the part due to the active sets (max of A, B)", fontsize=10)
    keys = ("k", "dim", "angle_deg", "angle_both_deg", "one_only", "share_one_only")
    data = {key: np.array([r[key] for r in rows]) for key in keys}
    paths = save_figure(
        fig,
        out_dir,
        "counterexample_active_set",
        data=data,
        seed=seed,
        parameters={
            "source": "certificates/active_set/legacy_same_number (margins 0.2 / 0.2, active any)",
            "certificates": [r["certificate"] for r in rows],
        },
    )
    return paths


def smallest_descent(*, seed: int, quick: bool):
    """Search k = 2 descent disagreements over several structures, keep the best, simplify it.

    Weighting only: B's margin slope-matched to A's, every triplet active under both hinges.
    """
    import geotrip as gt

    structures = ("shared_anchor",) if quick else ("shared_anchor", "chain")
    restarts, steps = (32, 60) if quick else (64, 200)
    best = None
    for s in structures:
        r = gt.search(
            "descent",
            structure=s,
            k=2,
            dim=3,
            distances=_PAIR,
            active="both",
            restarts=restarts,
            steps=steps,
            seed=seed,
            progress=show_bars(),
        )
        r.notes.append(f"structure {s}")
        if np.isfinite(r.value) and (best is None or r.value > best.value):
            best = r
    if best is None:
        raise RuntimeError("no descent disagreement found")
    if quick:  # the simplification re-optimises (new shapes, new compiles): full mode only
        return best, best
    simp = gt.simplify(best, restarts=16, steps=100)
    return best, simp


@register_figure(
    "counterexample_descent",
    group="counterexamples",
    description="smallest certified descent disagreement: points, both gradient fields, "
    "losses along the step",
)
def make_descent(*, out_dir: Path, seed: int, quick: bool) -> list[Path]:
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import geotrip as gt

    cert_dir = Path(out_dir) / "certificates" / "weighting"
    found, simp = smallest_descent(seed=seed, quick=quick)
    margins = simp.margins
    cpath = cert_dir / "descent_min.json"
    cert = gt.certify(simp, cpath)
    if not cert.verification.ok:
        raise RuntimeError(f"descent certificate failed: {cert.verification.failures}")
    doc = cert.content
    R = np.array([[float(c) for c in r] for r in doc["points"]])
    X = R / np.linalg.norm(R, axis=1, keepdims=True)
    t = np.asarray(doc["triplets"])
    d = X.shape[1]
    X3 = np.concatenate([X, np.zeros((X.shape[0], max(0, 3 - d)))], 1) if d < 3 else X
    Xj, tj = jnp.asarray(X), jnp.asarray(t, dtype=jnp.int32)
    GA = np.asarray(gt.batch_grads(Xj, tj, distance=_PAIR[0], margin=margins[0]))
    GB = np.asarray(gt.batch_grads(Xj, tj, distance=_PAIR[1], margin=margins[1]))
    pad = lambda G: np.concatenate([G, np.zeros((G.shape[0], max(0, 3 - d)))], 1) if d < 3 else G
    DA, DB = -pad(GA) / np.linalg.norm(GA), -pad(GB) / np.linalg.norm(GB)
    eta = doc["claims"]["step"]["size"]
    ts = np.linspace(0, 3 * eta, 61)
    D = -GA / np.linalg.norm(GA)
    LA, LB = [], []
    for s in ts:
        Y = gt.normalize(Xj + s * jnp.asarray(D))
        LA.append(float(gt.batch_loss(Y, tj, distance=_PAIR[0], margin=margins[0])))
        LB.append(float(gt.batch_loss(Y, tj, distance=_PAIR[1], margin=margins[1])))
    LA, LB = np.array(LA), np.array(LB)

    fig = plt.figure(figsize=(11, 4.6), constrained_layout=True)
    if d == 2:
        _draw_circle_unrolled(
            fig.add_subplot(1, 2, 1),
            X,
            t,
            -GA / np.linalg.norm(GA),
            -GB / np.linalg.norm(GB),
            doc["claims"]["angle_deg"],
        )
    else:
        ax = fig.add_subplot(1, 2, 1, projection="3d")
        # view from the centroid direction of the configuration
        c = X3.mean(0)
        c = c / np.linalg.norm(c)
        elev, azim = np.degrees(np.arcsin(np.clip(c[2], -1, 1))), np.degrees(np.arctan2(c[1], c[0]))
        elev = min(elev + 35.0, 89.0)  # look down on the configuration (a circle when d = 2)
        u, v = np.mgrid[0 : 2 * np.pi : 60j, 0 : np.pi : 30j]
        ax.plot_wireframe(
            np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.4
        )
        roles = {}
        for k, (a, p, n) in enumerate(t):
            for (i, j), col in (((a, p), "C2"), ((a, n), "C3")):
                w = np.linspace(0, 1, 30)[:, None]
                arc = X3[i] * (1 - w) + X3[j] * w
                arc /= np.linalg.norm(arc, axis=1, keepdims=True)
                ax.plot(*arc.T, color=col, lw=1.5, alpha=0.8)
            roles.setdefault(a, []).append(f"a{k + 1}")
            roles.setdefault(p, []).append(f"p{k + 1}")
            roles.setdefault(n, []).append(f"n{k + 1}")
        ax.scatter(*X3.T, color="k", s=25, depthshade=False)
        for i, lab in roles.items():
            ax.text(*(X3[i] * 1.08), ",".join(lab), fontsize=8)
        span = min(np.max(np.linalg.norm(X3 - c, axis=1)) + 0.15, 1.05)
        scale = 0.5 * span
        ax.quiver(
            *X3.T,
            *(scale * DA).T,
            color="C0",
            lw=1.6,
            arrow_length_ratio=0.25,
            label="descent of chord_sq",
        )
        ax.quiver(
            *X3.T,
            *(scale * DB).T,
            color="C1",
            lw=1.6,
            arrow_length_ratio=0.25,
            label="descent of geodesic",
        )
        lim = [(c[i] - span, c[i] + span) for i in range(3)]
        ax.set_xlim(*lim[0]), ax.set_ylim(*lim[1]), ax.set_zlim(*lim[2])
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=elev, azim=azim)
        ax.set_axis_off()
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title(
            f"k = {t.shape[0]} triplets on S$^{{{d - 1}}}$"
            + (" (drawn in S$^2$)" if d < 3 else "")
            + f": gradient angle {doc['claims']['angle_deg']:.4f}°\n"
            "green: anchor–positive, red: anchor–negative; "
            "arrows: unit descent directions (scaled)",
            fontsize=9,
        )
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.plot(ts, LA - LA[0], color="C0", lw=2, label="Δ chord_sq loss (A)")
    ax2.plot(ts, LB - LB[0], color="C1", lw=2, label="Δ geodesic loss (B)")
    st = doc["claims"]["step"]
    ax2.plot([eta, eta], [st["delta_A"], st["delta_B"]], "k:", lw=0.8)
    ax2.plot([eta], [st["delta_A"]], "o", color="C0")
    ax2.plot([eta], [st["delta_B"]], "o", color="C1")
    ax2.annotate(
        f"certified step η = {eta:g}:\nΔA = {st['delta_A']:.2e} < 0\nΔB = {st['delta_B']:.2e} > 0",
        (eta, st["delta_B"]),
        xytext=(0.45, 0.72),
        textcoords="axes fraction",
        fontsize=8,
        arrowprops=dict(arrowstyle="->", lw=0.6),
    )
    ax2.axhline(0, color="k", lw=0.6)
    ax2.set_xlabel("step length along A's unit Riemannian descent direction (with retraction)")
    ax2.set_ylabel("change of the summed loss")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8, loc="lower left")
    ax2.set_title(
        f"descending chord_sq raises geodesic: slope {doc['claims']['slope_B_along_A']:.3f} > 0\n"
        f"(margins {margins[0]:g} / {margins[1]:g} slope-matched; all triplets active under both)",
        fontsize=9,
    )
    data = {
        "points": X,
        "triplets": t,
        "grad_A": GA,
        "grad_B": GB,
        "step_t": ts,
        "loss_A": LA,
        "loss_B": LB,
        "found_points": found.points,
        "found_triplets": found.triplets,
    }
    paths = save_figure(
        fig,
        out_dir,
        "counterexample_descent",
        data=data,
        seed=seed,
        parameters={
            "certificate": f"weighting/{cpath.name}",
            "simplification": simp.notes,
            "found": {"k": found.k, "dim": found.dim, "value": found.value},
            "distances": list(_PAIR),
            "margins": list(margins),
            "match": simp.match,
            "active": simp.active,
            "pattern": doc["claims"]["pattern"],
        },
    )
    return paths + [cpath]


def _draw_circle_unrolled(ax, X, t, DA, DB, angle_deg):
    """A configuration on the circle S^1, unrolled: points at their polar angles, arcs for the
    anchor-positive (green, above) and anchor-negative (red, below) pairs, and the tangential
    components of both unit descent directions as arrows."""
    phi = np.arctan2(X[:, 1], X[:, 0])
    ref = np.angle(np.mean(np.exp(1j * phi)))
    phi = np.degrees(np.angle(np.exp(1j * (phi - ref))))  # centred on the mean direction
    tang = np.stack([-np.sin(np.radians(phi) + ref), np.cos(np.radians(phi) + ref)], 1)
    vA, vB = np.sum(DA * tang, 1), np.sum(DB * tang, 1)
    span = max(np.ptp(phi), 1.0)
    for k, (a, p, n) in enumerate(t):
        for j, col, sign in ((p, "C2", 1), (n, "C3", -1)):
            xs = np.linspace(phi[a], phi[j], 50)
            h = sign * (0.18 + 0.1 * k) * np.sin(np.linspace(0, np.pi, 50))
            ax.plot(xs, h, color=col, lw=1.4, alpha=0.85)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.scatter(phi, np.zeros_like(phi), color="k", s=30, zorder=3)
    roles = {}
    for k, (a, p, n) in enumerate(t):
        for i, lab in ((a, "a"), (p, "p"), (n, "n")):
            roles.setdefault(int(i), []).append(f"{lab}{k + 1}")
    order = np.argsort(phi)
    for rank, i in enumerate(order):
        ax.annotate(
            ",".join(roles.get(int(i), [])),
            (phi[i], 0),
            xytext=(0, 10 if rank % 2 else -16),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    scale = 0.35 * span / max(np.max(np.abs(vA)), np.max(np.abs(vB)), 1e-12)
    for rank, i in enumerate(order):
        lift = 0.08 * (rank % 2)  # stagger neighbouring arrows
        for v, y, col in ((vA[i], 0.52 + lift, "C0"), (vB[i], -0.52 - lift, "C1")):
            if abs(v) > 1e-12:
                ax.annotate(
                    "",
                    (phi[i] + scale * v, y),
                    (phi[i], y),
                    arrowprops=dict(arrowstyle="->", color=col, lw=1.8),
                )
            ax.plot([phi[i], phi[i]], [0, y], color="0.85", lw=0.6, zorder=0)
    ax.plot([], [], color="C0", lw=1.8, label="descent of chord_sq (tangential)")
    ax.plot([], [], color="C1", lw=1.8, label="descent of geodesic (tangential)")
    ax.plot([], [], color="C2", label="anchor–positive")
    ax.plot([], [], color="C3", label="anchor–negative")
    ax.set_ylim(-0.8, 0.9)
    ax.set_xlim(phi.min() - 0.25 * span, phi.max() + 0.25 * span)
    ax.set_yticks([])
    ax.set_xlabel("position on the circle S¹ (degrees from the mean direction)")
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    ax.set_title(
        f"k = {t.shape[0]} triplets on S¹ (unrolled): gradient angle {angle_deg:.4f}°", fontsize=10
    )
