"""Figures of the report: the architecture comparison, log-likelihood against compute per dataset, ablations and
one training curve per run. Colours are the registry's (one per architecture), line styles one per profile; the
Kneser-Ney level is drawn wherever a dataset has one."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tinylm.experiments.results import MARK, STILL_IMPROVING, ReportRow, best_runs, dataset_key, model_key  # noqa: E402
from tinylm.experiments.scaling_report import SCALING_PROFILES  # noqa: E402
from tinylm.files import atomic_write  # noqa: E402
from tinylm.models.registry import color, model_names  # noqa: E402
from tinylm.suite_plan import ADHOC  # noqa: E402

STYLES = {"full": "-", "quick": "--", "isoflop": ":", "sprint": "-.", "gpu": "-", "scaling": (0, (3, 1)),
          ADHOC: (0, (1, 2, 5, 2))}
MARKERS = {"full": "o", "quick": "s", "isoflop": "^", "sprint": "D", "gpu": "*", "scaling": "v", ADHOC: "x"}


def _save(fig: plt.Figure, path: Path) -> Path:
    """PNG without a software stamp, written atomically: the same runs give the same bytes."""
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight",
                                                   metadata={"Software": None}))
    finally:
        plt.close(fig)
    return path


def _loglik_curve(run: ReportRow, x: str) -> tuple[list[float], list[float]]:
    rows = [h for h in run.history if h.get("valid_loss") is not None and h.get(x)]
    return [h[x] for h in rows], [-h["valid_loss"] for h in rows]


def _kneser_ney(ax: plt.Axes, baselines: dict[str, dict[str, Any]], dataset: str, split: str) -> None:
    """The n-gram model's level on the split the axes plot (valid and test differ by up to 0.3 nats)."""
    b = baselines.get(dataset)
    if b is not None and isinstance(b.get(f"{split}_loglik"), (int, float)):
        ax.axhline(b[f"{split}_loglik"], color="black", ls="--", lw=1, label=f"{b['order']}-gram Kneser-Ney ({split})")


def _curves_panel(ax: plt.Axes, best: dict[tuple[str, str], ReportRow], ds: str, baselines: dict[str, Any]) -> None:
    for (d, model), r in sorted(best.items(), key=lambda kv: model_key(kv[0][1])):
        if d == ds:
            ax.plot(*_loglik_curve(r, "tokens"), color=color(model),
                    label=f"{model} (still improving)" if r.still_improving else model)
    _kneser_ney(ax, baselines, ds, "valid")
    ax.set(title="Valid log-likelihood while training (best run per architecture)",
           xlabel="training tokens", ylabel="valid log-likelihood (nats/token)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)


def _bars_panel(ax: plt.Axes, best: dict[tuple[str, str], ReportRow], ds: str, baselines: dict[str, Any]) -> None:
    models = [m for m in model_names() if (ds, m) in best]
    values = [best[(ds, m)].metrics.test_loglik for m in models]
    unigram = best[(ds, models[0])].metrics.unigram_test_loglik
    kn = baselines.get(ds, {}).get("test_loglik")
    base = unigram if unigram is not None else min(values) - 0.5
    rising = [best[(ds, m)].still_improving for m in models]
    bars = ax.bar(models, [v - base for v in values], bottom=base, color=[color(m) for m in models])
    for bar, up in zip(bars, rising):
        if up:  # hatched: its budget, not its architecture, set this height
            bar.set_hatch("//")
            bar.set_edgecolor("white")
    for i, (v, up) in enumerate(zip(values, rising)):
        ax.annotate(f"{v:.3f}{' ' + MARK if up else ''}", (i, v), ha="center", va="bottom", xytext=(0, 3),
                    textcoords="offset points")
    if any(rising):
        ax.annotate(f"hatched, {MARK}: still improving when its budget ended", (0.0, 1.0), xycoords="axes fraction",
                    ha="left", va="top", fontsize=8, xytext=(3, -3), textcoords="offset points")
    for level, text, style in ((unigram, "unigram", ":"), (kn, f"{baselines.get(ds, {}).get('order')}-gram "
                                                             "Kneser-Ney", "--")):
        if level is not None:
            ax.axhline(level, color="black", ls=style, lw=1)
            ax.annotate(f"{text} {level:.3f}", (1.0, level), xycoords=("axes fraction", "data"), ha="right",
                        va="bottom", fontsize=8, xytext=(-2, 2), textcoords="offset points",
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    top = max(values + ([kn] if kn is not None else []))
    ax.set_ylim(base - 0.05, top + 0.15)
    ax.set(title="Test log-likelihood of the best run per architecture",
           ylabel="test log-likelihood (nats/token)")
    ax.grid(alpha=0.3, axis="y")


def _flops(value: float | None) -> str:
    return f"{value:.1e}" if value else "unknown"


def _compute_panel(ax: plt.Axes, every: list[ReportRow], ds: str, baselines: dict[str, Any]) -> None:
    shown = [r for r in every if r.dataset == ds and r.metrics.train_flops]
    uncounted = sorted({r.model for r in every if r.dataset == ds and not r.metrics.train_flops})
    for r in shown:
        ax.scatter(r.metrics.train_flops, r.metrics.test_loglik, color=color(r.model),
                   marker=MARKERS.get(r.profile, "o"), alpha=0.85)
    for model in model_names():
        if any(r.model == model for r in shown):
            ax.scatter([], [], color=color(model), label=model)
    for profile in sorted({r.profile for r in shown}):
        ax.scatter([], [], color="grey", marker=MARKERS.get(profile, "o"), label=f"profile {profile}")
    _kneser_ney(ax, baselines, ds, "test")
    ax.set_xscale("log")
    left_off = f"; not shown, FLOPs unknown: {', '.join(uncounted)}" if uncounted else ""
    ax.set(title=f"Test log-likelihood vs training compute (all {len(shown)} runs{left_off})",
           xlabel="training FLOPs (log scale)", ylabel="test log-likelihood (nats/token)")
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3, which="both")


def architecture_comparison(runs: list[ReportRow], every: list[ReportRow], baselines: dict[str, Any],
                            out: Path) -> Path:
    """Four panels on the first dataset (registry order): curves, best test scores, all runs vs compute, a table."""
    best = best_runs(runs)
    ds = min((d for d, _ in best), key=dataset_key)
    gpu = any(r.on_gpu for r in runs)
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    _curves_panel(axes[0, 0], best, ds, baselines)
    _bars_panel(axes[0, 1], best, ds, baselines)
    _compute_panel(axes[1, 0], [r for r in every if r.on_gpu == gpu], ds, baselines)
    axes[1, 1].axis("off")
    lines = [f"{'model':<12}{'dataset':<16}{'params':>10}{'test LL':>9}{'ppl':>9}{'FLOPs':>10}"]
    for (d, model), r in sorted(best.items(), key=lambda kv: (dataset_key(kv[0][0]), model_key(kv[0][1]))):
        m = r.metrics
        lines.append(f"{model:<12}{d:<16}{m.params:>10,}{m.test_loglik:>9.3f}{m.test_perplexity:>9.2f}"
                     f"{_flops(m.train_flops):>10}{' ' + MARK if r.still_improving else ''}")
    if any(r.still_improving for r in best.values()):
        lines += ["", f"{MARK} still improving: valid rose > {STILL_IMPROVING} nats over its last tenth of training"]
    axes[1, 1].text(0.0, 1.0, "Best run on valid, per architecture and dataset\n\n" + "\n".join(lines),
                    family="monospace", fontsize=9, va="top")
    fig.suptitle(f"Architectures compared on {ds} (higher is better)", fontsize=14)
    fig.tight_layout()
    return _save(fig, out / "architecture_comparison.png")


def compute_trajectories(every: list[ReportRow], axes_by_model: dict[str, str], baselines: dict[str, Any],
                         out: Path) -> list[Path]:
    """Per dataset: valid log-likelihood against cumulative training FLOPs of every run (one labelled line each)."""
    def order(r: ReportRow) -> tuple:
        value = r.config.get("model", {}).get(axes_by_model.get(r.model, ""))
        return model_key(r.model), r.profile, value if isinstance(value, (int, float)) else 0, r.path.name

    paths = []
    groups = sorted({(r.dataset, r.on_gpu) for r in every}, key=lambda g: (dataset_key(g[0]), g[1]))
    for ds, gpu in groups:  # CPU and GPU budgets never share a figure
        fig, ax = plt.subplots(figsize=(10, 6))
        for r in sorted((r for r in every if r.dataset == ds and r.on_gpu == gpu), key=order):
            ax.plot(*_loglik_curve(r, "flops"), color=color(r.model), ls=STYLES.get(r.profile, "-"), alpha=0.8,
                    label=r.label(axes_by_model) + (f" {MARK} still improving" if r.still_improving else ""))
        _kneser_ney(ax, baselines, ds, "valid")
        ax.set_xscale("log")
        where = "GPU runs" if gpu else "CPU runs"
        ax.set(title=f"{ds}, {where}: valid log-likelihood vs training compute (colour: architecture, line: profile)",
               xlabel="cumulative training FLOPs (log scale)", ylabel="valid log-likelihood (nats/token)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
        ax.grid(alpha=0.3, which="both")
        paths.append(_save(fig, out / f"compute_{ds}{'-gpu' if gpu else ''}.png"))
    return paths


def ablations(runs: list[ReportRow], axes_by_model: dict[str, str], out: Path) -> list[Path]:
    """One figure per swept axis, from the runs of one profile (the one with the most values swept; never adhoc):
    runs of different profiles have different budgets and would not compare."""
    by_profile: dict[tuple[str, str, str], dict[float, ReportRow]] = defaultdict(dict)
    for r in runs:
        key = axes_by_model.get(r.model)
        value = r.config.get("model", {}).get(key) if key else None
        if value is None or r.profile == ADHOC or r.config.get("train", {}).get("max_flops") is not None:
            continue
        group = by_profile[(r.dataset, r.model, r.profile)]
        if value not in group or r.metrics.selection_loss < group[value].metrics.selection_loss:
            group[value] = r
    groups: dict[tuple[str, str], tuple[str, dict[float, ReportRow]]] = {}
    for (ds, model, profile), by_value in sorted(by_profile.items()):
        if len(by_value) > len(groups.get((ds, model), ("", {}))[1]):
            groups[(ds, model)] = (profile, by_value)
    paths = []
    for (ds, model), (profile, by_value) in sorted(groups.items()):
        if len(by_value) < 2:
            continue
        key, xs = axes_by_model[model], sorted(by_value)
        fig, ax = plt.subplots(figsize=(6, 4.2))
        ax.plot(xs, [by_value[x].metrics.test_loglik for x in xs], "o-", color=color(model), label="test")
        ax.plot(xs, [by_value[x].metrics.valid_loglik for x in xs], "s--", color=color(model), alpha=0.5,
                label="valid (full split)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set(title=f"{model} on {ds}: log-likelihood vs {key} ({profile} profile)", xlabel=key.replace("_", " "),
               ylabel="log-likelihood (nats/token)")
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
        paths.append(_save(fig, out / f"ablation_{model}_{key}_{ds}.png"))
    return paths


def run_curves(runs: list[ReportRow], axes_by_model: dict[str, str], out: Path) -> list[Path]:
    """One figure per run: train (mean since the last evaluation) and valid log-likelihood against tokens."""
    paths = []
    shipped = {r.path.name for r in runs if r.source == "reference"}
    for r in runs:
        rows = [h for h in r.history if h.get("valid_loss") is not None]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        train = [(h["tokens"], -h["train_loss"]) for h in rows if h.get("train_loss") is not None]
        if train:
            ax.plot(*zip(*train), color="grey", label="train (mean since the last evaluation)")
        ax.plot([h["tokens"] for h in rows], [-h["valid_loss"] for h in rows], color=color(r.model),
                label="valid subset")
        ax.set(title=f"{r.label(axes_by_model)} on {r.dataset}\n{r.path.name}", xlabel="training tokens",
               ylabel="log-likelihood (nats/token)")
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
        mine = r.source != "reference" and r.path.name in shipped  # the same config trained by you
        paths.append(_save(fig, out / "runs" / f"{r.path.name}{'-yours' if mine else ''}.png"))
    return paths


def draw_all(runs: list[ReportRow], every: list[ReportRow], axes_by_model: dict[str, str], baselines: dict[str, Any],
             out: Path) -> list[Path]:
    """Every figure: the architecture comparison from the headline `runs`, the rest from `every` run but the scaling
    profile's (dozens per dataset, which the scaling figure draws)."""
    unscaled = [r for r in every if r.profile not in SCALING_PROFILES]
    return [architecture_comparison(runs, every, baselines, out),
            *compute_trajectories(unscaled, axes_by_model, baselines, out), *ablations(unscaled, axes_by_model, out),
            *run_curves(unscaled, axes_by_model, out)]
