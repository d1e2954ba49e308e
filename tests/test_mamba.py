"""The state-space model: its chunked SSD is the recurrence it stands for, whatever the chunk, and its state carries
a sequence across calls exactly."""

from __future__ import annotations

import pytest
import torch

from tinylm.models import build_model
from tinylm.models.mamba import CausalConv
from tinylm.models.ssd import SSD, ssd, ssd_step

SMALL = {"vocab_size": 30, "embed_dim": 16, "n_layers": 2, "head_dim": 8, "d_state": 4, "dropout": 0.0,
         "context_length": 64}


def recurrence(u, a, B, C, state):
    """S_t = exp(a_t) S_{t-1} + u_t B_t^T, y_t = S_t C_t, one position at a time, in float64."""
    s, ys = state.double(), []
    for t in range(u.size(1)):
        s = torch.exp(a[:, t].double())[..., None, None] * s + u[:, t].double()[..., None] * B[:, t].double()[
            :, None, None, :]
        ys.append(s @ C[:, t].double()[:, None, :, None])
    return torch.stack(ys, 1).squeeze(-1), s


@pytest.mark.parametrize("T, chunk", [(1, 4), (7, 4), (16, 4), (16, 64), (23, 8)])
def test_chunked_ssd_is_the_recurrence(T, chunk):
    g = torch.Generator().manual_seed(T)
    b, H, P, N = 2, 3, 4, 5
    u, B, C = torch.randn(b, T, H, P, generator=g), torch.randn(b, T, N, generator=g), torch.randn(b, T, N, generator=g)
    a = -2 * torch.rand(b, T, H, generator=g)
    state = torch.randn(b, H, P, N, generator=g)
    y, final = ssd(u, a, B, C, chunk, state)
    y_ref, final_ref = recurrence(u, a, B, C, state)
    assert torch.allclose(y.double(), y_ref, atol=1e-4) and torch.allclose(final.double(), final_ref, atol=1e-4)
    y_step, s = [], state
    for t in range(T):
        out, s = ssd_step(u[:, t], a[:, t], B[:, t], C[:, t], s)
        y_step.append(out)
    assert torch.allclose(torch.stack(y_step, 1), y, atol=1e-4)


def test_the_chunk_length_changes_nothing_but_speed():
    torch.manual_seed(0)
    idx = torch.randint(30, (2, 50))
    outs = []
    for chunk in (1, 7, 16, 64):
        torch.manual_seed(1)
        outs.append(build_model("mamba", {**SMALL, "chunk": chunk}).eval()(idx))
    for out in outs[1:]:
        assert torch.allclose(out, outs[0], atol=1e-4)


def test_the_state_carries_a_stream_across_calls():
    """Pieces of 13, 1, 1 and 35 tokens through one state give the logits of the 50 tokens in one call: the
    convolution's last inputs and every head's state carry over, at any cut."""
    torch.manual_seed(0)
    model = build_model("mamba", {**SMALL, "chunk": 8}).eval()
    idx = torch.randint(30, (2, 50))
    with torch.no_grad():
        whole = model(idx)
        cache, pieces = model.new_cache(), []
        for a, b in ((0, 13), (13, 14), (14, 15), (15, 50)):
            pieces.append(model(idx[:, a:b], cache))
    assert len(cache) == 50 and torch.allclose(torch.cat(pieces, 1), whole, atol=1e-5)
    names = set(cache.tensors())
    assert names == {"0.conv", "0.ssm", "1.conv", "1.ssm"}
    again = model.new_cache()
    again.load(cache.tensors())
    with torch.no_grad():
        assert torch.allclose(model(idx[:, :5], again), model(idx[:, :5], cache), atol=1e-6)


def test_bf16_autocast_keeps_the_state_in_fp32():
    torch.manual_seed(0)
    model = build_model("mamba", SMALL).eval()
    idx = torch.randint(30, (2, 40))
    cache = model.new_cache()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(idx, cache)
    with torch.no_grad():
        full = model(idx)
    assert cache.layers[0]["ssm"].dtype == torch.float32
    assert (low.float() - full).abs().max() < 0.1 * full.abs().max()


def test_the_folded_inference_step_is_the_model_one_position_at_a_time():
    """Generation's step (the norms' weights folded into the projections, no dropout, no gradient) gives the logits
    of the whole sequence in one call, and so does the general path that training takes with a gradient."""
    torch.manual_seed(0)
    model = build_model("mamba", {**SMALL, "chunk": 8}).eval()
    with torch.no_grad():  # weights away from their init, so that every folded factor matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    idx = torch.randint(30, (2, 40))
    with torch.no_grad():
        whole = model(idx)
        cache = model.new_cache()
        steps = [model(idx[:, :5], cache)] + [model(idx[:, t : t + 1], cache) for t in range(5, 40)]
    assert cache.folded is not None and len(cache) == 40
    assert torch.allclose(torch.cat(steps, 1), whole, atol=1e-5)
    cache = model.new_cache()
    model(idx[:, :5], cache)
    with_grad = model(idx[:, 5:6], cache)
    assert cache.folded is None and with_grad.requires_grad
    assert torch.allclose(with_grad, whole[:, 5:6], atol=1e-5)


def test_causal_conv_and_its_gradient_are_the_shifted_products():
    g = torch.Generator().manual_seed(0)
    b, k, T, C = 2, 4, 9, 5
    seq = torch.randn(b, k - 1 + T, C, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(C, k, dtype=torch.float64, generator=g, requires_grad=True)
    bias = torch.randn(C, dtype=torch.float64, generator=g, requires_grad=True)
    reference = bias + sum(weight[:, j] * seq[:, j : j + T] for j in range(k))
    assert torch.allclose(CausalConv.apply(seq, weight, bias), reference)
    assert torch.autograd.gradcheck(CausalConv.apply, (seq, weight, bias))


@pytest.mark.parametrize("T, chunk, with_state", [(9, 4, True), (8, 4, False), (5, 16, True)])
def test_the_hand_written_ssd_backward_is_the_gradient(T, chunk, with_state):
    """Every input's gradient, the entering state's included, through both outputs, padding or not."""
    g = torch.Generator().manual_seed(T)
    b, H, P, N = 2, 3, 4, 5
    u, B, C = (torch.randn(b, T, *shape, dtype=torch.float64, generator=g, requires_grad=True)
               for shape in ((H, P), (N,), (N,)))
    a = (-torch.rand(b, T, H, dtype=torch.float64, generator=g)).requires_grad_()
    state = torch.randn(b, H, P, N, dtype=torch.float64, generator=g, requires_grad=True) if with_state else None
    assert torch.autograd.gradcheck(lambda *x: SSD.apply(*x, chunk), (u, a, B, C, state))


def test_strong_decays_stay_finite_and_the_mask_stays_exact():
    """Log-decays summing far below the floor inside a chunk change no output beyond fp32's resolution, and what
    comes after a position never reaches it."""
    g = torch.Generator().manual_seed(0)
    b, T, H, P, N = 2, 32, 2, 4, 3
    u, B, C = torch.randn(b, T, H, P, generator=g), torch.randn(b, T, N, generator=g), torch.randn(b, T, N, generator=g)
    a = -8 * torch.rand(b, T, H, generator=g)  # down to about -128 within a chunk
    state = torch.zeros(b, H, P, N)
    y, final = ssd(u, a, B, C, 32, state)
    y_ref, final_ref = recurrence(u, a, B, C, state)
    assert torch.allclose(y.double(), y_ref, atol=1e-5) and torch.allclose(final.double(), final_ref, atol=1e-5)
    later = u.clone()
    later[:, 20:] += 1
    assert torch.equal(ssd(later, a, B, C, 32, state)[0][:, :20], y[:, :20])
