"""A gated causal convolution language model (after Dauphin et al. 2017, "Language Modeling with Gated
Convolutional Networks", with WaveNet's doubling dilations): no attention, no state, a receptive field that grows
exponentially with depth. A model the bench does not have, in one file, for `tinylm train --model gated-conv`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tinylm import LanguageModel, LMConfig


@dataclass
class GatedConvConfig(LMConfig):
    """Gated causal convolutions with dilations 1, 2, 4, ..."""

    context_length: int = 64
    """Tokens the training sequences and evaluation windows hold (at least the receptive field)."""
    embed_dim: int = 128
    """Channels of every layer."""
    n_layers: int = 5
    """Convolution layers; layer i looks 2**i * (kernel_size - 1) tokens further back."""
    kernel_size: int = 3
    """Taps of each convolution."""

    def problems(self) -> list[str]:
        out = super().problems()
        field = 1 + (self.kernel_size - 1) * (2**self.n_layers - 1)
        if field > self.context_length:
            out.append(f"model.context_length={self.context_length} is shorter than the receptive field of "
                       f"{self.n_layers} layers of kernel {self.kernel_size} ({field} tokens): raise it")
        return out


class GatedConvLM(LanguageModel):
    """embedding -> n_layers x [LayerNorm -> causal dilated conv to 2d channels -> GLU -> + x] -> LayerNorm -> head."""

    name = "gated-conv"      # the name runs, tables and figures use
    color = "#9467bd"        # its colour in every figure
    ablation = {"n_layers": [3, 4, 5]}  # the ablation: this config field, at these values
    kind = "attention"       # a sequence model: the logits at t read the context before t, not a fixed window
    config_class = GatedConvConfig

    def __init__(self, config: GatedConvConfig):
        super().__init__()
        self.config = config
        d = config.embed_dim
        self.embed = nn.Embedding(config.vocab_size, d)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(config.n_layers))
        self.convs = nn.ModuleList(nn.Conv1d(d, 2 * d, config.kernel_size, dilation=2**i)
                                   for i in range(config.n_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied: one tensor, stored once
        for conv in self.convs:
            nn.init.normal_(conv.weight, std=0.02)
            nn.init.zeros_(conv.bias)
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) of token ids (B, T)."""
        x = self.embed(idx).transpose(1, 2)  # (B, d, T)
        for norm, conv in zip(self.norms, self.convs):
            h = norm(x.transpose(1, 2)).transpose(1, 2)
            h = F.pad(h, (conv.dilation[0] * (conv.kernel_size[0] - 1), 0))  # left padding only: causal
            x = x + F.glu(conv(h), dim=1)
        return self.head(self.norm(x.transpose(1, 2)))

    def matmul_flops_per_token(self, seq_len: int | None = None) -> float:
        """Each convolution is a matmul of k*d inputs to 2d outputs per position, plus the head's 2*d*V."""
        c = self.config
        return c.n_layers * 2.0 * c.kernel_size * c.embed_dim * 2 * c.embed_dim + 2.0 * c.embed_dim * c.vocab_size
