"""Config loading: layering, strict keys with suggestions, types, YAML errors."""

from __future__ import annotations

import dataclasses
import re

import pytest

from tinylm.config import TrainConfig
from tinylm.errors import UsageError
from tinylm.fields import from_dict
from tinylm.run_folders import run_id
from tinylm.suite_file import SuiteFile, load_suite_file, parse_overrides, parse_suite, read_yaml, resolve_run


def test_default_suite_resolves_every_model_and_dataset():
    suite = load_suite_file()
    for model in ("linear", "mlp", "attention", "transformer"):
        for ds in ("tinyshakespeare", "ptb", "wikitext2"):
            cfg = resolve_run(model, ds, suite=suite)
            assert cfg.train.has_budget()
            assert cfg.data.name == ds


def test_layering_model_then_dataset_then_profile_then_cli():
    suite = parse_suite({
        "training": {"learning_rate": 0.1, "batch_size": 8},
        "models": {"mlp": {"learning_rate": 0.2, "hidden_dim": 64, "epochs": 1,
                           "by_dataset": {"ptb": {"hidden_dim": 32}}}},
        "profiles": {"p": {"models": {"mlp": {"batch_size": 4}}}},
    })
    cfg = resolve_run("mlp", "ptb", suite=suite, profile="p", train_values={"seed": 7}, sets=["model.n_hidden=2"])
    assert cfg.train.learning_rate == 0.2 and cfg.train.batch_size == 4 and cfg.train.seed == 7
    assert cfg.model.hidden_dim == 32 and cfg.model.n_hidden == 2
    assert resolve_run("mlp", "tinyshakespeare", suite=suite).model.hidden_dim == 64


def test_a_profiles_training_block_sets_a_datasets_defaults_for_every_architecture():
    suite = parse_suite({
        "models": {"mlp": {"epochs": 1}, "lstm": {"epochs": 1}},
        "profiles": {"p": {"training": {"batch_size": 4, "by_dataset": {"ptb": {"head": "adaptive", "batch_size": 8}}},
                           "models": {"lstm": {"by_dataset": {"ptb": {"batch_size": 20}}}}}},
    })
    mlp, lstm = (resolve_run(m, "ptb", suite=suite, profile="p") for m in ("mlp", "lstm"))
    assert mlp.model.head == lstm.model.head == "adaptive"
    assert mlp.train.batch_size == 8 and lstm.train.batch_size == 20  # the profile's models layer comes after
    assert resolve_run("mlp", "tinyshakespeare", suite=suite, profile="p").model.head == "full"
    assert resolve_run("mlp", "tinyshakespeare", suite=suite, profile="p").train.batch_size == 4


def test_the_full_profiles_word_level_runs_end_on_their_validation_curve_with_one_head_per_dataset():
    """No word-level row of the full profile is cut by a token budget, and a dataset's head is the same for every
    architecture, so the comparison stays about the body."""
    suite = load_suite_file()
    datasets = suite.profiles["full"].datasets
    for ds in ("ptb", "wikitext2"):
        assert set(datasets[ds]) == {"linear", "mlp", "attention", "transformer", "lstm", "llama", "mamba"}
        cfgs = [resolve_run(model, ds, suite=suite, profile="full") for model in datasets[ds]]
        assert {cfg.model.head for cfg in cfgs} == {"adaptive"}
        for cfg in cfgs:
            t = cfg.train
            assert t.scheduler == "plateau" and t.early_stopping_patience > 0, (cfg.model.name, ds)
            assert (t.max_tokens, t.max_steps, t.max_flops, t.max_time) == (None, None, None, None), cfg.model.name
            assert t.epochs and t.epochs >= 20  # a cap that early stopping reaches first


def test_misspelled_key_suggests_the_closest():
    with pytest.raises(UsageError, match=r"unknown key 'n_layer' in suite.yaml models.transformer.*did you mean "
                                         "'n_layers'"):
        parse_suite({"models": {"transformer": {"n_layer": 3}}}, "suite.yaml")
    with pytest.raises(UsageError, match="unknown key 'learning_rat' in suite.yaml training.*did you mean"):
        parse_suite({"training": {"learning_rat": 1}}, "suite.yaml")


def test_wrong_types_and_ranges_are_rejected():
    with pytest.raises(UsageError, match="batch_size must be an integer"):
        from_dict(TrainConfig, {"batch_size": "many"}, "train")
    with pytest.raises(UsageError, match="learning_rate must be positive"):
        from_dict(TrainConfig, {"learning_rate": -1}, "train")
    with pytest.raises(UsageError, match="n_heads=3 must divide"):
        resolve_run("transformer", suite=SuiteFile(), sets=["model.n_heads=3"])
    with pytest.raises(UsageError, match=r"dropout must be in \[0, 1\)"):
        resolve_run("mlp", suite=SuiteFile(), sets=["model.dropout=1.0"])
    assert from_dict(TrainConfig, {"learning_rate": "3e-4", "epochs": 2}, "t").learning_rate == 3e-4


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  seed: [1, 2\n  lr: 3\n")
    with pytest.raises(UsageError, match=r"not valid YAML at line \d+, column \d+"):
        read_yaml(bad)


def test_overrides_parse_values_and_reject_bad_keys():
    assert parse_overrides(["model.n_layers=6", "train.learning_rate=3e-4"])["model"] == {"n_layers": 6}
    with pytest.raises(UsageError, match="SECTION.KEY=VALUE"):
        parse_overrides(["n_layers"])
    with pytest.raises(UsageError, match="must start with model., train. or data."):
        parse_overrides(["foo.bar=1"])


def test_unknown_profile_and_model():
    with pytest.raises(UsageError, match="unknown profile 'quik'.*did you mean 'quick'"):
        resolve_run("mlp", suite=load_suite_file(), profile="quik")
    with pytest.raises(UsageError, match="unknown model 'gpt'"):
        resolve_run("gpt", suite=SuiteFile())


def test_profiles_come_one_per_file_from_the_folder_beside_the_suite_file(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "suite.yaml").write_text("models: {mlp: {epochs: 1}}\nprofiles: {inline: {training: {seed: 3}}}\n")
    (tmp_path / "profiles" / "base.yaml").write_text(
        "description: a base\ntraining: {seed: 5, batch_size: 4, by_dataset: {ptb: {head: adaptive}}}\n"
        "flop_budgets: {default: [1.0e+12], mlp: [2.0e+12]}\n")
    (tmp_path / "profiles" / "child.yaml").write_text(
        "extends: base\ntraining: {batch_size: 8}\nflop_budgets: {default: [3.0e+12]}\n")
    suite = load_suite_file(tmp_path / "suite.yaml")
    assert sorted(suite.profiles) == ["base", "child", "inline"]
    child = suite.profiles["child"]
    # mappings merge key by key, anything else is replaced
    assert child.description == "a base" and child.origin.file == str(tmp_path / "profiles" / "child.yaml")
    assert child.training == {"seed": 5, "batch_size": 8, "by_dataset": {"ptb": {"head": "adaptive"}}}
    assert child.flop_budgets == {"default": [3.0e12], "mlp": [2.0e12]}
    assert child.budgets("mlp", "ptb") == [2.0e12] and child.budgets("lstm", "ptb") == [3.0e12]
    assert str(suite.profiles["inline"].origin) == f"{tmp_path / 'suite.yaml'} profiles.inline"
    cfg = resolve_run("mlp", "ptb", suite=suite, profile="child")
    assert (cfg.train.seed, cfg.train.batch_size, cfg.model.head) == (5, 8, "adaptive")


@pytest.mark.parametrize("files, message", [
    ({"a.yaml": "extends: b\n"}, r"profiles/a.yaml: extends: unknown profile 'b'"),
    ({"a.yaml": "extends: b\n", "b.yaml": "extends: a\n"}, r"extends makes a cycle \(a -> b -> a\)"),
    ({"inline.yaml": "{}\n"}, r"profile 'inline' is defined twice"),
])
def test_a_broken_profile_folder_is_refused_in_one_line(tmp_path, files, message):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "suite.yaml").write_text("profiles: {inline: {}}\n")
    for name, text in files.items():
        (tmp_path / "profiles" / name).write_text(text)
    with pytest.raises(UsageError, match=message):
        load_suite_file(tmp_path / "suite.yaml")


@pytest.mark.parametrize("suite_text, profile_text, message", [
    ("", "flop_budgets: [0]", r"profiles/p.yaml flop_budgets must be a list of positive numbers"),
    ("", "flop_budgets: {default: [1.0e+12], linear: {ptb: [-1]}}",
     r"profiles/p.yaml flop_budgets.linear.ptb must be a list of positive numbers"),
    ("", "sizes: {mlp: [8, 16]}", r"profiles/p.yaml sizes.mlp must be a list of model settings"),
    ("", "sizes: {mlp: [{hidden_dm: 8}]}", r"unknown key 'hidden_dm' in \S*profiles/p.yaml sizes.mlp "),
    ("", "sizes: {mlp: [{hidden_dim: 8}, {hidden_dim: 16}, {hidden_dim: 32}]}\nsizes_per_budget: 4",
     r"profiles/p.yaml sizes_per_budget must be a whole number from 3 .*sizes.mlp has 3\); got 4"),
    ("", "ablations: maybe", r"profiles/p.yaml ablations must be true, false or a list of datasets"),
    ("", "datasets: {ptb: [gpt]}", r"profiles/p.yaml datasets: unknown model 'gpt'"),
    ("", "datasets: {imagenet: [mlp]}", r"profiles/p.yaml datasets: unknown dataset 'imagenet'"),
    ("", "training: {batch_size: many}", r"profiles/p.yaml training.batch_size must be an integer"),
    ("", "models: {mlp: {by_dataset: {ptb: {hidden_dm: 3}}}}",
     r"unknown key 'hidden_dm' in \S*profiles/p.yaml models.mlp.by_dataset.ptb "),
    ("", "extends: q\ndatasets: {ptb: [mlp]}", r"profiles/p.yaml: extends: unknown profile 'q'"),
    ("data: {ptb: {type: word, max_vocab: lots}}", "", r"suite.yaml data.ptb.max_vocab must be an integer"),
    ("data: {ptb: {type: wrod}}", "", r"suite.yaml data.ptb.type must be one of char, word"),
    ("data: {ptb: {type: word, max_vocab: 1}}", "", r"suite.yaml data.ptb: data.max_vocab must be at least 2"),
    ("ablations: {mlp: {hidden_dim: 64}}", "", r"suite.yaml ablations.mlp must be one key with a list of values"),
    ("targets: {ptb: {mlp: high}}", "", r"suite.yaml targets.ptb.mlp must be a number"),
    ("models: {gpt: {epochs: 1}}", "", r"suite.yaml models: unknown model 'gpt'"),
])
def test_a_mistake_anywhere_in_the_suite_file_is_named_by_file_and_key_when_it_is_read(tmp_path, suite_text,
                                                                                        profile_text, message):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "suite.yaml").write_text(suite_text + "\n")
    (tmp_path / "profiles" / "p.yaml").write_text(profile_text + "\n")
    with pytest.raises(UsageError, match=message):
        load_suite_file(tmp_path / "suite.yaml")


def test_a_profile_names_its_runs_without_planning_the_others():
    """The label of one run plans only the claimed profile's runs of its model and dataset; it is the label the
    index of every profile's every run gives."""
    from tinylm.suite_plan import ADHOC, ProfileLabels, plan, profile_index, profile_label

    suite = load_suite_file()
    index = profile_index(suite)
    quick = resolve_run("transformer", "tinyshakespeare", suite=suite, profile="quick")
    scaling = plan(suite, "scaling", only=["mlp"], datasets=["ptb"])[7].config
    other = resolve_run("transformer", "tinyshakespeare", suite=suite, profile="quick", sets=["train.seed=2"])
    for cfg, claimed, label in [(quick, "quick", "quick"), (quick, None, "quick"), (quick, "full", "quick"),
                                (scaling, "scaling", "scaling"), (other, "quick", ADHOC)]:
        labels = ProfileLabels(suite)
        assert profile_label(suite, cfg, claimed) == labels.label(cfg, claimed) == label
        assert label in index.get(digest(cfg), [ADHOC])
        if claimed == label:  # the claimed profile holds it: no other profile is planned
            assert {key[0] for key in labels._digests} == {claimed}


def digest(cfg):
    from tinylm.run_folders import config_digest

    return config_digest(cfg)


def test_the_shipped_suite_file_reads_as_a_recipe_book():
    """Defaults, models, datasets, ablations and targets in configs/default.yaml; each profile in a short file of its
    own; comments say why, and measurement logs live in docs/lab-notes.md, never in the recipes."""
    from pathlib import Path
    configs = Path(__file__).resolve().parents[1] / "configs"
    assert set(read_yaml(configs / "default.yaml")) == {"training", "models", "data", "targets", "ablations"}
    files = sorted((configs / "profiles").glob("*.yaml"))
    assert {f.stem for f in files} >= {"quick", "full", "isoflop", "scaling", "scaling-gpu", "sprint", "gpu"}
    for path in [configs / "default.yaml", *files]:
        text = path.read_text()
        assert len(text.splitlines()) <= 150, path.name
        assert not re.search(r"issue ?#?\d", text, re.I), path.name
        # a measurement log quotes the results of runs: valid/test losses, perplexities, minutes
        assert not re.search(r"\b(valid|test) -?\d\.\d{3}|ppl \d+\.\d|\d+\.\d+ min\b", text), path.name


def test_a_field_added_later_keeps_every_run_id_until_it_is_set():
    """The run-id rule: a field beyond SAVED_ALWAYS enters config.yaml and the digest only where it is not at its
    default, so adding one renames no earlier run."""
    cfg = resolve_run("transformer", "tinyshakespeare", profile="quick")
    later = dataclasses.make_dataclass("LaterTrainConfig", [("new_knob", int, dataclasses.field(default=3))],
                                       bases=(TrainConfig,))
    with_field = dataclasses.replace(cfg, train=later(**dataclasses.asdict(cfg.train)))
    assert "new_knob" not in with_field.to_dict()["train"]
    assert run_id(with_field) == run_id(cfg)
    set_field = dataclasses.replace(cfg, train=later(**dataclasses.asdict(cfg.train), new_knob=4))
    assert set_field.to_dict()["train"]["new_knob"] == 4 and run_id(set_field) != run_id(cfg)
