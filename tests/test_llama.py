"""The Llama-style model's rotary positions: attention sees offsets, not absolute positions, and the KV cache turns
each new key by its own offset."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tinylm.models import build_model
from tinylm.models.llama import GatedUnit, RotaryAttention, rotary_tables, rotate


def test_rotated_dot_products_depend_only_on_the_offset():
    cos, sin = rotary_tables(8, 40, 10000.0)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, generator=g), torch.randn(8, generator=g)

    def score(i: int, j: int) -> float:
        qi = rotate(q.view(1, 1, 1, 8), cos[i : i + 1], sin[i : i + 1])
        kj = rotate(k.view(1, 1, 1, 8), cos[j : j + 1], sin[j : j + 1])
        return float((qi * kj).sum())

    assert abs(score(5, 2) - score(35, 32)) < 1e-4 and abs(score(0, 0) - float(q @ k)) < 1e-5
    assert abs(score(5, 2) - score(5, 4)) > 1e-3  # and the offset matters


def test_attention_does_not_depend_on_where_a_sequence_starts():
    """Queries and keys turned by positions 30.. instead of 0.. give the same attention output: only offsets count,
    which is what lets the KV cache turn a new key by its offset alone."""
    torch.manual_seed(0)
    attn = RotaryAttention(16, 2, dropout=0.0, attn_dropout=0.0, context=64, theta=10000.0).eval()
    x = torch.randn(1, 10, 16)

    def out(start: int) -> torch.Tensor:
        q, k, v = attn.heads(x, start)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    assert not torch.allclose(attn.heads(x, 0)[0], attn.heads(x, 30)[0])
    assert torch.allclose(out(0), out(30), atol=1e-5)


def test_no_position_table_and_equal_flops_to_the_transformer():
    """At the default SwiGLU width 8/3 d the llama costs the transformer's FLOPs per token at equal width and depth."""
    sizes = {"vocab_size": 65, "embed_dim": 192, "n_heads": 6, "n_layers": 6, "context_length": 128}
    llama, gpt = build_model("llama", sizes), build_model("transformer", sizes)
    assert llama.config.hidden == 512 and llama.flops_per_token() == gpt.flops_per_token()
    assert not any("pos" in name for name, _ in llama.named_parameters())
    # the transformer's extra weights: its position table, 11 d of biases and LayerNorm shifts a block, ln_f's shift
    assert gpt.num_params() - llama.num_params() == 128 * 192 + 6 * 11 * 192 + 192


def test_rotation_and_gated_unit_backwards_are_autograds_of_their_formulas():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64, generator=g, requires_grad=True)
    cos, sin = (t.double() for t in rotary_tables(8, 5, 10000.0))
    x1, x2 = x.chunk(2, dim=-1)
    assert torch.allclose(rotate(x, cos, sin), x * cos + torch.cat([-x2, x1], dim=-1) * sin)
    assert torch.autograd.gradcheck(lambda t: rotate(t, cos, sin), (x,))
    h = torch.randn(2, 5, 12, dtype=torch.float64, generator=g, requires_grad=True)
    gate, up = h.chunk(2, dim=-1)
    assert torch.allclose(GatedUnit.apply(h), torch.nn.functional.silu(gate) * up)
    assert torch.autograd.gradcheck(GatedUnit.apply, (h,))
