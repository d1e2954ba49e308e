"""Models that break the bench's contract, one rule each, for `tinylm check-model` to catch (given to it as
`tests/plugins/broken_models.py:Class`, as a user names a model of their own)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn

from tinylm import LanguageModel, LMConfig


@dataclass
class SmallConfig(LMConfig):
    """A bigram table through a bottleneck."""

    context_length: int = 8
    """Tokens a window holds."""
    embed_dim: int = 16
    """Bottleneck width."""


class Sound(LanguageModel):
    """logits_t = W2 W1 x_t: keeps every rule."""

    config_class = SmallConfig

    def __init__(self, config: SmallConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.head = nn.Linear(config.embed_dim, config.vocab_size)

    def inputs(self, idx: torch.Tensor) -> torch.Tensor:
        return idx

    def forward(self, idx: torch.Tensor, cache: object = None) -> torch.Tensor:
        return self.head(self.embed(self.inputs(idx)))

    def matmul_flops_per_token(self, seq_len: int | None = None) -> float:
        return 2.0 * self.config.embed_dim * self.config.vocab_size


class PeeksAhead(Sound):
    """Reads the next token: the classic masking bug."""

    def inputs(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.cat([idx[:, 1:], idx[:, -1:]], dim=1)


class DoubleCounted(Sound):
    """Declares twice the FLOPs it computes."""

    def matmul_flops_per_token(self, seq_len: int | None = None) -> float:
        return 2 * super().matmul_flops_per_token(seq_len)


class CacheDrifts(Sound):
    """Its cache (a step counter) changes the logits: sampling with it differs from sampling without."""

    supports_kv_cache = True

    def new_cache(self) -> dict[str, int]:
        return {"steps": 0}

    def forward(self, idx: torch.Tensor, cache: dict[str, int] | None = None) -> torch.Tensor:
        logits = super().forward(idx)
        if cache is not None:
            cache["steps"] += 1
            logits = logits + 3.0 * torch.sin(torch.arange(logits.size(-1)) * cache["steps"])
        return logits


class Unseeded(Sound):
    """Draws noise from Python's own generator, which no training seed reaches."""

    def forward(self, idx: torch.Tensor, cache: object = None) -> torch.Tensor:
        logits = super().forward(idx)
        return logits * (1 + random.random()) if self.training else logits


class NotAModel(nn.Module):
    """A plain module: not a tinylm.LanguageModel."""


class Uncounted(Sound):
    """Declares its FLOPs unknown, by leaving matmul_flops_per_token undefined: allowed, and said so."""

    matmul_flops_per_token = LanguageModel.matmul_flops_per_token
