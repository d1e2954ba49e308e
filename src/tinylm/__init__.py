"""tinylm: a lab bench for tiny language models, trained and compared by one protocol.

`tinylm.load(...)`, `tinylm.train(...)` and `tinylm.suite(...)` (see tinylm.api) are imported on first use, so that
importing a light module such as tinylm.errors does not import torch.
"""

from typing import Any

from tinylm.errors import TinyLMError

__version__ = "0.1.0"
__all__ = ["LMConfig", "LanguageModel", "RayOptions", "Run", "TinyLMError", "__version__", "load", "suite", "train"]


def __getattr__(name: str) -> Any:
    if name in ("load", "train", "suite", "Run"):
        from tinylm import api

        return getattr(api, name)
    if name == "RayOptions":  # tinylm.suite(..., ray=RayOptions(...))
        from tinylm import ray_pool

        return ray_pool.RayOptions
    if name in ("LanguageModel", "LMConfig"):  # the base classes of a model of your own (docs: Add your own model)
        from tinylm.models import base

        return getattr(base, name)
    raise AttributeError(f"module 'tinylm' has no attribute '{name}'")
