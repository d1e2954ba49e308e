"""The Python API (tinylm.load / tinylm.train / Run): the README's example runs, and it agrees with the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch
import yaml

import tinylm
from tinylm.cli import main
from tinylm.errors import TinyLMError, TinyLMWarning, UsageError

from .conftest import TINY_TEXT

TINY = {"context_length": 32, "embed_dim": 32, "n_heads": 2, "n_layers": 1, "max_steps": 30, "eval_interval": 15,
        "learning_rate": 0.01}


@pytest.fixture
def run(tiny_text_file):
    return tinylm.train(model="transformer", data=tiny_text_file, level="char", quiet=True, **TINY)


def test_evaluate_is_the_protocol_and_the_cli(run, capsys):
    """run.evaluate gives what training wrote to metrics.json and what `tinylm eval --json` prints."""
    result = run.evaluate("test")
    assert result.loglik == pytest.approx(run.metrics.test_loglik, abs=1e-9)
    assert main(["eval", str(run.path), "--split", "test", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["test_loglik"] == pytest.approx(result.loglik, abs=1e-12)
    assert printed["test_tokens"] == result.tokens


def test_score_is_a_naive_loop_over_log_probs(run):
    """score(text) of a text shorter than the context: the sum of log p(x_t | x_<t) fed one prefix at a time."""
    text = "First Citizen:\nSpeak, speak."
    ids = run.tokenizer.encode(text).tolist()
    naive = 0.0
    with torch.no_grad():
        for t in range(1, len(ids)):
            logits = run.model(torch.tensor([ids[:t]]))[0, -1]
            naive += float(torch.log_softmax(logits.double(), -1)[ids[t]])
    got = run.score(text)
    assert got.tokens == len(ids) - 1
    assert got.loglik == pytest.approx(naive / (len(ids) - 1), abs=1e-5)


def test_generate_matches_the_cli_and_is_seeded(run, capsys):
    text = run.generate("All:", length=40, temperature=0.8, top_p=0.9, seed=3)
    assert text.startswith("All:") and text == run.generate("All:", length=40, temperature=0.8, top_p=0.9, seed=3)
    assert main(["generate", str(run.path), "--prompt", "All:", "--length", "40", "--top-p", "0.9", "--seed", "3",
                 "--temperature", "0.8"]) == 0
    assert capsys.readouterr().out == text + "\n"


@pytest.mark.parametrize("model, sizes", [
    ("llama", {"n_heads": 2}),
    ("mamba", {"head_dim": 16, "d_state": 8, "chunk": 16}),
])
def test_the_modern_rows_through_the_api(tiny_text_file, capsys, model, sizes):
    """The Llama and the state-space model train, score and generate through the API as the others do: the
    evaluation is what training wrote and what `tinylm eval` prints, generation is seeded and equals the CLI's."""
    run = tinylm.train(model=model, data=tiny_text_file, level="char", quiet=True, context_length=32, embed_dim=32,
                       n_layers=1, max_steps=20, eval_interval=10, learning_rate=0.01, **sizes)
    assert run.metrics.model == model and run.evaluate("test").loglik == pytest.approx(run.metrics.test_loglik,
                                                                                     abs=1e-9)
    text = run.generate("All:", length=40, temperature=0.8, seed=3)
    assert main(["generate", str(run.path), "--prompt", "All:", "--length", "40", "--seed", "3",
                 "--temperature", "0.8"]) == 0
    assert capsys.readouterr().out == text + "\n" and len(text) == 44


def test_train_again_loads_the_finished_run_and_load_finds_the_best(run, tiny_text_file):
    again = tinylm.train(model="transformer", data=tiny_text_file, level="char", quiet=True, **TINY)
    assert again.path == run.path and again.metrics.train_seconds == run.metrics.train_seconds
    assert tinylm.load(model="transformer", dataset="tiny").path == run.path
    assert tinylm.load(run.path).path == run.path
    assert repr(run).startswith("Run(transformer on tiny, ")


def test_mistakes_are_one_clear_error(run, tiny_text_file):
    with pytest.raises(UsageError, match="embed_dim"):
        tinylm.train(model="transformer", data=tiny_text_file, level="char", embed_dimm=8)
    with pytest.raises(UsageError, match="scoring needs at least 2"):
        run.score("F")
    with pytest.raises(UsageError, match="never saw"):
        run.score("Speak, \u00e9speak")
    with pytest.raises(UsageError, match="unknown split 'dev'"):
        run.evaluate("dev")
    with pytest.raises(TinyLMError, match="does not exist"):
        tinylm.load("no/such/run")
    with pytest.raises(UsageError, match="not both"):
        tinylm.load(run.path, model="transformer")
    with pytest.raises(UsageError, match="temperature"):
        run.generate("All:", temperature=-1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.generate("All: \u00e9", length=3, seed=0)
    assert any(issubclass(w.category, TinyLMWarning) and "not in the vocabulary" in str(w.message) for w in caught)


def test_importing_tinylm_stays_light():
    """`import tinylm` does not import torch; tinylm.load is there when asked for."""
    code = ("import sys, tinylm; print('torch' in sys.modules, callable(tinylm.load), callable(tinylm.train), "
            "callable(tinylm.suite))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True", "True"]


@pytest.fixture
def tiny_suite(tmp_path):
    """A suite file of two tiny runs of a few steps: a linear model and an MLP on a small text."""
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    suite = {"data": {"tiny": {"type": "char", "path": str(tmp_path / "tiny.txt")}},
             "models": {"linear": {"context_length": 4}, "mlp": {"context_length": 4, "embed_dim": 8,
                                                                 "hidden_dim": 16}},
             "profiles": {"tiny": {"datasets": {"tiny": ["linear", "mlp"]},
                                   "training": {"max_steps": 6, "eval_interval": 3, "eval_tokens": 100,
                                                "batch_size": 4}}}}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_suite_trains_the_runs_tinylm_suite_trains(tiny_suite, tmp_path, capsys):
    base = ["suite", "--profile", "tiny", "--config", str(tiny_suite), "--quiet", "--data-dir", str(tmp_path / "d")]
    assert main([*base, "--results-dir", str(tmp_path / "cli")]) == 0
    assert main([*base, "--results-dir", str(tmp_path / "cli"), "--max-steps", "4"]) == 0
    capsys.readouterr()
    kw = {"config": tiny_suite, "data_dir": tmp_path / "d", "results": tmp_path / "api", "quiet": True}
    runs = tinylm.suite("tiny", **kw)
    shorter = tinylm.suite("tiny", max_steps=4, **kw)
    assert capsys.readouterr().out == ""  # the library prints nothing
    cli = {p.name: json.loads((p / "metrics.json").read_text()) for p in (tmp_path / "cli" / "runs").iterdir()}
    assert sorted(r.run_dir.name for r in runs + shorter) == sorted(cli)
    assert [r.label for r in runs] == ["tiny linear default", "tiny mlp default"]
    assert [(r.index, r.of, r.what, r.profile) for r in runs] == [(1, 2, "trained", "tiny"), (2, 2, "trained", "tiny")]
    assert {r.profile for r in shorter} == {"adhoc"} and all(r.config.train.max_steps == 4 for r in shorter)
    for r in runs + shorter:  # the same runs, trained by the same code: the same numbers
        assert r.metrics.test_loglik == cli[r.run_dir.name]["test_loglik"]
        assert r.metrics.profile == cli[r.run_dir.name]["profile"]
    assert {p.name for p in (tmp_path / "api" / "baselines").iterdir()} == \
        {p.name for p in (tmp_path / "cli" / "baselines").iterdir()}
    assert [r.what for r in tinylm.suite("tiny", **kw)] == ["skipped", "skipped"]
    with pytest.raises(UsageError, match=r"unknown key 'embed_dim' in tinylm.suite"):
        tinylm.suite("tiny", embed_dim=8, **kw)
