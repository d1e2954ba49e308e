"""How far apart seeds of one recipe score: the bands that say whether two headline rows differ.

A run counts as a seed of a headline row when its config equals the row's in everything but `train.seed` (and where
or how it ran: device, compile), e.g. `tinylm train --profile full --model transformer --dataset tinyshakespeare
--seed 2`. Such runs are ad hoc, never headline rows themselves: the headline keeps the profile's own seed, so that
more seeds widen the band rather than select a lucky one.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from tinylm.experiments.results import ReportRow, dataset_key, model_key
from tinylm.run_folders import identity_of

MIN_SEEDS = 3
"""Seeds of a recipe (the headline row's included) before its spread is stated."""


def _recipe(r: ReportRow) -> str:
    """The run's identity without its seed: equal for the seeds of one recipe."""
    return json.dumps(identity_of(r.config, ignore=("seed",)), sort_keys=True, default=str)


def seed_spreads(every: list[ReportRow], best: dict[tuple[str, str], ReportRow]) -> dict[str, dict[str, Any]]:
    """{dataset: {model: spread}} for each best run with at least MIN_SEEDS seeds among `every`: their number, seeds,
    and the mean and sample standard deviation of the test and valid log-likelihoods (results.json)."""
    recipes: dict[str, dict[int, ReportRow]] = {}
    for r in every:
        seed = (r.config.get("train") or {}).get("seed")
        if not r.reproduction and isinstance(seed, int):
            recipes.setdefault(_recipe(r), {}).setdefault(seed, r)
    out: dict[str, dict[str, Any]] = {}
    for (ds, model), row in sorted(best.items(), key=lambda kv: (dataset_key(kv[0][0]), model_key(kv[0][1]))):
        seeds = dict(recipes.get(_recipe(row), {}))
        seeds[row.config["train"]["seed"]] = row  # the headline row itself, whichever folder holds a twin
        runs = [seeds[s] for s in sorted(seeds) if seeds[s].metrics.valid_loglik is not None]
        if len(runs) < MIN_SEEDS:
            continue
        test = [float(r.metrics.test_loglik) for r in runs]  # type: ignore[arg-type]
        valid = [float(r.metrics.valid_loglik) for r in runs]  # type: ignore[arg-type]
        out.setdefault(ds, {})[model] = {
            "n": len(runs), "seeds": sorted(seeds), "runs": [r.path.name for r in runs],
            "test_mean": statistics.fmean(test), "test_sd": statistics.stdev(test),
            "valid_mean": statistics.fmean(valid), "valid_sd": statistics.stdev(valid)}
    return out


def seed_notes(spreads: dict[str, dict[str, Any]]) -> list[str]:
    """One line per dataset: each seeded recipe's test and valid scores over its seeds, mean ± sd."""
    lines = []
    for ds, by_model in spreads.items():
        parts = [f"`{m}` test {s['test_mean']:.3f} ± {s['test_sd']:.3f}, valid {s['valid_mean']:.3f} ± "
                 f"{s['valid_sd']:.3f} ({s['n']} seeds)" for m, s in by_model.items()]
        lines.append(f"Over seeds of the headline recipe on {ds} (mean ± sd): " + "; ".join(parts) + ".")
    return lines
