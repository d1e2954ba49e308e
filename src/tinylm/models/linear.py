"""Softmax regression on the one-hot context window: logits_t = b + sum_j W_j[x_{t-j}], j = 0..k-1.

Implemented as lookup-and-add: W is a table of k*V rows (one row per offset and token) and every position sums
its k rows with `F.embedding_bag(mode="sum")`, which is exactly the one-hot matmul without its zeros. With
`rank` set, W_j = E_j U is factored through a rank-r bottleneck (a log-bilinear model), which keeps word-level
vocabularies affordable; without it, word-level tables of k*V*V parameters are refused. With `rank`, the r-dimensional
sum goes through the model's head (full: the V x r matrix and bias; or adaptive, models/heads.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tinylm.models.base import LanguageModel, LMConfig, init_weights
from tinylm.models.heads import make_head


@dataclass
class LinearConfig(LMConfig):
    """Linear (softmax regression) model."""

    context_length: int = 64
    """Window size k: how many tokens (the current one included) the logits are a linear function of."""
    rank: int | None = None
    """Factor each W_j through r dimensions; None = the full k*V*V table."""
    bias: bool = True
    """Per-token output bias."""
    max_params: int = 50_000_000
    """Refuse models larger than this (a full word-level table is k*V*V parameters)."""

    def problems(self) -> list[str]:
        out = super().problems()
        if self.rank is not None and self.rank < 1:
            out.append(f"model.rank must be at least 1 or null (got {self.rank})")
        if self.head == "adaptive" and self.rank is None:
            out.append("model.head=adaptive needs model.rank for the linear model (its output is the sum of its table "
                       "rows unless factored); set model.rank, e.g. 64")
        if self.vocab_size is None:  # checked again once the data gives the vocabulary
            return out
        width = self.rank if self.rank is not None else self.vocab_size
        size = self.context_length * self.vocab_size * width
        if size > self.max_params:
            out.append(
                f"a linear model with context {self.context_length} and vocabulary {self.vocab_size:,} needs "
                f"{size:,} parameters (k*V*{'r' if self.rank else 'V'}), over model.max_params="
                f"{self.max_params:,}; set model.rank (e.g. 64) to factor it, or lower model.context_length"
            )
        return out


class LinearLM(LanguageModel):
    """logits_t = b + sum over the k-token window of one row per (offset, token)."""

    fixed_window = True
    takes_targets = True

    def __init__(self, config: LinearConfig):
        super().__init__()
        self.config = config
        k, V = config.context_length, config.vocab_size
        width = config.rank or V
        self.pad_row = k * V  # the row used before the start of a sequence: zero, never updated
        self.table = nn.EmbeddingBag(k * V + 1, width, mode="sum", padding_idx=self.pad_row)
        adaptive = config.head == "adaptive"
        self.out = nn.Linear(config.rank, V, bias=False) if config.rank and not adaptive else None
        self.bias = nn.Parameter(torch.zeros(V)) if config.bias and not adaptive else None
        self.head = make_head(config, config.rank, bias=config.bias) if adaptive else None
        init_weights(self, std=0.02)
        if not config.rank:
            with torch.no_grad():
                self.table.weight.zero_()  # softmax regression starts from the uniform distribution
        # offsets[i] = row block of window slot i; slot i holds the token k-1-i positions back
        self.register_buffer("offsets", (torch.arange(k - 1, -1, -1) * V), persistent=False)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) for token ids (B, T); with `targets` (B, T'), -log p of each target (base.py)."""
        B, T = idx.shape
        n = T if targets is None else targets.size(1)  # positions computed: the last n
        k = self.config.context_length
        padded = F.pad(idx, (k - 1, 0), value=-1)  # (B, T+k-1); -1 marks "before the start"
        windows = padded[:, T - n :].unfold(1, k, 1)  # (B, n, k), windows[b, t, i] = idx[b, T-n+t-(k-1)+i]
        rows = torch.where(windows >= 0, windows + self.offsets, self.pad_row)  # (B, n, k)
        h = self.table(rows.reshape(B * n, k)).view(B, n, -1)  # (B, n, width): sum of k rows
        if self.head is not None:
            return self.head_output(h, targets)
        logits = self.out(h) if self.out is not None else h  # (B, n, V)
        if self.bias is not None:
            logits = logits + self.bias
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().reshape(B * n, -1), targets.reshape(-1), reduction="none").view(B, n)

    def matmul_flops_per_token(self, seq_len: int | None = None) -> float:
        """Only the factored model has a matmul: 2*r*V (or its adaptive head's)."""
        if self.head is not None:
            return self.head.flops_per_token()
        return 2.0 * self.config.rank * self.config.vocab_size if self.config.rank else 0.0

    def other_flops_per_token(self) -> float:
        """The k-row sum: k*width additions per token (a one-hot matmul would cost 2*k*V*width)."""
        return float(self.config.context_length * (self.config.rank or self.config.vocab_size))
