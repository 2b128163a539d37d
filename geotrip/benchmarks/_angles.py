r"""Throughput of the gradient-angle computation (``chord_sq`` vs ``geodesic``, margins 0.2/0.2).

For :math:`d \in \{3, 128, 1024\}` in float32, configurations per second of

(a) :func:`geotrip.gradient_angles_closed_form` (jit, one fused pass + O(1) per triplet),
(b) :func:`geotrip.gradient_angles` (jit, ``method="autodiff"``; its default, the closed
    form, is timed too: ``default``),
(c) a NumPy implementation of the same closed form (:func:`numpy_closed_form`),
(d) a PyTorch autograd implementation (:func:`torch_autograd`), only when torch is installed,
(e) the memory-bandwidth limit for reading the inputs :math:`a, p, n`
    (:math:`12d` bytes per configuration), from a large NumPy array copy into a
    preallocated buffer timed in the same run (bandwidth = bytes read + written per second).

Every timing is the best of several repetitions after a warm-up (compilation excluded). At
each d the closed form, the default path and the data pass alone are also timed on the first
1,000 configurations (``small``: fixed per-call costs, inputs in cache), as ratios to the
same read limit.
The outputs of (a), (b), (c), (d) are checked against each other on the timed data.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

NAME = "angles"
DESCRIPTION = (
    "gradient-angle throughput: closed form, autodiff, NumPy, PyTorch, read-bandwidth limit"
)

DIMS = (3, 128, 1024)
KEYS = (
    "raw/anchor",
    "raw/positive",
    "raw/negative",
    "raw/joint",
    "riemannian/anchor",
    "riemannian/positive",
    "riemannian/negative",
    "riemannian/joint",
)


def _best(fn: Callable[[], object], *, reps: int, min_time: float = 0.0) -> float:
    fn()  # warm-up (and compilation)
    ts = []
    t_all = time.perf_counter()
    while len(ts) < reps or (time.perf_counter() - t_all < min_time and len(ts) < 50):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def copy_bandwidth(nbytes: int, *, reps: int = 5) -> float:
    """Bytes moved per second (read + write) by ``np.copyto`` of ``nbytes`` into a preallocated
    buffer."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    t = _best(lambda: np.copyto(dst, src), reps=reps)
    return 2 * src.nbytes / t


# ---------------------------------------------------------------------------------------
# (c) NumPy: the closed form of geotrip.core._closed_form, for chord_sq (A) vs geodesic (B)
# ---------------------------------------------------------------------------------------


MARGINS = (0.2, 0.2)  # every path of the suite, NumPy and torch included


def numpy_closed_form(a, p, n, margins=MARGINS):
    """NumPy port of :func:`geotrip.gradient_angles_closed_form` for
    ``("chord_sq", "geodesic")``."""
    mA, mB = margins
    dmp, dpp, dmn, dpn = p - a, p + a, n - a, n + a
    s = lambda x, y: np.einsum("ij,ij->i", x, y)
    qmp, qpp, qmn, qpn = s(dmp, dmp), s(dpp, dpp), s(dmn, dmn), s(dpn, dpn)
    pos_p, pos_n = qmp <= qpp, qmn <= qpn
    sp, sn = np.where(pos_p, 1.0, -1.0).astype(a.dtype), np.where(pos_n, 1.0, -1.0).astype(a.dtype)
    dp_ = np.where(pos_p[:, None], dmp, dpp)
    dn_ = np.where(pos_n[:, None], dmn, dpn)
    g11, g22, g12 = np.where(pos_p, qmp, qpp), np.where(pos_n, qmn, qpn), s(dp_, dn_)
    adp, adn = s(a, dp_), s(a, dn_)
    rp, rn = adp + sp * g11 / 2, adn + sn * g22 / 2
    g12 = g12 - rn * adp - rp * adn + rp * rn
    g01, g02 = -sp * g11 / 2, -sn * g22 / 2
    sq0 = lambda q: np.sqrt(np.maximum(q, 0))
    t_ap = 2 * np.arctan2(sq0(np.where(pos_p, qmp, 4 - qpp)), sq0(np.where(pos_p, 4 - qmp, qpp)))
    t_an = 2 * np.arctan2(sq0(np.where(pos_n, qmn, 4 - qpn)), sq0(np.where(pos_n, 4 - qmn, qpn)))

    def dot(c, e):
        return (
            c[0] * e[0]
            + g11 * c[1] * e[1]
            + g22 * c[2] * e[2]
            + g01 * (c[0] * e[1] + c[1] * e[0])
            + g02 * (c[0] * e[2] + c[2] * e[0])
            + g12 * (c[1] * e[2] + c[2] * e[1])
        )

    def div0(c, nrm):
        inv = np.divide(1, nrm, out=np.zeros_like(nrm), where=nrm > 0)
        return [x * inv for x in c]

    one, zero = np.ones_like(g11), np.zeros_like(g11)
    sin_ap, sin_an = sq0(g11 * (1 - g11 / 4)), sq0(g22 * (1 - g22 / 4))
    u_ap = div0([-g01, one, zero], sin_ap)
    u_an = div0([-g02, zero, one], sin_an)
    u_pa = div0([g11 / 2, -sp * (1 - g11 / 2), zero], sin_ap)
    u_na = div0([g22 / 2, zero, -sn * (1 - g22 / 2)], sin_an)
    sA = ((4 * np.sin(t_ap / 2) ** 2 - 4 * np.sin(t_an / 2) ** 2 + mA) > 0).astype(a.dtype)
    sB = ((t_ap - t_an + mB) > 0).astype(a.dtype)
    wpA, wnA = sA * 2 * np.sin(t_ap), sA * 2 * np.sin(t_an)
    riemA = (
        [wnA * y - wpA * x for x, y in zip(u_ap, u_an)],
        [-wpA * x for x in u_pa],
        [wnA * x for x in u_na],
    )
    riemB = (
        [sB * (y - x) for x, y in zip(u_ap, u_an)],
        [-sB * x for x in u_pa],
        [sB * x for x in u_na],
    )
    rawA = (
        [2 * sA * (sn - sp), -2 * sA, 2 * sA],
        [2 * sA * (sp - 1), 2 * sA, zero],
        [2 * sA * (1 - sn), zero, -2 * sA],
    )

    def angle(u, v):
        nu = sq0(sum(dot(x, x) for x in u))
        nv = sq0(sum(dot(x, x) for x in v))
        uh = [div0(x, nu) for x in u]
        vh = [div0(x, nv) for x in v]
        dm = sq0(
            sum(
                dot([i - j for i, j in zip(x, y)], [i - j for i, j in zip(x, y)])
                for x, y in zip(uh, vh)
            )
        )
        dp = sq0(
            sum(
                dot([i + j for i, j in zip(x, y)], [i + j for i, j in zip(x, y)])
                for x, y in zip(uh, vh)
            )
        )
        th = 2 * np.arctan2(dm, dp)
        return np.where((nu > 0) & (nv > 0), th, np.nan)

    out = {}
    for kind, A, B in (("raw", rawA, riemB), ("riemannian", riemA, riemB)):
        for i, block in enumerate(("anchor", "positive", "negative")):
            out[f"{kind}/{block}"] = angle((A[i],), (B[i],))
        out[f"{kind}/joint"] = angle(A, B)
    return out


# ---------------------------------------------------------------------------------------
# (d) PyTorch autograd (optional)
# ---------------------------------------------------------------------------------------


def torch_autograd(torch, a, p, n, margins=MARGINS):
    """Raw and Riemannian gradients by ``torch.autograd`` (chord_sq vs geodesic), then the eight
    angles.

    The geodesic uses Kahan's angle :math:`2\\,\\mathrm{atan2}(\\|a-p\\|, \\|a+p\\|)`, as geotrip
    does.
    """
    mA, mB = margins

    def grads(loss_fn):
        x = [t.detach().requires_grad_(True) for t in (a, p, n)]
        loss = loss_fn(*x).sum()
        return torch.autograd.grad(loss, x)

    def chord_sq(a_, p_, n_):
        return torch.relu(((a_ - p_) ** 2).sum(-1) - ((a_ - n_) ** 2).sum(-1) + mA)

    def ang(x, y):
        return 2 * torch.atan2(
            torch.linalg.vector_norm(x - y, dim=-1), torch.linalg.vector_norm(x + y, dim=-1)
        )

    def geodesic(a_, p_, n_):
        return torch.relu(ang(a_, p_) - ang(a_, n_) + mB)

    gA, gB = grads(chord_sq), grads(geodesic)
    proj = lambda x, g: g - (x * g).sum(-1, keepdim=True) * x

    def vangle(u, v):
        nu, nv = torch.linalg.vector_norm(u, dim=-1), torch.linalg.vector_norm(v, dim=-1)
        ok = (nu > 0) & (nv > 0)
        uh = u / torch.where(ok, nu, torch.ones_like(nu))[..., None]
        vh = v / torch.where(ok, nv, torch.ones_like(nv))[..., None]
        th = ang(uh, vh)
        return torch.where(ok, th, torch.full_like(th, float("nan")))

    out = {}
    with torch.no_grad():
        for kind in ("raw", "riemannian"):
            A = gA if kind == "raw" else tuple(proj(x, g) for x, g in zip((a, p, n), gA))
            B = gB if kind == "raw" else tuple(proj(x, g) for x, g in zip((a, p, n), gB))
            for i, block in enumerate(("anchor", "positive", "negative")):
                out[f"{kind}/{block}"] = vangle(A[i], B[i])
            out[f"{kind}/joint"] = vangle(torch.cat(A, -1), torch.cat(B, -1))
    return out


def _agree(ref, got, *, atol, max_share=0.005):
    """Agreement of two angle dicts where both are defined: the largest |difference| (radians),
    the share of values off by more than ``atol`` (float32 angles between nearly cancelling
    gradients are ill-conditioned, so a few may be), and whether that share is <= ``max_share``."""
    worst, both, off = 0.0, 1.0, 0.0
    for k in KEYS:
        r, g = np.asarray(ref[k], np.float64), np.asarray(got[k], np.float64)
        ok = np.isfinite(r) & np.isfinite(g)
        both = min(both, float(ok.mean()))
        if ok.any():
            diff = np.abs(r[ok] - g[ok])
            worst = max(worst, float(diff.max()))
            off = max(off, float((diff > atol).mean()))
    return {
        "max_abs_diff_rad": worst,
        "share_off_by_more_than_atol": off,
        "atol_rad": atol,
        "both_defined_min_share": both,
        "within_tolerance": off <= max_share,
    }


def run(
    *, quick: bool = False, log: Callable[[str], None] = print, sizes: dict | None = None
) -> dict:
    """Run the suite. ``sizes`` overrides the problem sizes (keys: elems, n_cap, elems_ad,
    copy_bytes, reps, dims; used by the tests to run it in seconds)."""
    import jax
    import jax.numpy as jnp

    import geotrip as gt

    try:
        import torch

        torch.set_num_threads(max(1, __import__("os").cpu_count() or 1))
    except ImportError:
        torch = None
        log(
            "torch is not installed: skipping the PyTorch peer "
            "(pip install 'geotrip[torch]' or torch==2.13.0)"
        )

    elems = 2**22 if quick else 2**24  # N * d per input array for (a), (c): beyond the caches
    n_cap = 2**18 if quick else 2**20  # at most this many configurations (d = 3)
    elems_ad = 2**18 if quick else 2**21  # smaller for the slower autodiff and torch paths
    reps = 3 if quick else 5
    small_n = 1000  # issue 11's second size
    copy_bytes = 2**28  # 256 MiB: far beyond the caches
    if sizes:
        unknown = set(sizes) - {
            "elems",
            "n_cap",
            "elems_ad",
            "copy_bytes",
            "reps",
            "dims",
            "small_n",
        }
        if unknown:
            raise ValueError(f"unknown size key(s) {sorted(unknown)}")
        elems = sizes.get("elems", elems)
        n_cap = sizes.get("n_cap", n_cap)
        elems_ad = sizes.get("elems_ad", elems_ad)
        copy_bytes = sizes.get("copy_bytes", copy_bytes)
        reps = sizes.get("reps", reps)
        small_n = sizes.get("small_n", small_n)
    bw = copy_bandwidth(copy_bytes, reps=reps)
    log(
        f"copy bandwidth: {bw / 1e9:.2f} GB/s "
        f"(read + write, {copy_bytes / 2**20:.0f} MiB np.copyto)"
    )
    m = MARGINS  # explicit: the functions' default matches B's margin to A's (0.2 -> 0.1)
    closed = jax.jit(lambda a, p, n: gt.gradient_angles_closed_form(a, p, n, margins=m))
    from ..core._closed_form import _gram_sums

    # the closed form's single pass over the data alone (the five fused sums of its blocked
    # path), to show where the time goes: the rest is O(1) work per configuration
    one_pass = jax.jit(
        lambda a, p, n: (lambda B: (B[0].g11, B[0].g22, B[0].g12, B[1], B[2]))(
            _gram_sums(a, p, n, fast=True)
        )
    )
    autodiff = jax.jit(lambda a, p, n: gt.gradient_angles(a, p, n, margins=m, method="autodiff"))
    default = jax.jit(lambda a, p, n: gt.gradient_angles(a, p, n, margins=m))  # default method
    rows = []
    for d in (sizes or {}).get("dims", DIMS):
        # issue 11's size at d = 128 (full run); else a fixed number of elements
        N = 200_000 if (d == 128 and not quick and not sizes) else min(n_cap, elems // d)
        Nad = min(N, max(1024, elems_ad // d))
        key = jax.random.key(d)
        a, p, n = gt.uniform_sphere(key, (3, N), d, dtype=jnp.float32)
        jax.block_until_ready(a)
        limit = bw / (12 * d)  # configurations per second whose inputs can be read
        t_cf = _best(lambda: jax.block_until_ready(closed(a, p, n)), reps=reps)
        t_pass = _best(lambda: jax.block_until_ready(one_pass(a, p, n)), reps=reps)
        aa, pp, nn = a[:Nad], p[:Nad], n[:Nad]
        t_ad = _best(lambda: jax.block_until_ready(autodiff(aa, pp, nn)), reps=max(2, reps - 2))
        an, pn, nnp = (np.asarray(x) for x in (a, p, n))
        t_np = _best(lambda: numpy_closed_form(an, pn, nnp), reps=max(2, reps - 2))
        row = {
            "dim": d,
            "dtype": "float32",
            "N": N,
            "N_autodiff_torch": Nad,
            "bytes_per_config": 12 * d,
            "configs_per_s": {
                "closed_form": N / t_cf,
                "autodiff": Nad / t_ad,
                "numpy": N / t_np,
                "closed_form_data_pass_only": N / t_pass,
                "read_bandwidth_limit": limit,
            },
        }
        ref_cf = closed(aa, pp, nn)
        row["agreement"] = {
            "autodiff_vs_closed_form": _agree(autodiff(aa, pp, nn), ref_cf, atol=1e-3),
            "numpy_vs_closed_form": _agree(
                numpy_closed_form(an[:Nad], pn[:Nad], nnp[:Nad]), ref_cf, atol=1e-3
            ),
        }
        if torch is not None:
            ta, tp, tn = (torch.from_numpy(np.array(x)) for x in (aa, pp, nn))
            t_th = _best(lambda: torch_autograd(torch, ta, tp, tn), reps=max(2, reps - 2))
            row["configs_per_s"]["torch"] = Nad / t_th
            row["agreement"]["torch_vs_closed_form"] = _agree(
                {k: v.numpy() for k, v in torch_autograd(torch, ta, tp, tn).items()},
                ref_cf,
                atol=1e-3,
            )
        if N >= small_n:  # the same kernels on a cache-sized input (fixed costs per call)
            sa, sp_, sn = a[:small_n], p[:small_n], n[:small_n]
            few = lambda f: _best(
                lambda: jax.block_until_ready(f(sa, sp_, sn)), reps=reps, min_time=0.2
            )
            row["small"] = {
                "N": small_n,
                "closed_form_over_read_limit": small_n / few(closed) / limit,
                "default_over_read_limit": small_n / few(default) / limit,
                "data_pass_over_read_limit": small_n / few(one_pass) / limit,
            }
        row["configs_per_s"]["default"] = N / _best(
            lambda: jax.block_until_ready(default(a, p, n)), reps=reps
        )
        c = row["configs_per_s"]
        row["ratios"] = {
            "closed_form_over_read_limit": c["closed_form"] / limit,
            "default_over_read_limit": c["default"] / limit,
            "data_pass_over_read_limit": c["closed_form_data_pass_only"] / limit,
            "closed_form_over_autodiff": c["closed_form"] / c["autodiff"],
            "closed_form_over_numpy": c["closed_form"] / c["numpy"],
        }
        if "torch" in c:
            row["ratios"]["closed_form_over_torch"] = c["closed_form"] / c["torch"]
            row["ratios"]["autodiff_over_torch"] = c["autodiff"] / c["torch"]
        rows.append(row)
        msg = ", ".join(f"{k} {v:.3g}/s" for k, v in c.items())
        rat = ", ".join(f"{k} {v:.2f}" for k, v in row["ratios"].items())
        log(f"d={d:5d} N={N}: {msg}")
        log(f"        ratios: {rat}")
        if "small" in row:
            sm = ", ".join(f"{k} {v:.3g}" for k, v in row["small"].items())
            log(f"        N = {small_n}: {sm}")
    import os
    import platform

    return {
        "suite": NAME,
        "quick": quick,
        "pair": ["chord_sq", "geodesic"],
        "margins": list(MARGINS),
        "copy_bandwidth_bytes_per_s": bw,
        "torch": None if torch is None else torch.__version__,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "machine": platform.machine(),
        "rows": rows,
    }
