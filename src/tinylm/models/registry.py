"""Model names -> (config class, model class); building a model from a plain mapping, strictly."""

from __future__ import annotations

from typing import Any

from tinylm.config import from_dict
from tinylm.errors import UsageError
from tinylm.models.attention import AttentionConfig, AttentionLM
from tinylm.models.base import LanguageModel, LMConfig
from tinylm.models.linear import LinearConfig, LinearLM
from tinylm.models.mlp import MLPLM, MLPConfig
from tinylm.models.transformer import TransformerConfig, TransformerLM

MODELS: dict[str, tuple[type[LMConfig], type[LanguageModel]]] = {
    "linear": (LinearConfig, LinearLM),
    "mlp": (MLPConfig, MLPLM),
    "attention": (AttentionConfig, AttentionLM),
    "transformer": (TransformerConfig, TransformerLM),
}


def check_name(name: str) -> str:
    """`name` if registered, else a clear error listing the models."""
    if name not in MODELS:
        from tinylm.config import suggest

        raise UsageError(f"unknown model '{name}'{suggest(name, list(MODELS))}; choose one of: {', '.join(MODELS)}")
    return name


def config_class(name: str) -> type[LMConfig]:
    """The config dataclass of a model."""
    return MODELS[check_name(name)][0]


def make_config(name: str, values: dict[str, Any] | None = None) -> LMConfig:
    """A model config from a mapping; unknown keys are rejected with the allowed ones."""
    return from_dict(config_class(name), dict(values or {}), f"model '{name}'")


def build_model(name: str, config: LMConfig | dict[str, Any] | None = None) -> LanguageModel:
    """Build model `name` from its config (a dataclass instance or a mapping)."""
    if not isinstance(config, LMConfig):
        config = make_config(name, config)
    return MODELS[check_name(name)][1](config)
