"""The report on a synthetic set of run directories: tables match the metrics files; figures and README."""

from __future__ import annotations

import json

import pytest
import yaml

from tinylm.errors import TinyLMError
from tinylm.experiments import report as report_mod
from tinylm.experiments.report import README_END, README_START
from tinylm.suite_file import parse_suite, resolve_run

SUITE = {
    "training": {"seed": 1, "eval_interval": 10, "eval_tokens": 100},
    "data": {"tinyshakespeare": {"type": "char"}, "ptb": {"type": "word"}},
    "ablations": {"linear": {"context_length": [16, 64]}, "transformer": {"n_layers": [2, 4, 6]}},
    "profiles": {
        "quick": {"datasets": {"tinyshakespeare": ["linear", "mlp", "attention", "transformer"],
                               "ptb": ["transformer"]},
                  "ablations": ["tinyshakespeare"], "training": {"max_steps": 10}},
        "full": {"datasets": {"tinyshakespeare": ["transformer"]}, "training": {"max_steps": 100},
                 "models": {"transformer": {"n_layers": 6}}},
    },
}


@pytest.fixture(autouse=True)
def suite_file(tmp_path, monkeypatch):
    """The report reads profiles, ablations and targets from this small suite file."""
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(SUITE))
    monkeypatch.setattr(report_mod, "load_suite_file", lambda config=None: parse_suite(SUITE, path))
    return path


def write_report(results, readme=None, figures=True, profile=None):
    """The report of a working folder (no shipped reference)."""
    return report_mod.write_report(results, results, None, readme=readme, figures=figures, profile=profile)


def fake_run(root, name, model, dataset, test_ll, valid_loss, model_cfg, status="complete", flops=None,
             profile="quick", suite=None, sets=None):
    d = root / "runs" / name
    d.mkdir(parents=True)
    if profile == "adhoc":
        cfg = resolve_run(model, dataset, suite=parse_suite(SUITE), model_values=model_cfg,
                          train_values={"max_steps": 7})
    else:
        cfg = resolve_run(model, dataset, suite=parse_suite(suite or SUITE), profile=profile, model_values=model_cfg,
                          sets=sets)
    metrics = {
        "model": model, "dataset": dataset, "params": 1000 + len(name), "context_length": 64,
        "tokens_trained": 10_000, "train_flops": flops or 1e12 * (1 + len(name) % 3), "train_seconds": 12.5,
        "tokens_per_second": 800.0, "best_valid_loss": valid_loss - 0.05, "valid_loss": valid_loss,
        "valid_loglik": -valid_loss, "test_loss": -test_ll, "test_loglik": test_ll,
        "test_perplexity": 2.718281828 ** -test_ll, "test_bits": -test_ll / 0.693147, "status": status,
        "device": "cpu: test", "torch_version": "x", "unigram_test_loglik": -3.3, "profile": profile,
    }
    (d / "metrics.json").write_text(json.dumps(metrics))
    (d / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    rows = [{"step": s, "tokens": s * 100, "flops": s * 1e10, "train_loss": 3 - s / 100,
             "valid_loss": 3 - min(s, 60) / 90} for s in range(0, 101, 20)]  # flat at the end: not still improving
    (d / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return metrics


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    fake_run(root, "ts-linear-a", "linear", "tinyshakespeare", -2.41, 2.30, {"context_length": 16})
    fake_run(root, "ts-linear-b", "linear", "tinyshakespeare", -2.35, 2.20, {"context_length": 64})
    fake_run(root, "ts-mlp", "mlp", "tinyshakespeare", -2.03, 1.90, {"hidden_dim": 256})
    fake_run(root, "ts-att", "attention", "tinyshakespeare", -2.01, 1.85, {"n_heads": 4})
    fake_run(root, "ts-gpt-2", "transformer", "tinyshakespeare", -1.80, 1.60, {"n_layers": 2})
    fake_run(root, "ts-gpt-4", "transformer", "tinyshakespeare", -1.70, 1.55, {"n_layers": 4})
    fake_run(root, "ptb-gpt", "transformer", "ptb", -4.50, 4.40, {"n_layers": 4})
    fake_run(root, "ts-gpt-running", "transformer", "tinyshakespeare", -1.0, 0.5, {"n_layers": 6}, status="running")
    return root


def test_report_tables_match_the_metrics_files(results, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold table\n{README_END}\noutro\n")
    paths = write_report(results, readme=readme)
    md = (results / "RESULTS.md").read_text()
    # best-on-valid per architecture x dataset, with the numbers of the metrics files
    assert "| transformer | -1.700 (ppl 5.47) | -4.500 (ppl 90.02) |" in md
    assert "| linear | -2.350 (ppl 10.49) |  |" in md
    assert "| tinyshakespeare | linear | context_length=16 | quick | 1,011 | -2.4100 |" in md
    assert "ts-gpt-running" not in md and "-1.0000" not in md  # unfinished runs never count
    data = json.loads((results / "results.json").read_text())
    assert {r["run"] for r in data["runs"]} == {"ts-linear-a", "ts-linear-b", "ts-mlp", "ts-att", "ts-gpt-2",
                                                "ts-gpt-4", "ptb-gpt"}
    assert data["best"]["tinyshakespeare/transformer"] == "ts-gpt-4"
    for name in ("architecture_comparison.png", "compute_tinyshakespeare.png", "compute_ptb.png",
                 "ablation_transformer_n_layers_tinyshakespeare.png",
                 "ablation_linear_context_length_tinyshakespeare.png",
                 "runs/ts-mlp.png"):
        path = results / "figures" / name
        assert path in paths and path.stat().st_size > 10_000, name
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert "| transformer | -1.700 (ppl 5.47) | -4.500 (ppl 90.02) |" in text and "(headline: every profile)" in text


def test_report_without_runs_says_what_to_do(tmp_path):
    with pytest.raises(TinyLMError, match="no finished runs.*tinylm suite"):
        write_report(tmp_path / "empty")


def test_readme_without_markers_is_refused(results, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(TinyLMError, match="lacks the results markers"):
        write_report(results, readme=readme, figures=False)
    assert not (results / "RESULTS.md").exists()  # checked before anything is written
    assert readme.read_text() == "no markers\n"


def test_report_sets_every_architecture_against_the_kneser_ney_baseline(results):
    (results / "baselines").mkdir()
    for ds, order, ll in (("tinyshakespeare", 7, -1.75), ("ptb", 5, -4.95)):
        (results / "baselines" / f"{ds}-kneser-ney-{order}.json").write_text(json.dumps(
            {"dataset": ds, "order": order, "test_loglik": ll, "test_perplexity": 2.718281828 ** -ll}))
    write_report(results, figures=False)
    md = (results / "RESULTS.md").read_text()
    assert "| *Kneser-Ney n-gram* | -1.750 (ppl 5.75, 7-gram) | -4.950 (ppl 141.17, 5-gram) |" in md
    # transformer -1.70 beats -1.75 by more than 0.02; the others are below it
    assert ("- tinyshakespeare: linear, mlp and attention do not clearly beat the 7-gram Kneser-Ney model (-1.750): "
            "at these budgets they are no better than counting local contexts; transformer clearly beats it.") in md
    # only the transformer ran on ptb: the verdict says so instead of "every architecture"
    assert ("- ptb: transformer (the only architecture run on ptb) clearly beats the 5-gram Kneser-Ney model "
            "(-4.950).") in md
    assert json.loads((results / "results.json").read_text())["baselines"]["ptb"]["order"] == 5


def test_targets_beside_the_best_run_with_a_compute_extrapolation(tmp_path, monkeypatch):
    from tinylm.experiments import report

    root = tmp_path / "results"
    # test LL = -3 + 0.1 * log10(FLOPs) on the frontier; the 1e13 run below it is not on the frontier
    for i, (flops, ll) in enumerate(((1e12, -1.8), (1e13, -1.9), (1e14, -1.6), (1e15, -1.5))):
        fake_run(root, f"gpt-{i}", "transformer", "tinyshakespeare", ll, 1.0 - i / 10, {}, flops=flops)
    fake_run(root, "mlp-0", "mlp", "tinyshakespeare", -2.0, 1.5, {}, flops=1e12)
    monkeypatch.setattr(report, "targets", lambda suite: {("tinyshakespeare", "transformer"): -1.3,
                                                      ("tinyshakespeare", "mlp"): -2.1, ("ptb", "transformer"): -4.4})
    write_report(root, figures=False)
    md = (root / "RESULTS.md").read_text()
    assert ("| tinyshakespeare | transformer | -1.300 | -1.5000 (gpt-3) | no | 1.00e+15 | "
            "~1e+17 (+0.100 nats per 10x, 3 runs) |") in md
    assert "| tinyshakespeare | mlp | -2.100 | -2.0000 (mlp-0) | yes | 1.00e+12 |  |" in md
    assert "| ptb | transformer | -4.400 | no finished run | | | |" in md


def test_headline_comes_from_the_full_profile_when_it_has_runs(results):
    fake_run(results, "ts-gpt-full", "transformer", "tinyshakespeare", -1.75, 1.58, {}, profile="full")
    write_report(results, figures=False)
    md = (results / "RESULTS.md").read_text()
    # ts-gpt-4 (quick) has the better valid loss, but the headline is the full profile's run
    assert "best-on-valid run among the `full` profile's runs" in md
    assert "| transformer | -1.750 (ppl 5.75) |" in md and "| linear |" not in md.split("### Every run")[0]
    assert "| tinyshakespeare | transformer | n_layers=4 | quick |" in md  # every run is still listed
    data = json.loads((results / "results.json").read_text())
    assert data["headline_profile"] == "full" and len(data["runs"]) == 8
    write_report(results, figures=False, profile="quick")
    assert "| transformer | -1.700 (ppl 5.47) | -4.500 (ppl 90.02) |" in (results / "RESULTS.md").read_text()
    with pytest.raises(TinyLMError, match="no finished runs of profile 'isoflop'"):
        write_report(results, figures=False, profile="isoflop")


def test_seeds_of_a_headline_recipe_give_its_band_and_the_rows_beside_the_ladder_are_read_against_it(
        tmp_path, monkeypatch):
    suite = {**SUITE, "profiles": {**SUITE["profiles"], "full": {**SUITE["profiles"]["full"], "datasets": {
        "tinyshakespeare": ["linear", "mlp", "transformer", "lstm", "llama"]}}}}
    monkeypatch.setattr(report_mod, "load_suite_file", lambda config=None: parse_suite(suite, tmp_path / "s.yaml"))
    results = tmp_path / "results"
    for name, model, test_ll, valid in (("linear", "linear", -2.3, 2.1), ("mlp", "mlp", -1.9, 1.7),
                                        ("gpt", "transformer", -1.75, 1.60), ("lstm", "lstm", -1.60, 1.50),
                                        ("llama", "llama", -1.76, 1.55)):
        fake_run(results, name, model, "tinyshakespeare", test_ll, valid, {}, profile="full", suite=suite)
    for seed, test_ll, valid in ((2, -1.73, 1.50), (3, -1.77, 1.62)):  # seed 2 better on valid: still not a headline
        fake_run(results, f"gpt-seed{seed}", "transformer", "tinyshakespeare", test_ll, valid, {}, profile="full",
                 suite=suite, sets=[f"train.seed={seed}"])
    write_report(results, figures=False)
    md = (results / "RESULTS.md").read_text()
    data = json.loads((results / "results.json").read_text())
    assert data["best"]["tinyshakespeare/transformer"] == "gpt"
    band = data["headline"]["seeds"]["tinyshakespeare"]["transformer"]
    assert band["n"] == 3 and band["seeds"] == [1, 2, 3] and band["runs"] == ["gpt", "gpt-seed2", "gpt-seed3"]
    assert band["test_mean"] == pytest.approx(-1.75) and band["test_sd"] == pytest.approx(0.02)
    assert "lstm" not in data["headline"]["seeds"]["tinyshakespeare"]  # one seed: no band of its own
    assert ("Over seeds of the headline recipe on tinyshakespeare (mean ± sd): `transformer` test -1.750 ± 0.020, "
            "valid -1.573 ± 0.064 (3 seeds).") in md
    text = " ".join(f["text"] for f in data["findings"])
    assert ("Over 3 seeds the `transformer` recipe scores -1.750 ± 0.020 (its headline run -1.750): `lstm` 6.5 sd "
            "above it (separated) and `llama` 0.4 sd below it (within seed noise)") in text
    (results / "runs" / "gpt-seed3").rename(tmp_path / "away")
    write_report(results, figures=False)
    data = json.loads((results / "results.json").read_text())
    assert data["headline"]["seeds"] == {} and "Over 3 seeds" not in " ".join(f["text"] for f in data["findings"])


def test_best_run_is_chosen_on_the_full_valid_split_everywhere(results, tmp_path):
    """One rule: the report's headline and `generate --model` pick the same run, by the loss on the full
    validation split; the subset loss seen during training (best_valid_loss) does not decide."""
    from tinylm.experiments.results import best_runs, load_runs
    from tinylm.run_folders import best_run

    # better on the valid subset during training, worse on the full valid split
    fake_run(results, "ts-gpt-subset", "transformer", "tinyshakespeare", -1.65, 1.58, {"n_layers": 6})
    metrics_path = results / "runs" / "ts-gpt-subset" / "metrics.json"
    m = json.loads(metrics_path.read_text())
    m["best_valid_loss"] = 0.1
    metrics_path.write_text(json.dumps(m))
    for name in ("ts-gpt-subset", "ts-gpt-4"):
        (results / "runs" / name / "model.safetensors").write_bytes(b"")
    best = best_runs(load_runs(results, None, parse_suite(SUITE)))
    assert best[("tinyshakespeare", "transformer")].path.name == "ts-gpt-4"
    assert best_run(results, "transformer", "tinyshakespeare").name == "ts-gpt-4"


def test_the_every_run_panel_shows_every_run_and_the_bars_show_the_kneser_ney_level(results):
    """The scatter titled "all N runs" draws N points; the bar chart draws the n-gram level it is
    compared with."""
    import matplotlib.pyplot as plt

    from tinylm.experiments import figures
    from tinylm.experiments.results import best_runs, load_runs

    runs = load_runs(results, None, parse_suite(SUITE))
    baselines = {"tinyshakespeare": {"order": 7, "test_loglik": -1.75, "valid_loglik": -1.6}}
    fig, (left, right) = plt.subplots(1, 2)
    figures._compute_panel(left, runs, "tinyshakespeare", baselines)
    shown = sum(len(c.get_offsets()) for c in left.collections)
    assert shown == sum(r.dataset == "tinyshakespeare" for r in runs) == 6
    assert f"all {shown} runs" in left.get_title()
    figures._bars_panel(right, best_runs(runs), "tinyshakespeare", baselines)
    levels = {round(line.get_ydata()[0], 3) for line in right.get_lines()}
    assert {-1.75, -3.3} <= levels  # Kneser-Ney and unigram
    plt.close(fig)
