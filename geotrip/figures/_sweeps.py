"""Sweep figures: gradient angles against the dimension (uniform and mined triplets), and the
hinge active-set disagreement against the margin for each margin-matching rule."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .. import (
    MINING_STRATEGIES,
    angle,
    clustered_batch,
    gradient_angles_closed_form,
    match_margin,
    mine_triplets,
    normalize,
)
from .._numerics import float_dtype
from ._registry import progress, register_figure, save_figure

DIMS_FULL = (2, 3, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
DIMS_QUICK = (2, 3, 8, 32, 256)
# margins that keep both hinges active everywhere (chord_sq <= 4, geodesic <= pi): the angles
# then show the pure weighting of the two losses on the triplets each family produces
ALWAYS_ACTIVE = (4.5, 3.5)
K_CLASSES, PER_CLASS, WITHIN_ANGLE, PER_BATCH = 8, 4, 0.7, 32


def _padded_batch(key, d, D):
    """A clustered PK batch on S^{d-1}, embedded in R^D by zero padding (d traced, D static).

    Zero padding changes no angle and no gradient angle (every triplet gradient lies in the
    span of the points), so one compiled program serves every dimension d <= D. The law is that
    of :func:`geotrip.clustered_batch` (vMF, uniform centres, concentration (d-1)/within^2).
    """
    from ..core._samplers import sample_polar_angle

    mask = (jnp.arange(D) < d).astype(jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    dt = mask.dtype
    df = d.astype(dt)
    kc, kt, kv = jax.random.split(key, 3)
    g = jax.random.normal(kc, (K_CLASSES, D), dt) * mask
    centers = g / jnp.linalg.norm(g, axis=-1, keepdims=True)
    mu = jnp.repeat(centers, PER_CLASS, axis=0)
    kappa = (df - 1) / WITHIN_ANGLE**2
    tmax = jnp.minimum(jnp.asarray(np.pi, dt), (jnp.sqrt(df) + 10) / jnp.sqrt(kappa))
    logf = lambda t: kappa * jnp.cos(t) + (df - 2) * jnp.log(jnp.sin(t))
    th = sample_polar_angle(kt, (mu.shape[0],), logf, tmax, dtype=dt)
    v = jax.random.normal(kv, mu.shape, dt) * mask
    v = v - jnp.sum(v * mu, -1, keepdims=True) * mu
    v = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
    X = jnp.cos(th)[:, None] * mu + jnp.sin(th)[:, None] * v
    X = X / jnp.linalg.norm(X, axis=-1, keepdims=True)
    y = jnp.repeat(jnp.arange(K_CLASSES, dtype=jnp.int32), PER_CLASS)
    return X, y, mask


def _metric(key, d, D):
    """Joint gradient angles of PER_BATCH uniform triplets and PER_BATCH triplets per strategy."""
    kb, km, ks, ku = jax.random.split(key, 4)
    X, y, mask = _padded_batch(kb, d, D)
    out = {}
    for i, strategy in enumerate(MINING_STRATEGIES):
        t, ok = mine_triplets(X, y, strategy=strategy, distance="chord_sq", margin=0.2, key=km)
        g = jax.random.gumbel(jax.random.fold_in(ks, i), ok.shape, X.dtype)
        score = jnp.where(ok, g, jnp.full_like(g, -jnp.inf))
        _, idx = jax.lax.top_k(score, min(PER_BATCH, ok.shape[0]))
        tt, vv = t[idx], ok[idx]
        r = gradient_angles_closed_form(
            X[tt[:, 0]], X[tt[:, 1]], X[tt[:, 2]], margins=ALWAYS_ACTIVE
        )
        for kind in ("raw", "riemannian"):
            th = r[f"{kind}/joint"]
            out[f"{strategy}/{kind}"] = jnp.where(vv, th, jnp.full_like(th, jnp.nan))
    gu = jax.random.normal(ku, (3, PER_BATCH, D), X.dtype) * mask
    a, p, n = gu / jnp.linalg.norm(gu, axis=-1, keepdims=True)
    r = gradient_angles_closed_form(a, p, n, margins=ALWAYS_ACTIVE)
    for kind in ("raw", "riemannian"):
        out[f"uniform/{kind}"] = r[f"{kind}/joint"]
    return out


def dimension_data(dims, *, batches: int, seed: int) -> dict[str, np.ndarray]:
    """Quantiles (10, 50, 90 %) in degrees of the joint gradient angles per family and dimension.

    One compiled program (points zero-padded to the largest dimension) evaluates ``batches``
    clustered batches per dimension, each giving up to PER_BATCH triplets per strategy and
    PER_BATCH uniform triplets; keys are ``fold_in(fold_in(seed, d), i)``.
    """
    D = int(max(dims))
    fams = ("uniform",) + MINING_STRATEGIES
    out: dict[str, np.ndarray] = {"dims": np.asarray(dims)}
    q = (0.1, 0.5, 0.9)
    acc = {f"{f}/{k}": [] for f in fams for k in ("raw", "riemannian")}
    key = jax.random.key(seed)
    run = jax.jit(jax.vmap(lambda k, d: _metric(k, d, D), in_axes=(0, None)))
    for j, d in enumerate(dims, 1):
        kd = jax.random.fold_in(key, d)
        keys = jax.vmap(lambda i: jax.random.fold_in(kd, i))(jnp.arange(batches, dtype=jnp.uint32))
        res = {k: [] for k in acc}
        for c in range(0, batches, 16):  # chunks bound the memory at d = D
            r = run(keys[c : c + 16], jnp.asarray(d, jnp.int32))
            for k in acc:
                res[k].append(np.asarray(r[k]))
        for k in acc:
            v = np.degrees(np.concatenate(res[k]).reshape(-1).astype(np.float64))
            v = v[np.isfinite(v)]
            acc[k].append(np.quantile(v, q) if v.size else np.full(3, np.nan))
        progress(f"d = {d} done ({j}/{len(dims)} dimensions)")
    for k, v in acc.items():
        out[k] = np.asarray(v)  # (len(dims), 3): 10, 50, 90 %
    return out


@register_figure(
    "sweep_dimension",
    group="sweeps",
    description="raw and Riemannian chord_sq-vs-geodesic gradient angles against d, "
    "uniform and mined triplets",
)
def make_dimension(*, out_dir: Path, seed: int, quick: bool) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = DIMS_QUICK if quick else DIMS_FULL
    batches = 8 if quick else 64
    data = dimension_data(dims, batches=batches, seed=seed)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True, sharey=True)
    fams = ("uniform",) + MINING_STRATEGIES
    for ax, kind in zip(axes, ("raw", "riemannian")):
        for i, f in enumerate(fams):
            v = data[f"{f}/{kind}"]
            style = dict(color="k", lw=2) if f == "uniform" else dict(color=f"C{i}", lw=1.3)
            ax.plot(dims, v[:, 1], marker="o", ms=3, label=f, **style)
            ax.fill_between(dims, v[:, 0], v[:, 2], color=style["color"], alpha=0.08)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("dimension d")
        ax.set_title(f"{kind} gradients (joint over a, p, n)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("angle chord_sq vs geodesic (degrees)\nmedian, band 10–90 %")
    axes[1].legend(fontsize=8, title="triplets", title_fontsize=8)
    fig.suptitle(
        "Where does disagreement survive concentration of measure? "
        "uniform triplets vs triplets mined "
        f"from clustered batches ({K_CLASSES}×{PER_CLASS}, vMF, "
        f"within-class angle ≈ {WITHIN_ANGLE} rad); "
        f"margins {ALWAYS_ACTIVE} keep both hinges active",
        fontsize=9,
    )
    return save_figure(
        fig,
        out_dir,
        "sweep_dimension",
        data=data,
        seed=seed,
        parameters={
            "dims": list(dims),
            "batches": batches,
            "per_batch": PER_BATCH,
            "margins": list(ALWAYS_ACTIVE),
            "n_classes": K_CLASSES,
            "per_class": PER_CLASS,
            "within_angle": WITHIN_ANGLE,
        },
    )


RULES = ("same number", "reference", "slope", "active_share")


def _disagreements(tap, tan, margins_A, margins_B, distances=("chord_sq", "geodesic")):
    """``active_set_disagreement(tap, tan, margins=(a, b))["disagreement"]`` for each pair
    (a, b) of margins, bit for bit, from the profile differences computed once.

    :func:`geotrip.active_set_disagreement` evaluates the four profiles again for every
    margin (40 margins x 4 rules x 2 families: 16 of margin_matching's 17 CPU seconds).
    Here ``g(theta_ap) - g(theta_an)`` is the same eager JAX expression, computed once;
    then ``z + m > 0`` in NumPy is the same correctly rounded addition (its sign is exact:
    ``fl(z + m) > 0`` iff ``z > -m``), and each share is an exact count of 0/1 values
    divided by the count of triplets, as there.
    """
    from ..core._distances import distance as get_distance
    from ..core._gradients import _margin_pair

    A, B = (get_distance(d) for d in distances)
    zA = np.asarray(A.profile(tap) - A.profile(tan))
    zB = np.asarray(B.profile(tap) - B.profile(tan))
    one = zA.dtype.type
    den = one(max(zA.size, 1))
    out = []
    for m, b in zip(margins_A, margins_B):
        mA, mB = _margin_pair((float(m), float(b)), A, B)
        actA, actB = zA + one(mA) > 0, zB + one(mB) > 0
        only_A = one(np.count_nonzero(actA & ~actB)) / den
        only_B = one(np.count_nonzero(actB & ~actA)) / den
        out.append(float(only_A + only_B))
    return out


def _uniform_angles(key, n: int, dim: int, *, chunk: int = 25_000):
    """``angle(a, p)`` and ``angle(a, n)`` of ``a, p, n = uniform_sphere(key, (3, n), dim)``,
    bit for bit, as NumPy arrays of shape ``(n,)``.

    The same Gaussian draw as :func:`geotrip.uniform_sphere` (one ``(3, n, dim)`` array), but
    normalised and measured ``chunk`` rows at a time (each row on its own, so the values are
    the same): at n = 200,000 and d = 128 in float64 the peak resident memory of this step is
    1.7 GB instead of 2.6 GB (measured standalone).
    """
    g = jax.random.normal(key, (3, n, dim), dtype=float_dtype(None))
    ap, an = [], []
    for i in range(0, n, chunk):
        a, p, q = normalize(g[:, i : i + chunk])
        ap.append(np.asarray(angle(a, p)))
        an.append(np.asarray(angle(a, q)))
    return np.concatenate(ap), np.concatenate(an)


def matching_data(
    *, dim: int, n_batches: int, n_uniform: int, seed: int, num_margins: int
) -> dict[str, np.ndarray]:
    """Active-set disagreement (chord_sq vs geodesic) against the chord_sq margin, per rule and
    family."""
    key = jax.random.key(seed)
    kappa = (dim - 1) / WITHIN_ANGLE**2

    def batch_angles(k):
        X, y = clustered_batch(
            k, n_classes=K_CLASSES, per_class=PER_CLASS, dim=dim, concentration=kappa
        )
        t, ok = mine_triplets(X, y, strategy="batch_all")
        return angle(X[t[:, 0]], X[t[:, 1]]), angle(X[t[:, 0]], X[t[:, 2]]), ok

    # one batch at a time (lax.map, not vmap): batch_all gathers n(n-1)^2 rows of d floats per
    # batch, and all 64 batches at once peaked at 10 GB resident
    tap, tan, ok = jax.jit(lambda ks: jax.lax.map(batch_angles, ks))(
        jax.random.split(jax.random.fold_in(key, 0), n_batches)
    )
    ok = np.asarray(ok).reshape(-1)
    progress(f"{n_batches} clustered batches mined")
    fams = {
        "batch_all (clustered)": (np.asarray(tap).reshape(-1)[ok], np.asarray(tan).reshape(-1)[ok]),
    }
    fams["uniform"] = _uniform_angles(jax.random.fold_in(key, 1), n_uniform, dim)
    progress(f"{n_uniform} uniform triplets drawn")
    margins = np.linspace(0.01, 1.0, num_margins)
    out: dict[str, np.ndarray] = {"margins": margins}
    for fname, (ap, an) in fams.items():
        ap_j, an_j = jnp.asarray(ap), jnp.asarray(an)
        for rule in RULES:
            if rule == "same number":
                mB = margins
            elif rule == "active_share":
                mB = np.asarray(
                    match_margin(jnp.asarray(margins), rule=rule, theta_ap=ap_j, theta_an=an_j)
                )
            else:
                mB = np.asarray(match_margin(jnp.asarray(margins), rule=rule, theta_ref=np.pi / 2))
            dis = _disagreements(ap_j, an_j, margins, mB)
            out[f"{fname}/{rule}/disagreement"] = np.asarray(dis)
            out[f"{fname}/{rule}/margin_B"] = mB
        progress(f"{fname}: {len(RULES)} rules x {num_margins} margins")
    return out


@register_figure(
    "margin_matching",
    group="sweeps",
    description="hinge active-set disagreement (chord_sq vs geodesic) against the margin, "
    "per matching rule",
)
def make_matching(*, out_dir: Path, seed: int, quick: bool) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dim = 128
    data = matching_data(
        dim=dim,
        n_batches=8 if quick else 64,
        n_uniform=20000 if quick else 200000,
        seed=seed,
        num_margins=12 if quick else 40,
    )
    m = data["margins"]
    fams = ("batch_all (clustered)", "uniform")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True, sharey=True)
    for ax, fname in zip(axes, fams):
        for i, rule in enumerate(RULES):
            ax.plot(
                m,
                100 * data[f"{fname}/{rule}/disagreement"],
                color=f"C{i}",
                marker=".",
                label={
                    "same number": "same number (m_geo = m)",
                    "reference": "reference: boundaries meet at θ_ap = π/2",
                    "slope": "slope at π/2 (m_geo = m/2)",
                    "active_share": "equal share of active triplets",
                }[rule],
            )
        ax.set_xlabel("chord_sq margin m")
        ax.set_title(f"{fname} triplets, d = {dim}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("triplets active under one loss only (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "Hinge active-set disagreement between chord_sq (margin m) and geodesic (matched margin)",
        fontsize=10,
    )
    return save_figure(
        fig,
        out_dir,
        "margin_matching",
        data=data,
        seed=seed,
        parameters={"dim": dim, "rules": list(RULES), "within_angle": WITHIN_ANGLE},
    )
