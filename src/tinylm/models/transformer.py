"""The GPT-style transformer: pre-LN blocks with attention and a GELU feed-forward layer, tied head.

x + MHA(LN(x)), then x + FFN(LN(x)), with FFN = Linear(d, 4d) -> GELU -> Linear(4d, d). It shares every piece
with the attention-only model (attention.py) and adds the feed-forward layer. Reference: Radford et al. 2019.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinylm.models.attention import AttentionConfig, AttentionLM


@dataclass
class TransformerConfig(AttentionConfig):
    """Transformer model."""

    context_length: int = 128
    """Longest sequence (learned positions)."""
    n_layers: int = 4
    """Blocks."""
    ffn_ratio: int = 4
    """Feed-forward width as a multiple of embed_dim."""
    dropout: float = 0.1
    """Dropout on embeddings and residual branches."""

    def problems(self) -> list[str]:
        out = super().problems()
        if self.ffn_ratio < 1:
            out.append(f"model.ffn_ratio must be at least 1 (got {self.ffn_ratio})")
        return out


class TransformerLM(AttentionLM):
    """AttentionLM with a feed-forward layer in every block."""

    def ffn_ratio(self) -> int | None:
        return self.config.ffn_ratio
