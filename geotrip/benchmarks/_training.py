r"""Training throughput: the vmapped-over-seeds runner vs a sequential loop vs
pytorch-metric-learning.

One configuration for every contender: an MLP ``32 -> 64 -> 16`` ending in L2
normalisation, Adam, batch-hard mining over PK batches of ``P x K = 8 x 4 = 32`` points of
synthetic Gaussian clusters (8 classes), the hinge triplet loss on the (non-squared)
``chord`` distance with margin 0.2, in float32. Measured, in one run:

(a) ``vmapped``: :func:`geotrip.train_runs` with ``R`` seeds in one ``vmap`` + ``lax.scan``
    batch; training steps per second summed over the runs (``R * steps / time``);
(b) ``sequential``: the same runner with one seed, called ``R_seq`` times in a Python loop
    (one compilation, reused); steps per second;
(c) ``pml``: pytorch-metric-learning's ``TripletMarginLoss(margin=0.2)`` (its default
    ``LpDistance``: the non-squared chord distance between normalised embeddings) with
    ``BatchHardMiner``, a ``torch.nn`` MLP of the same sizes and Adam, one run (torch's
    default threads); skipped with a message when torch or pytorch-metric-learning is absent.

Each timing excludes compilation (a warm-up call with the same shapes first). The JAX
runners also evaluate the embedding metrics once at the start and once at the end (as in
every experiment); the ratios are reported as measured.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

NAME = "training"
DESCRIPTION = (
    "training steps/s: vmapped-over-seeds runner vs sequential single runs "
    "vs pytorch-metric-learning"
)

SIZES = dict(
    d_in=32, hidden=64, embed=16, p=8, k=4, n_classes=8, cluster_size=64, margin=0.2, lr=1e-3
)


def _jax_setup(steps):
    import geotrip as gt

    data = gt.make_task_data(
        "clusters",
        seed=0,
        n_classes=SIZES["n_classes"],
        cluster_size=SIZES["cluster_size"],
        dim=SIZES["d_in"],
        dtype="float32",
    )
    setup = gt.TrainSetup(
        distances=("chord",),
        strategy="batch_hard",
        steps=steps,
        eval_every=steps,
        p=SIZES["p"],
        k=SIZES["k"],
        hidden=(SIZES["hidden"],),
        embed_dim=SIZES["embed"],
    )
    return gt, data, setup


def _jax_time(runs: int, steps: int, repeats: int = 1) -> float:
    gt, data, setup = _jax_setup(steps)
    kw = dict(
        lrs=np.full(runs, SIZES["lr"]),
        margins=np.full(runs, SIZES["margin"]),
        spreads=np.full(runs, math.inf),
        dtype="float32",
    )
    gt.train_runs("clusters", setup, data, seeds=np.arange(runs), **kw)  # warm-up / compile
    t0 = time.perf_counter()
    for r in range(repeats):
        h = gt.train_runs("clusters", setup, data, seeds=np.arange(r * runs, (r + 1) * runs), **kw)
    dt = time.perf_counter() - t0
    assert np.all(np.isfinite(h["loss"][:, 1:]))
    return dt


def pml_steps_per_second(steps: int, *, seed: int = 0) -> dict:
    """Steps/s of one pytorch-metric-learning run (same model, batch, loss, miner, optimiser)."""
    import torch
    from pytorch_metric_learning import losses, miners

    import geotrip as gt

    data = gt.make_task_data(
        "clusters",
        seed=0,
        n_classes=SIZES["n_classes"],
        cluster_size=SIZES["cluster_size"],
        dim=SIZES["d_in"],
        dtype="float32",
    )
    x = torch.from_numpy(np.array(data.x_train))  # a writable copy
    y = np.asarray(data.y_train)
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    yt = torch.from_numpy(y.astype(np.int64))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(SIZES["d_in"], SIZES["hidden"]),
        torch.nn.ReLU(),
        torch.nn.Linear(SIZES["hidden"], SIZES["embed"]),
    )
    opt = torch.optim.Adam(model.parameters(), lr=SIZES["lr"])
    loss_fn = losses.TripletMarginLoss(margin=SIZES["margin"])
    miner = miners.BatchHardMiner()

    def batch():
        cls = rng.choice(len(by_class), SIZES["p"], replace=False)
        return np.concatenate([rng.choice(by_class[c], SIZES["k"], replace=False) for c in cls])

    def step():
        idx = torch.from_numpy(batch())
        emb = torch.nn.functional.normalize(model(x[idx]), dim=1)
        lab = yt[idx]
        loss = loss_fn(emb, lab, miner(emb, lab))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    for _ in range(10):  # warm-up
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        last = step()
    dt = time.perf_counter() - t0
    return {
        "steps": steps,
        "seconds": dt,
        "steps_per_s": steps / dt,
        "final_loss": float(last.detach()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def pml_skip_reason() -> str | None:
    """``None`` when torch and pytorch-metric-learning import, else the message explaining
    the skip."""
    try:
        import pytorch_metric_learning  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        name = getattr(exc, "name", None) or "torch"
        return (
            f"pytorch-metric-learning peer skipped: {name} is not installed "
            "(pip install torch==2.13.0 pytorch-metric-learning)"
        )
    return None


def run(*, quick: bool = False, log: Callable[[str], None] = print) -> dict:
    steps = 100 if quick else 500
    runs = 16 if quick else 64
    n_seq = 4 if quick else 8
    out: dict = {
        "config": dict(
            SIZES,
            steps=steps,
            vmapped_runs=runs,
            sequential_runs=n_seq,
            distance="chord",
            miner="batch_hard",
            optimizer="adam",
            dtype="float32",
        )
    }
    dt = _jax_time(runs, steps)
    out["vmapped"] = {"runs": runs, "steps": steps, "seconds": dt, "steps_per_s": runs * steps / dt}
    log(
        f"training: vmapped {runs} runs x {steps} steps: "
        f"{runs * steps / dt:,.0f} steps/s ({dt:.2f} s)"
    )
    dt1 = _jax_time(1, steps, repeats=n_seq)
    out["sequential"] = {
        "runs": n_seq,
        "steps": steps,
        "seconds": dt1,
        "steps_per_s": n_seq * steps / dt1,
    }
    log(
        f"training: sequential {n_seq} single runs x {steps} steps: "
        f"{n_seq * steps / dt1:,.0f} steps/s ({dt1:.2f} s)"
    )
    ratios = {
        "vmapped_over_sequential": out["vmapped"]["steps_per_s"] / out["sequential"]["steps_per_s"]
    }
    msg = pml_skip_reason()
    if msg is not None:
        out["pml"] = {"skipped": msg}
        log("training: " + msg)
    else:
        out["pml"] = pml_steps_per_second(steps)
        log(
            f"training: pytorch-metric-learning 1 run x {steps} steps: "
            f"{out['pml']['steps_per_s']:,.0f} steps/s"
        )
        ratios["vmapped_over_pml"] = out["vmapped"]["steps_per_s"] / out["pml"]["steps_per_s"]
        ratios["sequential_over_pml"] = out["sequential"]["steps_per_s"] / out["pml"]["steps_per_s"]
    out["ratios"] = ratios
    log("training: ratios " + ", ".join(f"{k}={v:.2f}" for k, v in ratios.items()))
    return out
