"""tinylm: a lab bench for tiny language models, trained and compared by one protocol."""

from tinylm.errors import TinyLMError

__version__ = "0.1.0"
__all__ = ["TinyLMError", "__version__"]
