"""Multi-head causal self-attention blocks without feed-forward layers (the 'attention' model).

Token + learned position embeddings, n pre-LN blocks x + MHA(LN(x)), a final LayerNorm and a head (full or
adaptive, models/heads.py) tied to the token embedding. The transformer (transformer.py) is this model plus a
feed-forward layer in every block.
References: Vaswani et al. 2017; nanoGPT model.py for the layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tinylm.models.base import Dropout, LanguageModel, LMConfig, init_weights, scale_residual_projections
from tinylm.models.heads import make_head


@dataclass
class AttentionConfig(LMConfig):
    """Attention-only model."""

    context_length: int = 64
    """Longest sequence (learned positions)."""
    embed_dim: int = 128
    """Model width d."""
    n_heads: int = 4
    """Attention heads; must divide embed_dim."""
    n_layers: int = 2
    """Blocks."""
    dropout: float = 0.0
    """Dropout on embeddings and residual branches."""
    attn_dropout: float = 0.0
    """Dropout on attention weights (off by default: on CPU it forces SDPA off its fused kernel, ~1.6x slower)."""
    bias: bool = True
    """Biases in linear layers and LayerNorms."""

    def problems(self) -> list[str]:
        out = super().problems()
        for name in ("embed_dim", "n_heads", "n_layers"):
            if getattr(self, name) < 1:
                out.append(f"model.{name} must be at least 1 (got {getattr(self, name)})")
        if not 0 <= self.attn_dropout < 1:
            out.append(f"model.attn_dropout must be in [0, 1) (got {self.attn_dropout})")
        if self.n_heads >= 1 and self.embed_dim % self.n_heads:
            out.append(f"model.n_heads={self.n_heads} must divide model.embed_dim={self.embed_dim}")
        return out


class KVCache:
    """Keys and values of the positions seen so far: per layer, buffers of the full context, filled in place."""

    def __init__(self, n_layers: int, max_len: int):
        self.layers: list[dict[str, torch.Tensor]] = [{} for _ in range(n_layers)]
        self.max_len = max_len
        self.length = 0

    def __len__(self) -> int:
        return self.length


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t attends to positions <= t."""

    def __init__(self, d: int, n_heads: int, dropout: float, bias: bool, attn_dropout: float = 0.0):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d, 3 * d, bias=bias)
        self.proj = nn.Linear(d, d, bias=bias)
        self.attn_dropout = attn_dropout
        self.resid_drop = Dropout(dropout)

    def heads(self, x: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values (B, nh, T, hs) of x (B, T, d) at positions start.. (unused here: see llama.py)."""
        B, T, d = x.shape
        q, k, v = (t.view(B, T, self.n_heads, d // self.n_heads).transpose(1, 2) for t in self.qkv(x).split(d, dim=2))
        return q, k, v

    def forward(
        self, x: torch.Tensor, cache: dict[str, torch.Tensor] | None = None, start: int = 0, max_len: int = 0
    ) -> torch.Tensor:
        """(B, T, d) -> (B, T, d); with `cache`, keys/values are written at positions start.. of its buffers."""
        B, T, d = x.shape
        q, k, v = self.heads(x, start)  # 3 x (B, nh, T, hs)
        if cache is not None:
            if "k" not in cache:
                cache["k"] = k.new_empty(B, self.n_heads, max_len, d // self.n_heads)  # (B, nh, C, hs)
                cache["v"] = torch.empty_like(cache["k"])
            assert start == 0 or T == 1, "cached attention extends one position at a time"
            cache["k"][:, :, start : start + T] = k
            cache["v"][:, :, start : start + T] = v
            k, v = cache["k"][:, :, : start + T], cache["v"][:, :, : start + T]  # (B, nh, start+T, hs)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_dropout if self.training else 0.0, is_causal=T > 1
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, d)  # (B, T, d)
        return self.resid_drop(self.proj(y))


class FeedForward(nn.Module):
    """Linear(d, r*d) -> GELU -> Linear(r*d, d) -> Dropout."""

    def __init__(self, d: int, ratio: int, dropout: float, bias: bool):
        super().__init__()
        self.fc = nn.Linear(d, ratio * d, bias=bias)
        self.proj = nn.Linear(ratio * d, d, bias=bias)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, T, d)."""
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LN block: x + MHA(LN(x)), then x + FFN(LN(x)) when `ffn_ratio` is set."""

    def __init__(self, d: int, n_heads: int, dropout: float, bias: bool, ffn_ratio: int | None,
                 attn_dropout: float = 0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(d, bias=bias)
        self.attn = CausalSelfAttention(d, n_heads, dropout, bias, attn_dropout)
        self.ln2 = nn.LayerNorm(d, bias=bias) if ffn_ratio else None
        self.ffn = FeedForward(d, ffn_ratio, dropout, bias) if ffn_ratio else None

    def forward(
        self, x: torch.Tensor, cache: dict[str, torch.Tensor] | None = None, start: int = 0, max_len: int = 0
    ) -> torch.Tensor:
        """(B, T, d) -> (B, T, d)."""
        x = x + self.attn(self.ln1(x), cache, start, max_len)
        if self.ffn is not None:
            x = x + self.ffn(self.ln2(x))
        return x


class AttentionLM(LanguageModel):
    """Embeddings -> blocks -> LayerNorm -> head tied to the token embedding."""

    supports_kv_cache = True
    takes_targets = True
    learned_positions = True

    def __init__(self, config: AttentionConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.embed_dim)
        self.pos_emb = nn.Embedding(c.context_length, c.embed_dim)
        self.drop = Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            Block(c.embed_dim, c.n_heads, c.dropout, c.bias, self.ffn_ratio(), c.attn_dropout)
            for _ in range(c.n_layers)
        )
        self.ln_f = nn.LayerNorm(c.embed_dim, bias=c.bias)
        self.head = make_head(c, c.embed_dim, bias=False)
        init_weights(self, std=0.02)
        self.head.tie(self.tok_emb.weight)  # tied: one tensor, counted once
        scale_residual_projections(self, c.n_layers)

    def ffn_ratio(self) -> int | None:
        """Feed-forward width ratio; None for the attention-only model."""
        return None

    def new_cache(self) -> KVCache:
        """An empty KV cache for incremental generation."""
        return KVCache(self.config.n_layers, self.config.context_length)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None,
                targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) for token ids (B, T); with `cache`, idx continues the cached positions; with `targets`
        (B, T'), -log p of each target instead (base.py)."""
        B, T = idx.shape
        start = len(cache) if cache is not None else 0
        if start + T > self.config.context_length:
            raise ValueError(f"sequence of {start + T} exceeds the context length {self.config.context_length}")
        pos = torch.arange(start, start + T, device=idx.device)  # (T,)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, d)
        for i, block in enumerate(self.blocks):
            x = block(x, cache.layers[i], start, cache.max_len) if cache is not None else block(x)
        if cache is not None:
            cache.length = start + T
        return self.head_output(self.ln_f(x), targets)  # (B, T, V) or (B, T')

    def matmul_flops_per_token(self, seq_len: int | None = None) -> float:
        """Per layer 8d^2 (qkv, proj) + 4Td (scores, weighted sum over T keys) [+ 4rd^2 FFN]; the head's."""
        c = self.config
        T = seq_len or c.context_length
        d = c.embed_dim
        per_layer = 8 * d * d + 4 * T * d + (4 * self.ffn_ratio() * d * d if self.ffn_ratio() else 0)
        return float(c.n_layers * per_layer + self.head.flops_per_token())
