"""The output layer every model ends with (`model.head`): a full softmax, or an adaptive softmax.

`full`: logits = h W^T (+ b) over the whole vocabulary; W may be the token embedding (tied).

`adaptive` (Grave et al. 2017, "Efficient softmax approximation for GPUs"): the token ids are ranked by their
frequency in the training split, and the ranks cut at `cutoffs` c_0 < c_1 < ... into a head (the c_0 most frequent
tokens) and tail clusters [c_0, c_1), [c_1, c_2), ..., [c_last, V). The head scores its tokens plus one entry per
tail cluster; tail cluster i scores its own tokens from a projection of h to d / 4^(i+1) dimensions:

    log p(w) = log p_head(w)                          for a head token
    log p(w) = log p_head(cluster i) + log p_i(w)     for a token of tail cluster i

which is an exact, normalised distribution over the vocabulary. Training and the evaluation protocol ask only for
the log-probability of each target (`nll`): the head for every position, a tail only for the positions whose target
is in it, so the full softmax is never computed; generation asks for all of them (`forward`).

Our own implementation rather than `torch.nn.AdaptiveLogSoftmaxWithLoss`: the head's token weights can be tied to the
input embedding (rows of the embedding, gathered through the frequency ranking, so the tokenizer's ids stay as they
are), as the attention models' full heads are; PyTorch's module owns every weight and cannot tie them.

The ranking is a permutation held in buffers (`rank`: id -> rank, `by_rank`: rank -> id) computed from the training
counts of the ids (the config's `token_counts`, which a run keeps in its tokenizer.json) and saved with the weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tinylm.errors import UsageError

TAIL_DIVISOR = 4
"""Tail cluster i projects h to d / 4^(i+1) dimensions (PyTorch's div_value)."""
DEFAULT_COVERAGE = (0.8, 0.95)
"""Default cutoffs: the head holds the most frequent tokens that cover 80% of the training tokens, the first tail
those up to 95%, the second tail the rest."""


def default_cutoffs(counts: list[int] | torch.Tensor) -> list[int]:
    """Cutoffs at the ranks where the most frequent tokens first cover DEFAULT_COVERAGE of the training tokens."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    V = len(counts)
    share = torch.sort(counts, descending=True).values.cumsum(0) / max(float(counts.sum()), 1.0)
    cuts = [min(max(int(torch.searchsorted(share, q)) + 1, 1), V - 1) for q in DEFAULT_COVERAGE]
    return sorted(set(cuts))


def cutoff_problems(cutoffs: list[int] | None, vocab_size: int | None) -> list[str]:
    """What is wrong with `cutoffs` (strictly increasing ranks in [1, V))."""
    if cutoffs is None:
        return []
    if not cutoffs or any(b <= a for a, b in zip(cutoffs, cutoffs[1:])) or cutoffs[0] < 1:
        return [f"model.cutoffs must be increasing ranks >= 1, e.g. [2000, 10000] (got {cutoffs})"]
    if vocab_size is not None and cutoffs[-1] >= vocab_size:
        return [f"model.cutoffs must all be below the vocabulary size {vocab_size:,} (got {cutoffs})"]
    return []


def padded_linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, multiple: int) -> torch.Tensor:
    """F.linear(h, weight, bias) computed with the output rows padded by zeros to a multiple of `multiple`, then
    sliced back: the same numbers, but a matmul whose output width suits the tensor cores (WikiText-2's 33,278 words
    is not even a multiple of 8). The padded columns never leave this function, so nothing else sees them."""
    V = weight.size(0)
    pad = -V % multiple
    if pad == 0:
        return F.linear(h, weight, bias)
    weight = F.pad(weight, (0, 0, 0, pad))
    bias = F.pad(bias, (0, pad)) if bias is not None else None
    return F.linear(h, weight, bias)[..., :V]


class FullHead(nn.Linear):
    """logits = h W^T (+ b) over the whole vocabulary (an nn.Linear, so weights keep their names)."""

    cuda_multiple: int = 64
    """On CUDA the matmul's output width is padded to a multiple of this (padded_linear); 1 turns it off."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """The logits (..., V)."""
        if h.device.type == "cuda" and self.cuda_multiple > 1:
            return padded_linear(h, self.weight, self.bias, self.cuda_multiple)
        return F.linear(h, self.weight, self.bias)

    def tie(self, weight: nn.Parameter) -> None:
        """Share `weight` (the token embedding, V x d) as W."""
        self.weight = weight

    def nll(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """-log p(target) of every position: h (..., d), targets (...) -> (...) in fp32."""
        logits = self(h).float()
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none").view(
            targets.shape)

    def flops_per_token(self, full: bool = True) -> float:
        """2*d*V per position."""
        return 2.0 * self.in_features * self.out_features


class AdaptiveHead(nn.Module):
    """The adaptive softmax of the module docstring; `forward` gives the full log-probabilities (..., V)."""

    def __init__(self, d: int, vocab_size: int, cutoffs: list[int], counts: list[int], bias: bool):
        super().__init__()
        self.d, self.vocab_size, self.cutoffs = d, vocab_size, list(cutoffs)
        counts_t = torch.as_tensor(counts, dtype=torch.float64)
        by_rank = torch.sort(-counts_t, stable=True).indices  # most frequent first, ties by id
        rank = torch.empty_like(by_rank)
        rank[by_rank] = torch.arange(vocab_size)
        self.register_buffer("rank", rank)
        self.register_buffer("by_rank", by_rank)
        c0, bounds = self.cutoffs[0], self.cutoffs + [vocab_size]
        self.weight = nn.Parameter(torch.empty(c0, d))  # the head's tokens, in rank order (or the tied embedding)
        self.bias = nn.Parameter(torch.zeros(c0)) if bias else None
        self.clusters = nn.Linear(d, len(bounds) - 1, bias=bias)  # one head entry per tail cluster
        self.tails = nn.ModuleList(
            nn.Sequential(nn.Linear(d, max(1, d // TAIL_DIVISOR ** (i + 1)), bias=False),
                          nn.Linear(max(1, d // TAIL_DIVISOR ** (i + 1)), hi - lo, bias=bias))
            for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])))
        nn.init.normal_(self.weight, std=0.02)
        sorted_counts = counts_t[by_rank]
        total = max(float(sorted_counts.sum()), 1.0)
        #: share of the training tokens in each tail cluster: how often its layers run in training
        self.tail_shares = [float(sorted_counts[lo:hi].sum()) / total for lo, hi in zip(bounds[:-1], bounds[1:])]
        self.tied = False

    def tie(self, weight: nn.Parameter) -> None:
        """Use rows of `weight` (the token embedding, V x d) as the head's token weights."""
        self.weight, self.tied = weight, True

    def _head_logprobs(self, h: torch.Tensor) -> torch.Tensor:
        """log p over the head's tokens (rank order) and the tail clusters: (N, c0 + n_tails), fp32."""
        c0 = self.cutoffs[0]
        w = self.weight[self.by_rank[:c0]] if self.tied else self.weight  # (c0, d)
        logits = torch.cat([F.linear(h, w, self.bias), self.clusters(h)], dim=-1)
        return F.log_softmax(logits.float(), dim=-1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Full log-probabilities (..., V) in token-id order (they are logits too: logsumexp is 0)."""
        c0 = self.cutoffs[0]
        head = self._head_logprobs(h)  # (..., c0 + n)
        parts = [head[..., :c0]]
        for i, tail in enumerate(self.tails):
            parts.append(head[..., c0 + i : c0 + i + 1] + F.log_softmax(tail(h).float(), dim=-1))
        return torch.cat(parts, dim=-1).index_select(-1, self.rank)  # column of id w = column of rank(w)

    def nll(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """-log p(target) of every position, exact, without the full softmax: h (..., d), targets (...) -> (...)."""
        c0 = self.cutoffs[0]
        flat = h.reshape(-1, h.size(-1))  # (N, d)
        r = self.rank[targets.reshape(-1)]  # (N,) ranks of the targets
        cluster = torch.bucketize(r, torch.tensor(self.cutoffs, device=r.device), right=True)  # 0 = head
        head = self._head_logprobs(flat)
        column = torch.where(cluster == 0, r, c0 + cluster - 1)
        out = -head.gather(1, column[:, None])[:, 0]  # (N,)
        bounds = self.cutoffs
        for i, tail in enumerate(self.tails):
            rows = (cluster == i + 1).nonzero()[:, 0]
            if rows.numel():
                logp = F.log_softmax(tail(flat[rows]).float(), dim=-1)  # (n_i, size_i)
                out = out.index_add(0, rows, -logp.gather(1, (r[rows] - bounds[i])[:, None])[:, 0])
        return out.view(targets.shape)

    def flops_per_token(self, full: bool = False) -> float:
        """Matmul FLOPs per position: the head, plus each tail at its share of the training tokens (`full`: every
        tail, as the full distribution of generation needs)."""
        flops = 2.0 * self.d * (self.cutoffs[0] + len(self.tails))
        for tail, share in zip(self.tails, self.tail_shares):
            proj, out = tail[0], tail[1]
            flops += (1.0 if full else share) * (2.0 * proj.in_features * proj.out_features
                                                 + 2.0 * out.in_features * out.out_features)
        return flops


def make_head(config: object, d: int, bias: bool) -> FullHead | AdaptiveHead:
    """The head `config.head` asks for, on features of width d (`config` is a model's LMConfig)."""
    V = config.vocab_size
    if config.head == "full":
        return FullHead(d, V, bias=bias)
    counts = config.token_counts
    if counts is None:
        raise UsageError("model.head=adaptive needs the training count of every token (model.token_counts, set from "
                         "the dataset); train the run again if its tokenizer.json has no counts")
    cutoffs = config.cutoffs if config.cutoffs is not None else default_cutoffs(counts)
    if V < 3 or not cutoffs:
        raise UsageError(f"model.head=adaptive needs a vocabulary of at least 3 tokens (got {V})")
    return AdaptiveHead(d, V, cutoffs, counts, bias)
