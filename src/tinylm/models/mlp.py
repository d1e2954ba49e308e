"""Fixed-window MLP language model (Bengio et al. 2003): embed the k window tokens, concatenate, hidden layers.

Every position of a sequence is computed in one call: the padded sequence is embedded once and `unfold` cuts
the k-token window of every position out of it. Given training targets, only the scored positions go through the
hidden layers (the k - 1 positions before them are context only: looked up, never computed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tinylm.models.base import Dropout, LanguageModel, LMConfig, init_weights
from tinylm.models.heads import make_head


@dataclass
class MLPConfig(LMConfig):
    """MLP model."""

    context_length: int = 64
    """Window size k."""
    embed_dim: int = 32
    """Embedding size of each window token."""
    hidden_dim: int = 256
    """Width of every hidden layer."""
    n_hidden: int = 3
    """Number of hidden layers."""
    dropout: float = 0.1
    """Dropout after each hidden layer."""
    input_dropout: float = 0.0
    """Dropout on the concatenated window embeddings (a word-level window's embeddings overfit without it)."""
    bias: bool = True
    """Biases in the linear layers."""

    def problems(self) -> list[str]:
        out = super().problems()
        for name in ("embed_dim", "hidden_dim", "n_hidden"):
            if getattr(self, name) < 1:
                out.append(f"model.{name} must be at least 1 (got {getattr(self, name)})")
        if not 0 <= self.input_dropout < 1:
            out.append(f"model.input_dropout must be in [0, 1) (got {self.input_dropout})")
        return out


class MLPLM(LanguageModel):
    """Embedding window -> [Dropout] -> n_hidden x (Linear, GELU, Dropout) -> Linear head."""

    fixed_window = True
    takes_targets = True

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size + 1, c.embed_dim, padding_idx=c.vocab_size)  # last row: padding
        self.input_drop = Dropout(c.input_dropout)  # (p = 0 draws nothing: earlier runs keep their random streams)
        layers: list[nn.Module] = []
        width = c.context_length * c.embed_dim
        for _ in range(c.n_hidden):
            layers += [nn.Linear(width, c.hidden_dim, bias=c.bias), nn.GELU(), Dropout(c.dropout)]
            width = c.hidden_dim
        self.hidden = nn.Sequential(*layers)
        self.head = make_head(c, width, bias=c.bias)
        init_weights(self, std=0.02)
        nn.init.normal_(self.embed.weight, std=1.0)
        with torch.no_grad():
            self.embed.weight[c.vocab_size].zero_()
        for m in self.hidden:
            if isinstance(m, nn.Linear):  # keep activations O(1) through the stack
                nn.init.normal_(m.weight, std=m.in_features**-0.5)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) for token ids (B, T); with `targets` (B, T'), -log p of each target (base.py)."""
        B, T = idx.shape
        n = T if targets is None else targets.size(1)  # positions computed: the last n
        k, e = self.config.context_length, self.config.embed_dim
        padded = F.pad(idx, (k - 1, 0), value=self.config.vocab_size)  # (B, T+k-1)
        emb = self.embed(padded[:, T - n :])  # (B, n+k-1, e)
        windows = emb.unfold(1, k, 1)  # (B, n, e, k)
        x = windows.transpose(2, 3).reshape(B, n, k * e)  # (B, n, k*e), oldest token first
        return self.head_output(self.hidden(self.input_drop(x)), targets)  # (B, n, V) or (B, n)

    def matmul_flops_per_token(self, seq_len: int | None = None) -> float:
        c = self.config
        dims = [c.context_length * c.embed_dim] + [c.hidden_dim] * c.n_hidden
        return float(sum(2 * a * b for a, b in zip(dims[:-1], dims[1:]))) + self.head.flops_per_token()
