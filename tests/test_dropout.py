"""The byte-mask inverted dropout: keep rate, scale, unbiasedness, identity when off, shapes and independence."""

from __future__ import annotations

import math

import pytest
import torch

from tinylm.models.base import Dropout

N = 1_000_000
SIGMAS = 5  # tolerances are 5 binomial standard deviations (seeds are fixed, so each check is deterministic)


def keep_prob(p: float) -> float:
    return 1 - round(p * 256) / 256


def tol(q: float, n: int) -> float:
    return SIGMAS * math.sqrt(q * (1 - q) / n)


def run(p: float, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return Dropout(p).train()(x)


def test_threshold_and_scale_of_p_0_1():
    d = Dropout(0.1)
    assert d.threshold == 26 == round(0.1 * 256)
    assert d.scale == 256 / 230
    assert "p=0.1016" in repr(d)


def test_threshold_is_capped_below_256():
    assert Dropout(0.999).threshold == 255
    assert Dropout(0.999).scale == 256.0


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_kept_fraction_matches_the_rounded_probability(p):
    out = run(p, torch.ones(N))
    q = keep_prob(p)
    kept = (out != 0).double().mean().item()
    assert abs(kept - q) < tol(q, N)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_kept_values_are_exactly_the_scale_and_dropped_are_zero(p):
    out = run(p, torch.ones(N))
    scale = torch.tensor(256 / (256 - round(p * 256)), dtype=torch.float32)
    kept = out[out != 0]
    assert kept.numel() > 0 and (out == 0).any()
    assert torch.equal(kept, scale.expand_as(kept))
    assert set(torch.unique(out).tolist()) == {0.0, scale.item()}


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mean_is_unbiased(p):
    out = run(p, torch.ones(N))
    q = keep_prob(p)
    assert abs(out.double().mean().item() - 1.0) < tol(q, N) / q  # mean = kept fraction * (1/q)


def test_values_are_scaled_not_replaced():
    x = torch.randn(1000) + 3.0
    out = run(0.5, x)
    kept = out != 0
    assert torch.allclose(out[kept], x[kept] * 2.0)


@pytest.mark.parametrize("p", [0.0, 0.001])  # 0.001 rounds to threshold 0: nothing can be dropped
def test_zero_probability_is_the_identity(p):
    x = torch.randn(4, 9)
    d = Dropout(p).train()
    assert d.threshold == 0
    out = d(x)
    assert out is x or torch.equal(out, x)


def test_eval_mode_is_the_identity():
    x = torch.randn(4, 9)
    d = Dropout(0.5).train()
    d.eval()
    out = d(x)
    assert out is x or torch.equal(out, x)
    state = torch.get_rng_state()
    d(x)
    assert torch.equal(torch.get_rng_state(), state), "eval mode draws no random numbers"


def test_mask_changes_between_calls():
    d = Dropout(0.5).train()
    x = torch.ones(4096)
    a, b = d(x), d(x)
    assert not torch.equal(a, b)
    assert 0.4 < (a != b).float().mean().item() < 0.6  # independent masks at p=0.5 differ in half the places


def test_same_seed_gives_same_mask():
    x = torch.ones(3, 50)
    assert torch.equal(run(0.3, x, seed=7), run(0.3, x, seed=7))
    assert not torch.equal(run(0.3, x, seed=7), run(0.3, x, seed=8))


@pytest.mark.parametrize("shape", [(3, 7, 5), (1,), (7,), (9,), (2, 3), (4, 16, 8)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shape_and_dtype_are_kept(shape, dtype):
    x = torch.ones(shape, dtype=dtype)
    out = run(0.5, x)
    assert out.shape == x.shape and out.dtype == dtype
    assert set(torch.unique(out.float()).tolist()) <= {0.0, 2.0}


def test_bfloat16_large_tensor_statistics():
    out = run(0.1, torch.ones(N, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16
    q = keep_prob(0.1)
    kept = out != 0
    assert abs(kept.double().mean().item() - q) < tol(q, N)
    expected = torch.tensor(256 / 230).to(torch.bfloat16)
    assert torch.equal(out[kept], expected.expand(int(kept.sum())))


def test_halves_of_the_tensor_agree():
    out = run(0.1, torch.ones(N))
    q, half = keep_prob(0.1), N // 2
    first = (out[:half] != 0).double().mean().item()
    second = (out[half:] != 0).double().mean().item()
    assert abs(first - second) < math.sqrt(2) * tol(q, half)


def test_every_byte_position_of_a_draw_keeps_the_same_fraction():
    """The 8 mask bytes of each 64-bit draw are all uniform (position i % 8 is byte i % 8 of a draw)."""
    out = run(0.5, torch.ones(N))
    q, n = keep_prob(0.5), N // 8
    fractions = (out.view(-1, 8) != 0).double().mean(dim=0)
    assert torch.all((fractions - q).abs() < tol(q, n)), fractions


def test_neighbouring_positions_are_independent():
    """P(both kept) for adjacent elements (same draw) and for elements 8 apart (consecutive draws) is q^2."""
    out = run(0.5, torch.ones(N))
    kept = (out != 0).double()
    q = keep_prob(0.5)
    for lag in (1, 8):
        both = (kept[:-lag] * kept[lag:]).mean().item()
        assert abs(both - q * q) < tol(q * q, N - lag), lag


def test_3d_input_mask_is_elementwise():
    """A (B, T, C) activation is masked per element, not per row or channel."""
    out = run(0.5, torch.ones(8, 64, 64))
    kept = out != 0
    per_row = kept.float().mean(dim=-1)
    assert ((per_row > 0) & (per_row < 1)).float().mean() > 0.99
