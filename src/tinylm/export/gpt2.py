"""Our transformer as a `transformers` GPT-2: its config and its weights, tensor by tensor.

GPT-2 (Radford et al. 2019) has our transformer's layout: learned token and position embeddings, pre-LN blocks
x + Attn(LN(x)) then x + MLP(LN(x)), attention scaled by 1/sqrt(head size), a final LayerNorm and a head tied to the
token embedding. What the mapping takes care of:

- GPT-2's Conv1D holds a linear layer's weight as (in, out): ours are transposed; the fused qkv keeps its q, k, v
  order, which is GPT-2's c_attn split;
- GPT-2 always has biases: a model trained with `bias: false` gets zero biases (the same function, exactly);
- our feed-forward layer uses the exact (erf) GELU, "gelu" in transformers; GPT-2's own "gelu_new" is the tanh
  approximation and would change the logits;
- our Dropout rounds p to a multiple of 1/256 (models/base.py); the config takes p as configured (training only).

The attention-only model has no feed-forward layers, so it is not a GPT-2; linear and MLP models are window models.
"""

from __future__ import annotations

from typing import Any

import torch

from tinylm.errors import TinyLMError
from tinylm.export.mappable import check_known
from tinylm.models.transformer import TransformerConfig, TransformerLM

#: The config fields the mapping knows; a new field may change the function, so the export refuses it until mapped.
KNOWN_FIELDS = {"vocab_size", "context_length", "dropout", "embed_dim", "n_heads", "n_layers", "attn_dropout", "bias",
                "ffn_ratio", "head", "cutoffs", "token_counts"}  # the last three: only head "full" is mappable
ACTIVATION = "gelu"  # FeedForward's F.gelu (exact, erf)


def check_mappable(model: TransformerLM) -> None:
    """Refuse a model whose config has fields this mapping does not know, an adaptive head or an untied one."""
    check_known(model, TransformerConfig, KNOWN_FIELDS, "GPT-2", "gpt2.py")
    if model.tied_aliases().get("head.weight") != "tok_emb.weight":
        raise TinyLMError("the model's head is not tied to its token embedding, which the GPT-2 export needs")


def gpt2_config(model: TransformerLM, bos_id: int | None) -> dict[str, Any]:
    """GPT2Config keyword arguments for `model` (no eos: like `tinylm generate`, generation runs to its length)."""
    c = model.config
    return {
        "vocab_size": c.vocab_size, "n_positions": c.context_length, "n_embd": c.embed_dim, "n_layer": c.n_layers,
        "n_head": c.n_heads, "n_inner": c.ffn_ratio * c.embed_dim, "activation_function": ACTIVATION,
        "resid_pdrop": c.dropout, "embd_pdrop": c.dropout, "attn_pdrop": c.attn_dropout,
        "layer_norm_epsilon": model.ln_f.eps, "initializer_range": 0.02, "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False, "tie_word_embeddings": True,
        "bos_token_id": bos_id, "eos_token_id": None, "pad_token_id": None,
    }


def gpt2_state_dict(model: TransformerLM) -> dict[str, torch.Tensor]:
    """GPT2LMHeadModel's tensors (lm_head.weight left out: it is tied to transformer.wte.weight)."""
    check_mappable(model)
    ours = {k: v.detach() for k, v in model.state_dict().items()}
    used = {"head.weight"}  # the tied alias of tok_emb.weight
    out: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor:
        used.add(name)
        return ours[name]

    def bias(name: str, n: int) -> torch.Tensor:
        return take(name) if name in ours else torch.zeros(n, dtype=ours["tok_emb.weight"].dtype)

    def norm(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}.weight")
        out[f"{dst}.bias"] = bias(f"{src}.bias", out[f"{dst}.weight"].shape[0])

    def linear(src: str, dst: str) -> None:  # nn.Linear (out, in) -> Conv1D (in, out)
        w = take(f"{src}.weight")
        out[f"{dst}.weight"] = w.t().contiguous()
        out[f"{dst}.bias"] = bias(f"{src}.bias", w.shape[0])

    out["transformer.wte.weight"] = take("tok_emb.weight")
    out["transformer.wpe.weight"] = take("pos_emb.weight")
    for i in range(model.config.n_layers):
        src, dst = f"blocks.{i}", f"transformer.h.{i}"
        norm(f"{src}.ln1", f"{dst}.ln_1")
        linear(f"{src}.attn.qkv", f"{dst}.attn.c_attn")
        linear(f"{src}.attn.proj", f"{dst}.attn.c_proj")
        norm(f"{src}.ln2", f"{dst}.ln_2")
        linear(f"{src}.ffn.fc", f"{dst}.mlp.c_fc")
        linear(f"{src}.ffn.proj", f"{dst}.mlp.c_proj")
    norm("ln_f", "transformer.ln_f")
    left = sorted(set(ours) - used)
    if left:
        raise TinyLMError(f"the GPT-2 export has no place for the model's tensor '{left[0]}'; extend "
                          "tinylm/export/gpt2.py")
    return out
