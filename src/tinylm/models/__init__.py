"""The model zoo: linear, mlp, attention, transformer, lstm, llama, mamba — all sequence models with one interface."""

from tinylm.models.registry import MODELS, build_model, make_config

__all__ = ["MODELS", "build_model", "make_config"]
