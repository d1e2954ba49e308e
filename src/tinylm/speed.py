"""`tinylm bench`: speed of this machine for every reference model, measured in one run, as JSON.

Throughput is reported against the fp32 matmul peak that the same run measures, so numbers from different
machines compare as ratios. Training throughput uses the trainer's own step on random tokens (speed does not
depend on the text, only on how often an adaptive head's tails are used: words are Zipf-distributed); warm-up steps
are excluded and each figure is the median of several repeats.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import resource
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinylm.config import RunConfig
from tinylm.data.config import DataConfig
from tinylm.data.corpus import Corpus, load_corpus
from tinylm.data.sources import DATASETS
from tinylm.data.tokenizers import CharTokenizer, WordTokenizer
from tinylm.device import (
    bf16_native,
    cpu_count,
    cpu_name,
    device_name,
    pick_device,
    pick_dtype,
    synchronize,
    use_all_cores,
)
from tinylm.errors import TinyLMError
from tinylm.files import atomic_write_json, load_tensors
from tinylm.generate.sampling import generate_ids, sample
from tinylm.models.registry import build_model, builtin_names
from tinylm.paths import Paths
from tinylm.recorder import train_run
from tinylm.run_folders import load_run, load_run_corpus, reference_dir, run_id
from tinylm.start_time import start_time
from tinylm.suite_file import load_suite_file, profile_datasets, resolve_run
from tinylm.training.evaluate import evaluate
from tinylm.training.trainer import Plan, Trainer


def _median_spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


#: Dense bf16 tensor-core peaks from the datasheets, TFLOP/s (without sparsity), by a part of the device name.
DATASHEET_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1}


def datasheet_bf16_tflops(name: str) -> float | None:
    """The datasheet's dense bf16 peak of a GPU, if listed."""
    return next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in name), None)


def matmul_peak(device: torch.device, repeats: int, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """GFLOP/s of square matmuls (1024 and 2048 on a CPU, 4096 and 8192 on a GPU); the peak is the best repeat (the
    machine's speed when no neighbour slows it; a median would let a noisy moment make the utilisation of a model
    look over 100 %). On CUDA, fp32 matmuls run as TF32 (as in training)."""
    out = {}
    for n in (4096, 8192) if device.type == "cuda" else (1024, 2048):
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(2):
            a @ b
        rates = []
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            for _ in range(3):
                a @ b
            synchronize(device)
            rates.append(3 * 2 * n**3 / (time.perf_counter() - start) / 1e9)
        out[str(n)] = _median_spread(rates)
    out["peak_gflops"] = max(v["max"] for v in out.values())
    return out


def random_corpus(dataset: str, n_train: int = 400_000, zipf: bool = False) -> Corpus:
    """A corpus of random tokens with the vocabulary size of `dataset`: uniform, or with `zipf` frequencies that
    follow Zipf's law (p ∝ 1/rank, the stand-in for a word-level split where an adaptive head's speed depends on how
    often its tail clusters are used, which uniform tokens would overstate)."""
    V = DATASETS[dataset].vocab_size
    tok = CharTokenizer([chr(32 + i) for i in range(V)]) if V < 200 else WordTokenizer([f"w{i}" for i in range(V)])
    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, V + 1) if zipf else np.ones(V)
    splits = {s: rng.choice(V, n, p=p / p.sum()).astype(np.int32) for s, n in
              (("train", n_train), ("valid", 20_000), ("test", DATASETS[dataset].split_tokens[2]))}
    return Corpus(dataset, tok, splits)


def speed_corpus(dataset: str) -> Corpus:
    """The random tokens `train_speed` trains on: Zipf-distributed at word level, since uniform ones would send most
    tokens to an adaptive head's tail clusters (the full profile's PTB transformer: 42% of a step in the head's
    log-softmax backward, against 7% on the real split); uniform characters."""
    return random_corpus(dataset, zipf=DATASETS[dataset].level == "word")


def _step_rate(trainer: Trainer, steps: int) -> float:
    """Training tokens/s of `steps` of the trainer's own step."""
    synchronize(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(1e-4)
    synchronize(trainer.device)
    return steps * trainer.plan.tokens_per_step / (time.perf_counter() - start)


def _alternated_rates(trainers: dict[str, Trainer], steps: int, repeats: int) -> dict[str, list[float]]:
    """Tokens/s of each trainer's step after 2 warm-up steps, measured `repeats` times in turn (so a machine that
    slows down or speeds up meanwhile affects them alike)."""
    for trainer in trainers.values():
        for _ in range(2):
            trainer.train_step(1e-4)
    rates: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(repeats):
        for name, trainer in trainers.items():
            rates[name].append(_step_rate(trainer, steps))
    return rates


def train_speed(model: str, dataset: str, precision: str, steps: int, repeats: int, device: str,
                sets: list[str] | None = None, compile: bool = False, profile: str | None = None) -> dict[str, Any]:
    """Tokens/s and achieved FLOP/s of the trainer's step (the utilisation is set once the peak is known), of the
    model as `profile` trains it on `dataset` (default: the suite's defaults); the warm-up's seconds (with
    `compile`, mostly compiling) beside them."""
    cfg = resolve_run(model, dataset, suite=load_suite_file(), sets=sets, profile=profile,
                      train_values={"max_steps": 10**9, "precision": precision, "device": device, "compile": compile})
    trainer = Trainer(cfg, speed_corpus(dataset))
    start = time.perf_counter()
    for _ in range(3):  # warm-up
        trainer.train_step(1e-4)
    synchronize(trainer.device)
    warmup = time.perf_counter() - start
    rates = [_step_rate(trainer, steps) for _ in range(repeats)]
    tps = statistics.median(rates)
    flops_per_token = trainer.plan.flops_per_step / trainer.plan.tokens_per_step
    return {
        "model": model, "dataset": dataset, "precision": precision, "overrides": sets or [], "compiled": compile,
        "params": trainer.model.num_params(),
        "batch_size": cfg.train.batch_size, "seq_len": trainer.plan.seq_len,
        "context_length": trainer.model.context_length,
        "train_flops_per_token": flops_per_token, "tokens_per_second": _median_spread(rates),
        "achieved_gflops": tps * flops_per_token / 1e9,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "warmup_seconds": warmup,
    }


def head_speed(dataset: str, steps: int, repeats: int, device: str, paths: Paths,
               progress: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Training tokens/s of the full profile's transformer on a word-level dataset with the full softmax and with
    the adaptive head (default cutoffs from the training counts), same body, same batches, alternated `repeats`
    times in this process; on the real training split where it is available, else on Zipf-distributed tokens."""
    progress(f"adaptive against full softmax head: transformer on {dataset}")
    try:
        corpus, source = load_corpus(DataConfig(name=dataset), paths.data, paths.mirror, quiet=True), "training split"
    except TinyLMError:
        corpus, source = speed_corpus(dataset), "Zipf-distributed random tokens (dataset not available)"
    suite = load_suite_file()
    trainers = {}
    for head in ("full", "adaptive"):
        cfg = resolve_run("transformer", dataset, suite=suite, profile="full", sets=[f"model.head={head}"],
                          train_values={"max_steps": 10**9, "precision": "fp32", "device": device})
        trainers[head] = Trainer(cfg, corpus)
    rates = _alternated_rates(trainers, steps, repeats)
    out: dict[str, Any] = {"dataset": dataset, "corpus": source, "vocab_size": corpus.tokenizer.vocab_size}
    for head, trainer in trainers.items():
        out[head] = {"params": trainer.model.num_params(), "tokens_per_second": _median_spread(rates[head]),
                     "train_flops_per_token": trainer.plan.flops_per_step / trainer.plan.tokens_per_step}
    adaptive = trainers["adaptive"].model.head
    out["cutoffs"], out["tail_shares"] = list(adaptive.cutoffs), list(adaptive.tail_shares)
    out["speedup"] = statistics.median(rates["adaptive"]) / statistics.median(rates["full"])
    return out


def profile_precision(profile: str, steps: int, repeats: int, device: str, paths: Paths,
                      progress: Callable[[str], None] = lambda message: None) -> list[dict[str, Any]]:
    """Training tokens/s of every run of a suite profile in fp32 and in bf16 autocast: the run's own config and
    corpus, both precisions built in this process and alternated `repeats` times on the same batches, beside the
    precision the profile trains it in. A dataset that is not available here is skipped with a note."""
    suite = load_suite_file()
    rows: list[dict[str, Any]] = []
    for dataset, models in profile_datasets(suite, profile).items():
        corpus = None
        for model in models:
            cfgs = {prec: resolve_run(model, dataset, suite=suite, profile=profile,
                                      train_values={"max_steps": 10**9, "precision": prec, "device": device})
                    for prec in ("fp32", "bf16")}
            if corpus is None:
                try:
                    corpus = load_corpus(cfgs["fp32"].data, paths.data, paths.mirror, quiet=True)
                except TinyLMError as e:
                    rows.append({"dataset": dataset, "note": f"skipped: {e}"})
                    break
            progress(f"fp32 against bf16: {model} on {dataset} ({profile} profile)")
            trainers = {prec: Trainer(cfg, corpus) for prec, cfg in cfgs.items()}
            rates = _alternated_rates(trainers, steps, repeats)
            planned = resolve_run(model, dataset, suite=suite, profile=profile)
            trains_in = planned.train.precision
            in_use = "bf16" if pick_dtype(trains_in, pick_device(device)) == torch.bfloat16 else "fp32"
            rate = statistics.median(rates[in_use])
            rows.append({"model": model, "dataset": dataset, "trains_in": trains_in,
                         "tokens_per_step": trainers["fp32"].plan.tokens_per_step,
                         **{prec: {"tokens_per_second": _median_spread(r)} for prec, r in rates.items()},
                         "speedup": statistics.median(rates["bf16"]) / statistics.median(rates["fp32"]),
                         **projected_time(planned, trainers["fp32"], rate)})
            del trainers
    return rows


def projected_time(cfg: RunConfig, trainer: Trainer, rate: float) -> dict[str, Any]:
    """How long a profile's run trains here at `rate` tokens/s (evaluation excluded): its tokens, from the shipped
    reference run of the same identity where there is one (a run stopped by its validation curve ends before its
    budget), else from its budget; a time budget caps it."""
    tokens, source = None, "time budget"
    reference = reference_dir()
    metrics = reference / "runs" / run_id(cfg) / "metrics.json" if reference else None
    done = json.loads(metrics.read_text()) if metrics is not None and metrics.is_file() else {}
    if done.get("status") in ("complete", "stopped_early") and done.get("tokens_trained"):
        tokens, source = int(done["tokens_trained"]), "reference run"
    elif steps := Plan.make(cfg, trainer.model, len(trainer.train_tokens)).total_steps:
        tokens, source = steps * trainer.plan.tokens_per_step, "budget"
    seconds = [t for t in (tokens / rate if tokens else None, cfg.train.max_time) if t is not None]
    return {"tokens": tokens, "tokens_from": source, "projected_seconds": min(seconds) if seconds else None}


def precision_quality(steps: int, paths: Paths, device: str) -> dict[str, Any]:
    """The reference transformer trained for the same steps (same seed, same batches) in fp32 and in bf16 on Tiny
    Shakespeare: tokens/s and the loss on the first 32k validation characters, scored in fp32."""
    try:
        corpus = load_corpus(DataConfig(name="tinyshakespeare"), paths.data, paths.mirror, quiet=True)
    except TinyLMError as e:
        return {"note": f"skipped: {e}"}
    out: dict[str, Any] = {"dataset": "tinyshakespeare", "steps": steps}
    for prec in ("fp32", "bf16"):
        cfg = resolve_run("transformer", "tinyshakespeare", suite=load_suite_file(),
                          train_values={"max_steps": steps, "precision": prec, "device": device})
        trainer = Trainer(cfg, corpus)
        start = time.perf_counter()
        for _ in range(steps):  # the engine's own step and schedule (warm-up, then cosine over these steps)
            trainer.account(trainer.train_step(trainer.learning_rate()), 0.0)
        synchronize(trainer.device)
        seconds = time.perf_counter() - start
        trainer.model.eval()
        valid = evaluate(trainer.model, trainer.valid_tokens[:32_769], batch_size=64, device=trainer.device)
        out[prec] = {"valid_loss": -valid.loglik, "tokens_per_second": steps * trainer.plan.tokens_per_step / seconds,
                     "tokens": steps * trainer.plan.tokens_per_step}
    out["valid_loss_difference"] = out["bf16"]["valid_loss"] - out["fp32"]["valid_loss"]
    out["speedup"] = out["bf16"]["tokens_per_second"] / out["fp32"]["tokens_per_second"]
    return out


def time_to_target(target: float, paths: Paths, device: str, snapshot_every: float = 20.0,
                   sets: list[str] | None = None) -> dict[str, Any]:
    """Train the shipped `sprint` profile (the transformer on Tiny Shakespeare, 5 minutes) with weight snapshots, then
    score every snapshot on the test split: the training seconds at which test log-likelihood first reaches
    `target`. A benchmark only: the run's own model selection uses the validation split."""
    cfg = resolve_run("transformer", "tinyshakespeare", suite=load_suite_file(), profile="sprint",
                      train_values={"device": device}, sets=sets)
    try:
        metrics, run_dir, _ = train_run(cfg, paths, run_name="sprint", quiet=True, force=True, profile="sprint",
                                        snapshot_every=snapshot_every)
    except TinyLMError as e:
        return {"target": target, "note": f"skipped: {e}"}
    rows = score_snapshots(run_dir, "test", paths, pick_device(device))
    hit = time_to(rows, target)
    return {
        "target": target, "command": "tinylm train --profile sprint --snapshot-every 20 && "
                                     "tinylm eval <run> --snapshots --target -1.77",
        "reached": hit is not None, "seconds_to_target": hit["seconds"] if hit else None,
        "best_snapshot_test_loglik": max(r["test_loglik"] for r in rows),
        "final_test_loglik": metrics.test_loglik, "train_seconds": metrics.train_seconds,
        "tokens": metrics.tokens_trained, "model": cfg.model, "snapshots": rows,
    }


def eval_speed(dataset: str, repeats: int, device: torch.device) -> dict[str, Any]:
    """Full test-split evaluation of the reference transformer (tokens/s and seconds)."""
    cfg = resolve_run("transformer", dataset, suite=load_suite_file())
    spec = DATASETS[dataset]
    model = build_model("transformer", cfg.model_config(spec.vocab_size)).to(device)
    tokens = torch.randint(0, spec.vocab_size, (spec.split_tokens[2],))
    evaluate(model, tokens[:5000], batch_size=64, device=device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        evaluate(model, tokens, batch_size=64, device=device)
        times.append(time.perf_counter() - start)
    return {"dataset": dataset, "tokens": len(tokens) - 1, "seconds": _median_spread(times),
            "tokens_per_second": (len(tokens) - 1) / statistics.median(times)}


@torch.inference_mode()
def _full_window_rate(model: torch.nn.Module, length: int, device: torch.device) -> float:
    """Tokens/s when every step recomputes the last C tokens (the usual uncached loop, e.g. nanoGPT's)."""
    C = model.context_length
    ctx = [0] * C
    generator = torch.Generator(device=device).manual_seed(0)
    start = time.perf_counter()
    for _ in range(length):
        logits = model(torch.tensor([ctx[-C:]], device=device))[0, -1]
        ctx.append(int(sample(logits, 1.0, generator=generator)))
    return length / (time.perf_counter() - start)


def generation_speed(repeats: int, device: torch.device, length: int = 384) -> dict[str, Any]:
    """Tokens/s of the reference transformer (context 128, window full from the start) with the KV cache,
    without it (same window policy), and recomputing the full window at every step."""
    cfg = resolve_run("transformer", "tinyshakespeare", suite=load_suite_file())
    vocab = DATASETS["tinyshakespeare"].vocab_size
    model = build_model("transformer", cfg.model_config(vocab)).to(device).eval()
    prompt = [0] * model.context_length
    out: dict[str, Any] = {"context_length": model.context_length, "tokens": length}
    for cached in (True, False):
        list(generate_ids(model, prompt, 20, seed=0, use_cache=cached, device=device))
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            list(generate_ids(model, prompt, length, seed=0, use_cache=cached, device=device))
            rates.append(length / (time.perf_counter() - start))
        out["cached" if cached else "uncached"] = _median_spread(rates)
    out["full_window"] = _median_spread([_full_window_rate(model, length // 2, device) for _ in range(repeats)])
    out["speedup"] = out["cached"]["median"] / out["uncached"]["median"]
    out["speedup_vs_full_window"] = out["cached"]["median"] / out["full_window"]["median"]
    return out


LONG_CONTEXTS = (1024, 4096, 16384)
"""Where generation is timed against the context: an attention step grows with it, a state-space step does not."""


def long_generation_speed(repeats: int, device: torch.device, contexts: tuple[int, ...] = LONG_CONTEXTS,
                          length: int = 128,
                          models: tuple[str, ...] = ("transformer", "llama", "mamba")) -> dict[str, Any]:
    """Tokens/s of generation near each context in `contexts`, prompt and prefill excluded: the attention models
    step with their KV caches over the last `length` positions before the context (each step attends to all the
    keys before it), the state-space model carries its state (the same cost at every position). Every model at the
    suite's Tiny Shakespeare size, its context length set to the context. `crossover`: the first context at which
    mamba generates at least as fast as the transformer (None: at none of them)."""
    suite, vocab = load_suite_file(), DATASETS["tinyshakespeare"].vocab_size
    out: dict[str, Any] = {"tokens": length, "contexts": list(contexts), "by_context": {}, "crossover": None}
    for context in contexts:
        row: dict[str, Any] = {}
        for name in models:
            cfg = resolve_run(name, "tinyshakespeare", suite=suite, sets=[f"model.context_length={context}"])
            model = build_model(name, cfg.model_config(vocab)).to(device).eval()
            rates = []
            for _ in range(repeats):
                steps = generate_ids(model, [0] * (context - length), length, seed=0, use_cache=True, device=device)
                next(steps)  # the prefill of the prompt and the first token
                start = time.perf_counter()
                n = sum(1 for _ in steps)
                rates.append(n / (time.perf_counter() - start))
            row[name] = _median_spread(rates)
        if "mamba" in row and "transformer" in row:
            row["mamba_vs_transformer"] = row["mamba"]["median"] / row["transformer"]["median"]
            if out["crossover"] is None and row["mamba_vs_transformer"] >= 1:
                out["crossover"] = context
        out["by_context"][str(context)] = row
    return out


def cache_load_speed(paths: Paths, repeats: int) -> dict[str, Any]:
    """Seconds to load tokenized WikiText-2 (else Tiny Shakespeare) from the on-disk cache."""
    for name in ("wikitext2", "tinyshakespeare"):
        try:
            load_corpus(DataConfig(name=name), paths.data, paths.mirror, quiet=True)
        except TinyLMError:
            continue
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            corpus = load_corpus(DataConfig(name=name), paths.data, paths.mirror, quiet=True)
            times.append(time.perf_counter() - start)
        return {"dataset": name, "from_cache": corpus.from_cache, "seconds": _median_spread(times)}
    return {"dataset": None, "note": "no dataset available (set TINYLM_DATA_MIRROR)"}


def _machine(dev: torch.device, threads: int, native_bf16: bool) -> dict[str, Any]:
    auto = "bf16" if pick_dtype("auto", dev) == torch.bfloat16 else "fp32"
    return {"host": socket.gethostname(), "cpu": cpu_name(), "cores": cpu_count(), "threads": threads,
            "device": device_name(dev), "torch_version": torch.__version__, "python": platform.python_version(),
            "bf16_native": native_bf16, "auto_precision": auto}


#: A GPT sized for a GPU: d=768, 12 layers, context 1024, on WikiText-2's vocabulary.
GPU_GPT = ["model.embed_dim=768", "model.n_layers=12", "model.n_heads=12", "model.context_length=1024",
           "model.dropout=0", "train.batch_size=16"]
#: nanoGPT's "baby GPT" for Tiny Shakespeare (the gpu profile's size).
BABY_GPT = ["model.embed_dim=384", "model.n_layers=6", "model.n_heads=6", "model.context_length=256",
            "model.dropout=0.2", "train.batch_size=64"]


def _training_cases(only: list[str] | None, gpu: bool) -> list[tuple[str, str, list[str] | None, bool]]:
    """The defaults of each architecture on Tiny Shakespeare, the transformer without dropout (the configuration of
    the speed target: d=128, 4 layers, 4 heads, context 128, batch 32) and the transformer on PTB; on a GPU also
    the baby GPT and the d=768 GPT, eager and compiled."""
    cases = [(m, "tinyshakespeare", None, False) for m in builtin_names()]
    cases += [("transformer", "tinyshakespeare", ["model.dropout=0"], False), ("transformer", "ptb", None, False)]
    if gpu:
        cases += [("transformer", "tinyshakespeare", BABY_GPT, c) for c in (False, True)]
        cases += [("transformer", "wikitext2", GPU_GPT, c) for c in (False, True)]
    return [c for c in cases if not only or c[0] in only]


def _training_speeds(only: list[str] | None, precisions: list[str], quick: bool, repeats: int, device: str,
                     dev: torch.device, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    training = []
    for model, dataset, sets, compiled in _training_cases(only, dev.type == "cuda"):
        for prec in precisions:
            if compiled and prec != "bf16":
                continue  # compiled only in the precision a GPU trains in
            progress(f"training speed: {model} on {dataset} ({prec}{', ' + ' '.join(sets) if sets else ''})")
            try:
                training.append(train_speed(model, dataset, prec, 3 if quick else 10, repeats, device, sets,
                                            compiled))
            except Exception as e:  # noqa: BLE001 -- torch.compile can fail on a machine (no compiler): record it
                if not compiled:
                    raise
                training.append({"model": model, "dataset": dataset, "precision": prec, "overrides": sets or [],
                                 "compiled": compiled, "error": f"{type(e).__name__}: {str(e)[:200]}"})
    return training


def run_bench(
    paths: Paths,
    quick: bool = False,
    only: list[str] | None = None,
    precision: str | None = None,
    repeats: int = 5,
    device: str = "auto",
    time_target: bool | None = None,
    profile: str | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> tuple[dict[str, Any], Path]:
    """Measure everything and write <paths.results>/bench/<host>-<date>.json; returns the report and its path.

    precision: fp32, bf16 or both (default: both where bf16 is native here, else fp32). time_target: train the
    `sprint` profile for the time to -1.77 nats/char on test (default: on unless quick; about 6 minutes). profile:
    instead of the reference models, every run of that suite profile in fp32 against bf16 (`profile_precision`).
    `progress` is told what is being measured (the CLI shows it).
    """
    if profile:
        profile_datasets(load_suite_file(), profile)  # a wrong name fails before anything is measured
    dev = pick_device(device)
    threads = use_all_cores() if dev.type == "cpu" else torch.get_num_threads()
    repeats = 2 if quick else repeats
    native_bf16 = bf16_native(dev)
    precision = precision or ("both" if native_bf16 else "fp32")
    report: dict[str, Any] = {"machine": _machine(dev, threads, native_bf16),
                              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": quick}
    progress("fp32 matmul peak")
    before = matmul_peak(dev, repeats)
    if native_bf16:
        report["matmul_bf16"] = matmul_peak(dev, repeats, torch.bfloat16)
    if profile:
        report["matmul_fp32"] = before
        report["profile_precision"] = {"profile": profile, "rows": profile_precision(
            profile, 3 if quick else 10, repeats, device, paths, progress)}
        return report, _write(paths.results, report)
    precisions = ["fp32", "bf16"] if precision == "both" else [precision]
    training = _training_speeds(only, precisions, quick, repeats, device, dev, progress)
    # The peak again after the models: the utilisation is against the best the machine showed in this run.
    after = matmul_peak(dev, repeats)
    peak = max(before["peak_gflops"], after["peak_gflops"])
    report["matmul_fp32"] = {**before, "after_models": after, "peak_gflops": peak}
    bf16_peak = report.get("matmul_bf16", {}).get("peak_gflops")
    if dev.type == "cuda":
        report["datasheet_bf16_tflops"] = datasheet_bf16_tflops(torch.cuda.get_device_name(dev))
    for r in training:
        if "achieved_gflops" in r:  # against the peak of its own precision, measured in this run
            r["mfu"] = r["achieved_gflops"] / (bf16_peak if r["precision"] == "bf16" and bf16_peak else peak)
    report["training"] = training
    if "bf16" in precisions and (not only or "transformer" in only):
        progress("bf16 against fp32: speed and quality")
        report["precision_quality"] = precision_quality(20 if quick else 150, paths, device)
    if not only or "transformer" in only:
        report["adaptive_head"] = [head_speed(name, 3 if quick else 10, repeats, device, paths, progress)
                                   for name in ("ptb", "wikitext2")]
    _beyond_training(report, quick, repeats, device, dev, paths,
                     time_target if time_target is not None else not quick, progress)
    return report, _write(paths.results, report)


def _beyond_training(report: dict[str, Any], quick: bool, repeats: int, device: str, dev: torch.device,
                     paths: Paths, time_target: bool, progress: Callable[[str], None]) -> None:
    """Evaluation, generation, cache loading, start-up and (time_target) the time to -1.77 on test, into `report`."""
    progress("evaluation, generation and cache loading")
    report["evaluation"] = eval_speed("tinyshakespeare", repeats, dev)
    report["generation"] = generation_speed(repeats, dev, 128 if quick else 384)
    report["generation_long"] = long_generation_speed(repeats, dev, contexts=(1024,) if quick else LONG_CONTEXTS,
                                                      length=32 if quick else 128)
    report["cache_load"] = cache_load_speed(paths, repeats)
    progress("start-up: tinylm train to its first step, against import torch")
    report["start_time"] = start_time(repeats, paths)
    if time_target:
        progress("time to -1.77 nats/char on test: training the sprint profile (5 minutes)")
        with tempfile.TemporaryDirectory() as tmp:
            report["time_to_target"] = time_to_target(-1.77, dataclasses.replace(paths, results=Path(tmp)), device)


def _write(results: Path, report: dict[str, Any]) -> Path:
    out = results / "bench" / f"{socket.gethostname()}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_json(out, report)
    return out


def _case_note(row: dict[str, Any]) -> str:
    names = {("model.dropout=0",): " (p=0)", tuple(GPU_GPT): " (d768)", tuple(BABY_GPT): " (baby)"}
    note = names.get(tuple(row.get("overrides") or []), "")
    return note + (" compiled" if row.get("compiled") else "")


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The bench report as the lines `tinylm bench` prints."""
    m, fp32 = report["machine"], report["matmul_fp32"]
    lines = [f"machine: {m['device']}, torch {m['torch_version']}"]
    if "matmul_bf16" in report:
        lines.append(f"bf16 matmul peak: {report['matmul_bf16']['peak_gflops']:.0f} GFLOP/s")
    if "profile_precision" in report:
        return lines + [f"fp32 matmul peak: {fp32['peak_gflops']:.0f} GFLOP/s"] + _profile_lines(
            report["profile_precision"])
    lines.append(f"fp32 matmul peak: {fp32['peak_gflops']:.0f} GFLOP/s (before the models: 1024 "
                 f"{fp32['1024']['max']:.0f}, 2048 {fp32['2048']['max']:.0f}; after: "
                 f"{fp32['after_models']['peak_gflops']:.0f})")
    if report.get("datasheet_bf16_tflops"):
        lines.append(f"datasheet dense bf16 peak: {report['datasheet_bf16_tflops']:.0f} TFLOP/s")
    lines.append(f"{'model':<22}{'dataset':<16}{'prec':<6}{'tokens/s':>11}{'GFLOP/s':>10}{'MFU':>7}{'RSS MB':>8}")
    for r in report["training"]:
        name = r["model"] + _case_note(r)
        if "error" in r:
            lines.append(f"{name:<22}{r['dataset']:<16}{r['precision']:<6} failed: {r['error']}")
            continue
        lines.append(f"{name:<22}{r['dataset']:<16}{r['precision']:<6}{r['tokens_per_second']['median']:>11,.0f}"
                     f"{r['achieved_gflops']:>10.1f}{r['mfu']:>7.1%}{r['max_rss_mb']:>8.0f}")
    q = report.get("precision_quality") or {}
    if "speedup" in q:
        lines.append(f"bf16 vs fp32, transformer, {q['steps']} steps on Tiny Shakespeare: {q['speedup']:.2f}x "
                     f"tokens/s, valid loss {q['bf16']['valid_loss']:.4f} vs {q['fp32']['valid_loss']:.4f} "
                     f"({q['valid_loss_difference']:+.4f})")
    for h in report.get("adaptive_head", []):
        fast, slow = h["adaptive"]["tokens_per_second"]["median"], h["full"]["tokens_per_second"]["median"]
        lines.append(f"adaptive head, transformer on {h['dataset']} ({h['corpus']}): {fast:,.0f} vs {slow:,.0f} "
                     f"tokens/s with the full softmax ({h['speedup']:.2f}x)")
    e, g, c = report["evaluation"], report["generation"], report["cache_load"]
    lines.append(f"evaluation (transformer, full test split): {e['seconds']['median']:.1f} s, "
                 f"{e['tokens_per_second']:,.0f} tokens/s")
    lines.append(f"generation (transformer, context 128): cached {g['cached']['median']:,.0f} tok/s, uncached "
                 f"{g['uncached']['median']:,.0f} tok/s ({g['speedup']:.1f}x), full-window recompute "
                 f"{g['full_window']['median']:,.0f} tok/s ({g['speedup_vs_full_window']:.1f}x)")
    gl = report.get("generation_long")
    for context, row in (gl or {}).get("by_context", {}).items():
        rates = ", ".join(f"{m} {row[m]['median']:,.0f}" for m in ("transformer", "llama", "mamba") if m in row)
        lines.append(f"generation at context {int(context):,} (caches and state carried): {rates} tok/s"
                     + (f" (mamba {row['mamba_vs_transformer']:.2f}x the transformer)"
                        if "mamba_vs_transformer" in row else ""))
    if gl and "mamba_vs_transformer" in next(iter(gl["by_context"].values()), {}):
        lines.append(f"mamba generates at least as fast as the transformer from context {gl['crossover']:,} on"
                     if gl["crossover"] else "mamba is slower than the transformer at every context measured")
    if c.get("dataset"):
        lines.append(f"loading tokenized {c['dataset']} from cache: {c['seconds']['median']:.3f} s")
    st = report.get("start_time")
    if st is not None:
        lines.append(f"start-up, `{st['command']}` to its first step: {st['first_step_seconds']:.2f} s, "
                     f"{st['ratio']:.2f}x `import torch` ({st['import_torch_seconds']:.2f} s) in the same run")
    t = report.get("time_to_target")
    if t is not None and "reached" in t:
        when = f"{t['seconds_to_target']:.0f} s" if t["reached"] else "not reached"
        lines.append(f"time to -1.77 on test: {when} (best snapshot {t['best_snapshot_test_loglik']:.4f}, "
                     f"{t['train_seconds']:.0f} s of training)")
    elif t is not None:
        lines.append(f"time to -1.77 on test: {t['note']}")
    return lines


def _profile_lines(section: dict[str, Any]) -> list[str]:
    lines = [f"{section['profile']} profile, training tokens/s by precision:",
             f"{'model':<14}{'dataset':<18}{'fp32':>9}{'bf16':>9}{'bf16/fp32':>11}  {'trains in':<10}"
             f"{'hours here':>10}"]
    for r in section["rows"]:
        if "note" in r:
            lines.append(f"{'':<14}{r['dataset']:<18}{r['note']}")
            continue
        hours = "-" if r.get("projected_seconds") is None else f"{r['projected_seconds'] / 3600:.2f}"
        lines.append(f"{r['model']:<14}{r['dataset']:<18}{r['fp32']['tokens_per_second']['median']:>9,.0f}"
                     f"{r['bf16']['tokens_per_second']['median']:>9,.0f}{r['speedup']:>10.2f}x  "
                     f"{r['trains_in']:<10}{hours:>10}")
    timed = [r["projected_seconds"] for r in section["rows"] if r.get("projected_seconds") is not None]
    if timed:
        lines.append(f"training time here at these rates (evaluation excluded; tokens of the shipped run, else the "
                     f"budget): {sum(timed) / 3600:.2f} h on this many threads")
    return lines


def score_snapshots(
    run_dir: str | Path,
    split: str = "test",
    paths: Paths | None = None,
    device: torch.device | None = None,
) -> list[dict[str, Any]]:
    """Every snapshot's step, tokens, FLOPs, training seconds and log-likelihood on `split`, in order of step.

    A benchmark of how fast a run got somewhere, not model selection (that uses the validation split only).
    Also written to <run>/snapshots.json.
    """
    run_dir = Path(run_dir)
    snapshots = sorted((run_dir / "snapshots").glob("step*.safetensors"))
    if not snapshots:
        raise TinyLMError(f"{run_dir} has no snapshots; train with --snapshot-every SECONDS to save them")
    run = load_run(run_dir)
    corpus = load_run_corpus(run, paths)
    device = device or torch.device("cpu")
    model = run.model.to(device)
    tokens = corpus.tensor(split)
    rows = []
    for path in snapshots:
        tensors, meta = load_tensors(path)
        model.load_weights(tensors)
        result = evaluate(model, tokens, batch_size=64, device=device)
        rows.append({**meta, f"{split}_loglik": result.loglik, f"{split}_perplexity": result.perplexity})
    atomic_write_json(run_dir / "snapshots.json", {"split": split, "snapshots": rows})
    return rows


def time_to(rows: list[dict[str, Any]], target: float, split: str = "test") -> dict[str, Any] | None:
    """The first snapshot whose log-likelihood on `split` reaches `target` (nats/token), or None."""
    return next((r for r in rows if r[f"{split}_loglik"] >= target), None)
