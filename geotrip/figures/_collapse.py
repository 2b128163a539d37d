"""Collapse figures: collapse probability (Wilson 95% intervals) over the initial spread, the
full phase grid (spread x learning rate x margin) per distance and mining strategy, and the
mean pairwise cosine through training.

:func:`plot_collapse` draws them from a sweep folder written by
:func:`geotrip.run_collapse_sweep` (``geotrip collapse`` calls it). The registered figures
regenerate their data with a small preset sweep (``figure``; ``figure-quick`` with
``--quick``) rather than reading committed results.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._caches import bounded_cache
from ._registry import register_figure, save_figure, show_bars

_STYLE = {
    "chord_sq": dict(color="C0", ls="-", marker="o"),
    "chord": dict(color="C1", ls="--", marker="s"),
    "geodesic": dict(color="C2", ls="-", marker="^"),
    "geodesic_sq": dict(color="C3", ls="-.", marker="v"),
    "cosine": dict(color="C4", ls=":", marker="D"),
}


def _loss_label(strategy, soft):
    return f"{strategy}{' (soft)' if soft else ''}"


def _spread_label(s):
    return "default" if math.isinf(s) else f"{s:g}"


def _rows(run_dir):
    from ..train import read_collapse_runs

    # panels by regime (a task, or e.g. a deeper MLP trained from its default start)
    return [dict(r, task=r["regime"]) for r in read_collapse_runs(Path(run_dir) / "runs.csv")]


def spread_panels(rows) -> dict[str, np.ndarray]:
    """Pooled (over lr and margin) collapse probability per task, loss, distance and spread."""
    from ..train import collapse_phase_table

    table = collapse_phase_table(rows, by=("task", "strategy", "soft", "distance", "spread"))
    keys = (
        "task",
        "strategy",
        "soft",
        "distance",
        "spread",
        "n",
        "collapsed",
        "p",
        "wilson_lo",
        "wilson_hi",
        "init_collapsed",
        "recall_at_1",
    )
    return {k: np.array([r[k] for r in table]) for k in keys}


def plot_spread(rows, out_dir, *, seed, parameters=None, name="collapse_spread"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = spread_panels(rows)
    panels = sorted({(t, s, bool(f)) for t, s, f in zip(d["task"], d["strategy"], d["soft"])})
    spreads = sorted(set(d["spread"].tolist()))
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False, constrained_layout=True
    )
    distances = [x for x in _STYLE if x in set(d["distance"].tolist())]
    for ax, (task, strat, soft) in zip(axes.flat, panels):
        for j, dist in enumerate(distances):
            sel = (
                (d["task"] == task)
                & (d["strategy"] == strat)
                & (d["soft"] == soft)
                & (d["distance"] == dist)
            )
            order = np.argsort(d["spread"][sel])
            xs = np.array([spreads.index(v) for v in d["spread"][sel][order]]) + (j - 2) * 0.06
            p, lo, hi = d["p"][sel][order], d["wilson_lo"][sel][order], d["wilson_hi"][sel][order]
            ax.errorbar(
                xs,
                p,
                yerr=[np.clip(p - lo, 0, None), np.clip(hi - p, 0, None)],
                capsize=2,
                ms=4,
                lw=1.2,
                label=dist,
                **_STYLE[dist],
            )
        sel = (d["task"] == task) & (d["strategy"] == strat) & (d["soft"] == soft)
        init = {}
        for s_, ic, n in zip(d["spread"][sel], d["init_collapsed"][sel], d["n"][sel]):
            a, b = init.get(s_, (0, 0))
            init[s_] = (a + ic, b + n)
        ax.plot(
            [spreads.index(s_) for s_ in sorted(init)],
            [init[s_][0] / init[s_][1] for s_ in sorted(init)],
            color="0.5",
            lw=3,
            alpha=0.35,
            label="collapsed at start",
        )
        n_per = int(d["n"][sel][0]) if sel.any() else 0
        ax.set_title(f"{task}: {_loss_label(strat, soft)}  (n={n_per} per point)", fontsize=9)
        ax.set_xticks(range(len(spreads)))
        ax.set_xticklabels([_spread_label(s_) for s_ in spreads])
        ax.set_xlabel("initial angular spread (rad)")
        ax.set_ylim(-0.04, 1.04)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("P(collapsed at end)")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(
        "Collapse probability (pooled over learning rates and margins; Wilson 95% CI)", fontsize=10
    )
    return save_figure(fig, out_dir, name, data=d, seed=seed, parameters=parameters)


def plot_phase(rows, out_dir, *, seed, parameters=None, name="collapse_phase"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..train import collapse_phase_table

    table = collapse_phase_table(rows)
    panels = sorted({(r["task"], r["strategy"], r["soft"]) for r in table})
    distances = [x for x in _STYLE if x in {r["distance"] for r in table}]
    spreads = sorted({r["spread"] for r in table})
    fig, axes = plt.subplots(
        len(panels),
        len(distances),
        figsize=(2.3 * len(distances) + 1, 1.9 * len(panels) + 0.6),
        squeeze=False,
        constrained_layout=True,
    )
    data: dict[str, Any] = {k: np.array([r[k] for r in table]) for k in table[0]}
    im = None
    for i, (task, strat, soft) in enumerate(panels):
        combos = sorted({(r["lr"], r["margin"]) for r in table if r["task"] == task})
        for j, dist in enumerate(distances):
            ax = axes[i, j]
            M = np.full((len(combos), len(spreads)), np.nan)
            for r in table:
                if (r["task"], r["strategy"], r["soft"], r["distance"]) == (
                    task,
                    strat,
                    soft,
                    dist,
                ):
                    M[combos.index((r["lr"], r["margin"])), spreads.index(r["spread"])] = r["p"]
            im = ax.imshow(M, vmin=0, vmax=1, cmap="magma_r", aspect="auto")
            for (a, b), v in np.ndenumerate(M):
                if np.isfinite(v):
                    ax.text(
                        b,
                        a,
                        f"{v:.2f}".lstrip("0") if v < 1 else "1",
                        ha="center",
                        va="center",
                        fontsize=5,
                        color="w" if v > 0.5 else "k",
                    )
            ax.set_xticks(range(len(spreads)))
            ax.set_xticklabels([_spread_label(s_) for s_ in spreads], fontsize=6)
            ax.set_yticks(range(len(combos)))
            ax.set_yticklabels(
                [f"lr={a:g} m={b:g}" for a, b in combos] if j == 0 else [], fontsize=6
            )
            if i == 0:
                ax.set_title(dist, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{task}\n{_loss_label(strat, soft)}", fontsize=7)
            if i == len(panels) - 1:
                ax.set_xlabel("initial spread", fontsize=7)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, label="P(collapsed)")
    fig.suptitle(
        "Collapse probability over initial spread x (learning rate, margin in reference units)",
        fontsize=10,
    )
    return save_figure(fig, out_dir, name, data=data, seed=seed, parameters=parameters)


def plot_curves(run_dir, out_dir, *, seed, parameters=None, name="collapse_curves"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = sorted((Path(run_dir) / "history").glob("*__batch_hard__hinge.npz"))
    if not files:
        files = sorted((Path(run_dir) / "history").glob("*.npz"))
    fig, axes = plt.subplots(
        1, len(files), figsize=(4.2 * len(files), 3.2), squeeze=False, constrained_layout=True
    )
    data: dict[str, Any] = {}
    for ax, f in zip(axes[0], files):
        h = np.load(f)
        smin = float(np.min(h["spread"]))
        names = [str(x) for x in h["distances"]]
        for k, dist in enumerate(names):
            sel = (h["distance_index"] == k) & (h["spread"] == smin)
            mc = h["mean_cos"][sel]
            med, q1, q3 = np.median(mc, 0), np.quantile(mc, 0.25, 0), np.quantile(mc, 0.75, 0)
            st = dict(_STYLE.get(dist, {}))
            st.pop("marker", None)
            ax.plot(h["step"], med, label=dist, **st)
            ax.fill_between(h["step"], q1, q3, color=st.get("color"), alpha=0.15, lw=0)
            data[f"{f.stem}/{dist}/median"] = med
            data[f"{f.stem}/{dist}/q1"] = q1
            data[f"{f.stem}/{dist}/q3"] = q3
        data[f"{f.stem}/step"] = h["step"]
        ax.axhline(0.99, color="k", lw=0.8, ls=":")
        ax.set_title(
            f"{f.stem.replace('__', ' ')}\nspread {smin:g} rad; median, IQR over runs", fontsize=8
        )
        ax.set_xlabel("training step")
        ax.set_ylim(-0.25, 1.02)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("mean pairwise cosine (eval set)")
    axes[0, 0].legend(fontsize=7)
    return save_figure(fig, out_dir, name, data=data, seed=seed, parameters=parameters)


def plot_collapse(
    run_dir, out_dir, *, seed: int | None = None, parameters: Mapping[str, Any] | None = None
) -> list:
    """Draw the three collapse figures from a sweep folder; returns the written paths."""
    rows = _rows(run_dir)
    params = dict(parameters or {}, source=str(run_dir))
    return (
        plot_spread(rows, out_dir, seed=seed, parameters=params)
        + plot_phase(rows, out_dir, seed=seed, parameters=params)
        + plot_curves(run_dir, out_dir, seed=seed, parameters=params)
    )


@bounded_cache(maxsize=4)
def _figure_sweep(seed: int, quick: bool) -> Path:
    """Run (once per process and settings) the small preset behind the registered figures."""
    import jax

    from ..train import run_collapse_sweep

    tmp = Path(tempfile.mkdtemp(prefix="geotrip-collapse-"))
    # Train in float32, as `geotrip collapse` does, whatever `geotrip figures --x64` says:
    # the PRNG streams (and so the starts) depend on the dtype.
    with jax.enable_x64(False):
        run_collapse_sweep(
            "figure-quick" if quick else "figure", tmp, seed0=seed, progress=show_bars()
        )
    return tmp


@register_figure(
    "collapse_spread",
    group="collapse",
    description="collapse probability vs initial spread per distance and mining (Wilson 95% CI)",
)
def make_collapse_spread(*, out_dir: Path, seed: int, quick: bool) -> list[Path]:
    run_dir = _figure_sweep(seed, quick)
    return plot_spread(
        _rows(run_dir),
        out_dir,
        seed=seed,
        parameters={"preset": "figure-quick" if quick else "figure"},
    )


@register_figure(
    "collapse_curves",
    group="collapse",
    description="mean pairwise cosine through training from a small spread, per distance",
)
def make_collapse_curves(*, out_dir: Path, seed: int, quick: bool) -> list[Path]:
    run_dir = _figure_sweep(seed, quick)
    return plot_curves(
        run_dir, out_dir, seed=seed, parameters={"preset": "figure-quick" if quick else "figure"}
    )
