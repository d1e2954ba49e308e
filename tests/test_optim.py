"""AdamW parameter groups: weight decay on nn.Linear weight matrices only, every parameter exactly once."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch
from torch import nn

from tinylm.config import TrainConfig
from tinylm.models.registry import build_model
from tinylm.training.optim import make_optimizer, param_groups

CONFIGS = {
    "linear": {"vocab_size": 50, "context_length": 4, "rank": 8},  # rank: a real nn.Linear besides the table
    "mlp": {"vocab_size": 50, "context_length": 4, "embed_dim": 8, "hidden_dim": 16, "n_hidden": 2},
    "attention": {"vocab_size": 50, "context_length": 16, "embed_dim": 32, "n_heads": 2, "n_layers": 2},
    "transformer": {"vocab_size": 50, "context_length": 16, "embed_dim": 32, "n_heads": 2, "n_layers": 2},
}


def expected_decayed(model: nn.Module) -> set[int]:
    """ids of nn.Linear weights, minus any tensor that is also an embedding's weight (a tied head)."""
    linear = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    embed = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))}
    return linear - embed


def ids(params) -> list[int]:
    return [id(p) for p in params]


@pytest.fixture(params=list(CONFIGS))
def model(request):
    return build_model(request.param, dict(CONFIGS[request.param]))


def test_two_groups_with_the_decay_given(model):
    groups = param_groups(model, 0.123)
    assert len(groups) == 2
    assert groups[0]["weight_decay"] == 0.123
    assert groups[1]["weight_decay"] == 0.0


def test_only_linear_weight_matrices_are_decayed(model):
    decayed, undecayed = param_groups(model, 0.1)
    assert set(ids(decayed["params"])) == expected_decayed(model)
    assert all(p.dim() == 2 for p in decayed["params"])
    assert not set(ids(undecayed["params"])) & expected_decayed(model)


def test_biases_norms_and_embeddings_are_not_decayed(model):
    _, undecayed = param_groups(model, 0.1)
    without = set(ids(undecayed["params"]))
    must_skip = []
    for m in model.modules():
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag, nn.LayerNorm)):
            must_skip += [p for p in m.parameters(recurse=False)]
        elif isinstance(m, nn.Linear) and m.bias is not None:
            must_skip.append(m.bias)
    must_skip += [p for name, p in model.named_parameters() if name.endswith("bias")]
    assert must_skip, "each model has at least an embedding or a bias"
    assert set(ids(must_skip)) <= without


def test_every_trainable_parameter_appears_exactly_once(model):
    groups = param_groups(model, 0.1)
    listed = ids(groups[0]["params"]) + ids(groups[1]["params"])
    assert len(listed) == len(set(listed))
    assert set(listed) == {id(p) for p in model.parameters() if p.requires_grad}
    assert sum(p.numel() for g in groups for p in g["params"]) == model.num_params()


def test_frozen_parameters_are_left_out():
    model = build_model("mlp", dict(CONFIGS["mlp"]))
    model.embed.weight.requires_grad_(False)
    groups = param_groups(model, 0.1)
    assert id(model.embed.weight) not in ids(groups[0]["params"]) + ids(groups[1]["params"])


@pytest.mark.parametrize("name", ["attention", "transformer"])
def test_tied_head_appears_once_and_is_not_decayed(name):
    model = build_model(name, dict(CONFIGS[name]))
    assert model.head.weight is model.tok_emb.weight
    decayed, undecayed = param_groups(model, 0.1)
    assert id(model.tok_emb.weight) not in ids(decayed["params"])
    assert ids(undecayed["params"]).count(id(model.tok_emb.weight)) == 1


def test_transformer_groups_by_name():
    """The decayed names are exactly the qkv/proj/fc weights of the blocks."""
    model = build_model("transformer", dict(CONFIGS["transformer"]))
    decayed, _ = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    got = sorted(names[id(p)] for p in decayed["params"])
    want = sorted(
        f"blocks.{i}.{part}.weight" for i in range(2) for part in ("attn.qkv", "attn.proj", "ffn.fc", "ffn.proj")
    )
    assert got == want


def test_make_optimizer_carries_lr_betas_and_decay():
    model = build_model("transformer", dict(CONFIGS["transformer"]))
    cfg = TrainConfig(weight_decay=0.05, learning_rate=3e-3, beta1=0.8, beta2=0.95)
    opt = make_optimizer(model, cfg, torch.device("cpu"))
    assert isinstance(opt, torch.optim.AdamW)
    assert len(opt.param_groups) == 2
    for group in opt.param_groups:
        assert group["lr"] == 3e-3
        assert group["betas"] == (0.8, 0.95)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert set(ids(opt.param_groups[0]["params"])) == expected_decayed(model)


def test_make_optimizer_steps_on_cpu():
    """One real step changes the parameters (the fused CPU path included) and decays only the decayed group."""
    model = build_model("mlp", dict(CONFIGS["mlp"]))
    opt = make_optimizer(model, TrainConfig(weight_decay=0.5, learning_rate=1e-2), torch.device("cpu"))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # zero gradient: only decoupled decay can move a parameter
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    decayed = expected_decayed(model)
    for n, p in model.named_parameters():
        if id(p) in decayed:
            assert torch.allclose(p, before[n] * (1 - 1e-2 * 0.5))
        else:
            assert torch.equal(p, before[n])


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_the_optimizer_updates_exactly_as_torchs_own_and_restores_its_state(name):
    cfg = TrainConfig(optimizer=name, learning_rate=1e-2, weight_decay=0.1)
    ours_model = build_model("transformer", dict(CONFIGS["transformer"]))
    stock_model = build_model("transformer", dict(CONFIGS["transformer"]))
    stock_model.load_state_dict(ours_model.state_dict())
    ours = make_optimizer(ours_model, cfg, torch.device("cpu"))
    kind = torch.optim.SGD if name == "sgd" else torch.optim.AdamW
    settings = {k: v for k, v in ours.defaults.items() if k in inspect.signature(kind).parameters}
    stock = kind(param_groups(stock_model, cfg.weight_decay), **settings)
    ours_model.eval(), stock_model.eval()  # no dropout: the same gradients in both
    x = torch.randint(0, 50, (4, 16))
    for _ in range(3):
        for model, opt in ((ours_model, ours), (stock_model, stock)):
            opt.zero_grad()
            out = model(x)
            (out[0] if isinstance(out, tuple) else out).float().square().mean().backward()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(ours_model.parameters(), stock_model.parameters(), strict=True))
    again = make_optimizer(ours_model, cfg, torch.device("cpu"))
    again.load_state_dict(ours.state_dict())
    assert str(again.state_dict()) == str(ours.state_dict())


def test_a_training_step_does_not_import_torch_dynamo():
    # torch's optimizer wrappers import torch._dynamo on first call (over a second) only to leave a compile trace
    code = ("import sys, torch; from tinylm.config import TrainConfig; from tinylm.training.optim import "
            "make_optimizer; m = torch.nn.Linear(4, 4); o = make_optimizer(m, TrainConfig(), torch.device('cpu')); "
            "m(torch.randn(2, 4)).sum().backward(); o.step(); o.zero_grad(); o.load_state_dict(o.state_dict()); "
            "print('torch._dynamo' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
