"""The report's scaling section: the scaling profile's runs fitted per dataset and architecture, a table of the laws
and crossovers, plain-sentence conclusions with their uncertainty, and the compute a missed target would need."""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

from tinylm.experiments.crossover import Comparison, compare
from tinylm.experiments.results import ReportRow, dataset_key, model_key
from tinylm.experiments.scaling import RESAMPLES, Frontier, compute_for_loss, fit_frontier

SCALING = "scaling"
SCALING_GPU = "scaling-gpu"
"""The scaling profile's extension on a lent GPU: two budgets x10 larger, fitted together with the CPU budgets."""
EXTENDED = "_gpu"
"""The suffix of the extended fits' figures: scaling_<dataset>_gpu.png."""
SCALING_PROFILES = (SCALING, SCALING_GPU)
"""Dozens of runs per dataset: their fits say what they show, not the tables and figures of single runs."""


def budget_of(r: ReportRow) -> float | None:
    value = r.config.get("train", {}).get("max_flops")
    return float(value) if isinstance(value, (int, float)) else None


def scaling_frontiers(runs: list[ReportRow], extended: bool = False) -> dict[tuple[str, str], Frontier]:
    """{(dataset, model): its fitted frontier} from the CPU runs of the scaling profile (validation loss on the full
    split against parameters, per FLOP budget); `extended`: with the GPU extension's runs too, for the architectures
    it trained ({} without them)."""
    def counted(r: ReportRow) -> bool:
        return (r.profile == SCALING and not r.on_gpu) or (extended and r.profile == SCALING_GPU)

    groups: dict[tuple[str, str], list[ReportRow]] = {}
    for r in runs:
        if counted(r) and budget_of(r) and r.metrics.valid_loss is not None:
            groups.setdefault((r.dataset, r.model), []).append(r)
    if extended:
        groups = {key: group for key, group in groups.items() if any(r.profile == SCALING_GPU for r in group)}
    out = {}
    for (ds, model), group in sorted(groups.items(), key=lambda kv: (dataset_key(kv[0][0]), model_key(kv[0][1]))):
        points: dict[float, list[tuple[float, float]]] = {}
        for r in group:
            points.setdefault(budget_of(r), []).append((float(r.metrics.params), r.metrics.valid_loss))
        out[(ds, model)] = fit_frontier(ds, model, points)
    return out


def comparisons(frontiers: dict[tuple[str, str], Frontier]) -> list[Comparison]:
    """Every pair of fitted architectures of a dataset, compared where their compute ranges meet."""
    out = []
    for one, two in combinations(frontiers.values(), 2):
        if one.dataset == two.dataset:
            result = compare(one, two)
            if result is not None:
                out.append(result)
    return out


def finite(value: float | None) -> float | None:
    """A number for JSON: None where it is missing or not finite."""
    return value if value is not None and math.isfinite(value) else None


def _interval(lo: float, hi: float) -> str:
    """A bootstrap band at the precision it supports: two significant digits (its edges move in the second digit
    from one set of resamples to another)."""
    return "[–]" if lo is None or hi is None or math.isnan(lo) else f"[{lo:.2g}, {hi:.2g}]"


def _crossover_text(c: Comparison) -> str:
    """One sentence on what the bands of two frontiers allow saying."""
    if c.verdict == "undecided":
        return (f"{c.first} and {c.second}: their bands overlap from {c.low:.0e} to {c.high:.0e} FLOPs; no ranking "
                "or crossover is claimed")
    low, high = c.separated  # type: ignore[misc]
    if c.verdict in ("first", "second"):
        winner, loser = (c.first, c.second) if c.verdict == "first" else (c.second, c.first)
        beyond = c.sampled is not None and not (c.sampled[0] <= low and high <= c.sampled[1])
        where = ("; the budgets both sampled do not overlap, so this compares extrapolations" if c.sampled
                 and c.sampled[0] > c.sampled[1] else "; partly beyond the budgets both sampled" if beyond else "")
        return (f"{winner} reaches a lower loss than {loser} from {low:.0e} to {high:.0e} FLOPs (bands "
                f"separate{where})")
    later = c.second if c.lower_first == c.first else c.first
    interval = "no resample crosses there" if c.interval is None else \
        f"95% interval {c.interval[0]:.2g} to {c.interval[1]:.2g}, {c.share:.0%} of resamples cross"
    where = "; an extrapolation beyond the budgets both sampled" if c.extrapolated else ""
    return f"{later} overtakes {c.lower_first} at ~{c.compute:.2g} FLOPs ({interval}{where})"


def comparison_record(c: Comparison) -> dict[str, Any]:
    """A comparison of two frontiers as results.json holds it, with its sentence."""
    winner = {"first": c.first, "second": c.second}.get(c.verdict)
    return {"dataset": c.dataset, "first": c.first, "second": c.second, "verdict": c.verdict, "lower": winner,
            "range": [c.low, c.high], "separated": list(c.separated) if c.separated else None,
            "sampled": list(c.sampled) if c.sampled else None, "crossover": finite(c.compute),
            "crossover_interval": list(c.interval) if c.interval else None, "crossing_share": c.share,
            "lower_first": c.lower_first, "extrapolated": c.extrapolated, "sentence": _crossover_text(c)}


def _no_floor(f: Frontier) -> bool:
    """The floor E of the fit (and of nearly all its resamples) sits at its lower bound 0: over these budgets the
    frontier is a pure power law and shows no floor, which says nothing about the floor there is."""
    return f.law is not None and f.law[0] < 1e-3 and f.interval(0)[1] < 1e-3


def _frontier_sentence(f: Frontier) -> str:
    flagged = [f"{iso.budget:.0e}" for iso in f.isoflops if iso.under_sampled]
    edge = (f" The optimum of {', '.join(flagged)} FLOPs lies at or beyond the edge of the sampled sizes "
            "(under-sampled) and is left out.") if flagged else ""
    if f.law is None:
        why = f.rejected or "fewer than three budgets have their optimum inside the sampled sizes"
        return f"{f.dataset}, {f.model}: no law fitted: {why}.{edge}"
    e, _, alpha = f.law
    size = ""
    if f.size_law:
        size = f" The compute-optimal size grows as N* ∝ C^{f.size_law[1]:.2f} {_interval(*f.interval(3))}."
    floor = ("with no floor in sight (E fits at its bound 0: over these budgets a pure power law)" if _no_floor(f)
             else f"toward a floor of {e:.3f} {_interval(*f.interval(0))} nats/token (valid)")
    return (f"{f.dataset}, {f.model}: the best loss falls as C^-{alpha:.2f} {_interval(*f.interval(2))} "
            f"{floor}.{size}{edge}")


def frontier_record(f: Frontier, found: list[Comparison]) -> dict[str, Any]:
    """A fitted frontier as results.json holds it: the law, its 95% bands, the budgets and the crossovers."""
    names = ("E", "A", "alpha", "a")
    return {
        "dataset": f.dataset, "model": f.model,
        "law": dict(zip(names, f.law)) if f.law else None,
        "size_law": {"k": f.size_law[0], "a": f.size_law[1]} if f.size_law else None,
        "bands": {name: [finite(v) for v in f.interval(i)] for i, name in enumerate(names)} if f.law else None,
        "no_floor": _no_floor(f), "rejected": f.rejected or None,
        "resamples": f.resamples, "resamples_fitted": len(f.samples),
        "budgets": [{"flops": iso.budget, "runs": len(iso.params), "n_star": iso.n_star, "l_star": iso.l_star,
                     "under_sampled": iso.under_sampled} for iso in f.isoflops],
        "budgets_fitted": sum(not iso.under_sampled for iso in f.isoflops),
        "crossovers": [{"with": c.second if c.first == f.model else c.first, "flops": c.compute} for c in found
                       if c.verdict == "crossover" and c.dataset == f.dataset and f.model in (c.first, c.second)],
        "sentence": _frontier_sentence(f),
    }


def scaling_records(frontiers: dict[tuple[str, str], Frontier]) -> dict[str, list[dict[str, Any]]]:
    """Every fitted frontier and every comparison of two, as results.json holds them."""
    found = comparisons(frontiers)
    return {"frontiers": [frontier_record(f, found) for f in frontiers.values()],
            "comparisons": [comparison_record(c) for c in found]}


def frontier_table(records: list[dict[str, Any]]) -> list[str]:
    """One row per dataset and architecture: E, A, α, the N*(C) exponent, budgets used and crossovers."""
    lines = ["| dataset | model | E (nats/token) | A | α | N* ∝ C^a: a | budgets fitted | crossovers |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        fitted = f"{r['budgets_fitted']} of {len(r['budgets'])}"
        if r["law"] is None:
            lines.append(f"| {r['dataset']} | {r['model']} | no fit | | | | {fitted} | - |")
            continue
        law, bands = r["law"], r["bands"]
        cross = "; ".join(f"{c['with']} ~{c['flops']:.2g}" for c in r["crossovers"]) or "-"
        floor = "0 (at its bound)" if r["no_floor"] else f"{law['E']:.3f} {_interval(*bands['E'])}"
        exponent = f"{r['size_law']['a']:.2f} {_interval(*bands['a'])}" if r["size_law"] else "-"
        lines.append(f"| {r['dataset']} | {r['model']} | {floor} | {law['A']:.3g} {_interval(*bands['A'])} | "
                     f"{law['alpha']:.3f} {_interval(*bands['alpha'])} | {exponent} | {fitted} | {cross} |")
    return lines


def _fitted(records: dict[str, list[dict[str, Any]]], figures: list[str]) -> list[str]:
    """Table, one sentence per frontier, the comparisons, and the figures."""
    lines = frontier_table(records["frontiers"]) + [""]
    lines += [f"- {r['sentence']}" for r in records["frontiers"]]
    lines += [f"- {c['dataset']}: {c['sentence']}." for c in records["comparisons"]] + [""]
    return lines + [f"![{name}](figures/{name}.png)" for name in figures] + ([""] if figures else [])


def scaling_section(records: dict[str, list[dict[str, Any]]], figures: list[str],
                    extended: dict[str, list[dict[str, Any]]] | None = None,
                    extended_figures: list[str] | None = None) -> list[str]:
    """The RESULTS.md section from the fits' records: method, table, conclusions and figures, then the same over
    the CPU budgets and the GPU extension's together (`extended`, where it ran); [] without scaling runs."""
    if not records["frontiers"] and not (extended and extended["frontiers"]):
        return []
    lines = ["## Scaling: which architecture wins at which compute", "",
             "The `scaling` profile trains every architecture at several training-FLOP budgets C, several sizes N "
             "each, every run to exactly its budget (cosine schedule ending there). Per budget a parabola of "
             "validation loss (full split) in log N gives the compute-optimal size N*(C) and loss L*(C) (Hoffmann et "
             "al. 2022); per architecture L*(C) = E + A·C^(−α) (Kaplan et al. 2020) and N*(C) ∝ C^a. Brackets are "
             f"95% percentile bands of {RESAMPLES} bootstrap resamples (runs drawn with replacement within each "
             "budget, every fit redone); with a handful of runs per budget such bands are, if anything, too narrow. "
             "A crossover is named only where the band of the loss difference is clear of zero on both sides.", ""]
    lines += _fitted(records, figures)
    if extended and extended["frontiers"]:
        lines += ["### With the GPU extension: two budgets x10 larger", "",
                  f"The `{SCALING_GPU}` profile trained on a lent GPU two more budgets per architecture, x10 the CPU's "
                  "two largest, with the same recipe but 4 times the batch (fp32 with TF32 matrix products). The fits "
                  "below take the CPU budgets and these together. Read them with two caveats. The larger batch costs "
                  "loss at equal compute (`benchmarks/gpu_bridge.py` measures it: the same runs at batch 16, "
                  "`benchmarks/logs/`), so these two budgets' L* lie above what the CPU recipe would reach there and "
                  "the fitted laws flatten toward them: α is, if anything, too small and E too large. And at these "
                  "budgets the smaller sizes take tens of passes over the training split without dropout, so part "
                  "of what flattens is the data running out, not the architecture.", ""]
        lines += _fitted(extended, extended_figures or [])
    return lines


def flops_to_target(frontier: Frontier | None, goal: float, test_gap: float) -> dict[str, Any] | None:
    """The training FLOPs at which the scaling fit reaches a test log-likelihood goal, with the bootstrap interval
    (a record with its sentence); None without a fit. The law is of valid loss: the goal is moved onto it by
    `test_gap`, the test − valid loss of the run the target is judged on (the gap of the scaling runs' small models
    is smaller than a large run's)."""
    if frontier is None or frontier.law is None or not frontier.samples:
        return None
    loss = -goal - test_gap
    c, lo, hi, share = compute_for_loss(frontier, loss)
    fit = f"scaling fit, valid loss {loss:.3f} after this run's test − valid gap of {test_gap:+.3f}"
    record = {"method": "scaling fit", "valid_loss": loss, "test_valid_gap": test_gap, "flops": finite(c),
              "interval": [finite(lo), finite(hi)], "share": share, "floor": frontier.law[0]}
    if share == 0.0 or not math.isfinite(c):
        record["text"] = f"not reached: below the fitted floor E = {frontier.law[0]:.3f} ({fit})"
        return record
    upper = "never reached" if math.isinf(hi) else f"{hi:.2g}"
    record["text"] = f"~{c:.2g} [{lo:.2g}, {upper}] ({fit}; {share:.0%} of resamples reach it)"
    return record
