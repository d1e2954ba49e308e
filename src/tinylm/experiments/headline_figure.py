"""The front page's figure: what architecture buys (each architecture's best test score against the Kneser-Ney
n-gram model, per dataset) and what compute buys (the fitted compute-optimal loss of every architecture, per
dataset with scaling fits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from tinylm.experiments.figures import _save  # noqa: E402
from tinylm.experiments.results import MARK  # noqa: E402
from tinylm.experiments.scaling import Frontier  # noqa: E402
from tinylm.experiments.scaling_figure import draw_frontier  # noqa: E402
from tinylm.models.registry import color, model_names  # noqa: E402


def _architecture_panel(ax: plt.Axes, headline: dict[str, Any]) -> None:
    """Grouped bars: test log-likelihood of each architecture's best run minus the Kneser-Ney model's."""
    datasets = [ds for ds in headline["datasets"] if ds in headline["kneser_ney"] and len(headline["best"][ds]) > 1]
    models = [m for m in model_names() if any(m in headline["best"][ds] for ds in datasets)]
    width = 0.8 / max(len(models), 1)
    for j, model in enumerate(models):
        for i, ds in enumerate(datasets):
            cell = headline["best"][ds].get(model)
            if cell is None:
                continue
            gain = cell["test_loglik"] - headline["kneser_ney"][ds]["test_loglik"]
            bar = ax.bar(i + (j - (len(models) - 1) / 2) * width, gain, width, color=color(model))[0]
            if cell["still_improving"]:
                bar.set_hatch("//")
                bar.set_edgecolor("white")
    ax.axhline(0.0, color="black", ls="--", lw=1, label="Kneser-Ney n-gram")
    ax.set_xticks(range(len(datasets)), datasets)
    handles = [Patch(color=color(m), label=m) for m in models]
    if any(c["still_improving"] for ds in datasets for c in headline["best"][ds].values()):
        handles.append(Patch(facecolor="grey", hatch="//", edgecolor="white", label=f"{MARK} still improving"))
    ax.legend(handles=handles, loc="upper left", fontsize=8)
    ax.set(title="Architecture: the best run of each, on test",
           ylabel="log-likelihood above the Kneser-Ney n-gram's\n(nats/token; above 0: beats counting)")
    ax.grid(alpha=0.3, axis="y")


def _frontier_panel(ax: plt.Axes, ds: str, frontiers: list[Frontier], baselines: dict[str, Any]) -> None:
    """The fitted compute-optimal validation loss of every architecture on one dataset, with its band."""
    for f in frontiers:
        draw_frontier(ax, f)
    kn = baselines.get(ds, {}).get("valid_loglik")
    if isinstance(kn, (int, float)):
        ax.axhline(-kn, color="black", ls="--", lw=1, label=f"{baselines[ds]['order']}-gram Kneser-Ney (valid)")
    ax.set_xscale("log")
    ax.legend(loc="upper right", fontsize=7)
    ax.grid(alpha=0.3, which="both")
    ax.set(title=f"Compute: the best loss per FLOP on {ds} (fit, 95% band)",
           xlabel="training FLOPs C (log scale)", ylabel="validation loss (nats/token, lower is better)")


def headline_figure(headline: dict[str, Any], frontiers: dict[tuple[str, str], Frontier],
                    baselines: dict[str, Any], out: Path) -> Path:
    """headline.png: the architecture panel, then one compute panel per dataset with scaling fits."""
    fitted = list(dict.fromkeys(ds for ds, _ in frontiers))
    fig, axes = plt.subplots(1, 1 + len(fitted), figsize=(5.5 * (1 + len(fitted)), 4.6), squeeze=False)
    _architecture_panel(axes[0, 0], headline)
    for ax, ds in zip(axes[0, 1:], fitted):
        _frontier_panel(ax, ds, [f for (d, _), f in frontiers.items() if d == ds], baselines)
    fig.tight_layout()
    return _save(fig, out / "headline.png")
