"""The models: the sequence-model contract, honest counts, tying, and the registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tinylm.errors import UsageError
from tinylm.models import build_model
from tinylm.models.base import RMSNorm, RMSNormFunction
from tinylm.models.registry import MODELS
from tinylm.suite_file import load_suite_file, resolve_run

SMALL = {
    "linear": {"context_length": 5},
    "mlp": {"context_length": 5, "embed_dim": 8, "hidden_dim": 16, "n_hidden": 2, "dropout": 0.0},
    "attention": {"context_length": 12, "embed_dim": 16, "n_heads": 2, "n_layers": 2},
    "transformer": {"context_length": 12, "embed_dim": 16, "n_heads": 2, "n_layers": 2, "dropout": 0.0},
    "lstm": {"context_length": 12, "embed_dim": 16, "hidden_dim": 16, "n_layers": 2, "dropout": 0.0},
    "llama": {"context_length": 12, "embed_dim": 16, "n_heads": 2, "n_layers": 2, "dropout": 0.0},
    "mamba": {"context_length": 12, "embed_dim": 16, "n_layers": 2, "head_dim": 8, "d_state": 4, "chunk": 4,
              "dropout": 0.0},
}
LARGER = {
    "linear": {"context_length": 16, "rank": 8},
    "mlp": {"context_length": 8, "embed_dim": 16, "hidden_dim": 64, "n_hidden": 3, "dropout": 0.0},
    "attention": {"context_length": 32, "embed_dim": 64, "n_heads": 4, "n_layers": 3},
    "transformer": {"context_length": 32, "embed_dim": 32, "n_heads": 4, "n_layers": 3, "dropout": 0.0},
    "lstm": {"context_length": 32, "embed_dim": 16, "hidden_dim": 48, "n_layers": 3, "dropout": 0.0},
    "llama": {"context_length": 32, "embed_dim": 48, "n_heads": 4, "n_layers": 3, "dropout": 0.0, "tie_head": False},
    "mamba": {"context_length": 32, "embed_dim": 32, "n_layers": 3, "head_dim": 16, "d_state": 8, "chunk": 12,
              "dropout": 0.0},
}


def make(name, vocab=11, **over):
    """A small model with random (not zero) weights, in eval mode."""
    model = build_model(name, {**SMALL[name], "vocab_size": vocab, **over})
    if name == "linear":  # its table starts at zero (uniform predictions); randomise it so outputs differ
        torch.nn.init.normal_(model.table.weight, std=0.5)
    return model.eval()


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("vocab", [65, 1000])
def test_shapes_and_dtypes(name, vocab):
    model = make(name, vocab)
    idx = torch.randint(0, vocab, (3, 10))
    logits = model(idx)
    assert logits.shape == (3, 10, vocab) and logits.dtype == torch.float32


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("t", [0, 4, 9])
def test_causality_future_tokens_never_matter(name, t):
    model = make(name)
    idx = torch.randint(0, 11, (2, 10))
    changed = idx.clone()
    changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % 11
    a, b = model(idx), model(changed)
    assert torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-6)
    if t < 9:
        assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_window_models_ignore_tokens_beyond_k(name):
    model = make(name)  # k = 5
    idx = torch.randint(0, 11, (2, 12))
    changed = idx.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 11  # more than k-1 = 4 positions before t >= 8
    a, b = model(idx), model(changed)
    assert torch.allclose(a[:, 8:], b[:, 8:], atol=1e-6)
    assert not torch.allclose(a[:, 3:8], b[:, 3:8])


@pytest.mark.parametrize("name", ["attention", "transformer"])
@pytest.mark.parametrize("t", [0, 5, 9])
def test_gradient_causality(name, t):
    """The logits at t have zero gradient for input embeddings after t and non-zero ones up to t (nanodo)."""
    model = make(name)
    idx = torch.randint(0, 11, (1, 10))
    captured = {}

    def keep(module, inputs, output):
        output.retain_grad()
        captured["emb"] = output

    model.tok_emb.register_forward_hook(keep)
    model(idx)[0, t].sum().backward()
    grad = captured["emb"].grad[0].abs().sum(-1)  # (T,)
    assert (grad[t + 1 :] == 0).all() and (grad[: t + 1] > 0).all()


def _measured_flops(model, T, backward=False):
    idx = torch.randint(0, model.config.vocab_size, (2, T))
    # (oneDNN's fused LSTM kernel is invisible to the counter; without it nn.LSTM runs its gate matmuls as matmuls)
    with sdpa_kernel(SDPBackend.MATH), torch.backends.mkldnn.flags(enabled=False), \
            FlopCounterMode(display=False) as counter:
        out = model(idx)
        if backward:
            out.sum().backward()
    return counter.get_total_flops() / (2 * T)


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")  # (torch's note when oneDNN is toggled)
@pytest.mark.parametrize("sizes", [SMALL, LARGER], ids=["small", "larger"])
@pytest.mark.parametrize("name", list(MODELS))
def test_analytic_flops_match_flop_counter(name, sizes):
    model = build_model(name, {**sizes[name], "vocab_size": 50}).train()
    T = model.context_length if not model.fixed_window else 20
    analytic = model.matmul_flops_per_token(T)
    forward = _measured_flops(model, T)
    total = _measured_flops(model, T, backward=True)
    if analytic == 0:  # the full linear model is lookup-and-add: no matmul at all
        assert forward == 0 and total == 0 and model.other_flops_per_token() > 0
        return
    assert forward == pytest.approx(analytic, rel=0.05)
    assert total - forward == pytest.approx(2 * forward, rel=0.10)


def test_reference_sizes():
    suite = load_suite_file()
    linear_cfg = resolve_run("linear", suite=suite, sets=["model.context_length=128"])
    linear = build_model("linear", linear_cfg.model_config(65))
    assert linear.num_params() == 128 * 65 * 65 + 65 + 65  # table (+ zero padding row) and bias, ≈ 0.54M
    gpt = build_model("transformer", resolve_run("transformer", suite=suite).model_config(65))
    d, L = 128, 4
    assert gpt.num_params() == 65 * d + 128 * d + L * (12 * d * d + 13 * d) + 2 * d


def test_weight_tying_shares_storage_and_counts_once():
    model = make("transformer")
    assert model.head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    assert model.num_params() == sum(p.numel() for p in model.parameters())  # parameters() dedupes
    assert "head.weight" not in model.weights()


def test_registry_rejects_unknown_keys_with_allowed_ones():
    with pytest.raises(UsageError, match=r"unknown key 'heads'.*allowed: .*n_heads"):
        build_model("attention", {"heads": 4})
    with pytest.raises(UsageError, match="unknown model 'rnn'"):
        build_model("rnn", {})


def test_word_level_linear_refuses_a_dense_table():
    with pytest.raises(UsageError, match=r"needs 800,000,000 parameters.*set model.rank"):
        build_model("linear", {"vocab_size": 10_000, "context_length": 8})
    factored = build_model("linear", {"vocab_size": 10_000, "context_length": 8, "rank": 64})
    assert factored.num_params() < 6_000_000


@pytest.mark.parametrize("name", list(MODELS))
def test_overfits_one_batch(name):
    torch.manual_seed(0)
    model = make(name, 11).train()
    idx = torch.randint(0, 11, (4, 13))
    x, y = idx[:, :-1], idx[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=0.05 if name == "linear" else 0.01, weight_decay=0.0)
    for _ in range(300):
        loss = F.cross_entropy(model(x).reshape(-1, 11), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    # The linear model sees only k=5 tokens: random sequences are not all separable by it, so it gets a looser bar.
    assert loss.item() < (1.0 if name == "linear" else 0.5)


def test_mlp_input_dropout_drops_whole_window_inputs_in_training_only():
    """With input_dropout the hidden stack sees the window embeddings with entries zeroed (and the rest scaled) in
    training; in evaluation, and at the default 0, the model is the one without it."""
    cfg = {"vocab_size": 11, "context_length": 3, "embed_dim": 4, "hidden_dim": 8, "n_hidden": 1, "dropout": 0.0}
    torch.manual_seed(0)
    plain = build_model("mlp", cfg)
    torch.manual_seed(0)
    dropped = build_model("mlp", {**cfg, "input_dropout": 0.5})
    idx = torch.randint(0, 11, (2, 5))
    seen = []
    dropped.hidden.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    torch.manual_seed(1)
    dropped.train()(idx)
    zeroed = seen[-1] == 0
    assert zeroed.float().mean().item() == pytest.approx(0.5, abs=0.2)
    rng = torch.get_rng_state()
    plain.train()(idx)
    assert torch.equal(torch.get_rng_state(), rng)  # off (0): no random draw, earlier runs keep their streams
    with torch.no_grad():
        assert torch.equal(dropped.eval()(idx), plain.eval()(idx))
    with pytest.raises(UsageError, match="input_dropout"):
        build_model("mlp", {**cfg, "input_dropout": 1.0})


def test_rms_norm_and_its_written_out_gradient_are_torchs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(6, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.allclose(RMSNormFunction.apply(x, weight, 1e-5), F.rms_norm(x, (6,), weight, 1e-5))
    assert torch.autograd.gradcheck(lambda a, w: RMSNormFunction.apply(a, w, 1e-5), (x, weight))
    bf16 = torch.randn(4, 6, generator=g).bfloat16()
    assert RMSNorm(6)(bf16).dtype == torch.bfloat16
