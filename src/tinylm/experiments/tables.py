"""The text of the report: the summary and every-run tables, the Kneser-Ney verdicts, observations drawn from the
runs present (valid/test gap, architectures out of their expected order), and the targets table."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from tinylm.device import cpu_in, threads_in
from tinylm.experiments.results import MARK, STILL_IMPROVING, ReportRow, best_runs, dataset_key, model_key
from tinylm.experiments.scaling import Frontier
from tinylm.experiments.scaling_report import SCALING_PROFILES, flops_to_target
from tinylm.models.registry import ladder_names, model_names
from tinylm.suite_plan import ADHOC

MARGIN = 0.02
"""Nats/token by which one score must beat another to be called clearly better."""

FOOTNOTE = (f"{MARK} *still improving*: its valid log-likelihood rose by more than {STILL_IMPROVING} nats over the "
            "last tenth of its training,\nso its budget, not its architecture, decided where it ended.")


def _mark(r: ReportRow) -> str:
    return f" {MARK}" if r.still_improving else ""


REPRODUCTION = "‡"
REPRODUCTION_NOTE = (f"{REPRODUCTION} *a reproduction*: trained on nanoGPT's split (the first 90 % of the text), "
                     "it selects on the text it is scored on (valid and test are both the last 10 %),\nso it compares "
                     "with nanoGPT's numbers and with nothing else here; it is never a headline result.")


def _footnote(runs: list[ReportRow]) -> list[str]:
    return (["", FOOTNOTE] if any(r.still_improving for r in runs) else []) + (
        ["", REPRODUCTION_NOTE] if any(r.reproduction for r in runs) else [])


def compute_fit(runs: list[ReportRow], dataset: str, model: str) -> tuple[float, float, int] | None:
    """(a, b, n) of test LL = a + b * log10(training FLOPs), fitted to the runs of `model` on `dataset` that improve on
    every cheaper run (the compute frontier), its three most expensive points only: returns diminish with compute,
    so the steep start of the curve would promise too much. None with fewer than two such runs."""
    points = sorted((r.metrics.train_flops, r.metrics.test_loglik) for r in runs
                    if r.dataset == dataset and r.model == model and (r.metrics.train_flops or 0) > 0)
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


def target_records(runs: list[ReportRow], goals: dict[tuple[str, str], float], every: list[ReportRow] | None = None,
                   frontiers: dict[tuple[str, str], Frontier] | None = None) -> list[dict[str, Any]]:
    """Each target beside the best test log-likelihood reached (best on valid among `runs`) and, when missed, the
    training FLOPs it would take: by the scaling fit of the architecture where the scaling profile ran (with its
    bootstrap interval), else by a log-linear fit over `every` run of the architecture (any profile)."""
    best = best_runs(runs)
    records = []
    for (ds, model), goal in sorted(goals.items(), key=lambda kv: (dataset_key(kv[0][0]), model_key(kv[0][1]))):
        r = best.get((ds, model))
        record: dict[str, Any] = {"dataset": ds, "model": model, "target": goal, "run": None}
        if r is not None:
            ll = r.metrics.test_loglik
            record.update(run=r.path.name, reached=ll, met=ll >= goal, train_flops=r.metrics.train_flops or 0.0,
                          to_target=None if ll >= goal else _flops_needed(every or runs, r, goal, frontiers))
            if record["to_target"] is not None:
                _compute_alone(record["to_target"], every or runs, ds, model, goal)
        records.append(record)
    return records


def _compute_alone(need: dict[str, Any], every: list[ReportRow], ds: str, model: str, goal: float) -> None:
    """Where a run of the architecture already spent the FLOPs the estimate asks for and still missed the goal, the
    estimate is of compute, but the data is the limit: `need` says so, naming the run that spent the most."""
    flops = need.get("flops")
    if flops is None or not math.isfinite(flops):
        return
    spent = [r for r in every if r.dataset == ds and r.model == model and (r.metrics.train_flops or 0) >= flops
             and r.metrics.test_loglik is not None and r.metrics.test_loglik < goal]
    if not spent:
        return
    r = max(spent, key=lambda r: (r.metrics.train_flops, r.path.name))
    need["compute_alone"] = {"run": r.path.name, "train_flops": r.metrics.train_flops, "reached": r.metrics.test_loglik}
    need["text"] += (f"; not reached by compute alone at this size of data: {r.path.name} spent "
                     f"{r.metrics.train_flops:.1e} FLOPs, more than that, and scored {r.metrics.test_loglik:.4f}")


def target_table(records: list[dict[str, Any]], scaled: bool) -> list[str]:
    """The targets section of RESULTS.md from `target_records` (`scaled`: some architecture has a scaling fit)."""
    how = ("scaling fit with its 95% interval where the scaling profile ran, else a log-linear fit over the compute "
           "frontier") if scaled else "log-linear fit over the compute frontier"
    lines = ["### Targets (test log-likelihood, nats/token)", "",
             "| dataset | model | target | reached (best on valid) | met | its training FLOPs | "
             f"FLOPs to target ({how}) |",
             "|---|---|---:|---:|---|---:|---|"]
    for t in records:
        if t["run"] is None:
            lines.append(f"| {t['dataset']} | {t['model']} | {t['target']:.3f} | no finished run | | | |")
            continue
        need = t["to_target"]["text"] if t["to_target"] else ""
        lines.append(f"| {t['dataset']} | {t['model']} | {t['target']:.3f} | {t['reached']:.4f} ({t['run']}) | "
                     f"{'yes' if t['met'] else 'no'} | {t['train_flops']:.2e} | {need} |")
    return lines + [""]


def _flops_needed(runs: list[ReportRow], best: ReportRow, goal: float,
                  frontiers: dict[tuple[str, str], Frontier] | None) -> dict[str, Any]:
    """The training FLOPs a missed target of `best`'s row would need: the scaling fit where there is one (with
    `best`'s own test − valid gap), else the old line (named as such whenever scaling fits exist elsewhere)."""
    ds, model = best.dataset, best.model
    gap = -best.metrics.test_loglik - best.metrics.valid_loss
    scaled = flops_to_target((frontiers or {}).get((ds, model)), goal, gap)
    if scaled is not None:
        return scaled
    fit = compute_fit(runs, ds, model)
    if fit is None:
        return {"method": "log-linear fit", "flops": None,
                "text": "not extrapolated: fewer than two of its runs improve with compute"}
    a, b, n = fit
    flops = 10 ** ((goal - a) / b)
    line = f"~{flops:.0e} ({b:+.3f} nats per 10x, {n} runs)"
    return {"method": "log-linear fit", "flops": flops, "nats_per_decade": b, "runs": n,
            "text": f"log-linear fit (no scaling fit): {line}" if frontiers else line}


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


ROW_METRICS = ("params", "context_length", "tokens_trained", "train_flops", "train_seconds", "tokens_per_second",
               "best_valid_loss", "valid_loglik", "test_loglik", "test_perplexity", "test_bits", "unigram_test_loglik",
               "status", "device", "torch_version")
"""The RunMetrics fields a run's row in results.json carries."""


def row(r: ReportRow, axes: dict[str, str]) -> dict[str, Any]:
    """The JSON row of a run in results.json."""
    m = r.metrics
    gain = r.last_tenth_gain
    return {"run": r.path.name, "source": r.source, "model": r.model, "dataset": r.dataset,
            "level": m.level, "variant": r.variant(axes), "profile": r.profile,
            **{k: getattr(m, k) for k in ROW_METRICS},
            "last_tenth_valid_gain": None if gain is None else round(gain, 5), "still_improving": r.still_improving}


def _cell(r: ReportRow) -> dict[str, Any]:
    m = r.metrics
    return {"run": r.path.name, "source": r.source, "params": m.params, "test_loglik": m.test_loglik,
            "test_perplexity": m.test_perplexity, "valid_loglik": m.valid_loglik, "train_flops": m.train_flops,
            "tokens_trained": m.tokens_trained, "still_improving": r.still_improving}


def summary(runs: list[ReportRow], baselines: dict[str, dict[str, Any]], profile: str | None) -> dict[str, Any]:
    """The best-on-valid run per architecture and dataset of `runs` (one profile's), with the unigram and n-gram
    levels: the record behind a summary table (results.json)."""
    best = best_runs(runs)
    datasets = sorted({r.dataset for r in runs}, key=dataset_key)
    unigram = {ds: next((r.metrics.unigram_test_loglik for r in runs if r.dataset == ds), None)
               for ds in datasets}
    return {"profile": profile, "datasets": datasets,
            "level": {ds: next((r.metrics.level for r in runs if r.dataset == ds), None) for ds in datasets},
            "best": {ds: {m: _cell(best[(ds, m)]) for m in model_names() if (ds, m) in best} for ds in datasets},
            "unigram": {ds: v for ds, v in unigram.items() if v is not None},
            "kneser_ney": {ds: baselines[ds] for ds in datasets if ds in baselines}}


def summary_table(record: dict[str, Any]) -> list[str]:
    """Best-on-valid test log-likelihood per architecture and dataset, with the unigram and n-gram rows."""
    datasets, best = record["datasets"], record["best"]
    among = f" among the `{record['profile']}` profile's runs" if record["profile"] else ""
    lines = [f"### Test log-likelihood (nats/token, higher is better) of the best-on-valid run{among}", "",
             "| model | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]

    def cell(c: dict[str, Any] | None) -> str:
        return "" if c is None else \
            f"{c['test_loglik']:.3f} (ppl {c['test_perplexity']:.2f}){f' {MARK}' if c['still_improving'] else ''}"

    for model in model_names():
        cells = [cell(best[ds].get(model)) for ds in datasets]
        if any(cells):
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    unigram, kn = record["unigram"], record["kneser_ney"]
    if unigram:
        lines.append("| *unigram baseline* | " + " | ".join(f"{unigram[d]:.3f}" if d in unigram else ""
                                                           for d in datasets) + " |")
    if kn:
        cells = [f"{kn[d]['test_loglik']:.3f} (ppl {kn[d]['test_perplexity']:.2f}, {kn[d]['order']}-gram)"
                 if d in kn else "" for d in datasets]
        lines.append("| *Kneser-Ney n-gram* | " + " | ".join(cells) + " |")
    rising = any(c["still_improving"] for by_model in best.values() for c in by_model.values())
    return lines + (["", FOOTNOTE] if rising else [])


def joined(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def kneser_ney_verdicts(best: dict[tuple[str, str], ReportRow], baselines: dict[str, dict[str, Any]],
                        datasets: list[str]) -> list[str]:
    """One line per dataset: which of the architectures run there clearly beat the n-gram model, and which not."""
    lines = []
    for ds in datasets:
        if ds not in baselines:
            continue
        kn = baselines[ds]["test_loglik"]
        present = [m for m in model_names() if (ds, m) in best]
        beat = [m for m in present if best[(ds, m)].metrics.test_loglik >= kn + MARGIN]
        pending = [m for m in present if m not in beat and best[(ds, m)].still_improving]
        name = f"the {baselines[ds]['order']}-gram Kneser-Ney model ({kn:.3f})"
        lines.append(f"{ds}: {_verdict(ds, name, present, beat, pending)}.")
    return lines


def _verb(models: list[str], one: str, several: str) -> str:
    """'mlp beats' / 'mlp and lstm beat': the names and the verb that agrees with them."""
    return f"{joined(models)} {one if len(models) == 1 else several}"


def _verdict(ds: str, name: str, present: list[str], beat: list[str], pending: list[str]) -> str:
    """The verdict on one dataset: who beat the n-gram model `name`, who did not, who was still improving."""
    not_beat = [m for m in present if m not in beat and m not in pending]
    only = f" (the only architecture run on {ds})" if len(present) == 1 else ""
    wait = ""
    if pending:
        one = len(pending) == 1
        wait = (f"{joined(pending)}{only if not (beat or not_beat) else ''} {'does' if one else 'do'} not beat it yet "
                f"but {'was' if one else 'were'} still improving when {'its budget' if one else 'their budgets'} "
                "ended: no verdict")
    if not not_beat and not pending:
        everyone = "every architecture run here" if len(present) > 1 else joined(present) + only
        return f"{everyone} clearly beats {name}"
    if not not_beat:
        lead = f"{_verb(beat, 'clearly beats', 'clearly beat')} {name}; " if beat else f"against {name}: "
        return lead + wait
    one = len(not_beat) == 1
    text = (f"{joined(not_beat)}{only} {'does' if one else 'do'} not clearly beat {name}: at these budgets "
            f"{'it is' if one else 'they are'} no better than counting local contexts")
    if beat:
        text += f"; {_verb(beat, 'clearly beats', 'clearly beat')} it"
    return text + (f"; {wait}" if wait else "")


def valid_test_gaps(best: dict[tuple[str, str], ReportRow], datasets: list[str]) -> list[str]:
    """How much lower test scores than valid for the best runs of each dataset (the splits differ in difficulty)."""
    lines = []
    for ds in datasets:
        gaps = sorted(r.metrics.valid_loglik - r.metrics.test_loglik for (d, _), r in best.items()
                      if d == ds and r.metrics.valid_loglik is not None)
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
        lines.append(f"{ds}: {text} (best run of each architecture; runs are chosen on valid, never on test).")
    return lines


def _budget_note(r: ReportRow) -> str:
    epochs = r.epochs()
    seen = f"{epochs:.1f} epochs" if epochs is not None else f"{r.metrics.tokens_trained or 0:,} tokens"
    return f"{r.model} saw {seen}{' and was still improving when its budget ended' if r.still_improving else ''}"


def order_surprises(best: dict[tuple[str, str], ReportRow], datasets: list[str]) -> list[str]:
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
                     and best[(ds, m)].metrics.test_loglik >= r.metrics.test_loglik + MARGIN]
            if above:
                scores = ", ".join(f"{m} {best[(ds, m)].metrics.test_loglik:.3f}" for m in above)
                verdict = ("no conclusion on the architectures" if r.still_improving
                           else "at these budgets the simpler model is better")
                lines.append(f"{ds}: {complex_model} ({r.metrics.test_loglik:.3f}) scores below the simpler "
                             f"{scores}; {_budget_note(r)}: {verdict}.")
    return lines


def every_run_table(runs: list[ReportRow], axes: dict[str, str]) -> list[str]:
    """One row per run, grouped by dataset, model and ablation value; a source column when sources mix."""
    sources = len({r.source for r in runs}) > 1
    head = "| dataset | model | setting | profile | " + ("source | " if sources else "") + \
        "params | test LL | test ppl | bits | tokens | train FLOPs | train time | tokens/s |"
    lines = ["### Every run", "", head, "|---|---|---|---|" + ("---|" if sources else "") + "---:|" * 8]

    def order(r: ReportRow) -> tuple:
        value = r.config.get("model", {}).get(axes.get(r.model, ""))
        return (dataset_key(r.dataset), model_key(r.model), value if isinstance(value, (int, float)) else 0,
                r.metrics.train_flops or 0, r.path.name, r.source)

    for r in sorted(runs, key=order):
        m, tps = r.metrics, r.metrics.tokens_per_second
        dataset = f"{r.dataset} {REPRODUCTION}" if r.reproduction else r.dataset
        lines.append(
            f"| {dataset} | {r.model} | {r.variant(axes)} | {r.profile} | " + (f"{r.source} | " if sources else "")
            + f"{m.params:,} | {m.test_loglik:.4f}{_mark(r)} | {m.test_perplexity:.2f} | "
            f"{m.test_bits:.3f} | "
            f"{m.tokens_trained:,} | {f'{m.train_flops:.2e}' if m.train_flops else 'unknown'} | "
            f"{_fmt_time(m.train_seconds)} | "
            f"{'-' if not tps else f'{tps:,.0f}'} |")
    return lines + _footnote(runs)


def training_time(every: list[ReportRow]) -> list[dict[str, Any]]:
    """Per profile (and device kind): its runs' training time summed (evaluation excluded), and on the CPU the core
    time too (seconds x threads), which is what a profile's budget on a 2-core machine is about: runs trained on
    one core each, two at a time, take half their summed time. On a GPU, where runs share the card, the wall-clock
    time during which any of the profile's runs trained (evaluations included)."""
    records = []
    for name in sorted({r.profile for r in every if r.profile != ADHOC}):
        for gpu in (False, True):
            group = [r for r in every if r.profile == name and r.on_gpu == gpu
                     and r.metrics.train_seconds is not None]
            if not group:
                continue
            threads = [threads_in(str(r.metrics.device)) for r in group]
            cores = None if gpu or None in threads else \
                sum(r.metrics.train_seconds * n for r, n in zip(group, threads))  # type: ignore[operator]
            records.append({"profile": name, "on_gpu": gpu, "runs": len(group),
                            "seconds": sum(r.metrics.train_seconds for r in group), "core_seconds": cores,
                            "wall_seconds": _span(group) if gpu else None, "cpus": None if gpu else _cpus(group)})
    return records


def _cpus(group: list[ReportRow]) -> list[list[Any]]:
    """[CPU name, runs] of the CPUs a group's runs trained on, most runs first: a sum over machines that differ
    2x in speed per core has to say so."""
    names = Counter(cpu_in(str(r.metrics.device)) or str(r.metrics.device) for r in group)
    return [[name, n] for name, n in sorted(names.items(), key=lambda kv: (-kv[1], kv[0]))]


def training_time_sentence(records: list[dict[str, Any]]) -> list[str]:
    """The report's sentence on the training time of each profile (from `training_time`)."""
    parts = []
    for t in records:
        text = f"`{t['profile']}` {t['runs']} run{'s' * (t['runs'] != 1)}, {_fmt_hours(t['seconds'])}"
        if t["on_gpu"]:
            text += " on GPUs"
            if t["wall_seconds"] is not None and t["wall_seconds"] < 0.9 * t["seconds"]:
                text += f", within {_fmt_hours(t['wall_seconds'])} of wall-clock time (several at a time)"
        elif t["core_seconds"] is not None:
            text += f" ({_fmt_hours(t['core_seconds'] / 2)} on 2 cores)"
        if len(t.get("cpus") or []) > 1:
            text += ", runs on " + " and ".join(f"{name} ({n})" for name, n in t["cpus"])
        parts.append(text)
    return ["Training time summed over each profile's runs (evaluation excluded; on the CPU, in brackets, the "
            "core time over 2 cores, what the profile takes there with one-core runs two at a time): "
            + "; ".join(parts) + "."] if parts else []


def _span(group: list[ReportRow]) -> float | None:
    """Wall-clock seconds during which any of the runs trained: the union of their [start, end] intervals, by the
    times of their histories (runs trained in sessions days apart do not count the days between)."""
    if not all(r.history for r in group):
        return None
    spans = [(r.history[0].get("time"), r.history[-1].get("time")) for r in group]
    if not all(isinstance(t, (int, float)) for span in spans for t in span):
        return None
    spans.sort()
    total, (start, end) = 0.0, spans[0]
    for s, e in spans[1:]:
        if s > end:
            total, start = total + end - start, s
        end = max(end, e)
    return total + end - start


def _fmt_hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 5400 else _fmt_time(seconds)


def accelerator_groups(every: list[ReportRow], headline: str | None) -> list[tuple[str, list[ReportRow]]]:
    """Profiles run on a GPU (other than the headline), each summarised on its own: never mixed with CPU budgets
    (reproductions are left to the table of every run, marked)."""
    gpu = [r for r in every if r.on_gpu and not r.reproduction]
    names = sorted({r.profile for r in gpu if r.profile not in (headline, ADHOC, *SCALING_PROFILES)})
    return [(name, [r for r in gpu if r.profile == name]) for name in names]


def headline_notes(runs: list[ReportRow], baselines: dict[str, dict[str, Any]]) -> list[str]:
    """What the headline runs show: the Kneser-Ney verdicts, architectures out of their expected order, and the
    valid/test gap of each dataset (one sentence each)."""
    best = best_runs(runs)
    datasets = sorted({r.dataset for r in runs}, key=dataset_key)
    return kneser_ney_verdicts(best, baselines, datasets) + order_surprises(best, datasets) + \
        valid_test_gaps(best, datasets)


def gpu_summaries(every: list[ReportRow], headline: str | None, baselines: dict[str, dict[str, Any]]
                  ) -> list[dict[str, Any]]:
    """The summary of each profile run on a GPU (other than the headline), with the devices it ran on."""
    out = []
    for name, group in accelerator_groups(every, headline):
        record = summary(group, baselines, name)
        record["devices"] = sorted({str(r.metrics.device) for r in group})
        out.append(record)
    return out


def markdown_tables(data: dict[str, Any], every: list[ReportRow], axes: dict[str, str]) -> str:
    """The summary tables of the report's `data` (the headline and each GPU profile), what they show, the table
    of every run but the scaling profiles', the training time and how the numbers were measured."""
    notes = data["headline"]["notes"]
    lines = summary_table(data["headline"]) + ([""] + [f"- {n}" for n in notes] if notes else []) + [""]
    for record in data["gpu_profiles"]:
        table = summary_table(record)
        lines += [table[0], "", f"Trained on {', '.join(record['devices'])}; GPU budgets, not comparable with the "
                  "CPU runs above."]
        lines += table[1:] + [""]
    scaling = [r for r in every if r.profile in SCALING_PROFILES]
    lines += every_run_table([r for r in every if r.profile not in SCALING_PROFILES], axes)
    if scaling:  # dozens of runs per dataset: their fits say what they show, results.json lists each one
        names = " and ".join(f"`{p}`" for p in SCALING_PROFILES if any(r.profile == p for r in scaling))
        lines += ["", f"The {len(scaling)} runs of the {names} profile{'s' * (' and ' in names)} are left out of "
                  "this table: results.json lists each one, and RESULTS.md's scaling section fits them."]
    lines += [""] + training_time_sentence(data["training_time"])
    lines += ["", "Measured on: " + "; ".join(data["measured_on"]) + ".",
              "Test log-likelihood: every test token but the first scored exactly once by the same sliding-window "
              "protocol for every model; the best run is chosen on the full validation split. A run belongs to a "
              "profile only if that profile's suite trains exactly its config; any other run is `adhoc`.",
              "FLOPs are analytic (2·m·n·k per matmul, training = 3× forward). The `linear` model is a lookup-and-add: "
              "its FLOPs are the additions it really does, so it is nearly free per token — compare it on quality "
              "per parameter rather than per FLOP."]
    return "\n".join(lines) + "\n"
