"""Figures of the report: architecture comparison, loss vs FLOPs, ablations, per-run training curves."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tinylm.experiments.results import Run, best_runs, dataset_key, model_key  # noqa: E402
from tinylm.io import atomic_write  # noqa: E402
from tinylm.models.registry import color, model_names  # noqa: E402
from tinylm.runs import selection_loss  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def _curve(run: Run, x: str) -> tuple[list[float], list[float]]:
    rows = [h for h in run.history if h.get("valid_loss") is not None and h.get(x)]
    return [h[x] for h in rows], [-h["valid_loss"] for h in rows]


def architecture_comparison(runs: list[Run], out: Path) -> Path:
    best = best_runs(runs)
    main_ds = min((ds for ds, _ in best), key=dataset_key)  # the first dataset in registry order
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0, 0]
    for (ds, model), r in best.items():
        if ds == main_ds:
            xs, ys = _curve(r, "tokens")
            ax.plot(xs, ys, color=color(model), label=model)
    ax.set(title=f"Training curves of the best run per architecture ({main_ds})", xlabel="training tokens",
           ylabel="valid log-likelihood (nats/token)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)

    ax = axes[0, 1]
    models = [m for (ds, m) in best if ds == main_ds]
    values = [best[(main_ds, m)].metrics["test_loglik"] for m in models]
    unigram = next((best[(main_ds, m)].metrics.get("unigram_test_loglik") for m in models), None)
    base = unigram if unigram is not None else min(values) - 0.5
    ax.bar(models, [v - base for v in values], bottom=base, color=[color(m) for m in models])
    for i, v in enumerate(values):
        ax.annotate(f"{v:.3f}", (i, v), ha="center", va="bottom", xytext=(0, 3), textcoords="offset points")
    if unigram is not None:
        ax.axhline(unigram, color="grey", ls="--", lw=1)
        ax.annotate(f"unigram baseline {unigram:.3f}", (0.01, unigram), xycoords=("axes fraction", "data"),
                    va="bottom", color="grey", fontsize=8, xytext=(0, 2), textcoords="offset points",
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    ax.set_ylim(base - 0.05, max(values) + 0.15)
    ax.set(title=f"Best test log-likelihood per architecture ({main_ds}; higher is better)",
           ylabel="test log-likelihood (nats/token)")
    ax.grid(alpha=0.3, axis="y")

    ax = axes[1, 0]
    for r in runs:
        if r.dataset == main_ds:
            ax.scatter(r.metrics["train_flops"], r.metrics["test_loglik"], color=color(r.model), alpha=0.8)
    for model in model_names():
        if any(r.model == model and r.dataset == main_ds for r in runs):
            ax.scatter([], [], color=color(model), label=model)
    ax.set_xscale("log")
    ax.set(title=f"Test log-likelihood vs training compute (every {main_ds} run)",
           xlabel="training FLOPs (log scale)", ylabel="test log-likelihood (nats/token)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3, which="both")

    ax = axes[1, 1]
    ax.axis("off")
    lines = [f"{'model':<12}{'dataset':<16}{'params':>10}{'test LL':>9}{'ppl':>9}{'FLOPs':>10}"]
    for (ds, model), r in sorted(best.items(), key=lambda kv: (dataset_key(kv[0][0]), model_key(kv[0][1]))):
        m = r.metrics
        lines.append(f"{model:<12}{ds:<16}{m['params']:>10,}{m['test_loglik']:>9.3f}{m['test_perplexity']:>9.2f}"
                     f"{m['train_flops']:>10.1e}")
    ax.text(0.0, 1.0, "Summary (best on valid)\n\n" + "\n".join(lines), family="monospace", fontsize=9, va="top")
    fig.tight_layout()
    return _save(fig, out / "architecture_comparison.png")


def flops_trajectory(runs: list[Run], out: Path) -> Path:
    datasets = sorted({r.dataset for r in runs})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.8), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        seen = set()
        for r in runs:
            if r.dataset != ds:
                continue
            xs, ys = _curve(r, "flops")
            label = r.model if r.model not in seen else None
            seen.add(r.model)
            ax.plot(xs, ys, color=color(r.model), alpha=0.75, label=label)
        ax.set_xscale("log")
        ax.set(title=f"Valid log-likelihood vs training FLOPs ({ds})", xlabel="cumulative training FLOPs (log scale)",
               ylabel="valid log-likelihood (nats/token)")
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return _save(fig, out / "flops_trajectory.png")


def ablations(runs: list[Run], axes_by_model: dict[str, str], out: Path) -> list[Path]:
    """One figure per swept axis, from the runs of one profile (the one with the most values swept): runs of
    different profiles have different budgets and would not compare."""
    by_profile: dict[tuple[str, str, str], dict[float, Run]] = defaultdict(dict)
    for r in runs:
        key = axes_by_model.get(r.model)
        value = r.config.get("model", {}).get(key) if key else None
        if value is None:
            continue
        group = by_profile[(r.dataset, r.model, str(r.metrics.get("profile")))]
        best = group.get(value)
        if best is None or selection_loss(r.metrics) < selection_loss(best.metrics):
            group[value] = r
    groups: dict[tuple[str, str], dict[float, Run]] = {}
    for (ds, model, _), by_value in sorted(by_profile.items()):
        if len(by_value) > len(groups.get((ds, model), {})):
            groups[(ds, model)] = by_value
    paths = []
    for (ds, model), by_value in sorted(groups.items()):
        if len(by_value) < 2:
            continue
        key = axes_by_model[model]
        xs = sorted(by_value)
        fig, ax = plt.subplots(figsize=(6, 4.2))
        ax.plot(xs, [by_value[x].metrics["test_loglik"] for x in xs], "o-", color=color(model), label="test")
        ax.plot(xs, [by_value[x].metrics.get("valid_loglik") for x in xs], "s--", color=color(model),
                alpha=0.5, label="valid (full split)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set(title=f"{model} on {ds}: log-likelihood vs {key}", xlabel=key.replace("_", " "),
               ylabel="log-likelihood (nats/token)")
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
        paths.append(_save(fig, out / f"ablation_{model}_{key}_{ds}.png"))
    return paths


def run_curves(runs: list[Run], out: Path) -> list[Path]:
    paths = []
    for r in runs:
        rows = [h for h in r.history if h.get("valid_loss") is not None]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        train = [(h["tokens"], h["train_loss"]) for h in rows if h.get("train_loss") is not None]
        if train:
            ax.plot(*zip(*train), color="grey", label="train (mean since last eval)")
        ax.plot([h["tokens"] for h in rows], [h["valid_loss"] for h in rows], color=color(r.model),
                label="valid subset")
        ax.set(title=r.path.name, xlabel="training tokens", ylabel="loss (nats/token)")
        ax.legend(loc="upper right")
        ax.grid(alpha=0.3)
        paths.append(_save(fig, out / "runs" / f"{r.path.name}.png"))
    return paths


def draw_all(runs: list[Run], every: list[Run], axes_by_model: dict[str, str], out: Path) -> list[Path]:
    """Every figure (the architecture comparison from `runs`, the rest from `every` run); returns their paths."""
    return [architecture_comparison(runs, out), flops_trajectory(every, out), *ablations(every, axes_by_model, out),
            *run_curves(every, out)]
