"""The LSTM: one stream per split with the state never reset, its state as the generation cache, truncated
BPTT training on all positions (from random windows, or on streams carrying the state, with SGD), and a run through
the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from tinylm.cli import main
from tinylm.config import DataConfig
from tinylm.data.corpus import load_corpus, stream_batch
from tinylm.errors import UsageError
from tinylm.generate.sampling import generate_ids
from tinylm.models import build_model
from tinylm.suite_file import SuiteFile, resolve_run
from tinylm.training.evaluate import evaluate
from tinylm.training.trainer import Trainer

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


def test_streams_are_read_in_order_and_restart_at_each_pass():
    tokens = torch.arange(103)  # 4 streams of 25 tokens: 5 windows of 5 a pass
    (x0, y0, fresh0), (x1, _, fresh1) = (stream_batch(tokens, 4, 5, step) for step in (0, 1))
    assert fresh0 and not fresh1
    assert x0[:, 0].tolist() == [0, 25, 50, 75] and torch.equal(y0, x0 + 1)
    assert torch.equal(x1[:, 0], y0[:, -1])  # each stream goes on where the last step left it
    again, _, fresh5 = stream_batch(tokens, 4, 5, 5)
    assert fresh5 and torch.equal(again, x0)
    assert torch.equal(stream_batch(tokens, 4, 5, 1, rows=(1, 3))[0], x1[1:3])


def stream_trainer(tiny_text_file, tmp_path, *sets):
    data = DataConfig(name="tiny", level="char", path=str(tiny_text_file))
    cfg = resolve_run("lstm", suite=SuiteFile(), data=data, train_values={"max_steps": 6}, sets=[
        "model.context_length=8", "model.embed_dim=8", "model.hidden_dim=8", "model.dropout=0", "train.batch_size=4",
        "train.warmup_steps=0", "train.scheduler=constant", *sets])
    return Trainer(cfg, load_corpus(cfg.data, tmp_path / "d", quiet=True))


def test_sgd_on_carried_streams_follows_word_language_models_loop(tiny_text_file, tmp_path):
    """The trainer's losses equal a hand-written loop: contiguous streams, the state carried and detached, plain SGD
    after clipping, the state reset at each pass."""
    trainer = stream_trainer(tiny_text_file, tmp_path, "train.optimizer=sgd", "train.learning_rate=2",
                             "train.weight_decay=0", "train.gradient_clip=0.25", "train.carry_state=true")
    tokens = torch.as_tensor(trainer.train_tokens.astype("int64"))
    model = build_model("lstm", trainer.model.config)
    model.load_state_dict(trainer.model.state_dict())
    model.train()
    windows = (len(tokens) - 1) // 4 // 8
    state, expected = None, []
    for step in range(windows + 2):  # across the end of the first pass
        x, y, _ = stream_batch(tokens, 4, 8, step)
        if step % windows == 0:
            state = None
        out, state = model.lstm(model.drop(model.tok_emb(x)), state)
        loss = F.cross_entropy(model.head_output(out, None).flatten(0, 1), y.flatten())
        loss.backward()
        state = tuple(s.detach() for s in state)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        with torch.no_grad():
            for p in model.parameters():
                p -= 2 * p.grad
                p.grad = None
        expected.append(loss.item())
    got = []
    for _ in range(windows + 2):
        got.append(trainer.train_step(2.0))
        trainer.state.step += 1
    assert got == pytest.approx(expected, rel=1e-5)


def test_a_resumed_run_carries_the_saved_state_on(tiny_text_file, tmp_path):
    sets = ("train.optimizer=sgd", "train.learning_rate=2", "train.weight_decay=0", "train.carry_state=true")
    whole, first = stream_trainer(tiny_text_file, tmp_path, *sets), stream_trainer(tiny_text_file, tmp_path, *sets)
    losses = []
    for _ in range(5):
        losses.append(whole.train_step(2.0))
        whole.state.step += 1
    for _ in range(3):
        first.train_step(2.0)
        first.state.step += 1
    resumed = stream_trainer(tiny_text_file, tmp_path, *sets)
    resumed.load_state_dict(*first.state_dict())
    rest = []
    for _ in range(2):
        rest.append(resumed.train_step(2.0))
        resumed.state.step += 1
    assert rest == pytest.approx(losses[3:], rel=1e-6)


def test_carrying_a_state_needs_a_recurrent_model_and_sgd_a_small_decay(tiny_text_file, tmp_path):
    data = DataConfig(name="tiny", level="char", path=str(tiny_text_file))
    cfg = resolve_run("mlp", suite=SuiteFile(), data=data, train_values={"max_steps": 2},
                      sets=["train.carry_state=true"])
    with pytest.raises(UsageError, match="needs a recurrent model"):
        Trainer(cfg, load_corpus(cfg.data, tmp_path / "d", quiet=True))
    with pytest.raises(UsageError, match="weight_decay below 1 / learning_rate"):
        resolve_run("lstm", suite=SuiteFile(), data=data, train_values={"max_steps": 2},
                    sets=["train.optimizer=sgd", "train.learning_rate=20"])
