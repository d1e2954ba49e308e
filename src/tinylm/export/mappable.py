"""What every export to `transformers` refuses before mapping a tensor: config fields it does not know, and an
adaptive head (a `transformers` LM head is one full softmax)."""

from __future__ import annotations

from dataclasses import fields

from tinylm.errors import TinyLMError
from tinylm.models.base import LanguageModel, LMConfig


def check_known(model: LanguageModel, config_class: type[LMConfig], known: set[str], label: str, module: str) -> None:
    """Refuse a `config_class` field outside `known` (it may change the function) or a head other than full."""
    unknown = sorted({f.name for f in fields(config_class)} - known)
    if unknown:
        raise TinyLMError(f"the {label} export does not know model.{unknown[0]} yet, so it cannot promise the same "
                          f"function; extend tinylm/export/{module}")
    if model.config.head != "full":
        raise TinyLMError(f"the model has an {model.config.head} softmax head; a {label}'s LM head is a full softmax, "
                          "so only runs with model.head=full can be exported")
