"""Writing an analysis: ``report.json``, a self-contained ``report.html`` and the figures.

Everything is rendered in memory first (figures with matplotlib's Agg canvas, no pyplot),
then each file is written through a temporary file and ``os.replace``: a failure leaves
no partial file behind. The HTML embeds every figure as a base64 PNG ``data:`` URI, so
it opens anywhere as one file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any

from ._io import atomic_write_bytes, atomic_write_text, jsonable

__all__ = ["write_report", "render_figures", "render_html"]

FIGURES = ("pair_angles", "active_sets", "gradient_angles")


def _fig(width=7.0, height=3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _pair_angles(report):
    fig = _fig()
    ax = fig.add_subplot(1, 1, 1)
    h = report["angles"]["histogram_deg"]
    edges = h["edges"]
    for name, color in (("within_class", "tab:blue"), ("between_class", "tab:orange")):
        counts = h[name]
        tot = max(1, sum(counts))
        ax.stairs([c / tot for c in counts], edges, label=name.replace("_", " "), color=color)
    c = report["collapse"]
    ax.set_xlabel("pair angle (degrees)")
    ax.set_ylabel("share of pairs")
    ax.set_xlim(0, 180)
    ax.set_title(
        f"{report['n_points']} points, d = {report['dim']}, {report['n_classes']} classes: "
        f"mean cos {c['mean_pairwise_cosine']:.3f}, erank {c['effective_rank']:.1f}"
        + (" (COLLAPSED)" if c["is_collapsed"] else ""),
        fontsize=9,
    )
    ax.legend(fontsize=8)
    return fig


def _active_sets(report):
    fig = _fig()
    ax = fig.add_subplot(1, 1, 1)
    trip = report["triplets"]
    keys = (
        "active_A",
        "active_B_same_number",
        "active_B_matched",
        "one_only_same_number",
        "one_only_matched",
    )
    m = report["margins"]
    labels = (
        f"active {m['distance']} {m['A']:g}",
        f"active {m['compare']} {m['B_same_number']:g} (same number)",
        f"active {m['compare']} {m['B_matched']:.3g} ({m['rule']})",
        "one only, same number",
        "one only, matched",
    )
    names = list(trip)
    width = 0.8 / len(keys)
    for i, (k, lab) in enumerate(zip(keys, labels, strict=True)):
        vals = [trip[s][k] or 0.0 for s in names]
        ax.bar([j + (i - 2) * width for j in range(len(names))], vals, width, label=lab)
    ax.set_xticks(range(len(names)), [f"{s}\n({trip[s]['count']:,})" for s in names], fontsize=8)
    ax.set_ylabel("share of valid triplets")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("hinge active sets per mining strategy (count of valid triplets)", fontsize=9)
    return fig


def _gradient_angles(report):
    fig = _fig(8.0, 3.6)
    ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    trip = report["triplets"]
    names = list(trip)
    for j, s in enumerate(names):
        for off, key, color in (
            (-0.15, "riemannian/joint", "tab:blue"),
            (0.15, "raw/joint", "tab:red"),
        ):
            q = trip[s]["gradient_angles_deg"]["matched"][key]
            if q["n"] == 0:
                continue
            x = j + off
            ax.vlines(x, q["p5"], q["p95"], color=color, lw=1)
            ax.vlines(x, q["p25"], q["p75"], color=color, lw=6)
            ax.plot([x], [q["p50"]], "o", color="white", ms=3, mec=color)
        b = trip[s]["batch_gradient_angle_deg"]["matched"]
        b = b.get("p50") if isinstance(b, dict) else b
        if b is not None:
            ax.plot([j], [b], "k*", ms=8)
        for off, key, color in ((-0.15, "A", "tab:green"), (0.15, "B", "tab:purple")):
            q = trip[s]["push_pull_ratio"][key]
            if q["n"] == 0 or q["p5"] is None:
                continue
            lo, mid, hi = (min(max(q[k], 1e-3), 1e3) for k in ("p5", "p50", "p95"))
            bx.vlines(j + off, lo, hi, color=color, lw=4)
            bx.plot([j + off], [mid], "o", color="white", ms=3, mec=color)
    m = report["margins"]
    ax.set_xticks(range(len(names)), names, fontsize=7, rotation=25)
    ax.set_ylabel("angle between the two gradients (deg)")
    ax.set_title(
        f"{m['distance']} {m['A']:g} vs {m['compare']} {m['B_matched']:.3g}: per triplet\n"
        "(blue Riemannian, red raw; 5-25-50-75-95 %), * batch",
        fontsize=8,
    )
    bx.set_yscale("log")
    bx.axhline(1.0, color="gray", lw=0.8)
    bx.set_xticks(range(len(names)), names, fontsize=7, rotation=25)
    bx.set_ylabel("push/pull weight g'(θ_an)/g'(θ_ap)")
    bx.set_title(f"green {m['distance']}, purple {m['compare']} (5-50-95 %)", fontsize=8)
    return fig


_RENDER = {
    "pair_angles": _pair_angles,
    "active_sets": _active_sets,
    "gradient_angles": _gradient_angles,
}


def render_figures(report: dict[str, Any], formats=("png", "pdf")) -> dict[str, dict[str, bytes]]:
    """``{figure name: {format: bytes}}`` for the figures of :data:`FIGURES`."""
    out = {}
    for name in FIGURES:
        fig = _RENDER[name](report)
        out[name] = {}
        for fmt in formats:
            buf = io.BytesIO()
            meta = {"Creator": "geotrip analyze"} if fmt == "pdf" else {"Software": "geotrip"}
            fig.savefig(buf, format=fmt, dpi=120, metadata=meta)
            out[name][fmt] = buf.getvalue()
    return out


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(rows, header=None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header) if header else ""
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{'<tr>' + head + '</tr>' if head else ''}{body}</table>"


def render_html(report: dict[str, Any], pngs: dict[str, bytes]) -> str:
    """The self-contained HTML page: tables of the report and every figure inline."""
    c, m, nr = report["collapse"], report["margins"], report["norms"]
    summary = [
        ("points (kept)", report["n_points"]),
        ("dimension", report["dim"]),
        ("classes", report["n_classes"]),
        ("norms min / mean / max", f"{nr['min']:.4g} / {nr['mean']:.4g} / {nr['max']:.4g}"),
        ("mode", report["mode"]),
        ("evaluation points", report["evaluation_points"]),
        ("Recall@1 (leave-one-out)", report["recall_at_1"]),
        ("MAP@R", report["map_at_r"]),
    ] + [(k.replace("_", " "), v) for k, v in c.items()]
    margins = [
        (f"A: {m['distance']}", m["A"]),
        (f"B, same number: {m['compare']}", m["B_same_number"]),
        (f"B, matched ({m['rule']}): {m['compare']}", m["B_matched"]),
    ]
    cols = (
        "strategy",
        "count",
        "active A",
        "active B same",
        "active B matched",
        "one only (same)",
        "one only (matched)",
        "Riem. angle p50 (deg, matched)",
        "raw angle p50 (deg, matched)",
        "batch angle (deg, matched)",
    )
    rows = []
    for s, t in report["triplets"].items():
        ga = t["gradient_angles_deg"]["matched"]
        b = t["batch_gradient_angle_deg"]["matched"]
        b = b.get("p50") if isinstance(b, dict) else b
        shares = ("active_A", "active_B_same_number", "active_B_matched")
        shares += ("one_only_same_number", "one_only_matched")
        rows.append(
            (s, f"{t['count']:,}")
            + tuple("-" if t[k] is None else f"{100 * t[k]:.2f} %" for k in shares)
            + (ga["riemannian/joint"]["p50"], ga["raw/joint"]["p50"], b)
        )
    imgs = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(data).decode("ascii")}"><figcaption>{html.escape(name)}</figcaption></figure>'
        for name, data in pngs.items()
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.get("notes", []))
    prov = html.escape(json.dumps(report.get("provenance", {}), indent=1))
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>geotrip analyze report</title><style>{style}</style></head><body>"
        "<h1>geotrip analyze</h1>"
        f"<h2>Embeddings</h2>{_table(summary)}"
        f"<h2>Margins</h2>{_table(margins)}"
        f"<h2>Triplets (shares of the valid triplets of each strategy)</h2>{_table(rows, cols)}"
        f"<h2>Figures</h2>{imgs}"
        f"<h2>Notes</h2><ul>{notes or '<li>none</li>'}</ul>"
        f"<h2>Provenance</h2><pre>{prov}</pre>"
        "</body></html>\n"
    )


def write_report(
    report: dict[str, Any], out: str | os.PathLike, *, figures: bool = True
) -> dict[str, Path]:
    """Write ``report.json``, ``report.html`` and the figures (PNG + PDF) into folder ``out``.

    Renders everything in memory, then writes each file atomically (temporary file +
    ``os.replace``). ``out`` is created if missing.

    Returns:
      ``{name: path}`` of the files written.

    Raises:
      ValueError: if ``out`` exists and is not a folder.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    report = jsonable(report)
    text = json.dumps(report, indent=1, allow_nan=False)
    figs = render_figures(report) if figures else {}
    page = render_html(report, {k: v["png"] for k, v in figs.items()})
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, by_fmt in figs.items():
        for fmt, data in by_fmt.items():
            written[f"{name}.{fmt}"] = atomic_write_bytes(out / f"{name}.{fmt}", data)
    written["report.json"] = atomic_write_text(out / "report.json", text + "\n")
    written["report.html"] = atomic_write_text(out / "report.html", page)
    return written
