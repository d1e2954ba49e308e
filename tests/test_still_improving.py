"""A run whose valid log-likelihood still rose by > 0.01 nats over its last tenth of training is
marked *still improving* in the tables, the figures and the conclusions, which then draw no verdict from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from tinylm.experiments.figures import _bars_panel
from tinylm.experiments.results import STILL_IMPROVING, ReportRow
from tinylm.experiments.tables import (
    FOOTNOTE,
    MARK,
    every_run_table,
    kneser_ney_verdicts,
    order_surprises,
    summary,
    summary_table,
)
from tinylm.models.registry import make_config
from tinylm.run_metrics import RunMetrics


def make_run(name: str, model: str, valid: list[float], test_ll: float, dataset: str = "ptb") -> ReportRow:
    """A run evaluated every 100 steps with these valid losses."""
    history = [{"step": 100 * (i + 1), "tokens": 1000 * (i + 1), "flops": 1e9 * (i + 1), "valid_loss": v}
               for i, v in enumerate(valid)]
    metrics = RunMetrics(model=model, dataset=dataset, params=1000, tokens_trained=1000 * len(valid),
                         train_flops=1e9 * len(valid), train_seconds=1.0, tokens_per_second=1.0,
                         valid_loglik=-min(valid, default=9.0), best_valid_loss=min(valid, default=9.0),
                         test_loglik=test_ll, test_perplexity=2.718281828 ** -test_ll, test_bits=-test_ll / 0.693147,
                         unigram_test_loglik=-6.5, status="complete")
    return ReportRow(Path(name), metrics, {"model": {}, "train": {}}, history, profile="full")


@pytest.mark.parametrize("valid, gain, rising", [
    ([5.0, 4.8, 4.7, 4.65, 4.62, 4.60, 4.59, 4.58, 4.57, 4.55], 0.02, True),    # the last eval gained 0.02
    ([5.0, 4.8, 4.7, 4.65, 4.62, 4.60, 4.59, 4.58, 4.57, 4.565], 0.005, False),  # a plateau: 0.005
    ([5.0, 4.8, 4.7, 4.6, 4.55, 4.55, 4.56, 4.58, 4.61, 4.63], 0.0, False),      # early-stopped after overfitting
    ([5.0, 4.5], 0.5, True),                                                     # evals at 100 and 200: 90% is 180
])
def test_the_gain_over_the_last_tenth_of_steps_decides(valid, gain, rising):
    run = make_run("r", "lstm", valid, -4.6)
    assert run.last_tenth_gain == pytest.approx(gain)
    assert run.still_improving is rising


def test_a_gain_of_exactly_the_threshold_or_no_earlier_evaluation_is_not_marked():
    exact = make_run("r", "lstm", [5.0] * 9 + [5.0 - STILL_IMPROVING / 2], -4.6)
    assert not exact.still_improving
    assert make_run("one", "lstm", [5.0], -4.6).last_tenth_gain is None
    assert not make_run("none", "lstm", [], -4.6).still_improving


FALLING = [6.0 - 0.1 * i for i in range(10)]
FLAT = [6.0, 5.0, 4.8, 4.7, 4.7, 4.7, 4.7, 4.7, 4.7, 4.7]


def test_tables_mark_the_still_improving_runs_and_explain_the_mark_once():
    runs = [make_run("ptb-mlp", "mlp", FALLING, -5.10), make_run("ptb-lstm", "lstm", FLAT, -4.50)]
    table = summary_table(summary(runs, {}, "full"))
    mlp_row = next(line for line in table if line.startswith("| mlp |"))
    lstm_row = next(line for line in table if line.startswith("| lstm |"))
    assert mlp_row.endswith(f"{MARK} |") and MARK not in lstm_row
    assert table.count(FOOTNOTE) == 1
    every = every_run_table(runs, {})
    assert sum(MARK in line for line in every if line.startswith("| ptb |")) == 1 and every[-1] == FOOTNOTE
    assert FOOTNOTE not in summary_table(summary(runs[1:], {}, "full"))


def test_conclusions_draw_no_verdict_from_a_still_improving_run():
    kn = {"ptb": {"test_loglik": -4.95, "order": 5}}
    best = {("ptb", "mlp"): make_run("ptb-mlp", "mlp", FALLING, -5.10),
            ("ptb", "lstm"): make_run("ptb-lstm", "lstm", FLAT, -4.50),
            ("ptb", "attention"): make_run("ptb-att", "attention", FLAT, -5.20)}
    line, = kneser_ney_verdicts(best, kn, ["ptb"])
    assert "attention does not clearly beat" in line and "no better than counting local contexts" in line
    assert "lstm clearly beats it" in line
    assert "mlp does not beat it yet but was still improving when its budget ended: no verdict" in line
    best.pop(("ptb", "attention"))
    line, = kneser_ney_verdicts(best, kn, ["ptb"])
    assert "counting local contexts" not in line and "no verdict" in line and line.startswith("ptb: lstm clearly")


def test_the_bar_of_a_still_improving_run_is_hatched_and_labelled():
    best = {("ptb", "mlp"): make_run("ptb-mlp", "mlp", FALLING, -5.10),
            ("ptb", "lstm"): make_run("ptb-lstm", "lstm", FLAT, -4.50)}
    fig, ax = plt.subplots()
    _bars_panel(ax, best, "ptb", {})
    hatches = {t.get_text(): p.get_hatch() for t, p in zip(ax.get_xticklabels(), ax.patches)}
    assert hatches == {"mlp": "//", "lstm": None}
    labels = [t.get_text() for t in ax.texts]
    assert f"-5.100 {MARK}" in labels and "-4.500" in labels
    plt.close(fig)


def test_a_simpler_model_ahead_of_a_still_improving_one_decides_nothing():
    linear = make_run("ptb-linear", "linear", FLAT, -5.20)
    rising = {("ptb", "linear"): linear, ("ptb", "mlp"): make_run("ptb-mlp", "mlp", FALLING, -5.60)}
    line, = order_surprises(rising, ["ptb"])
    assert "was still improving when its budget ended: no conclusion on the architectures." in line
    done = {("ptb", "linear"): linear, ("ptb", "mlp"): make_run("ptb-mlp", "mlp", FLAT, -5.60)}
    line, = order_surprises(done, ["ptb"])
    assert line.endswith("at these budgets the simpler model is better.") and "still improving" not in line


def test_the_lstm_reference_row_is_not_a_rung_of_the_ladder_of_complexity():
    """The classical LSTM stands beside the linear < mlp < attention < transformer ladder: a converged transformer
    ahead of it is not "the simpler model is better", while a rung below a rung still is."""
    best = {("ptb", "transformer"): make_run("ptb-transformer", "transformer", FLAT, -4.60),
            ("ptb", "lstm"): make_run("ptb-lstm", "lstm", FLAT, -4.80)}
    assert order_surprises(best, ["ptb"]) == []
    best[("ptb", "attention")] = make_run("ptb-attention", "attention", FLAT, -4.40)
    line, = order_surprises(best, ["ptb"])
    assert line.startswith("ptb: transformer (-4.600) scores below the simpler attention -4.400")


def test_each_profile_states_its_summed_training_time_and_on_the_cpu_its_time_on_two_cores():
    from tinylm.experiments.tables import training_time, training_time_sentence

    def profile_times(runs: list[ReportRow]) -> list[str]:
        return training_time_sentence(training_time(runs))

    def timed(name: str, profile: str, seconds: float, device: str) -> ReportRow:
        run = make_run(name, "mlp", FLAT, -5.0)
        run.metrics = dataclasses.replace(run.metrics, train_seconds=seconds, device=device)
        run.profile = profile
        return run

    one, two = "cpu: AMD EPYC (1 threads)", "cpu: AMD EPYC (2 threads)"
    runs = [timed("a", "full", 3600, one), timed("b", "full", 3600, one), timed("c", "full", 1800, two),
            timed("d", "gpu", 90, "NVIDIA H100 80GB HBM3"),
            timed("e", "adhoc", 9999, two)]
    [line] = profile_times(runs)
    # full: 2.5 h summed; core time 1 + 1 + 1 h over 2 cores = 1.5 h; the GPU run apart; adhoc runs are no profile
    assert "`full` 3 runs, 2.50 h (1.50 h on 2 cores)" in line and "runs on" not in line  # one CPU: no list
    assert "`gpu` 1 run, 90 s on GPUs" in line
    assert "adhoc" not in line
    assert profile_times([timed("e", "adhoc", 10, "cpu: x (2 threads)")]) == []
    # a sum over machines says which, since per core they can differ twofold
    mixed = runs[:3] + [timed("f", "full", 600, "cpu: Intel(R) Xeon(R) Processor (1 threads)")]
    assert "`full` 4 runs, 2.67 h (1.58 h on 2 cores), runs on AMD EPYC (3) and Intel(R) Xeon(R) Processor (1)" in \
        profile_times(mixed)[0]
    # runs sharing a GPU: their summed time, and the wall-clock time during which any of them trained
    shared = [timed(f"g{i}", "scaling-gpu", 100, "NVIDIA H100 80GB HBM3") for i in range(3)]
    for i, run in enumerate(shared):
        run.history[0]["time"], run.history[-1]["time"] = 1000.0 + 10 * i, 1110.0 + 10 * i
    [line] = profile_times(shared)
    assert line.endswith("`scaling-gpu` 3 runs, 5.0 min on GPUs, within 2.2 min of wall-clock time (several at a "
                         "time).")
    shared[0].history[0]["time"] = 0.0  # a span longer than the sum says nothing: left out
    [line] = profile_times(shared)
    assert line.endswith("`scaling-gpu` 3 runs, 5.0 min on GPUs.")
    # a second session days later: its span is added, the days between are not
    shared[0].history[0]["time"] = 1000.0
    later = [timed(f"h{i}", "scaling-gpu", 100, "NVIDIA H100 80GB HBM3") for i in range(2)]
    for run in later:
        run.history[0]["time"], run.history[-1]["time"] = 900_000.0, 900_110.0
    [line] = profile_times(shared + later)
    assert line.endswith("`scaling-gpu` 5 runs, 8.3 min on GPUs, within 4.0 min of wall-clock time (several at a "
                         "time).")


def test_a_run_is_labelled_with_its_axis_value_and_budget_even_when_its_config_file_omits_them():
    """A config file holds only the fields a run set: an axis left at its default reads as that default, and a
    FLOP budget keeps its significant digits (1.2e14 is not 1e14)."""
    run = dataclasses.replace(make_run("r", "mamba", [5.0], -4.6), model_config=make_config("mamba", {"n_layers": 12}),
                              config={"model": {"n_layers": 12}, "train": {"max_flops": 1.2e14}})
    assert run.variant({"mamba": "d_state", "lstm": "hidden_dim"}) == "d_state=32, 1.2e+14 FLOPs"
    assert run.variant({"mamba": "n_layers"}) == "n_layers=12, 1.2e+14 FLOPs"
    unresolved = dataclasses.replace(run, model_config=None)  # a row built from its config file alone
    assert unresolved.variant({"mamba": "n_layers"}) == "n_layers=12, 1.2e+14 FLOPs"
