"""The LSTM (issue 14): one stream per split with the state never reset, its state as the generation cache, truncated
BPTT training on all positions, and a run through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from tinylm.cli import main
from tinylm.generate.sampling import generate_ids
from tinylm.models import build_model
from tinylm.training.evaluate import evaluate

CONFIG = {"vocab_size": 9, "context_length": 6, "embed_dim": 8, "hidden_dim": 12, "n_layers": 2, "dropout": 0.0}


def model_with_random_weights(**over):
    model = build_model("lstm", {**CONFIG, **over}).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return model


@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_the_split_is_one_stream_whatever_the_chunk(chunk):
    """Every token but the first, scored once with everything before it (no reset at chunk borders, nor after
    context_length tokens): the sum equals log p(t_j | t_0..t_{j-1}) computed from the whole prefix."""
    torch.manual_seed(0)
    model = model_with_random_weights()
    tokens = torch.randint(0, 9, (30,))
    result = evaluate(model, tokens, stride=chunk)
    with torch.no_grad():
        logp = F.log_softmax(model(tokens[None, :-1])[0].double(), -1)  # one pass over the whole prefix
    assert result.tokens == 29
    assert result.total_logprob == pytest.approx(float(logp.gather(1, tokens[1:, None]).sum()), abs=1e-4)


def test_the_state_reaches_beyond_the_training_window():
    """Changing a token 20 positions back (context_length 6) changes the prediction: nothing is truncated."""
    model = model_with_random_weights()
    idx = torch.randint(0, 9, (1, 25))
    changed = idx.clone()
    changed[0, 2] = (changed[0, 2] + 1) % 9
    with torch.no_grad():
        assert not torch.allclose(model(idx)[0, -1], model(changed)[0, -1])


def test_generation_carries_the_state_as_its_cache():
    model = model_with_random_weights()
    prompt = [1, 2, 3, 4, 5, 6, 7, 8]  # longer than context_length: kept whole
    cached = list(generate_ids(model, prompt, 20, seed=3, use_cache=True))
    uncached = list(generate_ids(model, prompt, 20, seed=3, use_cache=False))
    assert cached == uncached
    cache = model.new_cache()
    with torch.no_grad():
        whole = model(torch.tensor([prompt]))[0, -1]
        model(torch.tensor([prompt[:5]]), cache)
        stepwise = model(torch.tensor([prompt[5:]]), cache)[0, -1]
    assert len(cache) == len(prompt) and torch.allclose(whole, stepwise, atol=1e-5)


def test_the_head_is_tied_through_a_projection_when_the_widths_differ():
    model = build_model("lstm", CONFIG)
    assert model.proj is not None and model.head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    untied = build_model("lstm", {**CONFIG, "tie_weights": False})
    assert untied.proj is None and untied.head.weight.shape == (9, 12)


def test_an_lstm_run_trains_and_is_scored_as_one_stream(tiny_text_file, tmp_path, capsys):
    data = ["--data", str(tiny_text_file), "--level", "char", "--data-dir", str(tmp_path / "d")]
    assert main(["train", "--model", "lstm", "--max-steps", "20", "--quiet", "--set", "model.hidden_dim=16",
                 "--set", "model.embed_dim=16", "--set", "model.context_length=16", *data]) == 0
    (run_dir,) = (tmp_path / "results" / "runs").glob("tiny-lstm-*")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["test_loglik"] < 0
    assert metrics["tokens_trained"] == 20 * 32 * 16  # batch 32 x 16 positions, every one scored
    assert metrics["train_flops"] == pytest.approx(metrics["tokens_trained"] * 3 * metrics["flops_per_token"])
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--data-dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert f"{metrics['test_loglik']:.4f}" in out and "never reset" in out
    assert main(["generate", str(run_dir), "--prompt", "First", "--length", "30", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("First")
