"""The fair-learning figure: held-out Recall@1 and MAP@R per distance at its tuned setting.

:func:`plot_compare` draws it from the report of :func:`geotrip.run_compare` (``geotrip
compare`` calls it): per task, the mean over seeds with its 95% t interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._registry import save_figure


def plot_compare(report: Mapping[str, Any], out_dir, *, seed, parameters=None, name="compare"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(report["tasks"])
    fig, axes = plt.subplots(
        len(tasks), 2, figsize=(8, 2.8 * len(tasks)), squeeze=False, constrained_layout=True
    )
    data: dict[str, Any] = {}
    for i, task in enumerate(tasks):
        dists = list(report["tasks"][task]["distances"])
        for j, key in enumerate(("recall_at_1", "map_at_r")):
            ax = axes[i, j]
            e = [report["tasks"][task]["distances"][d][key] for d in dists]
            mean = np.array([x["mean"] for x in e])
            lo = np.array([x["ci95"][0] for x in e])
            hi = np.array([x["ci95"][1] for x in e])
            ax.errorbar(range(len(dists)), mean, yerr=[mean - lo, hi - mean], fmt="o", capsize=3)
            ax.set_xticks(range(len(dists)))
            ax.set_xticklabels(dists, fontsize=7)
            ax.set_title(f"{task}: held-out {key} (tuned; mean, 95% CI)", fontsize=8)
            ax.grid(alpha=0.3)
            data[f"{task}/{key}/mean"] = mean
            data[f"{task}/{key}/lo"] = lo
            data[f"{task}/{key}/hi"] = hi
    return save_figure(fig, out_dir, name, data=data, seed=seed, parameters=parameters)
