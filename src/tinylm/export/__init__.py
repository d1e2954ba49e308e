"""Export a trained run to other libraries' formats: `tinylm export RUN --format hf OUT_DIR`.

The hf format is a `transformers` GPT-2 checkpoint (config.json, model.safetensors, generation_config.json) and a
`tokenizers` tokenizer (tokenizer.json, tokenizer_config.json). Only transformer runs are GPT-2s (gpt2.py says why);
the folder is written beside OUT_DIR under a temporary name and renamed into place, after checking that the
exported model's logits and tokenizer's ids are the run's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from tinylm.errors import TinyLMError, UsageError
from tinylm.export.gpt2 import gpt2_config, gpt2_state_dict
from tinylm.export.hf_tokenizer import build_hf_tokenizer
from tinylm.files import atomic_write_json, read_json
from tinylm.run_folders import LoadedRun, load_run, read_config

FORMATS = ("hf",)
HF_EXTRA = 'the hf export needs the optional extra: pip install -e ".[hf]" (transformers and tokenizers)'
WHY_NOT = {
    "attention": "an attention-only model (no feed-forward layers) is not a GPT-2",
    "linear": "a linear model reads a fixed window of tokens; it is not a GPT-2",
    "mlp": "an MLP reads a fixed window of tokens; it is not a GPT-2",
}
#: Most |logit| difference allowed by the export's own check, relative to 1 + the largest |logit|.
LOGIT_TOLERANCE = 1e-4


def check_exportable(run_dir: Path) -> None:
    """Only transformer runs export to GPT-2: anything else is refused in one line that says why."""
    name = read_config(run_dir).model_name
    if name != "transformer":
        why = WHY_NOT.get(name, f"a {name} model is not a GPT-2")
        raise UsageError(f"{run_dir} is a {name} run: {why}; only transformer runs can be exported (--format hf)")


def check_out_dir(out_dir: Path, run_dir: Path, force: bool) -> None:
    """OUT_DIR must be a new or empty folder, or --force (never the run itself or a folder holding it)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} is a file; pass a folder to export into")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not force:
            raise UsageError(f"{out_dir} is not empty; choose another folder, or pass --force to replace it")
        if run_dir.resolve() == out_dir.resolve() or out_dir.resolve() in run_dir.resolve().parents:
            raise UsageError(f"{out_dir} holds the run {run_dir}; --force would delete it: export elsewhere")


def _import_hf() -> tuple[Any, Any]:
    try:
        import tokenizers  # noqa: F401
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        raise TinyLMError(HF_EXTRA) from None
    return GPT2Config, GPT2LMHeadModel


def to_gpt2(run: LoadedRun) -> Any:
    """The run's transformer as a `transformers.GPT2LMHeadModel` (eval mode), checked on one window of logits."""
    GPT2Config, GPT2LMHeadModel = _import_hf()
    model = run.model
    hf = GPT2LMHeadModel(GPT2Config(**gpt2_config(model, run.tokenizer.start_ids()[0])))
    missing, unexpected = hf.load_state_dict(gpt2_state_dict(model), strict=False)
    if unexpected or set(missing) - {"lm_head.weight"} or hf.lm_head.weight is not hf.transformer.wte.weight:
        raise TinyLMError(f"this transformers version lays GPT-2 out differently (missing {missing}, unexpected "
                          f"{unexpected}); the export supports transformers>=4.40")
    hf.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(model.config.vocab_size, (2, model.config.context_length), generator=g)
    with torch.no_grad():
        ours, theirs = model(x), hf(x).logits
    diff = float((ours - theirs).abs().max())
    if not diff <= LOGIT_TOLERANCE * (1 + float(ours.abs().max())):
        raise TinyLMError(f"the GPT-2 built from {run.run_dir} gives other logits (max difference {diff:.2e}); "
                          "this transformers version computes GPT-2 differently, so nothing was written")
    return hf


def check_hf_tokenizer(run: LoadedRun, hf_tokenizer: Any) -> None:
    """The HF tokenizer must give tinylm's ids, and tinylm's text back, on every token of the vocabulary."""
    tok = run.tokenizer
    text = tok.decode(range(tok.vocab_size)) + "\n" + tok.decode(tok.start_ids() * 2)
    ids = tok.encode(text).tolist()
    if hf_tokenizer(text, verbose=False)["input_ids"] != ids or hf_tokenizer.decode(ids) != tok.decode(ids):
        raise TinyLMError("the exported tokenizer does not reproduce the run's ids; nothing was written")


def export_hf(run_dir: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Write the transformer of `run_dir` as a GPT-2 checkpoint with its tokenizer into `out_dir`; returns it."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    check_exportable(run_dir)
    check_out_dir(out_dir, run_dir, force)
    _import_hf()
    run = load_run(run_dir)
    hf = to_gpt2(run)
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
