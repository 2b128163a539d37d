"""Core figures: the per-pair weights g'(theta) and the gradient-angle maps."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .. import DISTANCES, gradient_angles, parametric_triplet
from ._registry import register_figure, save_figure

_STYLE = {
    "chord_sq": dict(color="C0", ls="-"),
    "chord": dict(color="C1", ls="--"),
    "geodesic": dict(color="C2", ls="-"),
    "geodesic_sq": dict(color="C3", ls="-."),
    "cosine": dict(color="C4", ls=":"),
}


def weight_curves(num: int = 721, *, vanish_below: float = 0.25) -> dict[str, np.ndarray]:
    """Profiles g(theta), weights g'(theta) and the masks g' < vanish_below on [0, pi].

    ``vanish_below`` is in units of the geodesic weight (which is 1 everywhere): a pair
    whose weight is below it is pulled or pushed less than a quarter as hard as the
    geodesic loss would.
    """
    theta = jnp.linspace(0.0, jnp.pi, num)
    out: dict[str, np.ndarray] = {"theta": np.asarray(theta)}
    for name, dist in DISTANCES.items():
        w = np.asarray(dist.weight(theta))
        out[f"profile/{name}"] = np.asarray(dist.profile(theta))
        out[f"weight/{name}"] = w
        out[f"vanishing/{name}"] = w < vanish_below
    return out


def _runs(mask: np.ndarray, x: np.ndarray) -> list[tuple[float, float]]:
    """(start, width) of the runs where ``mask`` is True, on the grid ``x``."""
    runs, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        if (not m or i == len(mask) - 1) and start is not None:
            stop = i if m else i - 1
            runs.append((float(x[start]), float(max(x[stop] - x[start], x[1] - x[0]))))
            start = None
    return runs


@register_figure(
    "weights", description="profiles g(theta) and per-pair weights g'(theta) of the five distances"
)
def make_weights(*, out_dir: Path, seed: int, quick: bool) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thr = 0.25
    data = weight_curves(181 if quick else 721, vanish_below=thr)
    th = data["theta"]
    fig = plt.figure(figsize=(11, 4.6), constrained_layout=True)
    gs = fig.add_gridspec(2, 2, height_ratios=(3.2, 1.2))
    ax0 = fig.add_subplot(gs[:, 0])
    ax1 = fig.add_subplot(gs[0, 1])
    ax2 = fig.add_subplot(gs[1, 1], sharex=ax1)
    names = list(DISTANCES)
    for row, (name, dist) in enumerate(DISTANCES.items()):
        ax0.plot(th, data[f"profile/{name}"], label=f"{name}: {dist.formula}", **_STYLE[name])
        w = data[f"weight/{name}"]
        ax1.plot(th, w, label=name, **_STYLE[name])
        zeros = th[np.isclose(w, 0.0, atol=1e-12)]
        ax1.plot(
            zeros, np.zeros_like(zeros), "o", color=_STYLE[name]["color"], ms=7, mfc="none", mew=1.5
        )
        ax2.broken_barh(
            _runs(data[f"vanishing/{name}"], th), (row - 0.35, 0.7), color=_STYLE[name]["color"]
        )
    ax1.axhline(thr, color="0.5", lw=0.8, ls=":")
    for ax in (ax0, ax1, ax2):
        ax.set_xlim(0, np.pi)
        ax.set_xticks([0, np.pi / 4, np.pi / 2, 3 * np.pi / 4, np.pi])
        ax.set_xticklabels(["0", "π/4", "π/2", "3π/4", "π"])
        ax.grid(alpha=0.3)
    ax0.set_xlabel("angle θ between the two points")
    ax2.set_xlabel("angle θ between the two points")
    ax0.set_ylabel("distance g(θ)")
    ax0.set_title("profiles d = g(θ)")
    ax0.legend(fontsize=7, loc="upper left")
    ax1.set_ylabel("per-pair weight g'(θ)")
    ax1.set_title("per-pair weights g'(θ) (circles: g' = 0)")
    ax1.legend(fontsize=8, loc="upper right", ncol=2)
    plt.setp(ax1.get_xticklabels(), visible=False)
    ax2.set_yticks(range(len(names)))
    ax2.set_yticklabels(names, fontsize=7)
    ax2.set_ylim(-0.6, len(names) - 0.4)
    ax2.invert_yaxis()
    ax2.set_title(
        f"where the weight nearly vanishes: g'(θ) < {thr:g} (geodesic weight = 1)", fontsize=9
    )
    return save_figure(
        fig,
        out_dir,
        "weights",
        data=data,
        seed=None,
        parameters={"vanish_below": thr, "grid": int(th.size)},
    )


def angle_map_data(
    num: int,
    psis_deg: tuple[float, ...],
    *,
    distances=("chord_sq", "geodesic"),
    margins=(4.5, 3.5),
    dim: int = 3,
) -> dict[str, np.ndarray]:
    """Anchor-gradient angles (degrees) over the (theta_ap, theta_an) grid for each psi.

    The margins default to values that keep both hinges active on the whole plane
    (chord_sq <= 4, geodesic <= pi), so the maps show the pure weight geometry.
    """
    eps = 0.5 * np.pi / num
    t = jnp.linspace(eps, np.pi - eps, num)
    tap, tan = jnp.meshgrid(t, t, indexing="xy")  # rows: theta_an, cols: theta_ap
    out: dict[str, np.ndarray] = {"theta": np.asarray(t), "psi_deg": np.asarray(psis_deg)}

    @jax.jit
    def angles(psi):
        a, p, n = parametric_triplet(tap, tan, jnp.full_like(tap, psi), dim=dim)
        return gradient_angles(a, p, n, distances=distances, margins=margins, method="autodiff")

    for psi in psis_deg:
        r = angles(np.deg2rad(psi))
        for kind in ("riemannian", "raw"):
            out[f"{kind}/anchor/psi={psi:g}"] = np.degrees(np.asarray(r[f"{kind}/anchor"]))
    return out


@register_figure(
    "angle_map", description="chord_sq vs geodesic anchor-gradient angle over (theta_ap, theta_an)"
)
def make_angle_map(*, out_dir: Path, seed: int, quick: bool) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    psis = (30.0, 90.0, 150.0)
    num = 61 if quick else 241
    data = angle_map_data(num, psis)
    t = data["theta"]
    fig, axes = plt.subplots(
        2,
        len(psis),
        figsize=(4.1 * len(psis), 7.4),
        constrained_layout=True,
        sharex=True,
        sharey=True,
    )
    vmax = max(np.nanmax(v) for k, v in data.items() if "/anchor/" in k)
    for col, psi in enumerate(psis):
        for row, kind in enumerate(("riemannian", "raw")):
            ax = axes[row, col]
            z = data[f"{kind}/anchor/psi={psi:g}"]
            im = ax.imshow(
                z,
                origin="lower",
                extent=(0, np.pi, 0, np.pi),
                aspect="auto",
                cmap="magma",
                vmin=0,
                vmax=vmax,
                interpolation="nearest",
            )
            cs = ax.contour(t, t, z, levels=[10, 30, 60, 90], colors="w", linewidths=0.6)
            ax.clabel(cs, fmt="%d°", fontsize=7)
            # Active-set boundaries of the usual margins (0.2 each): active below each line.
            ax.plot(
                t,
                2 * np.arcsin(np.sqrt(np.clip(np.sin(t / 2) ** 2 + 0.05, 0, 1))),
                color="C0",
                lw=1.2,
                ls="--",
                label="chord_sq, m=0.2: active below",
            )
            ax.plot(t, t + 0.2, color="C2", lw=1.2, ls=":", label="geodesic, m=0.2: active below")
            ax.plot(t, t, color="0.7", lw=0.6)
            ax.set_xlim(0, np.pi)
            ax.set_ylim(0, np.pi)
            ax.set_title(f"{kind} anchor gradient, ψ = {psi:g}°", fontsize=10)
            if row == 1:
                ax.set_xlabel("θ_ap (anchor–positive angle)")
            if col == 0:
                ax.set_ylabel("θ_an (anchor–negative angle)")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.colorbar(
        im, ax=axes, shrink=0.8, label="angle between chord_sq and geodesic gradients (degrees)"
    )
    fig.suptitle(
        "Where chord_sq and geodesic triplet gradients disagree at the anchor "
        "(margins 4.5 / 3.5 keep both hinges active)",
        fontsize=11,
    )
    return save_figure(
        fig,
        out_dir,
        "angle_map",
        data=data,
        seed=None,
        parameters={"psi_deg": list(psis), "grid": num, "margins": [4.5, 3.5], "dim": 3},
    )
