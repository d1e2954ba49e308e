"""The optimizer (AdamW or SGD), with weight decay on the weight matrices of linear layers (and of an untied adaptive
head) only."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from tinylm.config import TrainConfig
from tinylm.models.heads import AdaptiveHead


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: nn.Linear weights and an untied adaptive head's token matrix (decayed) and everything else —
    biases, norms, embeddings, LSTM weights (not decayed, as in PyTorch's word_language_model).

    Embeddings are not decayed because most of their rows are rarely seen (decay would shrink them towards zero
    between visits); a tied head shares the token embedding and follows it.
    """
    decay = {id(m.weight) for m in model.modules()
             if isinstance(m, nn.Linear) or (isinstance(m, AdaptiveHead) and not m.tied)}  # (its own head matrix)
    embed = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))}
    seen, with_decay, without = set(), [], []
    for p in model.parameters():
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        (with_decay if id(p) in decay and id(p) not in embed else without).append(p)
    return [{"params": with_decay, "weight_decay": weight_decay}, {"params": without, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """`cfg.optimizer`: AdamW or SGD without momentum, fused where this torch supports it on `device`."""
    kind = torch.optim.SGD if cfg.optimizer == "sgd" else torch.optim.AdamW
    kwargs: dict = {"lr": cfg.learning_rate}
    if kind is torch.optim.AdamW:
        kwargs["betas"] = (cfg.beta1, cfg.beta2)
    if "fused" in inspect.signature(kind).parameters and device.type in ("cpu", "cuda"):
        kwargs["fused"] = True
    return kind(param_groups(model, cfg.weight_decay), **kwargs)
