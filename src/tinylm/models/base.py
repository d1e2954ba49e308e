"""What every model shares: the config fields, parameter and FLOP counting, and the sequence-model contract.

Contract: `forward(idx)` takes token ids of shape (B, T) and returns logits of shape (B, T, V); the logits at
position t depend only on tokens at positions <= t, and on at most `context_length` of them (recurrent models: on
all of them). Models with `takes_targets` also accept `forward(idx, targets=y)`, y of shape (B, T') for the last T'
positions, and return -log p of each target (B, T') in fp32, computing only those positions and, with an adaptive
head, only the softmax clusters their targets need.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from tinylm.errors import UsageError
from tinylm.models.heads import cutoff_problems


@dataclass
class LMConfig:
    """Fields every model config has."""

    vocab_size: int | None = None
    """Number of token types (set from the dataset's tokenizer once the data is loaded)."""
    context_length: int = 64
    """Most tokens a prediction may look at (the current one included)."""
    dropout: float = 0.0
    """Dropout probability in training."""
    head: Literal["full", "adaptive"] = "full"
    """Output layer: full softmax, or adaptive softmax over tokens ranked by training frequency (models/heads.py)."""
    cutoffs: list[int] | None = None
    """Adaptive head: ranks where the head and each tail cluster end; None = where the most frequent tokens cover
    80% and 95% of the training tokens."""
    token_counts: list[int] | None = field(default=None, repr=False)
    """Training count of every token id (set from the dataset, as vocab_size, for the adaptive head)."""

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise UsageError("; ".join(problems))

    def problems(self) -> list[str]:
        """Every invalid value, as messages that say what to change."""
        out = []
        if self.vocab_size is not None and self.vocab_size < 2:
            out.append(f"model.vocab_size must be at least 2 (got {self.vocab_size})")
        if self.context_length < 1:
            out.append(f"model.context_length must be at least 1 (got {self.context_length})")
        if not 0 <= self.dropout < 1:
            out.append(f"model.dropout must be in [0, 1) (got {self.dropout})")
        if self.head not in ("full", "adaptive"):
            out.append(f"model.head must be full or adaptive (got {self.head!r})")
        if self.cutoffs is not None and self.head != "adaptive":
            out.append("model.cutoffs applies to model.head=adaptive only; set both or drop model.cutoffs")
        out += cutoff_problems(self.cutoffs, self.vocab_size)
        if self.token_counts is not None and self.vocab_size is not None and len(self.token_counts) != self.vocab_size:
            out.append(f"model.token_counts has {len(self.token_counts)} entries for a vocabulary of {self.vocab_size}")
        return out


class LanguageModel(nn.Module):
    """Base class: counting and the few facts the trainer and evaluator need about a model."""

    config: LMConfig
    #: True for models that restart a window of fixed size at every position (linear, MLP).
    fixed_window: bool = False
    #: True for models whose forward(idx, targets=y) returns -log p of each target (see the module docstring).
    takes_targets: bool = False
    #: True for models that carry a state through a whole split (LSTM): evaluated as one stream, never reset.
    recurrent: bool = False
    #: True for models with a learned embedding per position (attention, transformer): training must reach them all.
    learned_positions: bool = False

    @property
    def context_length(self) -> int:
        """Most tokens one prediction can see."""
        return self.config.context_length

    @property
    def train_skip(self) -> int:
        """Leading positions of a training sequence that are fed but not scored (window models: k - 1)."""
        return self.context_length - 1 if self.fixed_window else 0

    def default_seq_len(self) -> int:
        """Scored positions per training sequence by default."""
        return 256 if self.fixed_window else self.context_length

    def num_params(self) -> int:
        """Trainable parameters, each shared (tied) tensor counted once."""
        seen, total = set(), 0
        for p in self.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
        return total

    def param_breakdown(self) -> OrderedDict[str, int]:
        """Parameters per top-level module (tied tensors listed under the first module that owns them)."""
        seen, out = set(), OrderedDict()
        for name, p in self.named_parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            top = name.split(".")[0]
            out[top] = out.get(top, 0) + p.numel()
        return out

    def tied_aliases(self) -> dict[str, str]:
        """{alias: source} for parameters that share one tensor (e.g. a head tied to the token embedding)."""
        first: dict[int, str] = {}
        out = {}
        for name, p in self.named_parameters(remove_duplicate=False):
            if id(p) in first:
                out[name] = first[id(p)]
            else:
                first[id(p)] = name
        return out

    def weights(self) -> dict[str, torch.Tensor]:
        """The state dict with each tied tensor stored once (what safetensors files hold)."""
        aliases = self.tied_aliases()
        return {k: v for k, v in self.state_dict().items() if k not in aliases}

    def load_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        """Inverse of `weights()` (strict: every tensor must be present with its shape)."""
        tensors = dict(tensors)
        for alias, source in self.tied_aliases().items():
            if alias not in tensors and source in tensors:
                tensors[alias] = tensors[source]
        self.load_state_dict(tensors, strict=True)

    def head_output(self, h: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """Logits of features h (B, T, d) by `self.head`, or -log p of `targets` (B, T') at the last T' positions."""
        if targets is None:
            return self.head(h)
        return self.head.nll(h[:, h.size(1) - targets.size(1) :], targets)

    @property
    def flops_known(self) -> bool:
        """False for a model that does not count its FLOPs (it leaves matmul_flops_per_token undefined): it trains
        on budgets of tokens, steps or time, and the report leaves it off its FLOP axes."""
        return type(self).matmul_flops_per_token is not LanguageModel.matmul_flops_per_token

    def matmul_flops_per_token(self, seq_len: int | None = None) -> float:
        """Forward matmul FLOPs per token (2*m*n*k per matmul) at sequence length `seq_len`."""
        raise NotImplementedError(f"{type(self).__name__} does not count its FLOPs (no matmul_flops_per_token)")

    def other_flops_per_token(self) -> float:
        """Forward arithmetic outside matmuls that the implementation really does (e.g. lookup-and-add sums)."""
        return 0.0

    def flops_per_token(self, training: bool = False, seq_len: int | None = None) -> float:
        """Analytic FLOPs per token.

        Convention: matmuls count 2*m*n*k (attention scores and weighted sums included, over the full sequence of
        `seq_len` tokens, default the context length); embedding lookups count 0; lookup-and-add sums count one
        FLOP per addition; norms, activations and biases are not counted. Training = 3 x forward. NaN for a model
        that does not count its FLOPs (`flops_known`).
        """
        if not self.flops_known:
            return math.nan
        forward = self.matmul_flops_per_token(seq_len) + self.other_flops_per_token()
        return 3.0 * forward if training else forward


class Dropout(nn.Module):
    """Inverted dropout whose mask costs one random byte per element: ~2.5x faster than nn.Dropout on CPU.

    Each 64-bit draw of torch's generator yields 8 mask bytes; an element is kept when its byte is >= round(256p),
    so the probability is p rounded to a multiple of 1/256 (0.1 -> 0.1016), and kept values are scaled by
    1 / (1 - that probability). It draws from the global generator, so checkpoints capture its state as usual.
    """

    def __init__(self, p: float):
        super().__init__()
        self.threshold = min(255, round(p * 256))
        self.scale = 256 / (256 - self.threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x with a random fraction of elements zeroed (training only)."""
        if not self.training or self.threshold == 0:
            return x
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, device=x.device)
        noise = words.view(torch.uint8)[:n].view(x.shape)
        return x * ((noise >= self.threshold).to(x.dtype) * self.scale)

    def extra_repr(self) -> str:
        return f"p={self.threshold / 256:.4f}"


class RMSNorm(nn.RMSNorm):
    """RMSNorm computed in fp32 and returned in the input's dtype: under bf16 autocast the input is bf16 and the
    weight fp32, which torch's fused kernel refuses (with a warning per call site), and fp32 is what Llama does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None or self.eps is None:
            return super().forward(x.float()).to(x.dtype)
        return RMSNormFunction.apply(x.float(), self.weight, self.eps).to(x.dtype)


class RMSNormFunction(torch.autograd.Function):
    """x / rms(x) * w over the last dimension, its backward written out. On a CPU torch's rms_norm is a chain of
    pow, mean, rsqrt and products whose backward autograd unrolls: this one is 1.6-2x faster forward and backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        r = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(x.size(-1)).add_(eps).rsqrt_()
        normed = x * r
        ctx.save_for_backward(normed, r, weight)
        return normed * weight

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        normed, r, weight = ctx.saved_tensors
        scaled = grad * weight
        along = (scaled * normed).mean(-1, keepdim=True)  # the part of the gradient along x, which scaling removes
        return scaled.sub_(normed * along).mul_(r), (grad * normed).sum(tuple(range(grad.dim() - 1))), None


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Small normal init for linear layers and embeddings, zero biases (GPT-2 style)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()


def scale_residual_projections(module: nn.Module, n_layers: int, std: float = 0.02) -> None:
    """Re-draw every residual branch's output projection (`*proj.weight`) with std / sqrt(2 n_layers), GPT-2's
    scaling, so that the sum of 2 n_layers branches starts at the embeddings' scale."""
    for name, p in module.named_parameters():
        if name.endswith("proj.weight"):
            nn.init.normal_(p, mean=0.0, std=std / math.sqrt(2 * n_layers))
