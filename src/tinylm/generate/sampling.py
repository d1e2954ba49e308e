"""Sampling the next token, and generating a continuation with or without a KV cache.

Window policy (the same with and without the cache, so both give identical tokens): a model conditions on at
most `context_length` tokens; when the window is full, it slides by half — the newest half is kept and, for
cached models, re-encoded once — so a cached model re-encodes C/2 tokens once every C/2 steps instead of C tokens
at every step. Recurrent models (LSTM) condition on everything: the whole prompt, and their state (their cache)
carried from step to step without limit.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from tinylm.models.base import LanguageModel


def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw token ids from logits of shape (..., V).

    Args:
        logits: unnormalised scores (..., V).
        temperature: 0 means greedy (argmax); otherwise logits are divided by it.
        top_k: keep exactly the k highest logits (ties beyond k are not let in); None or 0 keeps all.
        top_p: keep the smallest set of tokens whose probability reaches top_p (nucleus); None or 1 keeps all.
        generator: torch RNG for reproducible draws.

    Returns:
        LongTensor of shape (...) with the drawn ids.
    """
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    logits = logits.float()
    if temperature < 1e-6:  # below this, exp() overflows: the limit is greedy anyway
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k:
        k = min(top_k, logits.size(-1))
        values, indices = torch.topk(logits, k, dim=-1)  # (..., k)
        logits = torch.full_like(logits, float("-inf")).scatter(-1, indices, values)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., V)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # mass strictly before each token
        sorted_logits = sorted_logits.masked_fill(before >= top_p, float("-inf"))  # the top token always stays
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    flat = probs.reshape(-1, probs.size(-1))
    return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])


@torch.inference_mode()
def generate_ids(
    model: LanguageModel,
    prompt: list[int],
    length: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    device: torch.device | str = "cpu",
) -> Iterator[int]:
    """Yield `length` new token ids continuing `prompt` (non-empty), one at a time.

    With `use_cache` (attention models, the LSTM), each step feeds one new position through the cache; without it the
    whole window is run again. Both follow the window policy of the module docstring and give the same tokens.
    """
    model.eval()
    device = torch.device(device)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else torch.seed() % (2**63))
    C = model.context_length
    cached = use_cache and getattr(model, "supports_kv_cache", False)
    ctx = list(prompt) if model.recurrent else list(prompt)[-C:]
    cache = None
    last = None
    for _ in range(length):
        if cached and cache is not None:
            logits = model(torch.tensor([[last]], device=device), cache)[0, -1]
        elif cached:
            cache = model.new_cache()
            logits = model(torch.tensor([ctx], device=device), cache)[0, -1]
        else:
            logits = model(torch.tensor([ctx], device=device))[0, -1]
        last = int(sample(logits, temperature, top_k, top_p, generator))
        yield last
        ctx.append(last)
        if len(ctx) > C and not model.recurrent:
            if model.fixed_window:
                ctx = ctx[-C:]
            else:  # slide by half; the cache is rebuilt from the kept tokens
                ctx = ctx[-max(1, C // 2) :]
                cache = None
