"""An example tinylm plugin: a gated causal convolution language model."""

from tinylm_gated_conv.model import GatedConvConfig, GatedConvLM

__all__ = ["GatedConvConfig", "GatedConvLM"]
