"""The scaling figure of a dataset: iso-FLOP parabolas (thin, one per budget) and the fitted compute frontiers with
their bootstrap bands (thick), one colour per architecture, with the Kneser-Ney and unigram levels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import math  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402

from tinylm.experiments.exact_math import logspace, polyval  # noqa: E402
from tinylm.experiments.figures import _save  # noqa: E402
from tinylm.experiments.results import ReportRow  # noqa: E402
from tinylm.experiments.scaling import Frontier  # noqa: E402
from tinylm.models.registry import color  # noqa: E402


def _parabolas(ax: plt.Axes, f: Frontier) -> None:
    for iso in f.isoflops:
        ax.scatter(iso.params, iso.losses, color=color(f.model), s=12, alpha=0.7)
        if iso.coeffs is not None:
            x = logspace(math.log10(min(iso.params)), math.log10(max(iso.params)), 50)
            ax.plot(x, [polyval(iso.coeffs, math.log10(n)) for n in x], color=color(f.model), lw=0.8,
                    ls=":" if iso.under_sampled else "-")
        if not iso.under_sampled:
            ax.scatter([iso.n_star], [iso.l_star], color=color(f.model), marker="*", s=60, edgecolor="black", lw=0.5)


def draw_frontier(ax: plt.Axes, f: Frontier) -> None:
    """A frontier on L*(C) axes: its optima (stars), the fitted law and its 95% band."""
    usable = [iso for iso in f.isoflops if not iso.under_sampled]
    ax.scatter([iso.budget for iso in usable], [iso.l_star for iso in usable], color=color(f.model), marker="*",
               s=60, edgecolor="black", lw=0.5, zorder=3)
    if f.law is None:
        return
    grid = logspace(math.log10(min(f.budgets)) - 0.5, math.log10(max(f.budgets)) + 0.5, 100)
    if f.samples:
        lo, hi = f.band(grid)
        ax.fill_between(grid, lo, hi, color=color(f.model), alpha=0.2, lw=0)
    e, a, alpha = f.law
    ax.plot(grid, [f.loss(c) for c in grid], color=color(f.model), lw=2.5,
            label=f"{f.model}: {e:.2f} + {a:.2g}·C^-{alpha:.2f}")


def _other_runs(ax: plt.Axes, others: list[ReportRow]) -> None:
    """Runs of the same architectures outside the scaling profile (the headline and GPU profiles' runs) as points
    at their training FLOPs: where a larger budget on the same data landed beside the fitted law."""
    for on_gpu, marker in ((False, "o"), (True, "s")):
        for model in dict.fromkeys(r.model for r in others):
            rows = [r for r in others if r.model == model and r.on_gpu == on_gpu]
            if rows:
                ax.scatter([r.metrics.train_flops for r in rows], [r.metrics.valid_loss for r in rows],
                           facecolors="none", edgecolors=color(model), marker=marker, s=40, lw=1.2, zorder=3,
                           label=f"{model}: other runs ({'GPU' if on_gpu else 'CPU'})")


def _levels(ax: plt.Axes, levels: dict[str, float]) -> None:
    for (name, value), style in zip(levels.items(), ("--", ":")):
        ax.axhline(value, color="black", ls=style, lw=1, label=name)


def scaling_figure(dataset: str, frontiers: list[Frontier], baselines: dict[str, Any], unigram: float | None,
                   out: Path, suffix: str = "", note: str = "", others: list[ReportRow] | None = None) -> Path:
    """Left: validation loss against parameters per budget with each parabola (dotted: minimum not sampled) and
    its optimum (star). Right: L*(C) against training FLOPs with the fitted law and its 95% band, and `others`
    (report rows of the same architectures outside the scaling profile) as hollow points."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    levels = {}
    b = baselines.get(dataset)
    if b is not None and isinstance(b.get("valid_loglik"), (int, float)):
        levels[f"{b['order']}-gram Kneser-Ney (valid)"] = -b["valid_loglik"]
    if unigram is not None:
        levels["unigram (test)"] = -unigram
    for f in frontiers:
        _parabolas(left, f)
        draw_frontier(right, f)
        left.plot([], [], color=color(f.model), label=f.model)
    _other_runs(right, others or [])
    for ax in (left, right):
        _levels(ax, levels)
        ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="upper right", fontsize=7)
    left.set(title=f"{dataset}{note}: iso-FLOP profiles (one curve per budget)", xlabel="parameters N (log scale)",
             ylabel="validation loss (nats/token, lower is better)")
    right.set(title=f"{dataset}{note}: compute-optimal loss L*(C), fit and 95% bootstrap band",
              xlabel="training FLOPs C (log scale)", ylabel="validation loss (nats/token)")
    fig.tight_layout()
    return _save(fig, out / f"scaling_{dataset}{suffix}.png")
