"""The optimizer (AdamW or SGD), with weight decay on the weight matrices of linear layers (and of an untied adaptive
head) only."""

from __future__ import annotations

import inspect
from typing import Any

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


_EAGER = ("add_param_group", "zero_grad", "state_dict", "load_state_dict", "step")
_KINDS: dict[str, type[torch.optim.Optimizer]] = {}


def _without_dynamo(kind: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """`kind` without the wrappers on its methods that import torch._dynamo on first call (1.1-1.6 s) only to step
    out of a torch.compile trace: tinylm never compiles the optimizer, so the same code runs and updates the same
    numbers, bit for bit. A torch whose methods lack these wrappers gets `kind` as it is."""
    if not all(hasattr(getattr(kind, m), "__wrapped__") for m in _EAGER):
        return kind

    def step(self: torch.optim.Optimizer, closure: Any = None) -> Any:
        # what torch's _use_grad_for_differentiable wrapper does, less its dynamo graph breaks
        with torch.set_grad_enabled(self.defaults.get("differentiable", False)):
            return kind.step.__wrapped__(self, closure)

    methods = {m: getattr(kind, m).__wrapped__ for m in _EAGER if m != "step"}
    return type(kind.__name__, (kind,), {**methods, "step": step, "__module__": __name__})


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """`cfg.optimizer`: AdamW or SGD without momentum, fused where this torch supports it on `device`."""
    base = torch.optim.SGD if cfg.optimizer == "sgd" else torch.optim.AdamW
    kind = _KINDS.setdefault(cfg.optimizer, _without_dynamo(base))
    kwargs: dict = {"lr": cfg.learning_rate}
    if base is torch.optim.AdamW:
        kwargs["betas"] = (cfg.beta1, cfg.beta2)
    if "fused" in inspect.signature(kind).parameters and device.type in ("cpu", "cuda"):
        kwargs["fused"] = True
    return kind(param_groups(model, cfg.weight_decay), **kwargs)
