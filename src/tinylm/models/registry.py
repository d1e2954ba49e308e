"""The one list of models: name -> config class, model class, figure colour and ablation flag.

Everything that names models (the CLI's choices and ablation flags, the report's rows and colours, the chat's
`model` command) reads this registry, so adding a model is one file plus one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tinylm.errors import UsageError
from tinylm.fields import from_dict, unknown_name_error
from tinylm.models.attention import AttentionConfig, AttentionLM
from tinylm.models.base import LanguageModel, LMConfig
from tinylm.models.linear import LinearConfig, LinearLM
from tinylm.models.lstm import LSTMLM, LSTMConfig
from tinylm.models.mlp import MLPLM, MLPConfig
from tinylm.models.transformer import TransformerConfig, TransformerLM


@dataclass(frozen=True)
class ModelSpec:
    """A registered model."""

    config: type[LMConfig]
    model: type[LanguageModel]
    color: str
    """Its colour in every figure."""
    sweep_flag: str | None = None
    """The suite's command-line flag that sweeps one config field, e.g. `--layers` ..."""
    sweep_field: str | None = None
    """... and that field, e.g. `n_layers`."""
    rung: bool = True
    """A rung of the bench's ladder of complexity (linear < mlp < attention < transformer, in registry order), which
    the report compares by that order; False for a reference row beside the ladder (the classical LSTM)."""


MODELS: dict[str, ModelSpec] = {
    "linear": ModelSpec(LinearConfig, LinearLM, "#1f77b4", "--context-lengths", "context_length"),
    "mlp": ModelSpec(MLPConfig, MLPLM, "#ff7f0e", "--hidden-sizes", "hidden_dim"),
    "attention": ModelSpec(AttentionConfig, AttentionLM, "#2ca02c", "--heads", "n_heads"),
    "transformer": ModelSpec(TransformerConfig, TransformerLM, "#d62728", "--layers", "n_layers"),
    "lstm": ModelSpec(LSTMConfig, LSTMLM, "#8c564b", "--lstm-hidden", "hidden_dim", rung=False),
}
DEFAULT_MODEL = "transformer"


def model_names() -> list[str]:
    """Every registered model, in registry order (simplest first)."""
    return list(MODELS)


def ladder_names() -> list[str]:
    """The models that are rungs of the ladder of complexity, simplest first."""
    return [name for name, spec in MODELS.items() if spec.rung]


def check_name(name: str) -> str:
    """`name` if registered, else a clear error listing the models."""
    if name not in MODELS:
        raise unknown_name_error("model", name, list(MODELS))
    return name


def config_class(name: str) -> type[LMConfig]:
    """The config dataclass of a model."""
    return MODELS[check_name(name)].config


def color(name: str) -> str:
    """A model's colour in figures (grey for unregistered names found in old result files)."""
    spec = MODELS.get(name)
    return spec.color if spec else "#7f7f7f"


def make_config(name: str, values: dict[str, Any] | None = None) -> LMConfig:
    """A model config from a mapping; unknown keys are rejected with the allowed ones."""
    return from_dict(config_class(name), dict(values or {}), f"model '{name}'")


def build_model(name: str, config: LMConfig | dict[str, Any] | None = None) -> LanguageModel:
    """Build model `name` from its config (a dataclass instance or a mapping); the vocabulary must be known."""
    if not isinstance(config, LMConfig):
        config = make_config(name, config)
    if config.vocab_size is None:
        raise UsageError(f"model '{name}' needs model.vocab_size (it is set from the dataset's tokenizer)")
    return MODELS[check_name(name)].model(config)
