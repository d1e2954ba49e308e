"""Stacked LSTM language model (Zaremba et al. 2014; PyTorch's word_language_model): the recurrent architecture.

Token embedding -> dropout -> nn.LSTM of n layers (dropout between layers) -> dropout -> [projection to the
embedding width] -> head (full or adaptive, models/heads.py) tied to the token embedding when `tie_weights`.

Training is truncated backpropagation through time with a window of `context_length` tokens: by default every
training sequence is a random window started from a zero state; with `train.carry_state` the trainer reads the split
as contiguous streams and carries each stream's state, detached, from one step to the next. Evaluation and
generation carry the state (its cache, `LSTMState`) without limit: the protocol reads a split as one stream and never
resets it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tinylm.models.base import Dropout, LanguageModel, LMConfig, init_weights
from tinylm.models.heads import make_head


@dataclass
class LSTMConfig(LMConfig):
    """LSTM model."""

    context_length: int = 64
    """Tokens per training sequence: the truncated-BPTT window (evaluation and generation carry the state on)."""
    embed_dim: int = 128
    """Token embedding width."""
    hidden_dim: int = 128
    """LSTM units per layer."""
    n_layers: int = 2
    """Stacked LSTM layers."""
    dropout: float = 0.2
    """Dropout on embeddings, between layers and on the last layer's output."""
    tie_weights: bool = True
    """Tie the head to the token embedding (through a hidden -> embed projection if the widths differ)."""

    def problems(self) -> list[str]:
        out = super().problems()
        for name in ("embed_dim", "hidden_dim", "n_layers"):
            if getattr(self, name) < 1:
                out.append(f"model.{name} must be at least 1 (got {getattr(self, name)})")
        return out


class LSTMState:
    """The recurrent state (h, c) of every layer after the positions seen so far: the LSTM's cache."""

    def __init__(self) -> None:
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.length = 0

    def __len__(self) -> int:
        return self.length

    def detach(self) -> None:
        """Cut the graph behind the state (truncated BPTT): the next backward pass stops here."""
        if self.state is not None:
            self.state = (self.state[0].detach(), self.state[1].detach())

    def tensors(self) -> dict[str, torch.Tensor]:
        """The state as named tensors, "0" = h and "1" = c, each (layers, batch, hidden); none before a position."""
        return {} if self.state is None else {"0": self.state[0], "1": self.state[1]}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Take the state that `tensors()` gave."""
        self.state = (tensors["0"], tensors["1"])


class LSTMLM(LanguageModel):
    """Embedding -> stacked LSTM -> [projection] -> head."""

    recurrent = True
    supports_kv_cache = True
    takes_targets = True

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.embed_dim)
        self.drop = Dropout(c.dropout)
        self.lstm = nn.LSTM(c.embed_dim, c.hidden_dim, c.n_layers, batch_first=True,
                            dropout=c.dropout if c.n_layers > 1 else 0.0)
        tied_proj = c.tie_weights and c.hidden_dim != c.embed_dim
        self.proj = nn.Linear(c.hidden_dim, c.embed_dim, bias=False) if tied_proj else None
        self.head = make_head(c, c.embed_dim if c.tie_weights else c.hidden_dim, bias=True)
        init_weights(self, std=0.02)
        nn.init.uniform_(self.tok_emb.weight, -0.1, 0.1)  # word_language_model's init
        if c.tie_weights:
            self.head.tie(self.tok_emb.weight)

    def new_cache(self) -> LSTMState:
        """A zero state, carried through generation and evaluation."""
        return LSTMState()

    def forward(self, idx: torch.Tensor, cache: LSTMState | None = None,
                targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) for token ids (B, T), from the state in `cache` (zero without one), which is updated;
        with `targets` (B, T'), -log p of each target instead (base.py)."""
        out, state = self.lstm(self.drop(self.tok_emb(idx)), cache.state if cache is not None else None)
        if cache is not None:
            cache.state, cache.length = state, cache.length + idx.size(1)
        h = self.drop(out)  # (B, T, hidden)
        if self.proj is not None:
            h = self.proj(h)  # (B, T, embed)
        return self.head_output(h, targets)

    def matmul_flops_per_token(self, seq_len: int | None = None) -> float:
        """Per layer 2*4H*(in + H) (input and recurrent matmuls of the four gates); projection 2*H*E; the head's."""
        c = self.config
        H = c.hidden_dim
        layers = sum(2 * 4 * H * ((c.embed_dim if i == 0 else H) + H) for i in range(c.n_layers))
        proj = 2 * H * c.embed_dim if self.proj is not None else 0
        return float(layers + proj + self.head.flops_per_token())
