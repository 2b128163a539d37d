"""``geotrip analyze``: diagnose a user's embeddings (or a worked example) with gt.analyze."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from . import CLIError, add_jax_options, check_out_dir

_STRATEGIES = ("batch_all", "batch_hard", "semihard", "hardest_negative", "easy", "random")


def register(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="diagnose your own embeddings: chord² vs geodesic, margins, mining, collapse",
        description=(
            "Read embeddings (.npy memory-mapped, .npz, .csv/.tsv) and labels, and report whether "
            "your triplet loss (--distance, --margin) and the alternative (--compare) disagree on "
            "them: hinge active sets with the same number or a matched margin, gradient angles, "
            "push-pull weights, collapse and retrieval metrics. Writes report.json, a "
            "self-contained report.html and the figures (PNG + PDF) into --out."
        ),
    )
    p.add_argument("--embeddings", type=Path, metavar="FILE", help=".npy, .npz, .csv or .tsv")
    p.add_argument("--labels", type=Path, metavar="FILE", help=".npy, .npz, .txt, .csv or .tsv")
    p.add_argument("--key", help="array name inside an .npz embeddings file")
    p.add_argument("--labels-key", help="array name inside an .npz labels file")
    p.add_argument(
        "--label-column",
        help="labels column (header name or 0-based index) of a CSV/TSV embeddings or labels file",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--distance", default="chord_sq", help="your loss's distance (chord_sq)")
    p.add_argument("--margin", type=float, default=0.2, help="your margin, in its units (0.2)")
    p.add_argument("--compare", default="geodesic", help="the alternative distance (geodesic)")
    p.add_argument("--match", default="slope", help="margin matching rule (slope)")
    p.add_argument(
        "--strategy",
        nargs="+",
        default=["batch_all", "batch_hard", "semihard"],
        choices=_STRATEGIES,
        help="mining strategies (default: batch_all batch_hard semihard)",
    )
    p.add_argument("--triplets", choices=("auto", "all", "batches"), default="auto")
    p.add_argument(
        "--batches",
        nargs=3,
        type=int,
        default=[8, 4, 100],
        metavar=("P", "K", "COUNT"),
        help="batches mode: COUNT batches of P classes x K points (8 4 100)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--drop-invalid", action="store_true", help="drop NaN/inf and zero rows")
    p.add_argument("--max-exact", type=int, default=3000, help="largest n for --triplets all")
    p.add_argument("--eval-points", type=int, default=4096, help="metric subset in batches mode")
    p.add_argument("--max-sample", type=int, default=100_000, help="triplets for the quantiles")
    p.add_argument("--no-figures", action="store_true", help="skip the figures (JSON + HTML only)")
    p.add_argument(
        "--example",
        action="store_true",
        help="train geotrip's digits MLP for a few seconds and analyse its embeddings",
    )
    p.add_argument("--example-steps", type=int, default=300, help="training steps of --example")
    add_jax_options(p)
    p.set_defaults(func=run)


def _check_args(args) -> None:
    check_out_dir(args.out, keep=False)  # a folder can be made and written; made when writing
    if args.example:
        if args.embeddings is not None or args.labels is not None:
            raise CLIError("--example trains its own embeddings: drop --embeddings/--labels")
        return
    if args.embeddings is None:
        raise CLIError("give --embeddings FILE (or --example)")
    if args.labels is None and args.label_column is None:
        raise CLIError("give --labels FILE, or --label-column for a CSV/TSV with a labels column")
    if args.margin < 0:
        raise CLIError(f"--margin must be >= 0, got {args.margin}")


def _column(v):
    return int(v) if v is not None and v.lstrip("-").isdigit() else v


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    import numpy as np

    import geotrip as gt

    from ..analysis._io import file_record

    t0 = time.perf_counter()
    inputs, extra = [], {}
    if args.example:
        X, y, extra = train_example(seed=args.seed, steps=args.example_steps)
    else:
        X, y_col = gt.load_embeddings(
            args.embeddings,
            key=args.key,
            label_column=_column(args.label_column) if args.labels is None else None,
        )
        if args.labels is not None:
            y = gt.load_labels(args.labels, key=args.labels_key, column=_column(args.label_column))
        else:
            y = y_col
        inputs = [file_record(args.embeddings)]
        if args.labels is not None:
            inputs.append(file_record(args.labels))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = _analyze(gt, X, y, args)
    for w in caught:  # one line each (the report's notes keep them too)
        print(f"geotrip analyze: warning: {w.message}", file=sys.stderr)
    report["provenance"] = gt.provenance(
        seed=args.seed,
        extra={
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"
        },
    )
    report["provenance"]["inputs"] = inputs
    report["provenance"]["seconds"] = round(time.perf_counter() - t0, 3)
    if extra:
        report["example"] = extra
    written = gt.write_report(report, args.out, figures=not args.no_figures)
    if args.example:
        from ..analysis._io import atomic_write_bytes

        for name, arr in (("embeddings.npy", np.asarray(X)), ("labels.npy", np.asarray(y))):
            import io

            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            written[name] = atomic_write_bytes(args.out / name, buf.getvalue())
    m = report["margins"]
    print(
        f"{report['n_points']} points, d = {report['dim']}, {report['n_classes']} classes "
        f"({report['mode']} triplets); {m['distance']} {m['A']:g} vs {m['compare']} "
        f"{m['B_same_number']:g} (same number) / {m['B_matched']:.4g} ({m['rule']})"
    )
    for s, t in report["triplets"].items():
        share = t["one_only_same_number"]
        share_m = t["one_only_matched"]
        print(
            f"  {s}: {t['count']:,} triplets; active under one hinge only: "
            f"{'-' if share is None else f'{100 * share:.1f}%'} (same number), "
            f"{'-' if share_m is None else f'{100 * share_m:.1f}%'} (matched)"
        )
    c = report["collapse"]
    print(
        f"  collapse: mean cos {c['mean_pairwise_cosine']:.3f}, erank {c['effective_rank']:.2f}, "
        f"collapsed {c['is_collapsed']}; Recall@1 {report['recall_at_1']:.3f}, "
        f"MAP@R {report['map_at_r']:.3f}"
    )
    print(f"wrote {len(written)} files to {args.out} ({time.perf_counter() - t0:.1f} s)")
    return 0


def _analyze(gt, X, y, args):
    return gt.analyze(
        X,
        y,
        distance=args.distance,
        margin=args.margin,
        compare=args.compare,
        match=args.match,
        strategies=tuple(args.strategy),
        triplets=args.triplets,
        batches=tuple(args.batches),
        seed=args.seed,
        drop_invalid=args.drop_invalid,
        max_exact=args.max_exact,
        eval_points=args.eval_points,
        max_sample=args.max_sample,
        progress=sys.stderr.isatty(),
    )


def train_example(*, seed: int = 0, steps: int = 300):
    """Train geotrip's digits MLP (64-64-16, batch-hard chord² 0.2, Adam) for ``steps`` steps.

    Data and split from :func:`geotrip.make_task_data` (``"digits"``); the loop is written
    here with the public pieces (:func:`geotrip.init_mlp`, :func:`geotrip.mlp_embed`,
    :func:`geotrip.sample_pk`, :func:`geotrip.mine_triplets`, :func:`geotrip.batch_loss`,
    optax Adam) because :func:`geotrip.train_runs` returns metrics, not the trained
    parameters. Returns ``(embeddings of the test split, labels, info)``. Falls back to synthetic
    clustered embeddings (:func:`geotrip.clustered_batch`) if the digits or the training
    pieces are unavailable, and says so in ``info``.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    import geotrip as gt

    key = jax.random.key(seed)
    try:
        import optax

        # the collapse experiments' data and split
        data = gt.make_task_data("digits", seed=seed, dtype=jnp.float32)
        xtr, ytr, table, counts = data.x_train, data.y_train, data.table, data.counts
        params = gt.init_mlp(jax.random.fold_in(key, 2), (64, 64, 16), dtype=jnp.float32)
        opt = optax.adam(1e-2)
        state = opt.init(params)

        def loss_fn(prm, xb, yb):
            E = gt.mlp_embed(prm, xb)
            t, ok = gt.mine_triplets(E, yb, strategy="batch_hard", distance="chord_sq", margin=0.2)
            return gt.batch_loss(E, t, distance="chord_sq", margin=0.2, mask=ok, reduction="mean")

        @jax.jit
        def step(prm, st, k):
            idx = gt.sample_pk(k, table, counts, p=8, k=4)
            loss, g = jax.value_and_grad(loss_fn)(prm, xtr[idx], ytr[idx])
            upd, st = opt.update(g, st, prm)
            return optax.apply_updates(prm, upd), st, loss

        t0 = time.perf_counter()
        for i in range(steps):
            params, state, loss = step(params, state, jax.random.fold_in(key, 100 + i))
        E = np.asarray(gt.mlp_embed(params, data.x_test))
        info = {
            "source": "digits MLP 64-64-16 (scikit-learn digits, gt.make_task_data), test split",
            "steps": steps,
            "final_batch_loss": float(loss),
            "train_seconds": round(time.perf_counter() - t0, 2),
            "loss": "chord_sq, margin 0.2, batch_hard, PK 8x4, Adam 1e-2",
        }
        y_test = np.asarray(data.y_test).astype(np.int64)
        return E, y_test, info | {"n": int(y_test.size)}
    except (ImportError, AttributeError, TypeError) as exc:
        print(f"geotrip analyze: digits training unavailable ({exc}); using synthetic clusters")
        X, yy = gt.clustered_batch(key, n_classes=10, per_class=40, dim=16, concentration=30.0)
        info = {"source": f"synthetic vMF clusters (fallback: {type(exc).__name__}: {exc})"}
        return np.asarray(X), np.asarray(yy).astype(np.int64), info
