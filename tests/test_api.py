"""The Python API (tinylm.load / tinylm.train / Run): the README's example runs, and it agrees with the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch

import tinylm
from tinylm.cli import main
from tinylm.errors import TinyLMError, TinyLMWarning, UsageError

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
    code = "import sys, tinylm; print('torch' in sys.modules, callable(tinylm.load), callable(tinylm.train))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True"]
