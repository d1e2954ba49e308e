"""What we found: plain sentences that the report writes from its own data (results.json), for the README and
RESULTS.md.

Each finding gives its numbers and the table or figure they come from. None uses a run marked still improving
(its budget, not its architecture, set its score); the scaling findings come from the iso-FLOP fits, whose runs
each end at their budget by design. A finding whose data is missing is left out rather than weakened.
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

from tinylm.experiments.tables import MARGIN, joined
from tinylm.models.registry import ladder_names, model_names

Finding = dict[str, str]
"""{"text": the sentence, "source": the table or figure it comes from}."""


def _score(cell: dict[str, Any], level: str | None, word: str = "ppl ") -> str:
    """A best run's test score as people quote it: perplexity at word level, nats per character at char level."""
    if level == "word":
        return f"{word}{cell['test_perplexity']:.1f}"
    return f"{cell['test_loglik']:.3f} nats/{'char' if level == 'char' else 'token'}"


def _settled(headline: dict[str, Any], ds: str) -> dict[str, dict[str, Any]]:
    """The best run per architecture of a dataset, without those still improving."""
    return {m: c for m, c in headline["best"].get(ds, {}).items() if not c["still_improving"]}


def ladder(headline: dict[str, Any]) -> Finding | None:
    """The ladder of architectures on the dataset where most of them ran: do the richer ones score better? With
    seeds of the top rung's recipe, the rows beside the ladder are read against its band."""
    ds = max(headline["datasets"], key=lambda d: len(_settled(headline, d)), default=None)
    cells = _settled(headline, ds) if ds else {}
    rungs = [m for m in ladder_names() if m in cells]
    if len(rungs) < 3:
        return None
    level = headline["level"].get(ds)
    ordered = all(cells[a]["test_loglik"] < cells[b]["test_loglik"] for a, b in zip(rungs, rungs[1:]))
    lead = ("every step up the ladder of architectures scores better on test" if ordered
            else "the ladder of architectures does not score in its order on test")
    scores = ", ".join(f"`{m}` {_score(cells[m], level)}" for m in rungs)
    beside = [m for m in model_names() if m in cells and m not in rungs]
    reached = [f"`{m}` {'reaches ' * (i == 0)}{_score(cells[m], level)}" for i, m in enumerate(beside)]
    extra = f"; beside the ladder, {joined(reached)}" if beside else ""
    band = _steps_clause((headline.get("seeds") or {}).get(ds, {}), rungs) + _band_clause(headline, ds, cells)
    return {"text": f"Architecture decides much: on {ds} {lead}: {scores}{extra}.{band}",
            "source": f"the headline table, best run on valid of the `{headline['profile']}` profile"
                      + (", and the seed spreads under it" if band else "")}


def kneser_ney(headline: dict[str, Any]) -> Finding | None:
    """Which architectures clearly beat the Kneser-Ney n-gram model, dataset by dataset."""
    beaten, unbeaten = [], []
    for ds in headline["datasets"]:
        kn, cells = headline["kneser_ney"].get(ds), _settled(headline, ds)
        if kn is None or len(headline["best"].get(ds, {})) < 2 or not cells:
            continue
        level = headline["level"].get(ds)
        beat = [f"`{m}`" for m in model_names() if m in cells and cells[m]["test_loglik"] >= kn["test_loglik"] + MARGIN]
        best = max(cells, key=lambda m: cells[m]["test_loglik"])
        kn_score = _score(kn, level)
        if beat:
            beaten.append(f"on {ds} by {joined(beat)} (best: `{best}`, {_score(cells[best], level)} against "
                          f"{kn_score})")
        else:
            unbeaten.append(f"on {ds} by none: the best, `{best}` at {_score(cells[best], level)}, does not clearly "
                            f"beat the {kn['order']}-gram's {kn_score}")
    if not beaten and not unbeaten:
        return None
    parts = "; ".join(beaten) + ("; but " if beaten and unbeaten else "") + "; ".join(unbeaten)
    return {"text": f"Counting n-grams is a strong baseline: the Kneser-Ney n-gram model is clearly beaten {parts}.",
            "source": "the headline table's Kneser-Ney row"}


def _clipped(c: dict[str, Any]) -> tuple[float, float] | None:
    """The compute range where a comparison's bands separate, within the budgets both architectures sampled."""
    if not c["separated"] or not c["sampled"]:
        return None
    low, high = max(c["separated"][0], c["sampled"][0]), min(c["separated"][1], c["sampled"][1])
    return (low, high) if low < high else None


def _overtakes(c: dict[str, Any]) -> str:
    """A crossover comparison as "`later` overtakes `lower_first` at ~C FLOPs"."""
    later = c["second"] if c["lower_first"] == c["first"] else c["first"]
    return f"`{later}` overtakes `{c['lower_first']}` at ~{c['crossover']:.1e} FLOPs"


def _per_flop_winner(ds: str, records: dict[str, Any]) -> str | None:
    """One dataset's architecture with the lowest fitted loss at equal compute against every other, within the
    budgets both sampled, or its crossovers within them; None when the fits claim neither."""
    fitted = [f["model"] for f in records["frontiers"] if f["dataset"] == ds and f["law"]]
    found = [c for c in records["comparisons"] if c["dataset"] == ds]
    for model in fitted:
        ranges = [_clipped(c) for c in found if model in (c["first"], c["second"]) and c["lower"] == model]
        if len(ranges) == len(fitted) - 1 >= 2 and all(ranges):
            low, high = max(r[0] for r in ranges), min(r[1] for r in ranges)  # type: ignore[index]
            if low < high:
                return (f"on {ds} `{model}` reaches a lower validation loss than every other fitted architecture "
                        f"from {low:.0e} to {high:.0e} training FLOPs")
    crossings = [c for c in found if c["verdict"] == "crossover" and not c["extrapolated"] and c["crossover"]]
    texts = [_overtakes(c) + (" (95% interval {:.1e} to {:.1e})".format(*c["crossover_interval"])
                              if c["crossover_interval"] else "") for c in crossings]
    return f"on {ds} {joined(texts)}" if texts else None


def per_flop(scaling: dict[str, Any]) -> Finding | None:
    """Which architecture wins at equal training compute, from the CPU scaling fits (bands clear of each other)."""
    records = scaling.get("cpu") or {"frontiers": [], "comparisons": []}
    datasets = list(dict.fromkeys(f["dataset"] for f in records["frontiers"]))
    parts = [(ds, text) for ds in datasets if (text := _per_flop_winner(ds, records))]
    if not parts:
        return None
    return {"text": "At equal training compute the ranking is not the ladder's: " + "; ".join(t for _, t in parts)
            + " (95% bootstrap bands clear of each other, within the budgets sampled).",
            "source": "the scaling section of RESULTS.md, " + joined([f"scaling_{ds}.png" for ds, _ in parts])}


def _pair_text(c: dict[str, Any], one: str, two: str) -> str:
    """What the bands of one comparison allow saying of `one` against `two`, within the budgets both sampled."""
    if c["verdict"] == "crossover" and c["crossover"] and not c["extrapolated"]:
        band = " ({:.1e} to {:.1e})".format(*c["crossover_interval"]) if c["crossover_interval"] else ""
        return _overtakes(c) + band
    span = _clipped(c)
    if c["lower"] and span:
        loser = c["second"] if c["lower"] == c["first"] else c["first"]
        return f"`{c['lower']}` is lower than `{loser}` from {span[0]:.0e} to {span[1]:.0e} FLOPs"
    return f"`{one}` and `{two}` do not separate"


def beside_ladder(scaling: dict[str, Any]) -> Finding | None:
    """Each fitted model beside the ladder against the ladder's top rung and the models beside it before it (the
    classical reference row first), at equal compute, dataset by dataset."""
    records = scaling.get("cpu") or {"frontiers": [], "comparisons": []}
    fitted = {(f["dataset"], f["model"]) for f in records["frontiers"] if f["law"]}
    beside = [m for m in model_names() if m not in ladder_names()]
    parts = []
    for ds in dict.fromkeys(f["dataset"] for f in records["frontiers"]):  # the report's order, not a set's
        top = next((m for m in reversed(ladder_names()) if (ds, m) in fitted), None)
        pairs = [(m, o) for i, m in enumerate(beside) for o in [top, *beside[:i]]
                 if o and (ds, m) in fitted and (ds, o) in fitted]
        found = {frozenset((c["first"], c["second"])): c for c in records["comparisons"] if c["dataset"] == ds}
        texts = [_pair_text(found[frozenset(p)], *p) for p in pairs if frozenset(p) in found]
        if texts:
            parts.append(f"on {ds} {joined(texts)}")
    if not parts:
        return None
    return {"text": "Beside the ladder, per training FLOP: " + "; ".join(parts)
            + " (fitted validation loss, 95% bootstrap bands, within the budgets both sampled).",
            "source": "the scaling section of RESULTS.md"}


def _against_band(m: str, own: dict[str, Any] | None, score: float, band: dict[str, Any]) -> str:
    """One row's test score against the top rung's seed band: the gap in standard deviations of the difference (a
    lone run is taken to spread as the band's recipe does), and whether it clears 2 of them."""
    if own:  # both seeded: the difference of the two means
        score, sd = own["test_mean"], _sd_of_means(own, band)
        what = f"`{m}` (mean of {own['n']} seeds {own['test_mean']:.3f} ± {own['test_sd']:.3f})"
    else:
        sd, what = band["test_sd"] * math.sqrt(1 + 1 / band["n"]), f"`{m}`"
    z, verdict = _in_sds(score - band["test_mean"], sd)
    return f"{what} {abs(z):.1f} sd {'above' if z > 0 else 'below'} it ({verdict})"


def _sd_of_means(one: dict[str, Any], other: dict[str, Any]) -> float:
    """The standard deviation of the difference of two seed spreads' mean test scores."""
    return math.hypot(one["test_sd"] / math.sqrt(one["n"]), other["test_sd"] / math.sqrt(other["n"]))


def _in_sds(gap: float, sd: float) -> tuple[float, str]:
    """A gap in standard deviations of the difference, and whether it clears 2 of them."""
    z = gap / sd if sd > 0 else math.copysign(math.inf, gap) if gap else 0.0  # identical seeds: any gap separates
    return z, "separated" if abs(z) >= 2 else "within seed noise"


def _steps_clause(seeded: dict[str, dict[str, Any]], rungs: list[str]) -> str:
    """Each step up the ladder between two rungs that were both trained with several seeds: whether their means
    are further apart than seed noise (2 sd of the difference); "" where no two neighbours are seeded."""
    texts = []
    for a, b in zip(rungs, rungs[1:]):
        if a in seeded and b in seeded:
            lo, hi = seeded[a], seeded[b]
            gap = hi["test_mean"] - lo["test_mean"]
            z, verdict = _in_sds(gap, _sd_of_means(lo, hi))
            texts.append(f"`{a}` to `{b}` {gap:+.3f} nats ({lo['n']} and {hi['n']} seeds, {z:.1f} sd: {verdict})")
    return f" Over seeds, the step from {joined(texts)}." if texts else ""


def _band_clause(headline: dict[str, Any], ds: str, cells: dict[str, dict[str, Any]]) -> str:
    """The rows beside the ladder read against the top rung's spread over seeds of its recipe, where it was trained
    with several ("" where not): whether a gap between single runs is more than seed noise."""
    seeded = (headline.get("seeds") or {}).get(ds, {})
    top = next((m for m in reversed(ladder_names()) if m in cells), None)
    if top is None or top not in seeded:
        return ""
    band = seeded[top]
    texts = [_against_band(m, seeded.get(m), cells[m]["test_loglik"], band)
             for m in model_names() if m in cells and m not in ladder_names()]
    if not texts:
        return ""
    return (f" Over {band['n']} seeds the `{top}` recipe scores {band['test_mean']:.3f} ± {band['test_sd']:.3f} "
            f"(its headline run {cells[top]['test_loglik']:.3f}): " + joined(texts)
            + " (a gap separates at 2 sd of the difference).")


def size_growth(scaling: dict[str, Any]) -> Finding | None:
    """How fast the compute-optimal model size grows with compute, across the fitted architectures."""
    fits = [f for f in (scaling.get("cpu") or {"frontiers": []})["frontiers"] if f["law"] and f["size_law"]]
    if len(fits) < 2:
        return None
    low, high = min(fits, key=lambda f: f["size_law"]["a"]), max(fits, key=lambda f: f["size_law"]["a"])
    return {"text": "Bigger budgets want bigger models: the compute-optimal size grows as N* ∝ C^a with a from "
                    f"{low['size_law']['a']:.2f} (`{low['model']}` on {low['dataset']}) to {high['size_law']['a']:.2f} "
                    f"(`{high['model']}` on {high['dataset']}) over the budgets sampled.",
            "source": "the scaling table of RESULTS.md"}


def more_compute(headline: dict[str, Any], gpu_profiles: list[dict[str, Any]], factor: float = 10.0
                 ) -> Finding | None:
    """Where a GPU profile spent at least `factor` times the compute of the headline's best run of an architecture,
    on the same data: did it score better? (At a fixed size of data, compute alone stops paying.)"""
    better, worse, ratios = [], [], []
    for record in gpu_profiles:
        for ds in record["datasets"]:
            cpu, gpu, level = _settled(headline, ds), _settled(record, ds), headline["level"].get(ds)
            for m in model_names():
                if m in cpu and m in gpu and cpu[m]["train_flops"] and gpu[m]["train_flops"] and \
                        gpu[m]["train_flops"] >= factor * cpu[m]["train_flops"]:
                    ratios.append(gpu[m]["train_flops"] / cpu[m]["train_flops"])
                    scores = f"{_score(gpu[m], level)} against {_score(cpu[m], level)}"
                    (better if gpu[m]["test_loglik"] > cpu[m]["test_loglik"] else worse).append(
                        f"`{m}` on {ds} ({scores})")
    if not worse:
        return None
    profiles = joined([f"`{r['profile']}`" for r in gpu_profiles])
    text = (f"Compute is not all: with {min(ratios):.0f}× to {max(ratios):.0f}× the training FLOPs of the "
            f"`{headline['profile']}` profile's best runs, the {profiles} profile scored no better with "
            f"{joined(worse)}" + (f", better only with {joined(better)}" if better else "")
            + "; none of these runs was still improving: at this size of data, more compute alone did not pay.")
    return {"text": text, "source": "the headline table and the GPU table below it"}


def findings(data: dict[str, Any]) -> list[Finding]:
    """The report's findings, from its data: the ladder (and the rows beside it against seed noise), the n-gram
    baseline, compute against architecture, the models beside the ladder per FLOP."""
    out = [ladder(data["headline"]), kneser_ney(data["headline"]), per_flop(data["scaling"]),
           beside_ladder(data["scaling"]), size_growth(data["scaling"]),
           more_compute(data["headline"], data["gpu_profiles"])]
    return [f for f in out if f is not None]


def findings_markdown(found: list[Finding], width: int = 118) -> list[str]:
    """The findings as a bullet list, each followed by its source, wrapped at `width` characters."""
    return [textwrap.fill(f"{f['text']} *({f['source']})*", width, initial_indent="- ", subsequent_indent="  ",
                          break_on_hyphens=False, break_long_words=False) for f in found]
