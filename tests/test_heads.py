"""The adaptive softmax head: an exact, normalised model for every architecture, its loss without the full
softmax, its FLOPs as computed, its frequency ranking kept with the weights, and a run trained, scored and sampled."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tinylm.cli import main
from tinylm.errors import UsageError
from tinylm.models import build_model
from tinylm.models.heads import AdaptiveHead, default_cutoffs, padded_linear
from tinylm.models.registry import model_names
from tinylm.training.evaluate import evaluate, protocol_window
from tinylm.training.optim import param_groups

V = 40
SIZES = {
    "linear": {"context_length": 4, "rank": 8},
    "mlp": {"context_length": 4, "embed_dim": 8, "hidden_dim": 16, "n_hidden": 2, "dropout": 0.0},
    "attention": {"context_length": 12, "embed_dim": 16, "n_heads": 2, "n_layers": 2},
    "transformer": {"context_length": 12, "embed_dim": 16, "n_heads": 2, "n_layers": 2, "dropout": 0.0},
    "lstm": {"context_length": 12, "embed_dim": 16, "hidden_dim": 16, "n_layers": 2, "dropout": 0.0},
    "llama": {"context_length": 12, "embed_dim": 16, "n_heads": 2, "n_layers": 2, "dropout": 0.0},
    "mamba": {"context_length": 12, "embed_dim": 16, "n_layers": 2, "head_dim": 8, "d_state": 4, "chunk": 4,
              "dropout": 0.0},
}


def zipf_stream(n: int, seed: int = 0) -> torch.Tensor:
    """n token ids with Zipf-like frequencies over a shuffled vocabulary (so ids are not in frequency order)."""
    g = torch.Generator().manual_seed(seed)
    p = 1.0 / torch.arange(1, V + 1, dtype=torch.float64)
    ranks = torch.multinomial(p, n, replacement=True, generator=g)
    return torch.randperm(V, generator=g)[ranks]


def counts_of(tokens: torch.Tensor) -> list[int]:
    return torch.bincount(tokens, minlength=V).tolist()


def adaptive(name: str, counts: list[int], cutoffs: list[int] | None = (5, 15)) -> torch.nn.Module:
    config = {**SIZES[name], "vocab_size": V, "head": "adaptive", "token_counts": counts,
              "cutoffs": list(cutoffs) if cutoffs else None}
    model = build_model(name, config).eval()
    for p in model.parameters():  # random, not small, weights: distributions far from uniform
        torch.nn.init.normal_(p, std=0.5)
    return model


@pytest.mark.parametrize("name", model_names())
def test_log_probs_are_normalised_and_each_target_is_scored_exactly(name):
    tokens = zipf_stream(500)
    model = adaptive(name, counts_of(tokens))
    idx, y = tokens[:36].view(3, 12), tokens[1:37].view(3, 12)
    logp = model(idx)  # (3, 12, V)
    assert logp.shape == (3, 12, V)
    assert torch.logsumexp(logp, -1).abs().max() < 1e-5
    full = -logp.gather(-1, y[..., None])[..., 0]
    assert torch.allclose(model(idx, targets=y), full, atol=1e-5)
    assert torch.allclose(model(idx, targets=y[:, 5:]), full[:, 5:], atol=1e-5)  # only the last positions


@pytest.mark.parametrize("name", model_names())
def test_the_protocol_score_equals_a_naive_loop_over_log_p(name):
    """evaluate (per-target log p) against log_softmax of the full distribution, one prediction at a time."""
    torch.manual_seed(0)
    tokens = zipf_stream(41, seed=1)
    model = adaptive(name, counts_of(zipf_stream(500)))
    stride = None if model.fixed_window or model.recurrent else 1
    window = model.context_length if model.fixed_window else protocol_window(model, stride)[0]
    result = evaluate(model, tokens, batch_size=4, stride=stride)
    naive = 0.0
    with torch.no_grad():
        for j in range(1, len(tokens)):
            context = tokens[:j] if model.recurrent else tokens[max(0, j - window) : j]
            naive += float(torch.log_softmax(model(context[None])[0, -1], -1)[tokens[j]])
    assert result.tokens == len(tokens) - 1
    assert result.total_logprob == pytest.approx(naive, abs=1e-3)


def test_the_ranking_follows_the_training_counts_and_default_cutoffs_their_coverage():
    tokens = zipf_stream(5000)
    counts = counts_of(tokens)
    head = adaptive("transformer", counts, cutoffs=None).head
    by_rank = torch.tensor(counts)[head.by_rank]
    assert (by_rank[:-1] >= by_rank[1:]).all() and (head.rank[head.by_rank] == torch.arange(V)).all()
    cuts = default_cutoffs(counts)
    assert head.cutoffs == cuts
    share = by_rank.cumsum(0) / by_rank.sum()
    assert share[cuts[0] - 1] >= 0.8 > (share[cuts[0] - 2] if cuts[0] > 1 else 0)
    assert sum(head.tail_shares) == pytest.approx(1 - float(share[cuts[0] - 1]))


def test_the_head_is_tied_to_the_token_embedding():
    model = adaptive("transformer", counts_of(zipf_stream(500)))
    assert model.head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    assert model.num_params() == sum(p.numel() for p in model.parameters())
    idx, y = zipf_stream(12)[None], zipf_stream(12, seed=3)[None]
    model(idx, targets=y).sum().backward()
    head_rows = model.head.by_rank[:5]
    assert model.tok_emb.weight.grad[head_rows].abs().sum(-1).gt(0).all()  # the head's rows learn as outputs too


def test_the_ranking_is_saved_with_the_weights():
    counts = counts_of(zipf_stream(500))
    model = adaptive("mlp", counts)
    other = adaptive("mlp", list(reversed(counts)))  # same shapes, another ranking
    other.load_weights(model.weights())
    idx = zipf_stream(16)[None]
    assert "head.rank" in model.weights() and torch.equal(other(idx), model(idx))


def test_the_head_flops_count_the_tails_at_their_training_share():
    """On a batch whose targets are the training tokens, the counted matmul FLOPs are exactly the analytic ones."""
    tokens = zipf_stream(3000)
    head = AdaptiveHead(32, V, [5, 15], counts_of(tokens), bias=True)
    h = torch.randn(len(tokens), 32, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        head.nll(h, tokens)
    assert counter.get_total_flops() == pytest.approx(len(tokens) * head.flops_per_token(), rel=1e-9)
    with FlopCounterMode(display=False) as counter:
        head(h)
    assert counter.get_total_flops() == pytest.approx(len(tokens) * head.flops_per_token(full=True), rel=1e-9)
    assert head.flops_per_token() < 0.6 * head.flops_per_token(full=True)


@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_model_flops_with_an_adaptive_head_match_the_counter(name):
    tokens = zipf_stream(2 * 12 + 1)
    model = adaptive(name, counts_of(tokens[1:])).train()
    x, y = tokens[:-1].view(2, 12), tokens[1:].view(2, 12)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        loss = model(x, targets=y).mean()
    forward = counter.get_total_flops() / y.numel()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        loss.backward()
    assert forward == pytest.approx(model.matmul_flops_per_token(12), rel=0.05)
    assert counter.get_total_flops() / y.numel() == pytest.approx(2 * forward, rel=0.10)


def test_mistakes_in_the_head_settings_are_one_clear_line():
    with pytest.raises(UsageError, match="cutoffs applies to model.head=adaptive"):
        build_model("transformer", {"vocab_size": V, "cutoffs": [5]})
    with pytest.raises(UsageError, match="below the vocabulary size"):
        build_model("transformer", {"vocab_size": V, "head": "adaptive", "cutoffs": [5, 40]})
    with pytest.raises(UsageError, match="increasing"):
        build_model("transformer", {"vocab_size": V, "head": "adaptive", "cutoffs": [15, 5]})
    with pytest.raises(UsageError, match="training count"):
        build_model("transformer", {"vocab_size": V, "head": "adaptive"})
    with pytest.raises(UsageError, match="needs model.rank"):
        build_model("linear", {"vocab_size": V, "head": "adaptive"})


def test_an_adaptive_run_trains_reloads_exactly_and_generates(tiny_text_file, tmp_path, capsys):
    data = ["--data", str(tiny_text_file), "--level", "char", "--data-dir", str(tmp_path / "d")]
    assert main(["train", "--model", "transformer", "--max-steps", "20", "--quiet", "--set", "model.head=adaptive",
                 "--set", "model.context_length=16", "--set", "model.n_layers=1", *data]) == 0
    (run_dir,) = (tmp_path / "results" / "runs").glob("tiny-transformer-*")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["test_loglik"] < 0
    assert "counts" in json.loads((run_dir / "tokenizer.json").read_text())
    assert (run_dir / "config.yaml").read_text().count("head: adaptive") == 1
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json", "--data-dir", str(tmp_path / "d")]) == 0
    assert json.loads(capsys.readouterr().out)["test_loglik"] == pytest.approx(metrics["test_loglik"], abs=1e-9)
    assert main(["generate", str(run_dir), "--prompt", "First", "--length", "20", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("First")


def test_the_adaptive_loss_is_the_cross_entropy_of_its_distribution():
    tokens = zipf_stream(200)
    model = adaptive("attention", counts_of(tokens))
    x, y = tokens[:48].view(4, 12), tokens[1:49].view(4, 12)
    with torch.no_grad():
        expected, loss = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1)), model(x, targets=y).mean()
    assert float(loss) == pytest.approx(float(expected), abs=1e-5)


def test_an_untied_head_matrix_is_decayed_as_a_full_heads_and_a_tied_one_is_not():
    counts = counts_of(zipf_stream(500))
    mlp, gpt = adaptive("mlp", counts), adaptive("transformer", counts)
    assert id(mlp.head.weight) in {id(p) for p in param_groups(mlp, 0.1)[0]["params"]}
    assert id(gpt.head.weight) in {id(p) for p in param_groups(gpt, 0.1)[1]["params"]}


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("multiple", [1, 8, 64])
def test_the_padded_head_matmul_gives_the_same_logits_and_gradients(bias, multiple):
    torch.manual_seed(0)
    h = torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(V + 1, 16, dtype=torch.float64, requires_grad=True)  # 41 rows: padded to 48 or 64
    b = torch.randn(V + 1, dtype=torch.float64, requires_grad=True) if bias else None
    plain = F.linear(h, w, b)
    padded = padded_linear(h, w, b, multiple)
    assert padded.shape == plain.shape and torch.allclose(padded, plain, rtol=0, atol=1e-12)
    g = torch.randn_like(plain)
    grads = torch.autograd.grad((plain * g).sum(), [h, w] + ([b] if bias else []))
    grads_padded = torch.autograd.grad((padded * g).sum(), [h, w] + ([b] if bias else []))
    for a, c in zip(grads, grads_padded):
        assert a.shape == c.shape and torch.allclose(a, c, rtol=0, atol=1e-12)
