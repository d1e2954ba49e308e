"""A selective state-space model: Mamba-2's layer, computed by its state-space duality (SSD) in chunks.

Each block is x + Mixer(RMSNorm(x)). The mixer projects x to a gate z, inputs u, a shared B and C (N each) and a
step size dt per head; u, B and C pass a short causal depthwise convolution and SiLU. Then, per head h with P
channels, a state S (P x N) runs through the sequence:

    S_t = exp(dt_t A_h) S_{t-1} + dt_t u_t B_t^T,      y_t = S_t C_t + D_h u_t

with A_h < 0 learned and dt_t > 0 chosen by the input (the "selective" part); y is gated by silu(z), normalised and
projected back to d. References: Gu & Dao 2023 (Mamba); Dao & Gu 2024 (Mamba-2, "Transformers are SSMs").

Why SSD rather than Mamba-1's selective scan: Mamba-2's decay is one scalar per head, so within a chunk of Q positions
the recurrence is exactly a masked (Q x Q) matrix (C B^T ∘ L) applied to the inputs, and between chunks only the
(P x N) states are carried: almost all the work is matrix products, which a CPU runs near its peak, and the
sequential part is one step per chunk. Mamba-1's decay differs per channel and state entry, so a chunked scan
materialises a (T x D x N) tensor of decays and runs elementwise (docs/models.md gives the measurement).

The model is recurrent: training reads windows of `context_length` tokens from a zero state; evaluation reads a
split as one stream and generation one token at a time, both carrying the state (`MambaState`: the convolution's
last inputs and every head's S) without limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tinylm.models.base import Dropout, LanguageModel, LMConfig, RMSNorm, init_weights, scale_residual_projections
from tinylm.models.heads import make_head
from tinylm.models.ssd import ssd, ssd_step


@dataclass
class MambaConfig(LMConfig):
    """Mamba-2 (SSD) model."""

    context_length: int = 128
    """Tokens per training sequence (evaluation and generation carry the state on)."""
    embed_dim: int = 128
    """Model width d."""
    n_layers: int = 4
    """Blocks."""
    expand: int = 2
    """Inner width D = expand x d."""
    head_dim: int = 32
    """Channels P per head; must divide D (heads H = D / P, each with its own decay)."""
    d_state: int = 32
    """State size N per channel."""
    conv_width: int = 4
    """Taps of the causal depthwise convolution before the SSM."""
    chunk: int = 64
    """Positions per SSD chunk: a (chunk x chunk) product inside, one state step between chunks."""
    dropout: float = 0.1
    """Dropout on embeddings and residual branches."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon."""

    def problems(self) -> list[str]:
        out = super().problems()
        for name in ("embed_dim", "n_layers", "expand", "head_dim", "d_state", "conv_width", "chunk"):
            if getattr(self, name) < 1:
                out.append(f"model.{name} must be at least 1 (got {getattr(self, name)})")
        if self.head_dim >= 1 and self.expand >= 1 and (self.expand * self.embed_dim) % self.head_dim:
            out.append(f"model.head_dim={self.head_dim} must divide the inner width expand x embed_dim = "
                       f"{self.expand * self.embed_dim}")
        if not self.norm_eps > 0:
            out.append(f"model.norm_eps must be positive (got {self.norm_eps})")
        return out

    @property
    def inner(self) -> int:
        """Inner width D."""
        return self.expand * self.embed_dim

    @property
    def heads(self) -> int:
        """Heads H = D / P."""
        return self.inner // self.head_dim


class MambaState:
    """Every layer's state after the positions seen so far: the convolution's last inputs and the SSM's S."""

    def __init__(self, n_layers: int) -> None:
        self.layers: list[dict[str, torch.Tensor]] = [{} for _ in range(n_layers)]
        self.length = 0
        self.folded: list[StepWeights] | None = None
        """The blocks' weights folded for the inference step, once per state (generation does not train)."""

    def __len__(self) -> int:
        return self.length

    def detach(self) -> None:
        """Cut the graph behind the state (truncated backpropagation)."""
        self.layers = [{k: v.detach() for k, v in layer.items()} for layer in self.layers]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The state as named tensors, "<layer>.conv" and "<layer>.ssm"; none before a position."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.items()}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Take the state that `tensors()` gave."""
        for name, v in tensors.items():
            i, k = name.split(".")
            self.layers[int(i)][k] = v


class CausalConv(torch.autograd.Function):
    """The depthwise causal convolution as k shifted multiply-adds: seq (b, k-1+T, C), the last k-1 inputs before
    the sequence first; weight (C, k), oldest tap first; bias (C) -> (b, T, C). Written out rather than left to
    autograd, whose backward of the k products zero-fills, copies and reduces a full tensor per tap (the full
    profile's training step 1.1x faster on one core). Not nn.Conv1d: torch's FLOP counter counts its backward as if
    it were dense."""

    @staticmethod
    def forward(ctx: Any, seq: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        k = weight.size(1)
        T = seq.size(1) - (k - 1)
        taps = weight.t().contiguous()  # (k, C): a contiguous row per tap, which elementwise kernels vectorise
        out = torch.addcmul(bias, seq[:, :T], taps[0])
        for j in range(1, k):
            out.addcmul_(seq[:, j : j + T], taps[j])
        ctx.save_for_backward(seq, taps)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        seq, taps = ctx.saved_tensors
        k, T = taps.size(0), grad.size(1)
        grad_seq = grad.new_zeros(seq.shape)
        for j in range(k):
            grad_seq[:, j : j + T].addcmul_(grad, taps[j])
        grad_weight = torch.stack([(grad * seq[:, j : j + T]).sum((0, 1)) for j in range(k)], dim=1)
        return grad_seq, grad_weight, grad.sum((0, 1))


def rms_over_root(x: torch.Tensor, root_eps: torch.Tensor) -> torch.Tensor:
    """x / sqrt(sum(x^2) + d eps) over the last dimension, with `root_eps` = sqrt(d eps): RMSNorm without its weight,
    divided by sqrt(d) (folded into the weight after it). Three operations where F.rms_norm takes seven: 6 us
    against 15 on one position, and the step is dispatch-bound."""
    return x / torch.hypot(torch.linalg.vector_norm(x, dim=-1, keepdim=True), root_eps)


@dataclass
class StepWeights:
    """One block's weights as the inference step uses them, folded once per generation (`MambaState.folded`)."""

    fc: torch.Tensor
    """The in projection, its input columns scaled by sqrt(d) x the block's RMSNorm weight."""
    fc_bias: torch.Tensor
    """Zero but for dt's bias on the dt rows."""
    conv: torch.Tensor
    """(k, D+2N) taps, the oldest input first."""
    conv_bias: torch.Tensor
    A: torch.Tensor
    """-exp(A_log): each head's decay rate."""
    skip: torch.Tensor
    """(H, 1)."""
    proj_t: torch.Tensor
    """(D, d): the out projection transposed, its input rows scaled by sqrt(D) x the gated RMSNorm's weight."""
    root_eps: torch.Tensor
    """sqrt(d eps) and sqrt(D eps), for `rms_over_root` before the in and the out projection."""
    gate_root_eps: torch.Tensor


class Mixer(nn.Module):
    """Mamba-2's mixer: in projection, causal convolution, SSD, gated RMSNorm, out projection."""

    def __init__(self, c: MambaConfig):
        super().__init__()
        D, N, H = c.inner, c.d_state, c.heads
        self.D, self.N, self.H, self.P, self.chunk = D, N, H, c.head_dim, c.chunk
        self.fc = nn.Linear(c.embed_dim, 2 * D + 2 * N + H, bias=False)  # z, (u, B, C), dt
        bound = 1 / math.sqrt(c.conv_width)  # nn.Conv1d's default init for a depthwise kernel
        self.conv_weight = nn.Parameter(torch.empty(D + 2 * N, c.conv_width).uniform_(-bound, bound))
        self.conv_bias = nn.Parameter(torch.empty(D + 2 * N).uniform_(-bound, bound))
        dt = torch.exp(torch.empty(H).uniform_(math.log(1e-3), math.log(1e-1)))  # Mamba's init: dt in [1e-3, 0.1]
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.A_log = nn.Parameter(torch.log(torch.empty(H).uniform_(1, 16)))
        self.skip = nn.Parameter(torch.ones(H))
        self.norm = RMSNorm(D, eps=c.norm_eps)
        self.proj = nn.Linear(D, c.embed_dim, bias=False)

    def forward(self, x: torch.Tensor, cache: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """(b, T, d) -> (b, T, d), from the state in `cache` (zero without one), which is updated."""
        b, T, _ = x.shape
        D, N, H, P = self.D, self.N, self.H, self.P
        z, ubc, dt = self.fc(x).split([D, D + 2 * N, H], dim=-1)
        k = self.conv_weight.size(1)
        before = cache.get("conv") if cache is not None else None
        if before is None:
            before = ubc.new_zeros(b, k - 1, D + 2 * N)
        seq = torch.cat([before.to(ubc.dtype), ubc], dim=1)  # (b, k-1+T, D+2N): the last k-1 inputs first
        ubc = F.silu(CausalConv.apply(seq, self.conv_weight.to(seq.dtype), self.conv_bias.to(seq.dtype)))
        with torch.autocast(x.device.type, enabled=False):  # the decays and the state in fp32, as Mamba does
            u, B, C = ubc.float().split([D, N, N], dim=-1)
            dt = F.softplus(dt.float() + self.dt_bias)  # (b, T, H)
            u = u.view(b, T, H, P)
            state = cache.get("ssm") if cache is not None else None
            y, state = ssd(u * dt[..., None], dt * -torch.exp(self.A_log), B, C, self.chunk, state)
            y = (y + self.skip[:, None] * u).reshape(b, T, D)
        if cache is not None:
            cache["conv"], cache["ssm"] = seq[:, seq.size(1) - (k - 1) :], state
        return self.proj(self.norm(y.to(z.dtype) * F.silu(z)))

    def step(self, x: torch.Tensor, cache: dict[str, torch.Tensor], w: StepWeights) -> torch.Tensor:
        """x + this block's branch at one position (b, d) of inference, by the recurrence itself (`ssd_step`), with
        the folded weights."""
        b = x.size(0)
        D, N, H, P = self.D, self.N, self.H, self.P
        z, ubc, dt = F.linear(rms_over_root(x, w.root_eps), w.fc, w.fc_bias).split([D, D + 2 * N, H], dim=-1)
        window = torch.cat([cache["conv"], ubc[:, None]], dim=1)  # (b, k, D+2N): the last k-1 inputs first
        u, B, C = F.silu((window * w.conv).sum(1).add_(w.conv_bias)).split([D, N, N], dim=-1)
        dt = F.softplus(dt)  # (b, H)
        u = u.view(b, H, P)
        y, cache["ssm"] = ssd_step(u * dt[..., None], dt * w.A, B, C, cache["ssm"])
        cache["conv"] = window[:, 1:]
        y = torch.addcmul(y, w.skip, u).view(b, D)
        return torch.addmm(x, rms_over_root(y * F.silu(z), w.gate_root_eps), w.proj_t)

    @torch.no_grad()
    def fold(self, norm: RMSNorm) -> StepWeights:
        """This mixer's `StepWeights`, with `norm` (the block's RMSNorm before it) folded in."""
        d, eps = self.fc.in_features, self.norm.eps
        bias = torch.zeros(self.fc.out_features, dtype=self.fc.weight.dtype, device=self.fc.weight.device)
        bias[-self.H :] = self.dt_bias
        conv = self.conv_weight.t().contiguous()
        proj_t = (self.proj.weight * (self.norm.weight * math.sqrt(self.D))).t().contiguous()
        fc = self.fc.weight * (norm.weight * math.sqrt(d))
        return StepWeights(fc, bias, conv, self.conv_bias, -torch.exp(self.A_log), self.skip[:, None], proj_t,
                           bias.new_tensor(math.sqrt(d * norm.eps)), bias.new_tensor(math.sqrt(self.D * eps)))


class MambaBlock(nn.Module):
    """x + Dropout(Mixer(RMSNorm(x)))."""

    def __init__(self, c: MambaConfig):
        super().__init__()
        self.norm = RMSNorm(c.embed_dim, eps=c.norm_eps)
        self.mixer = Mixer(c)
        self.drop = Dropout(c.dropout)

    def forward(self, x: torch.Tensor, cache: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return x + self.drop(self.mixer(self.norm(x), cache))


class MambaLM(LanguageModel):
    """Token embedding -> Mamba-2 blocks -> RMSNorm -> head tied to the embedding."""

    recurrent = True
    supports_kv_cache = True
    takes_targets = True

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.embed_dim)
        self.drop = Dropout(c.dropout)
        self.blocks = nn.ModuleList(MambaBlock(c) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.embed_dim, eps=c.norm_eps)
        self.head = make_head(c, c.embed_dim, bias=False)
        init_weights(self, std=0.02)
        self.head.tie(self.tok_emb.weight)
        scale_residual_projections(self, c.n_layers)

    def new_cache(self) -> MambaState:
        """A zero state, carried through generation and evaluation."""
        return MambaState(self.config.n_layers)

    def forward(self, idx: torch.Tensor, cache: MambaState | None = None,
                targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) for token ids (B, T), from the state in `cache` (zero without one), which is updated;
        with `targets` (B, T'), -log p of each target instead (base.py)."""
        if idx.size(1) == 1 and cache is not None and "ssm" in cache.layers[0] and self._inferring(idx):
            return self._step(idx[:, 0], cache, targets)
        x = self.drop(self.tok_emb(idx))  # (B, T, d)
        for i, block in enumerate(self.blocks):
            x = block(x, cache.layers[i] if cache is not None else None)
        if cache is not None:
            cache.length += idx.size(1)
        return self.head_output(self.norm(x), targets)

    def _inferring(self, idx: torch.Tensor) -> bool:
        """Whether a step may take the folded weights: no dropout, no gradient, no autocast."""
        return not (self.training or torch.is_grad_enabled() or torch.is_autocast_enabled(idx.device.type))

    def _step(self, idx: torch.Tensor, cache: MambaState, targets: torch.Tensor | None) -> torch.Tensor:
        """`forward` of one position (b,) after the first: generation's step. At the bench's sizes it is bound by
        dispatching small operations, not by arithmetic, so the norms' weights are folded into the projections and
        the operations fused: half the operations of `forward` at T = 1 (docs/speed.md gives the measurement)."""
        if cache.folded is None:
            cache.folded = [block.mixer.fold(block.norm) for block in self.blocks]
        x = self.tok_emb(idx)  # (b, d)
        for block, layer, w in zip(self.blocks, cache.layers, cache.folded):
            x = block.mixer.step(x, layer, w)
        cache.length += 1
        out = rms_over_root(x, cache.folded[0].root_eps) * (self.norm.weight * math.sqrt(x.size(-1)))
        return self.head_output(out[:, None], targets)

    def matmul_flops_per_token(self, seq_len: int | None = None) -> float:
        """Per layer: projections 2d(2D+2N+H) + 2Dd; SSD at chunk Q: C B^T 2QN, its product with the inputs 2QD,
        chunk states 2DN, their read-out 2DN (on T padded to a multiple of Q); the head's."""
        c = self.config
        T = seq_len or c.context_length
        Q = min(c.chunk, T)
        padded = -(-T // Q) * Q / T
        d, D, N, H = c.embed_dim, c.inner, c.d_state, c.heads
        projections = 2 * d * (2 * D + 2 * N + H) + 2 * D * d
        ssd_products = (2 * Q * N + 2 * Q * D + 4 * D * N) * padded
        return float(c.n_layers * (projections + ssd_products) + self.head.flops_per_token())

    def other_flops_per_token(self, seq_len: int | None = None) -> float:
        """Per layer, the convolution's k multiply-adds per channel, 2k(D+2N), and the scan between chunks, a
        multiply and an add per state entry once per chunk, 2DN/Q."""
        c = self.config
        Q = min(c.chunk, seq_len or c.context_length)
        return float(c.n_layers * (2 * c.conv_width * (c.inner + 2 * c.d_state) + 2 * c.inner * c.d_state / Q))
