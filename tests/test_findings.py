"""What we found: sentences generated from the report's data, each with its numbers and its source, none drawn from a
run marked still improving; and the report as data (results.json holds what RESULTS.md states)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tinylm.cli import main
from tinylm.experiments.findings import (
    beside_ladder,
    findings,
    kneser_ney,
    ladder,
    more_compute,
    per_flop,
)

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"


def cell(ll: float, rising: bool = False, flops: float = 1e13) -> dict:
    return {"run": f"run{ll}", "source": "reference", "params": 1, "test_loglik": ll, "test_perplexity": math.exp(-ll),
            "valid_loglik": ll, "train_flops": flops, "tokens_trained": 1, "still_improving": rising}


def headline(best: dict, kn: dict | None = None, level: str = "word") -> dict:
    return {"profile": "full", "datasets": list(best), "level": {ds: level for ds in best}, "best": best,
            "unigram": {}, "kneser_ney": kn or {}, "notes": []}


def test_the_ladder_finding_gives_every_rungs_score_and_leaves_out_a_still_improving_one():
    best = {"ptb": {"linear": cell(-5.35), "mlp": cell(-4.89), "attention": cell(-4.75), "transformer": cell(-4.59),
                    "lstm": cell(-4.53)}}
    text = ladder(headline(best))["text"]
    assert "on ptb every step up the ladder of architectures scores better on test" in text
    assert "`linear` ppl 210.6, `mlp` ppl 133.0, `attention` ppl 115.6, `transformer` ppl 98.5" in text
    assert "beside the ladder, `lstm` reaches ppl 92.8" in text
    best["ptb"]["transformer"] = cell(-5.0, rising=True)
    text = ladder(headline(best))["text"]
    assert "transformer" not in text  # its budget, not its architecture, set its score
    best["ptb"]["mlp"] = cell(-5.5)
    assert "does not score in its order" in ladder(headline(best))["text"]
    assert ladder(headline({"ptb": {"linear": cell(-5.3), "mlp": cell(-4.9)}})) is None  # two rungs say nothing


def test_the_kneser_ney_finding_names_who_beats_counting_on_each_dataset():
    kn = {"ptb": {"test_loglik": -4.95, "test_perplexity": 141.1, "order": 5},
          "tinyshakespeare": {"test_loglik": -1.687, "test_perplexity": 5.40, "order": 7}}
    best = {"tinyshakespeare": {"mlp": cell(-1.985), "transformer": cell(-1.703), "attention": cell(-1.6, True)},
            "ptb": {"linear": cell(-5.35), "lstm": cell(-4.53)}}
    data = headline(best, kn)
    data["level"]["tinyshakespeare"] = "char"
    text = kneser_ney(data)["text"]
    assert "clearly beaten on ptb by `lstm` (best: `lstm`, ppl 92.8 against ppl 141.1)" in text
    assert ("but on tinyshakespeare by none: the best, `transformer` at -1.703 nats/char, does not clearly beat the "
            "7-gram's -1.687 nats/char") in text  # the still-improving attention row is not counted either way


def test_the_per_flop_finding_keeps_to_the_budgets_sampled_and_to_bands_that_separate():
    def comparison(first, second, lower, separated, sampled):
        return {"dataset": "ptb", "first": first, "second": second, "lower": lower,
                "verdict": "first" if lower == first else "second", "separated": separated, "sampled": sampled,
                "crossover": None, "crossover_interval": None, "lower_first": None, "extrapolated": False}
    frontiers = [{"dataset": "ptb", "model": m, "law": {"E": 1.0}} for m in ("linear", "transformer", "lstm")]
    records = {"frontiers": frontiers, "comparisons": [
        comparison("linear", "lstm", "lstm", [1e10, 5e12], [1e11, 1e12]),
        comparison("transformer", "lstm", "lstm", [3e10, 1e13], [1e11, 3e12])]}
    text = per_flop({"cpu": records})["text"]
    assert "on ptb `lstm` reaches a lower validation loss than every other fitted architecture from 1e+11 to 1e+12" \
        in text
    records["comparisons"][1]["lower"] = None  # undecided against one of them: no winner claimed
    records["comparisons"][1]["verdict"] = "undecided"
    assert per_flop({"cpu": records}) is None


def test_the_finding_beside_the_ladder_compares_each_new_row_with_the_top_rung_and_the_rows_before_it():
    def comparison(first, second, verdict, lower=None, separated=None, crossover=None, lower_first=None):
        return {"dataset": "ptb", "first": first, "second": second, "verdict": verdict, "lower": lower,
                "separated": separated, "sampled": [1e11, 3e12], "crossover": crossover,
                "crossover_interval": [2e11, 6e11] if crossover else None, "lower_first": lower_first,
                "extrapolated": False}
    models = ("mlp", "transformer", "lstm", "llama", "mamba")
    frontiers = [{"dataset": "ptb", "model": m, "law": {"E": 1.0}} for m in models]
    records = {"frontiers": frontiers, "comparisons": [
        comparison("mlp", "llama", "second", "llama", [1e10, 1e13]),
        comparison("transformer", "lstm", "second", "lstm", [3e10, 1e12]),
        comparison("transformer", "llama", "undecided"),
        comparison("lstm", "llama", "first", "lstm", [5e12, 1e13]),  # separates only beyond the budgets sampled
        comparison("transformer", "mamba", "crossover", separated=[1e11, 3e12], crossover=4e11,
                   lower_first="transformer"),
        comparison("lstm", "mamba", "second", "mamba", [1e11, 1e12]),
        comparison("llama", "mamba", "undecided")]}
    text = beside_ladder({"cpu": records})["text"]
    assert text.startswith("Beside the ladder, per training FLOP: on ptb `lstm` is lower than `transformer` from "
                           "1e+11 to 1e+12 FLOPs, `llama` and `transformer` do not separate, `llama` and `lstm` do "
                           "not separate, `mamba` overtakes `transformer` at ~4.0e+11 FLOPs (2.0e+11 to 6.0e+11), "
                           "`mamba` is lower than `lstm` from 1e+11 to 1e+12 FLOPs and `mamba` and `llama` do not "
                           "separate (")
    assert "mlp" not in text  # only the top rung of the ladder is compared
    frontiers[1]["law"] = None  # without the transformer's fit the top fitted rung is the mlp
    assert "`llama` is lower than `mlp` from 1e+11 to 3e+12 FLOPs" in beside_ladder({"cpu": records})["text"]
    assert beside_ladder({"cpu": {"frontiers": frontiers[:1], "comparisons": []}}) is None


def test_the_compute_finding_compares_settled_runs_of_ten_times_the_compute():
    cpu = headline({"ts": {"transformer": cell(-1.703, flops=2e14), "mlp": cell(-1.985, flops=5e13)}}, level="char")
    gpu = headline({"ts": {"transformer": cell(-1.734, flops=4e15), "mlp": cell(-2.0, rising=True, flops=2e15)}},
                   level="char")
    gpu["profile"] = "gpu"
    text = more_compute(cpu, [gpu])["text"]
    assert "with 20× to 20× the training FLOPs" in text and "`transformer` on ts (-1.734 nats/char against " \
        "-1.703 nats/char)" in text and "mlp" not in text
    gpu["best"]["ts"]["transformer"] = cell(-1.6, flops=4e15)  # more compute paid: nothing to say here
    assert more_compute(cpu, [gpu]) is None


def test_the_shipped_findings_are_the_ones_its_data_gives_and_every_fit_has_its_bands():
    data = json.loads((REFERENCE / "results.json").read_text())
    assert data["findings"] == findings(data)
    assert 4 <= len(data["findings"]) <= 6 and all(f["text"] and f["source"] for f in data["findings"])
    fitted = [f for part in ("cpu", "with_gpu") for f in data["scaling"][part]["frontiers"] if f["law"]]
    assert len(fitted) >= 8
    for f in fitted:
        assert set(f["law"]) == {"E", "A", "alpha"} and set(f["bands"]) == {"E", "A", "alpha", "a"}
        assert all(lo <= hi for lo, hi in f["bands"].values())
        assert f["budgets_fitted"] >= 3 and f["sentence"].startswith(f"{f['dataset']}, {f['model']}: ")
    assert any(c["verdict"] == "crossover" for c in data["scaling"]["cpu"]["comparisons"])
    missed = [t for t in data["targets"] if t["run"] and not t["met"]]
    assert missed and all(t["to_target"]["text"] for t in missed)
    md = (REFERENCE / "RESULTS.md").read_text()
    for sentence in [f["sentence"] for f in fitted] + [t["to_target"]["text"] for t in missed]:
        assert sentence in md


def test_a_report_without_finished_runs_of_yours_says_so_in_one_line(capsys):
    assert main(["report"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no finished runs under" in err and "tinylm train --quick" in err


def test_a_flat_or_vanishing_resample_divides_nothing_by_zero():
    from tinylm.experiments.scaling import Frontier, compute_for_loss

    samples = [(1.0, 2.0, 0.0, math.nan), (1.0, 0.0, 0.3, math.nan)]  # L = 3 everywhere; L = 1 everywhere
    frontier = Frontier("ds", "m", [], (1.0, 2.0, 0.3), None, samples)
    _, lo, hi, share = compute_for_loss(frontier, 2.5)
    assert share == 0.5 and (lo, hi) == (0.0, math.inf)  # the flat law never gets below 3; the other is there at once
    assert compute_for_loss(frontier, 3.5)[1:] == (0.0, 0.0, 1.0)  # both are below 3.5 from the start


def test_two_seeded_recipes_are_compared_by_their_means_and_a_rising_row_is_left_out():
    spread = {"n": 4, "test_mean": -1.72, "test_sd": 0.02, "valid_mean": -1.43, "valid_sd": 0.01}
    best = {"tinyshakespeare": {"linear": cell(-2.3), "mlp": cell(-1.9), "attention": cell(-1.80),
                                "transformer": cell(-1.703), "llama": cell(-1.727), "mamba": cell(-1.60, rising=True)}}
    record = {**headline(best, level="char"), "seeds": {"tinyshakespeare": {
        "transformer": spread, "llama": {**spread, "test_mean": -1.75, "test_sd": 0.01}}}}
    found = ladder(record)
    # the difference of two means of 4: sd sqrt(0.02^2/4 + 0.01^2/4) = 0.0112, gap 0.03 = 2.7 sd
    assert found["text"].endswith(
        "Over 4 seeds the `transformer` recipe scores -1.720 ± 0.020 (its headline run -1.703): `llama` (mean of 4 "
        "seeds -1.750 ± 0.010) 2.7 sd below it (separated) (a gap separates at 2 sd of the difference).")
    assert "mamba" not in found["text"] and found["source"].endswith("and the seed spreads under it")
    record["seeds"]["tinyshakespeare"].pop("transformer")
    assert "seeds" not in ladder(record)["text"]  # no band on the top rung: nothing to read against


def test_each_step_up_the_ladder_between_two_seeded_rungs_is_read_against_seed_noise():
    best = {"tinyshakespeare": {"linear": cell(-2.3), "mlp": cell(-1.823), "attention": cell(-1.800),
                                "transformer": cell(-1.703)}}
    seeds = {"mlp": {"n": 3, "test_mean": -1.826, "test_sd": 0.006},
             "attention": {"n": 3, "test_mean": -1.815, "test_sd": 0.013},
             "transformer": {"n": 4, "test_mean": -1.708, "test_sd": 0.012}}
    text = ladder({**headline(best, level="char"), "seeds": {"tinyshakespeare": seeds}})["text"]
    # sd of the difference sqrt(0.006^2/3 + 0.013^2/3) = 0.0083: a gap of 0.011 is 1.3 sd; 0.107 is 10+ sd
    assert ("Over seeds, the step from `mlp` to `attention` +0.011 nats (3 and 3 seeds, 1.3 sd: within seed noise) "
            "and `attention` to `transformer` +0.107 nats (3 and 4 seeds, 11.1 sd: separated).") in text
    seeds.pop("attention")
    assert "the step from" not in ladder({**headline(best, level="char"), "seeds": {"tinyshakespeare": seeds}})["text"]
