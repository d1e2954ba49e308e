"""Export a trained run to other libraries' formats: `tinylm export RUN --format hf OUT_DIR`.

The hf format is a `transformers` checkpoint (config.json, model.safetensors, generation_config.json) and a
`tokenizers` tokenizer (tokenizer.json, tokenizer_config.json): a transformer run becomes a GPT-2 (gpt2.py), a llama
run a Llama (llama.py); other architectures have no `transformers` class that computes them. The folder is written
beside OUT_DIR under a temporary name and renamed into place, after checking that the exported model's logits and
tokenizer's ids are the run's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tinylm.errors import TinyLMError, UsageError
from tinylm.export.gpt2 import gpt2_config, gpt2_state_dict
from tinylm.export.hf_tokenizer import build_hf_tokenizer
from tinylm.export.llama import llama_config, llama_state_dict
from tinylm.files import atomic_write_json, read_json
from tinylm.run_folders import LoadedRun, load_run, read_config


@dataclass(frozen=True)
class HFTarget:
    """The `transformers` class a model exports to, and the mapping of its config and tensors."""

    label: str
    """How users know it, e.g. GPT-2."""
    config_class: str
    model_class: str
    config: Callable[[Any, int | None], dict[str, Any]]
    state_dict: Callable[[Any], dict[str, torch.Tensor]]


FORMATS = ("hf",)
TARGETS = {
    "transformer": HFTarget("GPT-2", "GPT2Config", "GPT2LMHeadModel", gpt2_config, gpt2_state_dict),
    "llama": HFTarget("Llama", "LlamaConfig", "LlamaForCausalLM", llama_config, llama_state_dict),
}
HF_EXTRA = 'the hf export needs the optional extra: pip install -e ".[hf]" (transformers and tokenizers)'
WHY_NOT = {
    "attention": "an attention-only model (no feed-forward layers) is neither a GPT-2 nor a Llama",
    "linear": "a linear model reads a fixed window of tokens; it is not a transformers model",
    "mlp": "an MLP reads a fixed window of tokens; it is not a transformers model",
    "lstm": "transformers has no LSTM language model",
    "mamba": "its layout is not transformers' Mamba2 (one group, its own gated norm and convolution)",
}
#: Most |logit| difference allowed by the export's own check, relative to 1 + the largest |logit|.
LOGIT_TOLERANCE = 1e-4


def check_exportable(run_dir: Path) -> HFTarget:
    """The target of a transformer or llama run; anything else is refused in one line that says why."""
    name = read_config(run_dir).model_name
    if name not in TARGETS:
        why = WHY_NOT.get(name, f"a {name} model is neither a GPT-2 nor a Llama")
        raise UsageError(f"{run_dir} is a {name} run: {why}; only transformer and llama runs can be exported "
                         "(--format hf)")
    return TARGETS[name]


def check_out_dir(out_dir: Path, run_dir: Path, force: bool) -> None:
    """OUT_DIR must be a new or empty folder, or --force (never the run itself or a folder holding it)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} is a file; pass a folder to export into")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not force:
            raise UsageError(f"{out_dir} is not empty; choose another folder, or pass --force to replace it")
        if run_dir.resolve() == out_dir.resolve() or out_dir.resolve() in run_dir.resolve().parents:
            raise UsageError(f"{out_dir} holds the run {run_dir}; --force would delete it: export elsewhere")


def _import_hf(target: HFTarget) -> tuple[Any, Any]:
    try:
        import tokenizers  # noqa: F401
        import transformers
    except ImportError:
        raise TinyLMError(HF_EXTRA) from None
    return getattr(transformers, target.config_class), getattr(transformers, target.model_class)


def to_hf(run: LoadedRun, target: HFTarget) -> Any:
    """The run's model as its `transformers` class (eval mode), checked on one window of logits."""
    config_class, model_class = _import_hf(target)
    model = run.model
    hf = model_class(config_class(**target.config(model, run.tokenizer.start_ids()[0])))
    tied = "head.weight" in model.tied_aliases()
    missing, unexpected = hf.load_state_dict(target.state_dict(model), strict=False)
    head_tied = hf.get_output_embeddings().weight is hf.get_input_embeddings().weight
    if unexpected or set(missing) - ({"lm_head.weight"} if tied else set()) or head_tied != tied:
        raise TinyLMError(f"this transformers version lays {target.label} out differently (missing {missing}, "
                          f"unexpected {unexpected}); the export supports transformers>=4.40")
    hf.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(model.config.vocab_size, (2, model.config.context_length), generator=g)
    with torch.no_grad():
        ours, theirs = model(x), hf(x).logits
    diff = float((ours - theirs).abs().max())
    if not diff <= LOGIT_TOLERANCE * (1 + float(ours.abs().max())):
        raise TinyLMError(f"the {target.label} built from {run.run_dir} gives other logits (max difference "
                          f"{diff:.2e}); this transformers version computes {target.label} differently, so nothing "
                          "was written")
    return hf


def check_hf_tokenizer(run: LoadedRun, hf_tokenizer: Any) -> None:
    """The HF tokenizer must give tinylm's ids, and tinylm's text back, on every token of the vocabulary."""
    tok = run.tokenizer
    text = tok.decode(range(tok.vocab_size)) + "\n" + tok.decode(tok.start_ids() * 2)
    ids = tok.encode(text).tolist()
    if hf_tokenizer(text, verbose=False)["input_ids"] != ids or hf_tokenizer.decode(ids) != tok.decode(ids):
        raise TinyLMError("the exported tokenizer does not reproduce the run's ids; nothing was written")


def export_hf(run_dir: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Write the model of `run_dir` as a `transformers` checkpoint (GPT-2 or Llama) with its tokenizer into
    `out_dir`; returns it."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    target = check_exportable(run_dir)
    check_out_dir(out_dir, run_dir, force)
    _import_hf(target)
    run = load_run(run_dir)
    hf = to_hf(run, target)
    hf_tokenizer = build_hf_tokenizer(run.tokenizer, run.model.config.context_length)
    check_hf_tokenizer(run, hf_tokenizer)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        with _no_progress_bars():
            hf.save_pretrained(tmp)
            hf_tokenizer.save_pretrained(tmp)
        _portable_tokenizer_class(tmp / "tokenizer_config.json")
        _usual_permissions(tmp)
        _move_into_place(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename `tmp` to `out_dir`; a non-empty `out_dir` is moved aside first and deleted only once `tmp` is in."""
    if not (out_dir.is_dir() and any(out_dir.iterdir())):
        os.replace(tmp, out_dir)  # a missing or empty folder is replaced by the rename itself
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
    os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        os.replace(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers draws a bar for writing one file; the command prints its own line."""
    from transformers.utils import logging

    was = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            logging.enable_progress_bar()


def _portable_tokenizer_class(path: Path) -> None:
    """transformers 5 names the class TokenizersBackend, which 4.x lacks; both load PreTrainedTokenizerFast."""
    config = read_json(path)
    if config.get("tokenizer_class") == "TokenizersBackend":
        atomic_write_json(path, {**config, "tokenizer_class": "PreTrainedTokenizerFast"})


def _usual_permissions(folder: Path) -> None:
    """mkdtemp makes 0700 folders (and transformers may write 0600 files): give the umask's permissions."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(folder, 0o777 & ~mask)
    for path in folder.iterdir():
        os.chmod(path, 0o666 & ~mask)
