"""The text of the report: the summary and every-run tables, the Kneser-Ney verdicts, observations drawn from the
runs present (valid/test gap, architectures out of their expected order), and the targets table."""

from __future__ import annotations

import math
from typing import Any

from tinylm.device import threads_in
from tinylm.experiments.results import MARK, STILL_IMPROVING, Run, best_runs, dataset_key, model_key
from tinylm.experiments.scaling import Frontier
from tinylm.experiments.scaling_report import SCALING_PROFILES, flops_to_target
from tinylm.experiments.suite import ADHOC
from tinylm.models.registry import ladder_names, model_names

MARGIN = 0.02
"""Nats/token by which one score must beat another to be called clearly better."""

FOOTNOTE = (f"{MARK} *still improving*: its valid log-likelihood rose by more than {STILL_IMPROVING} nats over the "
            "last tenth of its training, so its budget, not its architecture, decided where it ended.")


def _mark(r: Run) -> str:
    return f" {MARK}" if r.still_improving else ""


def _footnote(runs: list[Run]) -> list[str]:
    return ["", FOOTNOTE] if any(r.still_improving for r in runs) else []


def compute_fit(runs: list[Run], dataset: str, model: str) -> tuple[float, float, int] | None:
    """(a, b, n) of test LL = a + b * log10(training FLOPs), fitted to the runs of `model` on `dataset` that improve on
    every cheaper run (the compute frontier), its three most expensive points only: returns diminish with compute,
    so the steep start of the curve would promise too much. None with fewer than two such runs."""
    points = sorted((r.metrics["train_flops"], r.metrics["test_loglik"]) for r in runs
                    if r.dataset == dataset and r.model == model and (r.metrics.get("train_flops") or 0) > 0)
    frontier: list[tuple[float, float]] = []
    for flops, ll in points:
        if not frontier or ll > frontier[-1][1]:
            frontier.append((flops, ll))
    frontier = frontier[-3:]
    if len(frontier) < 2:
        return None
    xs = [math.log10(f) for f, _ in frontier]
    ys = [ll for _, ll in frontier]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else 0.0
    return (my - b * mx, b, len(frontier)) if b > 0 else None


def target_table(runs: list[Run], goals: dict[tuple[str, str], float], every: list[Run] | None = None,
                 frontiers: dict[tuple[str, str], Frontier] | None = None) -> list[str]:
    """Each target beside the best test log-likelihood reached (best on valid among `runs`) and, when missed, the
    training FLOPs it would take: by the scaling fit of the architecture where the scaling profile ran (with its
    bootstrap interval), else by a log-linear fit over `every` run of the architecture (any profile)."""
    best = best_runs(runs)
    how = ("scaling fit with its 95% interval where the scaling profile ran, else a log-linear fit over the compute "
           "frontier") if frontiers else "log-linear fit over the compute frontier"
    lines = ["### Targets (test log-likelihood, nats/token)", "",
             "| dataset | model | target | reached (best on valid) | met | its training FLOPs | "
             f"FLOPs to target ({how}) |",
             "|---|---|---:|---:|---|---:|---|"]
    for (ds, model), goal in sorted(goals.items(), key=lambda kv: (dataset_key(kv[0][0]), model_key(kv[0][1]))):
        r = best.get((ds, model))
        if r is None:
            lines.append(f"| {ds} | {model} | {goal:.3f} | no finished run | | | |")
            continue
        ll, flops = r.metrics["test_loglik"], r.metrics.get("train_flops") or 0.0
        met = ll >= goal
        need = "" if met else _flops_needed(every or runs, r, goal, frontiers)
        lines.append(f"| {ds} | {model} | {goal:.3f} | {ll:.4f} ({r.path.name}) | {'yes' if met else 'no'} | "
                     f"{flops:.2e} | {need} |")
    return lines + [""]


def _flops_needed(runs: list[Run], best: Run, goal: float, frontiers: dict[tuple[str, str], Frontier] | None) -> str:
    """The training FLOPs a missed target of `best`'s row would need: the scaling fit where there is one (with
    `best`'s own test − valid gap), else the old line (named as such whenever scaling fits exist elsewhere)."""
    ds, model = best.dataset, best.model
    gap = -best.metrics["test_loglik"] - best.metrics["valid_loss"]
    scaled = flops_to_target((frontiers or {}).get((ds, model)), goal, gap)
    if scaled is not None:
        return scaled
    fit = compute_fit(runs, ds, model)
    if fit is None:
        return "not extrapolated: fewer than two of its runs improve with compute"
    a, b, n = fit
    line = f"~{10 ** ((goal - a) / b):.0e} ({b:+.3f} nats per 10x, {n} runs)"
    return f"log-linear fit (no scaling fit): {line}" if frontiers else line


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def row(r: Run, axes: dict[str, str]) -> dict[str, Any]:
    """The JSON row of a run in results.json."""
    m = r.metrics
    keys = ("params", "context_length", "tokens_trained", "train_flops", "train_seconds", "tokens_per_second",
            "best_valid_loss", "valid_loglik", "test_loglik", "test_perplexity", "test_bits", "unigram_test_loglik",
            "status", "device", "torch_version")
    gain = r.last_tenth_gain
    return {"run": r.path.name, "source": r.source, "model": r.model, "dataset": r.dataset,
            "variant": r.variant(axes), "profile": r.profile, **{k: m.get(k) for k in keys},
            "last_tenth_valid_gain": None if gain is None else round(gain, 5), "still_improving": r.still_improving}


def summary_table(runs: list[Run], baselines: dict[str, dict[str, Any]], profile: str | None) -> list[str]:
    """Best-on-valid test log-likelihood per architecture and dataset, with the unigram and n-gram rows."""
    best = best_runs(runs)
    datasets = sorted({r.dataset for r in runs}, key=dataset_key)
    among = f" among the `{profile}` profile's runs" if profile else ""
    lines = [f"### Test log-likelihood (nats/token, higher is better) of the best-on-valid run{among}", "",
             "| model | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    def cell(r: Run | None) -> str:
        return "" if r is None else f"{r.metrics['test_loglik']:.3f} (ppl {r.metrics['test_perplexity']:.2f}){_mark(r)}"

    for model in model_names():
        cells = [cell(best.get((ds, model))) for ds in datasets]
        if any(cells):
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    unigram = {ds: next((r.metrics.get("unigram_test_loglik") for r in runs if r.dataset == ds), None)
               for ds in datasets}
    if any(v is not None for v in unigram.values()):
        lines.append("| *unigram baseline* | " + " | ".join("" if unigram[d] is None else f"{unigram[d]:.3f}"
                                                           for d in datasets) + " |")
    if any(d in baselines for d in datasets):
        cells = [f"{baselines[d]['test_loglik']:.3f} (ppl {baselines[d]['test_perplexity']:.2f}, "
                 f"{baselines[d]['order']}-gram)" if d in baselines else "" for d in datasets]
        lines.append("| *Kneser-Ney n-gram* | " + " | ".join(cells) + " |")
    return lines + _footnote(list(best.values()))


def _names(models: list[str]) -> str:
    return models[0] if len(models) == 1 else ", ".join(models[:-1]) + " and " + models[-1]


def kneser_ney_verdicts(best: dict[tuple[str, str], Run], baselines: dict[str, dict[str, Any]],
                        datasets: list[str]) -> list[str]:
    """One line per dataset: which of the architectures run there clearly beat the n-gram model, and which not."""
    lines = []
    for ds in datasets:
        if ds not in baselines:
            continue
        kn = baselines[ds]["test_loglik"]
        present = [m for m in model_names() if (ds, m) in best]
        beat = [m for m in present if best[(ds, m)].metrics["test_loglik"] >= kn + MARGIN]
        pending = [m for m in present if m not in beat and best[(ds, m)].still_improving]
        name = f"the {baselines[ds]['order']}-gram Kneser-Ney model ({kn:.3f})"
        lines.append(f"- {ds}: {_verdict(ds, name, present, beat, pending)}.")
    return lines


def _verb(models: list[str], one: str, several: str) -> str:
    """'mlp beats' / 'mlp and lstm beat': the names and the verb that agrees with them."""
    return f"{_names(models)} {one if len(models) == 1 else several}"


def _verdict(ds: str, name: str, present: list[str], beat: list[str], pending: list[str]) -> str:
    """The verdict on one dataset: who beat the n-gram model `name`, who did not, who was still improving."""
    not_beat = [m for m in present if m not in beat and m not in pending]
    only = f" (the only architecture run on {ds})" if len(present) == 1 else ""
    wait = ""
    if pending:
        one = len(pending) == 1
        wait = (f"{_names(pending)}{only if not (beat or not_beat) else ''} {'does' if one else 'do'} not beat it yet "
                f"but {'was' if one else 'were'} still improving when {'its budget' if one else 'their budgets'} "
                "ended: no verdict")
    if not not_beat and not pending:
        everyone = "every architecture run here" if len(present) > 1 else _names(present) + only
        return f"{everyone} clearly beats {name}"
    if not not_beat:
        lead = f"{_verb(beat, 'clearly beats', 'clearly beat')} {name}; " if beat else f"against {name}: "
        return lead + wait
    one = len(not_beat) == 1
    text = (f"{_names(not_beat)}{only} {'does' if one else 'do'} not clearly beat {name}: at these budgets "
            f"{'it is' if one else 'they are'} no better than counting local contexts")
    if beat:
        text += f"; {_verb(beat, 'clearly beats', 'clearly beat')} it"
    return text + (f"; {wait}" if wait else "")


def valid_test_gaps(best: dict[tuple[str, str], Run], datasets: list[str]) -> list[str]:
    """How much lower test scores than valid for the best runs of each dataset (the splits differ in difficulty)."""
    lines = []
    for ds in datasets:
        gaps = sorted(r.metrics["valid_loglik"] - r.metrics["test_loglik"] for (d, _), r in best.items()
                      if d == ds and isinstance(r.metrics.get("valid_loglik"), (int, float)))
        if not gaps:
            continue
        low, high = sorted((abs(gaps[0]), abs(gaps[-1]))) if gaps[0] * gaps[-1] > 0 else (gaps[0], gaps[-1])
        span = f"{low:.2f}" if high - low < 0.005 else f"{low:.2f} to {high:.2f}"
        if gaps[0] > 0:
            text = f"test log-likelihood is lower than valid by {span} nats/token: the test text is harder"
        elif gaps[-1] < 0:
            text = f"test log-likelihood is higher than valid by {span} nats/token: the test text is easier"
        else:
            text = f"test minus valid log-likelihood ranges over {span} nats/token"
        lines.append(f"- {ds}: {text} (best run of each architecture; runs are chosen on valid, never on test).")
    return lines


def _budget_note(r: Run) -> str:
    epochs = r.epochs()
    seen = f"{epochs:.1f} epochs" if epochs is not None else f"{r.metrics.get('tokens_trained', 0):,} tokens"
    return f"{r.model} saw {seen}{' and was still improving when its budget ended' if r.still_improving else ''}"


def order_surprises(best: dict[tuple[str, str], Run], datasets: list[str]) -> list[str]:
    """Where a simpler architecture (a lower rung of the ladder, models/registry.py) clearly beats a more complex
    one, with each run's budget: the comparison may be decided by compute rather than by the architectures."""
    lines = []
    names = ladder_names()
    for ds in datasets:
        for i, complex_model in enumerate(names):
            r = best.get((ds, complex_model))
            if r is None:
                continue
            above = [m for m in names[:i] if (ds, m) in best
                     and best[(ds, m)].metrics["test_loglik"] >= r.metrics["test_loglik"] + MARGIN]
            if above:
                scores = ", ".join(f"{m} {best[(ds, m)].metrics['test_loglik']:.3f}" for m in above)
                verdict = ("no conclusion on the architectures" if r.still_improving
                           else "at these budgets the simpler model is better")
                lines.append(f"- {ds}: {complex_model} ({r.metrics['test_loglik']:.3f}) scores below the simpler "
                             f"{scores}; {_budget_note(r)}: {verdict}.")
    return lines


def every_run_table(runs: list[Run], axes: dict[str, str]) -> list[str]:
    """One row per run, grouped by dataset, model and ablation value; a source column when sources mix."""
    sources = len({r.source for r in runs}) > 1
    head = "| dataset | model | setting | profile | " + ("source | " if sources else "") + \
        "params | test LL | test ppl | bits | tokens | train FLOPs | train time | tokens/s |"
    lines = ["### Every run", "", head, "|---|---|---|---|" + ("---|" if sources else "") + "---:|" * 8]

    def order(r: Run) -> tuple:
        value = r.config.get("model", {}).get(axes.get(r.model, ""))
        return (dataset_key(r.dataset), model_key(r.model), value if isinstance(value, (int, float)) else 0,
                r.metrics.get("train_flops") or 0, r.path.name, r.source)

    for r in sorted(runs, key=order):
        m, tps = r.metrics, r.metrics.get("tokens_per_second")
        lines.append(
            f"| {r.dataset} | {r.model} | {r.variant(axes)} | {r.profile} | " + (f"{r.source} | " if sources else "")
            + f"{m['params']:,} | {m['test_loglik']:.4f}{_mark(r)} | {m['test_perplexity']:.2f} | "
            f"{m['test_bits']:.3f} | "
            f"{m['tokens_trained']:,} | {m['train_flops']:.2e} | {_fmt_time(m.get('train_seconds'))} | "
            f"{'-' if not tps else f'{tps:,.0f}'} |")
    return lines + _footnote(runs)


def profile_times(every: list[Run]) -> list[str]:
    """One sentence per profile: its runs' training time summed (evaluation excluded), and on the CPU the core
    time too (seconds x threads), which is what a profile's budget on a 2-core machine is about: runs trained on
    one core each, two at a time, take half their summed time. On a GPU, where runs share the card, the wall-clock
    span of the profile's runs (first start to last end, evaluations included) where it is shorter than their sum."""
    parts = []
    for name in sorted({r.profile for r in every if r.profile != ADHOC}):
        for gpu in (False, True):
            group = [r for r in every if r.profile == name and r.on_gpu == gpu
                     and isinstance(r.metrics.get("train_seconds"), (int, float))]
            if not group:
                continue
            seconds = sum(r.metrics["train_seconds"] for r in group)
            threads = [threads_in(str(r.metrics.get("device"))) for r in group]
            text = f"`{name}` {len(group)} run{'s' * (len(group) != 1)}, {_fmt_hours(seconds)}"
            if gpu:
                text += " on GPUs"
                span = _span(group)
                if span is not None and span < 0.9 * seconds:
                    text += f", within {_fmt_hours(span)} of wall-clock time (several at a time)"
            elif None not in threads:
                cores = sum(r.metrics["train_seconds"] * n for r, n in zip(group, threads))  # type: ignore[operator]
                text += f" ({_fmt_hours(cores / 2)} on 2 cores)"
            parts.append(text)
    return ["Training time summed over each profile's runs (evaluation excluded; on the CPU, in brackets, the "
            "core time over 2 cores, what the profile takes there with one-core runs two at a time): "
            + "; ".join(parts) + "."] if parts else []


def _span(group: list[Run]) -> float | None:
    """Seconds from the first run's start to the last run's end, by the wall-clock times of their histories."""
    if not all(r.history for r in group):
        return None
    starts, ends = [r.history[0].get("time") for r in group], [r.history[-1].get("time") for r in group]
    if not all(isinstance(t, (int, float)) for t in starts + ends):
        return None
    return max(ends) - min(starts)


def _fmt_hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 5400 else _fmt_time(seconds)


def accelerator_groups(every: list[Run], headline: str | None) -> list[tuple[str, list[Run]]]:
    """Profiles run on a GPU (other than the headline), each summarised on its own: never mixed with CPU budgets."""
    names = sorted({r.profile for r in every if r.on_gpu and r.profile not in (headline, ADHOC, *SCALING_PROFILES)})
    return [(name, [r for r in every if r.profile == name and r.on_gpu]) for name in names]


def markdown_tables(runs: list[Run], axes: dict[str, str], baselines: dict[str, dict[str, Any]],
                    every: list[Run], profile: str | None = None) -> str:
    """The summary of the headline `runs`, what they show, and the table of `every` run."""
    best = best_runs(runs)
    datasets = sorted({r.dataset for r in runs}, key=dataset_key)
    notes = kneser_ney_verdicts(best, baselines, datasets) + order_surprises(best, datasets) + \
        valid_test_gaps(best, datasets)
    lines = summary_table(runs, baselines, profile) + ([""] + notes if notes else []) + [""]
    for name, group in accelerator_groups(every, profile):
        table = summary_table(group, baselines, name)
        devices = ", ".join(sorted({str(r.metrics.get("device")) for r in group}))
        lines += [table[0], "", f"Trained on {devices}; GPU budgets, not comparable with the CPU runs above."]
        lines += table[1:] + [""]
    scaling = [r for r in every if r.profile in SCALING_PROFILES]
    lines += every_run_table([r for r in every if r.profile not in SCALING_PROFILES], axes)
    if scaling:  # dozens of runs per dataset: their fits say what they show, results.json lists each one
        names = " and ".join(f"`{p}`" for p in SCALING_PROFILES if any(r.profile == p for r in scaling))
        lines += ["", f"The {len(scaling)} runs of the {names} profile{'s' * (' and ' in names)} are left out of "
                  "this table: results.json lists each one, and RESULTS.md's scaling section fits them."]
    devices = sorted({f"{r.metrics.get('device')}, torch {r.metrics.get('torch_version')}" for r in every})
    lines += [""] + profile_times(every)
    lines += ["", "Measured on: " + "; ".join(devices) + ".",
              "Test log-likelihood: every test token but the first scored exactly once by the same sliding-window "
              "protocol for every model; the best run is chosen on the full validation split. A run belongs to a "
              "profile only if that profile's suite trains exactly its config; any other run is `adhoc`.",
              "FLOPs are analytic (2·m·n·k per matmul, training = 3× forward). The `linear` model is a lookup-and-add: "
              "its FLOPs are the additions it really does, so it is nearly free per token — compare it on quality "
              "per parameter rather than per FLOP."]
    return "\n".join(lines) + "\n"
