"""Our Llama-style transformer as a `transformers` Llama: its config and its weights, tensor by tensor.

`transformers`' LlamaForCausalLM has our llama's layout (models/llama.py): a token embedding, pre-norm blocks with
RMSNorm, rotary attention without biases, a SwiGLU layer, a final RMSNorm and a head, tied or not. Its rotation
pairs dimension i with i + hs/2 ("rotate half"), as ours does, so queries and keys need no permutation. What the
mapping takes care of:

- our attention's fused qkv weight splits into q_proj, k_proj, v_proj (rows in that order), and the SwiGLU's fused
  gate-and-up weight into gate_proj and up_proj;
- no grouped-query attention: num_key_value_heads = n_heads;
- our Dropout rounds p to a multiple of 1/256 (models/base.py); the config takes attention dropout as configured
  (training only; Llama has no residual dropout).
"""

from __future__ import annotations

from typing import Any

import torch

from tinylm.errors import TinyLMError
from tinylm.export.mappable import check_known
from tinylm.models.llama import LlamaConfig, LlamaLM

#: The config fields the mapping knows; a new field may change the function, so the export refuses it until mapped.
LLAMA_FIELDS = {"vocab_size", "context_length", "dropout", "embed_dim", "n_heads", "n_layers", "ffn_hidden",
                "rope_theta", "norm_eps", "tie_head", "attn_dropout", "head", "cutoffs", "token_counts"}


def check_llama(model: LlamaLM) -> None:
    """Refuse a model whose config has fields this mapping does not know, or an adaptive head."""
    check_known(model, LlamaConfig, LLAMA_FIELDS, "Llama", "llama.py")


def llama_config(model: LlamaLM, bos_id: int | None) -> dict[str, Any]:
    """LlamaConfig keyword arguments for `model` (no eos: like `tinylm generate`, generation runs to its length)."""
    c = model.config
    return {
        "vocab_size": c.vocab_size, "hidden_size": c.embed_dim, "intermediate_size": c.hidden,
        "num_hidden_layers": c.n_layers, "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_heads,
        "head_dim": c.embed_dim // c.n_heads, "hidden_act": "silu", "max_position_embeddings": c.context_length,
        "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_theta, "tie_word_embeddings": c.tie_head,
        "attention_bias": False, "mlp_bias": False, "attention_dropout": c.attn_dropout, "initializer_range": 0.02,
        "bos_token_id": bos_id, "eos_token_id": None, "pad_token_id": None,
    }


def llama_state_dict(model: LlamaLM) -> dict[str, torch.Tensor]:
    """LlamaForCausalLM's tensors (lm_head.weight left out when tied to model.embed_tokens.weight)."""
    check_llama(model)
    c = model.config
    ours = {k: v.detach() for k, v in model.state_dict().items()}
    used = set(model.tied_aliases())  # head.weight, when tied
    out: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor:
        used.add(name)
        return ours[name]

    out["model.embed_tokens.weight"] = take("tok_emb.weight")
    for i in range(c.n_layers):
        src, dst = f"blocks.{i}", f"model.layers.{i}"
        out[f"{dst}.input_layernorm.weight"] = take(f"{src}.norm1.weight")
        for name, w in zip(("q", "k", "v"), take(f"{src}.attn.qkv.weight").split(c.embed_dim)):
            out[f"{dst}.self_attn.{name}_proj.weight"] = w.contiguous()
        out[f"{dst}.self_attn.o_proj.weight"] = take(f"{src}.attn.proj.weight")
        out[f"{dst}.post_attention_layernorm.weight"] = take(f"{src}.norm2.weight")
        gate, up = take(f"{src}.ffn.fc.weight").split(c.hidden)
        out[f"{dst}.mlp.gate_proj.weight"], out[f"{dst}.mlp.up_proj.weight"] = gate.contiguous(), up.contiguous()
        out[f"{dst}.mlp.down_proj.weight"] = take(f"{src}.ffn.proj.weight")
    out["model.norm.weight"] = take("norm.weight")
    if not c.tie_head:
        out["lm_head.weight"] = take("head.weight")
    left = sorted(set(ours) - used)
    if left:
        raise TinyLMError(f"the Llama export has no place for the model's tensor '{left[0]}'; extend "
                          "tinylm/export/llama.py")
    return out
