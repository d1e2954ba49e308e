"""The typed config of one run: model (a dataclass from the model registry), training and data sections.

Resolving a run's config from the suite file and the command line is `tinylm.suite_file`; strict loading of
dataclasses from mappings is `tinylm.fields`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from tinylm.data.config import DataConfig
from tinylm.errors import UsageError
from tinylm.fields import field_names, from_dict, to_dict, unknown_key_error
from tinylm.models.base import LMConfig
from tinylm.models.plugins import saved_source
from tinylm.models.registry import check_name, check_saved, config_class, make_config, source_of

__all__ = ["DataConfig", "RunConfig", "TrainConfig"]


@dataclass
class TrainConfig:
    """How a model is trained; shared by every architecture."""

    epochs: float | None = None
    """Budget in passes over the training tokens (fractions allowed)."""
    max_steps: int | None = None
    """Budget in optimizer steps."""
    max_tokens: int | None = None
    """Budget in training tokens."""
    max_flops: float | None = None
    """Budget in training FLOPs (analytic, 3x forward)."""
    max_time: float | None = None
    """Budget in seconds of training (evaluation excluded)."""
    batch_size: int = 32
    """Sequences per optimizer step."""
    seq_len: int | None = None
    """Scored positions per training sequence; default: the model's context length (256 for window models)."""
    carry_state: bool = False
    """Recurrent models only: read the training split as batch_size contiguous streams in order and carry the state
    (detached: truncated BPTT) from each step's sequences to the next, resetting it at each pass, as PyTorch's
    word_language_model trains; otherwise every sequence is a random window started from a zero state."""
    learning_rate: float = 1e-3
    """Peak learning rate."""
    optimizer: Literal["adamw", "sgd"] = "adamw"
    """adamw, or plain SGD without momentum (PyTorch's word_language_model trains its LSTM with SGD at rate 20 and
    gradient clip 0.25); SGD's weight_decay is an L2 term in the gradient, so learning_rate * weight_decay < 1."""
    min_lr_ratio: float = 0.1
    """The cosine schedule decays to learning_rate * min_lr_ratio."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    scheduler: Literal["cosine", "constant", "linear", "plateau"] = "cosine"
    """Decay after warm-up: over the budget (cosine, linear), none (constant), or on the validation curve (plateau:
    the rate is multiplied by plateau_factor after every plateau_patience evaluations without improvement, so the
    run ends by early stopping rather than by its budget)."""
    decay_from_warmup: bool = False
    """cosine and linear: decay over the steps after warm-up, from the peak (nanoGPT's and GPT-2's shape); by default
    the decay runs over the whole budget from step 0, so the rate is already below the peak when warm-up ends."""
    plateau_patience: int = 2
    """plateau: evaluations without improvement before each decay of the learning rate."""
    plateau_factor: float = 0.25
    """plateau: the factor of each decay."""
    plateau_max_decays: int = 0
    """plateau: end the run where the rate would be decayed once more than this (0: no limit). A run whose rate is
    already down by plateau_factor**n has taken nearly all it will get; the rest is early stopping's wait."""
    weight_decay: float = 0.1
    """Decay of the weight matrices of linear layers only (not biases, norms, embeddings): decoupled in AdamW."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.99
    """AdamW beta2."""
    gradient_clip: float = 1.0
    """Clip the global gradient norm to this (0 disables)."""
    eval_interval: int = 200
    """Evaluate on the valid subset every this many steps."""
    eval_tokens: int = 32768
    """Valid tokens scored at each periodic evaluation (the whole split at the end)."""
    early_stopping_patience: int = 0
    """Stop after this many evaluations without improvement (0 disables)."""
    min_improvement: float = 0.0
    """Nats by which a valid loss must beat the best so far to count as an improvement (for early stopping, the
    plateau schedule and the kept best weights), so that a curve flattening by 1e-4 nats an evaluation ends."""
    seed: int = 1337
    """Seed of weights, dropout and batch sampling."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """bf16 autocast where it is faster (CUDA); auto keeps fp32 on CPU."""
    compile: bool = False
    """Wrap the model in torch.compile."""

    def __post_init__(self) -> None:
        problems = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"train.{f.name} must be a finite number (got {value})")
        if not 0 <= self.seed < 2**63:
            problems.append(f"train.seed must be in [0, 2^63) (got {self.seed})")
        if problems:
            raise UsageError("; ".join(problems))
        for name in ("epochs", "max_steps", "max_tokens", "max_flops", "max_time"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                problems.append(f"train.{name} must be positive (got {value})")
        if self.batch_size < 1:
            problems.append(f"train.batch_size must be at least 1 (got {self.batch_size})")
        if self.seq_len is not None and self.seq_len < 1:
            problems.append(f"train.seq_len must be at least 1 (got {self.seq_len})")
        if not self.learning_rate > 0:
            problems.append(f"train.learning_rate must be positive (got {self.learning_rate})")
        if not 0 <= self.min_lr_ratio <= 1:
            problems.append(f"train.min_lr_ratio must be in [0, 1] (got {self.min_lr_ratio})")
        if self.plateau_patience < 1 or not 0 < self.plateau_factor < 1:
            problems.append("train.plateau_patience must be >= 1 and train.plateau_factor in (0, 1) (got "
                            f"{self.plateau_patience}, {self.plateau_factor})")
        if not 0 <= self.min_improvement < 1:
            problems.append(f"train.min_improvement must be in [0, 1) nats (got {self.min_improvement})")
        for name in ("warmup_steps", "early_stopping_patience", "plateau_max_decays"):
            if getattr(self, name) < 0:
                problems.append(f"train.{name} must be >= 0 (got {getattr(self, name)})")
        if self.weight_decay < 0 or self.gradient_clip < 0:
            problems.append("train.weight_decay and train.gradient_clip must be >= 0")
        if self.optimizer == "sgd" and self.learning_rate * self.weight_decay >= 1:
            problems.append(f"train.optimizer=sgd shrinks the decayed weights by learning_rate * weight_decay = "
                            f"{self.learning_rate * self.weight_decay:g} of themselves each step: set "
                            "train.weight_decay below 1 / learning_rate (0 as in word_language_model)")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            problems.append("train.beta1 and train.beta2 must be in [0, 1)")
        if self.eval_interval < 1 or self.eval_tokens < 2:
            problems.append("train.eval_interval must be >= 1 and train.eval_tokens >= 2")
        if problems:
            raise UsageError("; ".join(problems))

    def has_budget(self) -> bool:
        """True if at least one budget is set."""
        return any(
            getattr(self, n) is not None for n in ("epochs", "max_steps", "max_tokens", "max_flops", "max_time")
        )



FROM_DATA = ("vocab_size", "token_counts")
"""Model config fields set from the dataset once it is loaded, never by a config file (nor saved in config.yaml)."""
SAVED_ALWAYS: dict[str, frozenset[str]] = {
    "train": frozenset({"epochs", "max_steps", "max_tokens", "max_flops", "max_time", "batch_size", "seq_len",
                        "learning_rate", "min_lr_ratio", "warmup_steps", "scheduler", "weight_decay", "beta1", "beta2",
                        "gradient_clip", "eval_interval", "eval_tokens", "early_stopping_patience", "seed", "device",
                        "precision", "compile"}),
    "data": frozenset({"name", "level", "path", "max_vocab"}),
    "linear": frozenset({"context_length", "dropout", "rank", "bias", "max_params"}),
    "mlp": frozenset({"context_length", "dropout", "embed_dim", "hidden_dim", "n_hidden", "bias"}),
    "attention": frozenset({"context_length", "dropout", "embed_dim", "n_heads", "n_layers", "attn_dropout", "bias"}),
    "transformer": frozenset({"context_length", "dropout", "embed_dim", "n_heads", "n_layers", "attn_dropout", "bias",
                              "ffn_ratio"}),
    "lstm": frozenset({"context_length", "dropout", "embed_dim", "hidden_dim", "n_layers", "tie_weights"}),
}
"""The run-id rule. A run's name is a digest of its config.yaml, which holds, per section (a model's section is
named by the model), the fields listed here (those of the first shipped runs: never add to this table) always,
and every other field only where it differs from its default. So a field added later, at a default that keeps the
old behaviour, is left out of every earlier run's config.yaml and digest: no shipped run changes its name."""


SECTIONS = {"model", "train", "data", "plugin"}
"""config.yaml's sections: `plugin` (models/plugins.py `ModelSource`) only for a model from outside the package."""


def _defaults(obj: Any) -> dict[str, Any]:
    """{field: its default} of a dataclass instance's fields that have one."""
    out = {}
    for f in dataclasses.fields(obj):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _saved(section: str, obj: Any, values: dict[str, Any]) -> dict[str, Any]:
    """A section's values as config.yaml keeps them, by the run-id rule of SAVED_ALWAYS."""
    always, defaults = SAVED_ALWAYS.get(section, frozenset()), _defaults(obj)
    return {k: v for k, v in values.items() if k in always or k not in defaults or v != defaults[k]}


def model_keys(name: str) -> list[str]:
    """The config fields of model `name` that a config file may set (all but those set from the data)."""
    return [k for k in field_names(config_class(name)) if k not in FROM_DATA]


def check_model_keys(name: str, values: dict[str, Any], where: str) -> None:
    """Reject keys that are not settable fields of model `name`."""
    for key in values:
        if key not in model_keys(name):
            raise unknown_key_error(str(key), model_keys(name), where)


@dataclass
class RunConfig:
    """Everything that defines one training run; saved resolved as the run's config.yaml.

    `model` is the model's config dataclass with `vocab_size` left unset (None): the vocabulary is known once the
    data is loaded (`model_config`).
    """

    model_name: str
    model: LMConfig
    train: TrainConfig
    data: DataConfig

    def model_config(self, vocab_size: int, token_counts: list[int] | None = None) -> LMConfig:
        """The model's config for a vocabulary of `vocab_size` (validated again with it) and, for an adaptive head,
        the training count of every token id."""
        return dataclasses.replace(self.model, vocab_size=vocab_size, token_counts=token_counts)

    def to_dict(self) -> dict[str, Any]:
        """The config as saved in config.yaml (without the fields set from the data)."""
        model = _saved(self.model_name, self.model,
                       {k: v for k, v in to_dict(self.model).items() if k not in FROM_DATA})
        train = _saved("train", self.train, to_dict(self.train))
        out = {"model": {"name": self.model_name, **model}, "train": train,
               "data": _saved("data", self.data, to_dict(self.data))}
        source = source_of(self.model_name)
        if source is not None:  # a plugin: where its class is, to find it again (not part of the run's identity)
            out["plugin"] = source.to_dict()
        return out

    @classmethod
    def from_dict(cls, values: Any, where: str = "config.yaml") -> RunConfig:
        """Inverse of `to_dict` (as read back from a run's config.yaml)."""
        if not isinstance(values, dict) or not {"model", "train", "data"} <= set(values) <= SECTIONS:
            raise UsageError(f"{where} must have exactly the sections model, train and data (and plugin, for a model "
                             "from outside the package)")
        if not isinstance(values["model"] or {}, dict):
            raise UsageError(f"{where} model must be a mapping")
        model = dict(values["model"] or {})
        name = str(model.pop("name", ""))
        if "plugin" in values:
            name = check_saved(name, saved_source(values["plugin"], where), where)
        else:
            name = check_name(name)
        check_model_keys(name, model, f"{where} model")
        return cls(name, make_config(name, model), from_dict(TrainConfig, values["train"], f"{where} train"),
                   from_dict(DataConfig, values["data"], f"{where} data"))

    def __reduce_ex__(self, protocol: Any) -> Any:
        # a plugin's config class may live in a file no other process can import by name: rebuild it from its values,
        # which name that file
        if source_of(self.model_name) is not None:
            return (_rebuild, (self.to_dict(),))
        return super().__reduce_ex__(protocol)

    @classmethod
    def build(cls, model_name: str, model: dict[str, Any], train: dict[str, Any], data: DataConfig) -> RunConfig:
        """A run config from plain model and training values (names and types checked)."""
        model_name = check_name(model_name)
        check_model_keys(model_name, model, f"model '{model_name}'")
        return cls(model_name, make_config(model_name, model), from_dict(TrainConfig, train, "training config"), data)


def _rebuild(values: dict[str, Any]) -> RunConfig:
    """A RunConfig from `to_dict`'s values, in another process."""
    return RunConfig.from_dict(values, "a run's config")
