"""The scaling profile's plan and the report's scaling section, from synthetic run directories."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import yaml

from tinylm.config import DataConfig
from tinylm.data.corpus import load_corpus
from tinylm.errors import UsageError
from tinylm.experiments import report as report_mod
from tinylm.models.registry import model_names
from tinylm.run_folders import config_digest
from tinylm.suite_file import Origin, SuiteFile, load_suite_file, parse_profile, parse_suite, resolve_run
from tinylm.suite_plan import plan, profile_index
from tinylm.training.trainer import Trainer


def test_the_scaling_profile_crosses_budgets_and_sizes_for_every_architecture():
    suite = load_suite_file()
    runs = plan(suite, "scaling")
    digests = [config_digest(r.config) for r in runs]
    assert len(set(digests)) == len(runs)
    index = profile_index(suite)
    assert all(index[d] == ["scaling"] for d in digests)
    for ds in ("tinyshakespeare", "ptb"):
        assert {r.config.model_name for r in runs if r.config.data.label == ds} == set(model_names())
        for model in model_names():
            mine = [r.config for r in runs if r.config.data.label == ds and r.config.model_name == model]
            budgets = sorted({c.train.max_flops for c in mine})
            assert len(budgets) >= 4 and all(b / a >= 3 - 1e-9 for a, b in zip(budgets, budgets[1:])), budgets
            for b in budgets:
                sizes = {json.dumps(c.to_dict()["model"], sort_keys=True) for c in mine if c.train.max_flops == b}
                assert len(sizes) >= 3
            for c in mine:  # to exactly the budget: no other budget, no early stop, no time limit
                t = c.train
                assert (t.epochs, t.max_tokens, t.max_steps, t.max_time) == (None, None, None, None)
                assert t.early_stopping_patience == 0 and t.scheduler == "cosine"


def test_the_gpu_extension_trains_two_budgets_x10_the_cpu_ones_on_ladders_that_continue_upward():
    suite = load_suite_file()
    cpu, gpu = plan(suite, "scaling"), plan(suite, "scaling-gpu")
    index = profile_index(suite)
    assert all(index[config_digest(r.config)] == ["scaling-gpu"] for r in gpu)
    for ds in ("tinyshakespeare", "ptb"):
        for model in model_names():
            mine = [r.config for r in gpu if r.config.data.label == ds and r.config.model_name == model]
            theirs = [r.config for r in cpu if r.config.data.label == ds and r.config.model_name == model]
            assert sorted({c.train.max_flops for c in mine}) == sorted({c.train.max_flops * 10 for c in theirs})[-2:]
            assert all(c.train.device == "cuda" and c.train.scheduler == "cosine" and c.train.epochs is None
                       for c in mine)
            for b in {c.train.max_flops for c in mine}:
                assert len([c for c in mine if c.train.max_flops == b]) == 5
            # the same recipe as the CPU budgets but for the device and the batch
            one, two = mine[0].to_dict()["train"], theirs[0].to_dict()["train"]
            assert {k for k in one if one[k] != two[k]} == {"device", "precision", "batch_size", "max_flops"}


def with_profile(suite: SuiteFile, name: str, values: dict) -> SuiteFile:
    """The suite file with one more profile (checked as if it were written in the file)."""
    prof = parse_profile(name, values, Origin(f"profiles/{name}.yaml"), suite.data)
    return dataclasses.replace(suite, profiles={**suite.profiles, name: prof})


def test_sizes_per_budget_slides_a_window_up_the_size_ladder_as_the_budget_grows():
    suite = load_suite_file()
    ladder = [{"hidden_dim": h} for h in (8, 16, 32, 64, 128, 256)]
    window = {"datasets": {"tinyshakespeare": ["mlp"]}, "flop_budgets": [1e12, 1e11, 1e13, 1e14],
              "sizes": {"mlp": ladder}, "sizes_per_budget": 3}
    trained = {}
    for run in plan(with_profile(suite, "window", window), "window"):
        trained.setdefault(run.config.train.max_flops, []).append(run.config.model.hidden_dim)
    assert trained == {1e11: [8, 16, 32], 1e12: [16, 32, 64], 1e13: [32, 64, 128], 1e14: [64, 128, 256]}
    window["flop_budgets"] = [1e11, 1e12, 1e15]  # uneven: the window moves with log C
    trained = {}
    for run in plan(with_profile(suite, "window", window), "window"):
        trained.setdefault(run.config.train.max_flops, []).append(run.config.model.hidden_dim)
    assert trained == {1e11: [8, 16, 32], 1e12: [16, 32, 64], 1e15: [64, 128, 256]}
    for width in (2, 7, "3", True):  # refused when the file is read, before anything is planned
        with pytest.raises(UsageError, match="window.yaml sizes_per_budget must be a whole number from 3"):
            with_profile(suite, "window", {**window, "sizes_per_budget": width})


def test_a_profile_that_plans_one_run_twice_is_refused():
    suite = with_profile(load_suite_file(), "twice", {
        "datasets": {"tinyshakespeare": ["mlp"]}, "flop_budgets": [1e12],
        "sizes": {"mlp": [{"hidden_dim": 64}, {"hidden_dim": 64}]}})
    with pytest.raises(UsageError, match="twice.yaml plans the same run twice"):
        plan(suite, "twice")


SUITE = {
    "training": {"seed": 1, "eval_interval": 10, "eval_tokens": 100},
    "data": {"tinyshakespeare": {"type": "char"}},
    "targets": {"tinyshakespeare": {"mlp": -1.0, "transformer": -1.65}},
    "profiles": {
        "quick": {"datasets": {"tinyshakespeare": ["mlp", "transformer"]}, "training": {"max_steps": 10}},
        "scaling": {"datasets": {"tinyshakespeare": ["mlp", "transformer"]},
                    "training": {"early_stopping_patience": 0},
                    "flop_budgets": [1e11, 3e11, 1e12, 3e12],
                    "sizes": {"mlp": [{"hidden_dim": h} for h in (32, 64, 128, 256)],
                              "transformer": [{"embed_dim": d} for d in (16, 32, 64, 128)]}},
    },
}
LAWS = {"mlp": (2.0, 40.0, 0.15), "transformer": (1.5, 3e3, 0.3)}


def write_run(root, name, cfg, params, valid_loss, profile, gap=0.1, device="cpu: test"):
    d = root / "runs" / name
    d.mkdir(parents=True)
    metrics = {"model": cfg.model_name, "dataset": cfg.data.label, "params": params, "tokens_trained": 1000,
               "train_flops": cfg.train.max_flops or 1e12, "train_seconds": 1.0, "valid_loss": valid_loss,
               "valid_loglik": -valid_loss, "best_valid_loss": valid_loss, "test_loglik": -valid_loss - gap,
               "test_perplexity": float(np.exp(valid_loss + gap)), "test_bits": (valid_loss + gap) / 0.693,
               "status": "complete", "device": device, "torch_version": "x", "unigram_test_loglik": -3.3,
               "profile": profile}
    (d / "metrics.json").write_text(json.dumps(metrics))
    (d / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(report_mod, "load_suite_file", lambda config=None: parse_suite(SUITE, "suite.yaml"))
    root = tmp_path / "results"
    for i, run in enumerate(plan(parse_suite(SUITE), "quick")):
        write_run(root, f"quick-{i}", run.config, 1000, 1.9, "quick", gap=0.05)  # the best; the scaling runs: gap 0.1
    return root


def add_scaling_runs(root, noise=0.002, suite=SUITE, profile="scaling", device="cpu: test"):
    """Runs of the scaling plan whose valid loss follows L*(C) + 0.3·(log10 N − log10 N*(C))², N*(C) = 0.05·C^0.5."""
    rng = np.random.default_rng(0)
    for i, run in enumerate(plan(parse_suite(suite), profile)):
        c, model = run.config.train.max_flops, run.config.model_name
        sizes = suite["profiles"][profile]["sizes"][model]
        model_cfg = run.config.to_dict()["model"]
        step = next(i for i, size in enumerate(sizes) if all(model_cfg[k] == v for k, v in size.items()))
        n_star = 0.05 * c ** 0.5
        params = n_star * 10 ** (-0.45 + 0.3 * step)
        e, a, alpha = LAWS[model]
        loss = e + a * c ** -alpha + 0.3 * np.log10(params / n_star) ** 2 + rng.normal(0, noise)
        write_run(root, f"{profile}-{i}", run.config, int(params), float(loss), profile, device=device)


def test_the_report_has_a_scaling_section_and_figure_only_with_scaling_runs(results):
    report_mod.write_report(results, results, None)
    md = (results / "RESULTS.md").read_text()
    assert "Scaling" not in md and not (results / "figures" / "scaling_tinyshakespeare.png").exists()
    assert "log-linear fit over the compute frontier) |" in md
    add_scaling_runs(results)
    paths = report_mod.write_report(results, results, None)
    md = (results / "RESULTS.md").read_text()
    figure = results / "figures" / "scaling_tinyshakespeare.png"
    assert figure in paths and figure.stat().st_size > 10_000
    assert "## Scaling: which architecture wins at which compute" in md and "![scaling_tinyshakespeare]" in md
    rows = {line.split(" | ")[1]: line for line in md.splitlines() if line.startswith("| tinyshakespeare | ")
            and "budgets fitted" not in line and line.count("[") >= 4}
    for model, (e, _, alpha) in LAWS.items():
        cells = rows[model].split(" | ")
        assert float(cells[2].split()[0]) == pytest.approx(e, abs=0.1)
        assert float(cells[4].split()[0]) == pytest.approx(alpha, abs=0.1)
        assert cells[6] == "4 of 4"
    assert "the best loss falls as C^-" in md
    # the missed transformer target is extrapolated by its scaling fit, with an interval, moved onto the valid-loss law
    # by the test - valid gap of the run it is judged on (0.05), not the scaling runs' (0.1)
    target = next(line for line in md.splitlines() if line.startswith("| tinyshakespeare | transformer | -1.650"))
    assert "| no |" in target and "scaling fit" in target and "[" in target and "gap of +0.050" in target
    c = float(target.split("~")[1].split()[0])  # valid loss 1.60 = 1.5 + 3e3·C^-0.3 at C = 8.6e14 (1.55: 8.5e15)
    assert 3e14 < c < 3e15
    target = next(line for line in md.splitlines() if line.startswith("| tinyshakespeare | mlp | -1.000"))
    assert "not reached: below the fitted floor" in target


def test_the_gpu_extension_is_fitted_together_with_the_cpu_budgets_in_a_table_and_figures_of_its_own(results,
                                                                                                     monkeypatch):
    cpu = SUITE["profiles"]["scaling"]
    suite = {**SUITE, "profiles": {**SUITE["profiles"], "scaling-gpu": {
        **cpu, "flop_budgets": [1e13, 3e13], "training": {**cpu["training"], "device": "cuda"}}}}
    monkeypatch.setattr(report_mod, "load_suite_file", lambda config=None: parse_suite(suite, "suite.yaml"))
    add_scaling_runs(results, suite=suite)
    add_scaling_runs(results, suite=suite, profile="scaling-gpu", device="NVIDIA H100 80GB HBM3")
    paths = report_mod.write_report(results, results, None)
    md = (results / "RESULTS.md").read_text()
    cpu_part, gpu_part = md.split("### With the GPU extension: two budgets x10 larger")
    assert results / "figures" / "scaling_tinyshakespeare.png" in paths
    assert results / "figures" / "scaling_tinyshakespeare_gpu.png" in paths
    assert "![scaling_tinyshakespeare_gpu]" in gpu_part and "![scaling_tinyshakespeare_gpu]" not in cpu_part
    for part, fitted in ((cpu_part, "4 of 4"), (gpu_part, "6 of 6")):
        rows = [line for line in part.splitlines() if line.startswith("| tinyshakespeare | ")
                and re.search(r" \| \d of \d \| ", line)]
        assert len(rows) == 2 and all(line.split(" | ")[6] == fitted for line in rows)
        for model, (e, _, alpha) in LAWS.items():
            cells = next(line for line in rows if line.split(" | ")[1] == model).split(" | ")
            assert float(cells[4].split()[0]) == pytest.approx(alpha, abs=0.1)
    assert "`scaling-gpu` 16 runs" in md and "on GPUs" in md


def test_a_flop_budget_sets_the_steps_and_the_cosine_ends_there(tiny_text_file, tmp_path):
    """A run is trained to its budget (to within one step) and its cosine reaches the floor at its last step (to
    within sin²(π/2T) of the range: the last step's progress is (T − 1)/T)."""
    data = DataConfig(name="tiny", level="char", path=str(tiny_text_file))
    cfg = resolve_run("mlp", suite=SuiteFile(), data=data, train_values={"max_flops": 3e7},
                      sets=["model.context_length=8", "model.embed_dim=8", "model.hidden_dim=16", "train.batch_size=4",
                            "train.seq_len=16", "train.warmup_steps=2", "train.learning_rate=0.01"])
    trainer = Trainer(cfg, load_corpus(cfg.data, tmp_path / "d", quiet=True))
    steps, per_step = trainer.plan.total_steps, trainer.plan.flops_per_step
    assert steps > 20 and 3e7 <= steps * per_step < 3e7 + per_step
    rates = []
    while not trainer.done():
        rates.append(trainer.learning_rate())
        trainer.account(trainer.train_step(rates[-1]), 0.0)
    assert len(rates) == steps and trainer.state.flops == pytest.approx(steps * per_step)
    floor = 0.01 * cfg.train.min_lr_ratio
    assert floor <= rates[-1] <= floor + (0.01 - floor) * np.sin(np.pi / (2 * steps)) ** 2 * 1.0001
    assert rates[-1] == min(rates[2:])


def test_a_floor_at_its_bound_and_a_comparison_of_extrapolations_are_named_as_such():
    from tinylm.experiments.crossover import Comparison
    from tinylm.experiments.scaling import fit_frontier
    from tinylm.experiments.scaling_report import _crossover_text, _frontier_sentence, frontier_record, frontier_table

    from .test_scaling import synthetic_points
    # losses that fall faster than any power law with a non-negative floor (as the char-level lstm and transformer
    # runs do over their 1.5 decades): the floor is pinned at 0
    pure = fit_frontier("ds", "lstm", synthetic_points(-0.5, 30.0, 0.08, 0.02, 0.5, 0.002, seed=1))
    assert pure.law is not None and pure.law[0] < 1e-3
    assert "with no floor in sight (E fits at its bound 0" in _frontier_sentence(pure)
    assert "| ds | lstm | 0 (at its bound) |" in frontier_table([frontier_record(pure, [])])[2]
    floor = fit_frontier("ds", "mlp", synthetic_points(1.5, 3000.0, 0.3, 0.02, 0.5, 0.01, seed=3))
    assert "toward a floor of 1." in _frontier_sentence(floor)
    apart = Comparison("ds", "linear", "lstm", 1e10, 3e11, "first", separated=(1e10, 3e11), sampled=(1e11, 3e10))
    assert _crossover_text(apart).endswith("(bands separate; the budgets both sampled do not overlap, so this "
                                           "compares extrapolations)")
    wider = Comparison("ds", "lstm", "mlp", 1e10, 3e13, "second", separated=(1e11, 3e13), sampled=(1e11, 3e12))
    assert _crossover_text(wider).startswith("mlp reaches a lower loss than lstm") and "partly beyond" in \
        _crossover_text(wider)
    inside = Comparison("ds", "lstm", "mlp", 1e10, 3e13, "first", separated=(1e11, 1e12), sampled=(1e11, 3e12))
    assert _crossover_text(inside).endswith("(bands separate)")
