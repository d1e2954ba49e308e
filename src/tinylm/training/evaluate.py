"""One evaluation protocol for every model: each token of a split scored exactly once.

Windows of W tokens advance by a stride S <= W. The first window scores all its positions; every later window
scores only its last S positions, the ones no earlier window scored:

    tokens   t0 t1 t2 t3 t4 t5 t6 t7 t8 t9 ...
    window 1 [t0 ................ t7]            scores t1..t8 (targets of positions 0..7)
    window 2             [t4 ................ t11]  scores t9..t12 (its last S = 4 positions)

Token t0 has no context and is never scored, so a split of N tokens yields N - 1 scores. Attention models use
W = context length, so every scored token sees at least W - S preceding tokens (all of them near the start).
Fixed-window models (linear, MLP) use W = S + k - 1, so every token sees its full k-token window.

Recurrent models (LSTM) read the split as one stream in order, in chunks of S tokens (default 1024), carrying their
state from chunk to chunk: every token but the first is scored once, with the state of everything before it, and the
state is never reset inside the split.

Models that take targets (base.py) are asked for the log-probability of each target only, which is exact and, with
an adaptive head, cheaper than its full distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tinylm.data.corpus import gather, id_counts
from tinylm.errors import UsageError
from tinylm.models.base import LanguageModel


@dataclass
class EvalResult:
    """Summed log-likelihood over the scored tokens of a split."""

    total_logprob: float
    tokens: int
    stride: int
    window: int

    @property
    def loglik(self) -> float:
        """Mean log p per token (nats, negative)."""
        return self.total_logprob / self.tokens

    @property
    def loss(self) -> float:
        """Mean negative log-likelihood (nats/token)."""
        return -self.loglik

    @property
    def perplexity(self) -> float:
        """exp(-loglik)."""
        return math.exp(min(-self.loglik, 700.0))

    @property
    def bits(self) -> float:
        """-loglik / ln 2 (bits per token)."""
        return -self.loglik / math.log(2)

    def as_dict(self, prefix: str) -> dict[str, float | int]:
        """Metrics named `<prefix>_loss`, `_loglik`, `_perplexity`, `_bits`, `_tokens`."""
        return {
            f"{prefix}_loss": self.loss,
            f"{prefix}_loglik": self.loglik,
            f"{prefix}_perplexity": self.perplexity,
            f"{prefix}_bits": self.bits,
            f"{prefix}_tokens": self.tokens,
        }


def protocol_window(model: LanguageModel, stride: int | None = None) -> tuple[int, int]:
    """(window W, stride S) of the protocol for `model`."""
    if stride is not None and stride < 1:
        raise UsageError(f"--stride must be at least 1 (got {stride})")
    if model.recurrent:
        s = stride or 1024
        return s, s
    if model.fixed_window:
        s = stride or 512
        return s + model.context_length - 1, s
    w = model.context_length
    s = stride or max(1, w // 2)
    if s > w:
        raise UsageError(f"--stride must be at most the context length {w} (got {s})")
    return w, s


def window_plan(n: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(start a, length L, first scored position) of every window over a split of n tokens.

    Window (a, L, f) feeds tokens a..a+L-1 and scores the targets a+f+1 .. a+L.
    """
    plan, a = [], 0
    while True:
        length = min(window, n - 1 - a)
        if length <= 0:
            break
        first = 0 if a == 0 else window - stride
        if first < length:
            plan.append((a, length, first))
        if a + window >= n - 1:
            break
        a += stride
    return plan


@torch.inference_mode()
def evaluate(
    model: LanguageModel,
    tokens: torch.Tensor | np.ndarray,
    batch_size: int = 32,
    stride: int | None = None,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    shard: tuple[int, int] = (0, 1),
) -> EvalResult:
    """Score every token of `tokens` (1-D LongTensor) but the first, exactly once.

    Args:
        model: any registered model.
        tokens: the split, shape (N,): a LongTensor or a (memory-mapped) numpy array of ids.
        batch_size: windows per forward pass.
        stride: S of the protocol (default: half the context for attention models, 512 for window models).
        device: where the model lives.
        autocast_dtype: run the forward pass under autocast (e.g. torch.bfloat16).
        shard: (i, n): score only windows i, i+n, i+2n, ... of the plan (process i of n; the n partial results
            add up to the whole split's).

    Returns:
        The summed log-likelihood and the number of scored tokens (N - 1).
    """
    was_training = model.training
    model.eval()
    device = torch.device(device)
    window, stride = protocol_window(model, stride)
    if model.recurrent:
        result = _evaluate_stream(model, tokens, stride, device, autocast_dtype, shard)
        model.train(was_training)
        return result
    # Keep the logits of one batch under ~2^25 floats (128 MB) on a CPU, 2^28 (1 GB) on a GPU, whatever the
    # vocabulary (on a GPU the CPU's cap left word-level windows one at a time: slow).
    budget = 1 << 28 if device.type == "cuda" else 1 << 25
    batch_size = max(1, min(batch_size, budget // (window * model.config.vocab_size)))
    plan = window_plan(len(tokens), window, stride)[shard[0] :: shard[1]]
    total = torch.zeros((), dtype=torch.float64)
    scored = 0
    # Windows of the same length are batched; at most the last one is shorter.
    groups: dict[int, list[tuple[int, int]]] = {}
    for a, length, first in plan:
        groups.setdefault(length, []).append((a, first))
    for length, items in groups.items():
        offsets = torch.arange(length + 1)
        for i in range(0, len(items), batch_size):
            chunk = items[i : i + batch_size]
            starts = torch.tensor([a for a, _ in chunk])
            seq = gather(tokens, starts[:, None] + offsets).to(device)  # (b, L+1)
            x, y = seq[:, :-1], seq[:, 1:]
            logp = _target_logp(model, x, y, autocast_dtype)  # (b, L)
            firsts = torch.tensor([f for _, f in chunk], device=device)
            mask = torch.arange(length, device=device)[None, :] >= firsts[:, None]  # (b, L)
            total += logp[mask].double().sum().cpu()
            scored += int(mask.sum())
    model.train(was_training)
    return EvalResult(float(total), scored, stride, window)


def _target_logp(model: LanguageModel, x: torch.Tensor, y: torch.Tensor,
                 autocast_dtype: torch.dtype | None) -> torch.Tensor:
    """log p of every target y (b, L) given inputs x (b, L), in fp32."""
    with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        if model.takes_targets:
            return -model(x, targets=y)
        logits = model(x)  # (b, L, V)
    return -F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none")


def _evaluate_stream(model: LanguageModel, tokens: torch.Tensor | np.ndarray, chunk: int, device: torch.device,
                     autocast_dtype: torch.dtype | None, shard: tuple[int, int]) -> EvalResult:
    """A recurrent model's score of the split as one stream: chunks of `chunk` tokens in order, the state carried
    (its cache) from each to the next. One stream cannot be split among processes: process 0 scores it all."""
    total = torch.zeros((), dtype=torch.float64)
    scored = 0
    if shard[0] == 0:
        cache = model.new_cache()
        for a in range(0, len(tokens) - 1, chunk):
            seq = gather(tokens, torch.arange(a, min(a + chunk, len(tokens) - 1) + 1)[None]).to(device)  # (1, L+1)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                nll = model(seq[:, :-1], cache, targets=seq[:, 1:])  # (1, L)
            total -= nll.double().sum().cpu()
            scored += nll.numel()
    return EvalResult(float(total), scored, chunk, chunk)


@dataclass
class TokenScores:
    """Every scored token of a text under the protocol: log p of the token (`logp[i]` is that of token i + 1) and
    the `top` most likely tokens at its position, with their log-probabilities."""

    logp: torch.Tensor
    """(N - 1,) float64: `logp.sum()` is `evaluate(...).total_logprob` of the same tokens."""
    top_ids: torch.Tensor
    """(N - 1, top) ids, most likely first."""
    top_logp: torch.Tensor
    """(N - 1, top)."""


@torch.inference_mode()
def score_tokens(model: LanguageModel, tokens: torch.Tensor, top: int = 5, stride: int | None = None,
                 device: torch.device | str = "cpu") -> TokenScores:
    """`evaluate`'s protocol token by token (the same windows, or the same stream for a recurrent model, and the same
    log p of each target), with the `top` alternatives at every scored position from the full distribution."""
    was_training = model.training
    model.eval()
    device = torch.device(device)
    window, stride = protocol_window(model, stride)
    top = min(top, model.config.vocab_size)
    n = len(tokens) - 1
    logp = torch.zeros(n, dtype=torch.float64)
    top_ids, top_logp = torch.zeros(n, top, dtype=torch.long), torch.zeros(n, top)
    if model.recurrent:
        plan = [(a, min(stride, n - a), 0) for a in range(0, n, stride)]
        caches = (model.new_cache(), model.new_cache())  # one for the targets' pass, one for the distributions'
    else:
        plan, caches = window_plan(len(tokens), window, stride), None
    for a, length, first in plan:
        seq = tokens[a : a + length + 1][None].to(device)
        x, y = seq[:, :-1], seq[:, 1:]
        if caches is None:
            target, logits = _target_logp(model, x, y, None)[0], model(x)[0]
        else:
            target = -model(x, caches[0], targets=y)[0].float() if model.takes_targets else None
            logits = model(x, caches[1])[0]
            if target is None:
                target = F.log_softmax(logits.float(), -1).gather(-1, y[0, :, None])[:, 0]
        best = torch.topk(F.log_softmax(logits.float(), -1), top, dim=-1)
        logp[a + first : a + length] = target[first:].double().cpu()
        top_ids[a + first : a + length], top_logp[a + first : a + length] = best.indices[first:].cpu(), \
            best.values[first:].cpu()
    model.train(was_training)
    return TokenScores(logp, top_ids, top_logp)


@torch.no_grad()
def random_window_loss(model: LanguageModel, tokens: torch.Tensor | np.ndarray, window: int = 256,
                       batches: int = 200, batch_size: int = 64, seed: int = 1337,
                       device: str | torch.device = "cpu") -> float:
    """nanoGPT's estimate of a split's loss (its `estimate_loss`): the mean loss over every position of `batches` x
    `batch_size` windows of `window` tokens drawn at random (with replacement), each from a fresh start. It is not
    the protocol (positions near a window's start see little context, some tokens are scored many times and others
    never); reproductions report it beside the protocol's score only to compare with nanoGPT's printed numbers."""
    was_training = model.training
    model.eval()
    device = torch.device(device)
    window = min(window, model.context_length, len(tokens) - 1)
    g = torch.Generator().manual_seed(seed)
    total, count = torch.zeros((), dtype=torch.float64), 0
    for _ in range(batches):
        starts = torch.randint(len(tokens) - window, (batch_size,), generator=g)
        seq = gather(tokens, starts[:, None] + torch.arange(window + 1)).to(device)  # (b, window+1)
        logp = _target_logp(model, seq[:, :-1], seq[:, 1:], None)  # (b, window)
        total -= logp.double().sum().cpu()
        count += logp.numel()
    model.train(was_training)
    return float(total) / count


def unigram_loglik(train: torch.Tensor | np.ndarray, test: torch.Tensor | np.ndarray, vocab_size: int,
                   chunk: int = 1 << 20) -> float:
    """Baseline: mean log p of the scored test tokens (all but the first) under add-one-smoothed train counts
    (counted `chunk` ids at a time, so a memory-mapped split is never copied whole)."""
    counts = id_counts(train, vocab_size, chunk) + 1.0
    logp = np.log(counts / counts.sum())
    total = sum(float(logp[np.asarray(test[i : i + chunk], dtype=np.int64)].sum())
                for i in range(1, len(test), chunk))
    return total / (len(test) - 1)


def protocol_note(model: LanguageModel, window: int, stride: int) -> str:
    """What the protocol's window and stride mean for this model."""
    k = model.context_length
    if model.recurrent:
        return (f"protocol: the split is read as one stream in chunks of {stride} tokens, the recurrent state carried "
                "through the whole split and never reset: every token sees all the tokens before it")
    if model.fixed_window:
        return (f"protocol: windows of {window} tokens advance by {stride}; each scores {stride} positions, and the "
                f"{window - stride} tokens before them give the first one its full {k}-token context")
    return (f"protocol: windows of {window} tokens (the context length) advance by {stride}; each scores only the "
            f"positions no earlier window scored, so every token sees at least {window - stride} tokens before it "
            "(all of them near the start of the split)")
