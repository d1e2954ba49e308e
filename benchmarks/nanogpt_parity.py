"""tinylm against nanoGPT on Tiny Shakespeare, token for token: the same model, split, hyperparameters and steps.

Both train on the first 90 % of the text and select on the last 10 % (nanoGPT's split), where both are scored by
tinylm's protocol (every character once, with up to 128 characters of context). The recipe is nanoGPT's
config/train_shakespeare_char.py with a smaller model (RECIPE, written here as numbers): 4 layers, 4 heads, d=128,
context 128, no dropout, no biases, AdamW lr 1e-3 cosine to 1e-4 after 100 warm-up steps, beta2 0.99, weight decay
0.1, clip 1.0, batch 32, 1,000 steps. tinylm trains through its CLI on a data folder; with `--nanogpt PATH` (your
nanoGPT checkout) nanoGPT's own train.py trains on a copy of the same text (seed 1337 + the seed index), and its
best checkpoint is scored by tinylm's protocol. Nothing is downloaded: the text comes from tinylm's data folder or
mirror. Every run is pinned to a core of its own (`--jobs` at a time); a run takes about 6 minutes on a CPU core.

    python benchmarks/nanogpt_parity.py --seeds 3 --jobs 2 --out parity.json
    python benchmarks/nanogpt_parity.py --seeds 3 --jobs 2 --nanogpt ~/nanoGPT --out parity.json
    python benchmarks/nanogpt_parity.py --seeds 3 --set train.seed=7    # tinylm rows with another setting
"""

from __future__ import annotations

import argparse
import json
import os
import pickle  # nanoGPT reads its vocabulary from a pickle (meta.pkl); this only writes one
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from tinylm.config import DataConfig
from tinylm.data import sources
from tinylm.data.corpus import load_corpus
from tinylm.models.registry import build_model
from tinylm.training.evaluate import evaluate

RECIPE = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128, "dropout": 0.0, "bias": False,
          "learning_rate": 1e-3, "min_lr": 1e-4, "warmup_iters": 100, "max_iters": 1000, "lr_decay_iters": 1000,
          "beta2": 0.99, "weight_decay": 0.1, "grad_clip": 1.0, "batch_size": 32}
"""nanoGPT's side-by-side recipe, in nanoGPT's names."""
NANOGPT_FIXED = {"dataset": "shakespeare_char", "device": "cpu", "compile": False, "dtype": "float32",
                 "eval_interval": 250, "eval_iters": 200, "log_interval": 100, "always_save_checkpoint": False,
                 "gradient_accumulation_steps": 1, "wandb_log": False}
"""The rest of nanoGPT's config/train_shakespeare_char.py, for a CPU: evaluate every 250 steps, keep the best."""


def tinylm_sets() -> list[str]:
    """RECIPE in tinylm's config keys (`--set train.decay_from_warmup=false` gives tinylm's default schedule)."""
    r = RECIPE
    return [f"model.n_layers={r['n_layer']}", f"model.n_heads={r['n_head']}", f"model.embed_dim={r['n_embd']}",
            f"model.context_length={r['block_size']}", f"model.dropout={r['dropout']}", "model.bias=false",
            f"train.min_lr_ratio={r['min_lr'] / r['learning_rate']}", f"train.warmup_steps={r['warmup_iters']}",
            "train.decay_from_warmup=true",  # nanoGPT's cosine runs from the peak after warm-up
            f"train.beta2={r['beta2']}", f"train.weight_decay={r['weight_decay']}",
            f"train.gradient_clip={r['grad_clip']}", f"train.eval_interval={NANOGPT_FIXED['eval_interval']}",
            "train.eval_tokens=200000"]


def write_folder(text: str, folder: Path) -> None:
    """train.txt: the first 90 % of the text; valid.txt and test.txt: the last 10 % (nanoGPT's val.bin)."""
    cut = int(0.9 * len(text))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text(text[:cut], encoding="utf-8")
    for name in ("valid.txt", "test.txt"):
        (folder / name).write_text(text[cut:], encoding="utf-8")


def _pinned(cores: queue.Queue, command: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    core = cores.get()
    try:
        done = subprocess.run(command, env={**env, "OMP_NUM_THREADS": "1"}, cwd=cwd, capture_output=True, text=True,
                              preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    finally:
        cores.put(core)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])}... failed: {done.stderr.strip()[-400:]}")
    return done.stdout


def tinylm_run(folder: Path, results: Path, seed: int, sets: list[str], cores: queue.Queue) -> dict:
    """One tinylm run of RECIPE on `folder`; its metrics."""
    name = f"tinylm-{seed}"
    command = [sys.executable, "-m", "tinylm.cli", "train", "--model", "transformer", "--data", str(folder),
               "--level", "char", "--max-steps", str(RECIPE["max_iters"]), "--batch-size", str(RECIPE["batch_size"]),
               "--lr", str(RECIPE["learning_rate"]), "--seed", str(seed), "--device", "cpu", "--precision", "fp32",
               "--run-name", name, "--results-dir", str(results), "--quiet", "--force"]
    for s in [*tinylm_sets(), *sets]:
        command += ["--set", s]
    _pinned(cores, command, {**os.environ, "TINYLM_DATA_DIR": str(results.parent / "data")})
    m = json.loads((results / "runs" / name / "metrics.json").read_text())
    return {"seed": seed, "test_loglik": m["test_loglik"], "params": m["params"], "best_step": m["best_step"],
            "train_seconds": m["train_seconds"]}


def _nanogpt_copy(checkout: Path, text: str, where: Path, seed: int) -> None:
    """nanoGPT's train.py, model.py and configurator.py with the seed offset by `seed`, and its data files."""
    where.mkdir(parents=True)
    for name in ("model.py", "configurator.py"):
        shutil.copy(checkout / name, where / name)
    train = (checkout / "train.py").read_text()
    if "torch.manual_seed(1337 + seed_offset)" not in train:
        raise SystemExit(f"{checkout}/train.py does not seed with torch.manual_seed(1337 + seed_offset)")
    (where / "train.py").write_text(train.replace("1337 + seed_offset", f"1337 + seed_offset + {seed}"))
    data = where / "data" / "shakespeare_char"
    data.mkdir(parents=True)
    chars = sorted(set(text))  # as nanoGPT's prepare.py
    stoi = {c: i for i, c in enumerate(chars)}
    cut = int(0.9 * len(text))
    for split, part in (("train", text[:cut]), ("val", text[cut:])):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(data / f"{split}.bin")
    with open(data / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, f)
    lines = [f"{k} = {v!r}" for k, v in {**NANOGPT_FIXED, **RECIPE, "out_dir": "out"}.items()]
    (where / "parity_config.py").write_text("\n".join(lines) + "\n")


def score_nanogpt(ckpt: dict, text: str, folder: Path) -> float:
    """The test log-likelihood, by tinylm's protocol, of a nanoGPT checkpoint (loaded) of RECIPE's model."""
    theirs = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    corpus = load_corpus(DataConfig(name="parity", level="char", path=str(folder)), folder.parent / "data", quiet=True)
    tok = corpus.tokenizer
    model = build_model("transformer", {"vocab_size": tok.vocab_size, "context_length": RECIPE["block_size"],
                                        "embed_dim": RECIPE["n_embd"], "n_heads": RECIPE["n_head"],
                                        "n_layers": RECIPE["n_layer"], "dropout": 0.0, "bias": False})
    order = [sorted(set(text)).index(t) for t in tok.tokens]  # our id -> nanoGPT's id
    names = {"tok_emb.weight": "transformer.wte.weight", "pos_emb.weight": "transformer.wpe.weight",
             "ln_f.weight": "transformer.ln_f.weight"}
    for i in range(RECIPE["n_layer"]):
        ours, h = f"blocks.{i}.", f"transformer.h.{i}."
        names |= {ours + "ln1.weight": h + "ln_1.weight", ours + "attn.qkv.weight": h + "attn.c_attn.weight",
                  ours + "attn.proj.weight": h + "attn.c_proj.weight", ours + "ln2.weight": h + "ln_2.weight",
                  ours + "ffn.fc.weight": h + "mlp.c_fc.weight", ours + "ffn.proj.weight": h + "mlp.c_proj.weight"}
    state = {ours: theirs[name][order] if ours == "tok_emb.weight" else theirs[name] for ours, name in names.items()}
    missing, _ = model.load_state_dict(state, strict=False)
    if any(not k.startswith("head.") for k in missing):
        raise SystemExit(f"nanoGPT's checkpoint lacks {missing}")
    model.head.tie(model.tok_emb.weight)
    return evaluate(model.eval(), corpus.splits["test"], batch_size=64).loglik


def nanogpt_run(checkout: Path, text: str, folder: Path, work: Path, seed: int, cores: queue.Queue) -> dict:
    """One nanoGPT run of RECIPE (seed 1337 + seed), its best checkpoint scored by tinylm's protocol."""
    where = work / f"nanogpt-{seed}"
    _nanogpt_copy(checkout, text, where, seed)
    _pinned(cores, [sys.executable, "train.py", "parity_config.py"], dict(os.environ), cwd=where)
    ckpt = torch.load(where / "out" / "ckpt.pt", map_location="cpu", weights_only=True)
    return {"seed": 1337 + seed, "test_loglik": score_nanogpt(ckpt, text, folder),
            "best_step": ckpt["iter_num"], "nanogpt_val_loss": float(ckpt["best_val_loss"])}


def _summary(rows: list[dict]) -> dict:
    values = [r["test_loglik"] for r in rows]
    return {"runs": rows, "mean_test_loglik": statistics.mean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2, help="runs at a time, one core each")
    p.add_argument("--nanogpt", type=Path, help="a nanoGPT checkout: also train nanoGPT, same seeds")
    p.add_argument("--set", action="append", default=[], help="a tinylm override for its rows (repeatable)")
    p.add_argument("--steps", type=int, help=f"train this many steps instead of {RECIPE['max_iters']} (a smoke test)")
    p.add_argument("--out", type=Path, help="write the record here (JSON)")
    args = p.parse_args()
    if args.steps:
        RECIPE.update(max_iters=args.steps, lr_decay_iters=args.steps, warmup_iters=min(100, args.steps // 10))
        NANOGPT_FIXED.update(eval_interval=max(1, args.steps // 2), eval_iters=20)
    text = sources.fetch_dataset("tinyshakespeare", quiet=True)["all"][0].read_text(encoding="utf-8")
    cores: queue.Queue = queue.Queue()
    for core in sorted(os.sched_getaffinity(0))[: args.jobs]:
        cores.put(core)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = work / "ts-nanogpt-split"
        write_folder(text, folder)
        load_corpus(DataConfig(name="parity", level="char", path=str(folder)), work / "data", quiet=True)  # cached once
        with ThreadPoolExecutor(args.jobs) as pool:
            ours = [pool.submit(tinylm_run, folder, work / "results", s, args.set, cores) for s in range(args.seeds)]
            theirs = [pool.submit(nanogpt_run, args.nanogpt, text, folder, work, s, cores)
                      for s in range(args.seeds)] if args.nanogpt else []
            record = {"recipe": RECIPE, "tinylm_sets": [*tinylm_sets(), *args.set], "split": "first 90% / last 10%",
                      "tinylm": _summary([f.result() for f in ours])}
            if theirs:
                record["nanogpt"] = _summary([f.result() for f in theirs])
                record["tinylm_minus_nanogpt"] = (record["tinylm"]["mean_test_loglik"]
                                                  - record["nanogpt"]["mean_test_loglik"])
    text_out = json.dumps(record, indent=1)
    if args.out:
        args.out.write_text(text_out + "\n")
    print(text_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
