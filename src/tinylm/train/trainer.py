"""One training loop for every model: budgets, evaluation, early stopping, checkpoints, resume, interruption.

Order of one iteration (nanoGPT's): stop if asked -> evaluate and checkpoint on schedule -> set lr -> forward /
backward -> clip -> step. The weights that are best on the valid subset are kept (model.safetensors) and are
the ones scored on the full valid and test splits at the end.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from tinylm.config import RunConfig
from tinylm.data.corpus import Corpus, load_corpus, sample_batch
from tinylm.device import device_name, pick_device, pick_dtype, use_all_cores
from tinylm.errors import TinyLMError, UsageError
from tinylm.models.base import LanguageModel
from tinylm.models.registry import build_model
from tinylm.runs import RunLock, check_run_name, identity, read_config, read_metrics, run_id
from tinylm.train.checkpoint import (
    atomic_write_json,
    atomic_write_text,
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_tensors,
)
from tinylm.train.evaluate import EvalResult, evaluate
from tinylm.train.optim import make_optimizer
from tinylm.train.schedule import learning_rate

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


@dataclass
class TrainState:
    """Counters that resume needs besides weights, optimizer and RNG."""

    step: int = 0
    tokens: int = 0
    flops: float = 0.0
    seconds: float = 0.0
    best_valid: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    stopped_early: bool = False


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after saving its state."""

    def __init__(self, message: str, exit_code: int, run_dir: Path):
        super().__init__(message)
        self.exit_code = exit_code
        self.run_dir = run_dir


def git_commit() -> str | None:
    """The commit of the tinylm source tree, if it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
            timeout=5,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass
class Plan:
    """Sizes derived from the config and model: what one step costs and how many steps the budget allows."""

    seq_len: int
    fed_len: int
    tokens_per_step: int
    flops_per_step: float
    total_steps: int | None

    @classmethod
    def make(cls, cfg: RunConfig, model: LanguageModel, n_train: int) -> Plan:
        t = cfg.train
        seq_len = t.seq_len or model.default_seq_len()
        if not model.fixed_window and seq_len > model.context_length:
            seq_len = model.context_length
        fed = seq_len + model.train_skip
        if fed + 1 >= n_train:
            raise TinyLMError(
                f"training sequences of {fed} tokens do not fit the training split ({n_train} tokens); "
                "lower train.seq_len or model.context_length, or use more data"
            )
        tokens_per_step = t.batch_size * seq_len
        flops_per_step = model.flops_per_token(training=True, seq_len=fed) * t.batch_size * fed
        limits = []
        if t.epochs is not None:
            limits.append(math.ceil(t.epochs * n_train / tokens_per_step))
        if t.max_steps is not None:
            limits.append(t.max_steps)
        if t.max_tokens is not None:
            limits.append(math.ceil(t.max_tokens / tokens_per_step))
        if t.max_flops is not None:
            limits.append(math.ceil(t.max_flops / flops_per_step))
        return cls(seq_len, fed, tokens_per_step, flops_per_step, max(1, min(limits)) if limits else None)


class Trainer:
    """Trains one run directory; `run()` returns the final metrics."""

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: Path,
        corpus: Corpus,
        quiet: bool = False,
        profile: str | None = None,
        snapshot_every: float | None = None,
    ):
        """`snapshot_every`: also save the weights every that many seconds of training under snapshots/ (for scoring
        a run's progress after the fact, e.g. the time-to-target benchmark; model selection never uses them)."""
        if not cfg.train.has_budget():
            raise UsageError("no training budget: set --epochs, --max-steps, --max-tokens, --max-flops or --max-time")
        self.cfg, self.run_dir, self.corpus, self.quiet, self.profile = cfg, run_dir, corpus, quiet, profile
        self.device = pick_device(cfg.train.device)
        if self.device.type == "cpu":
            use_all_cores()
        self.dtype = pick_dtype(cfg.train.precision, self.device)
        torch.manual_seed(cfg.train.seed)
        self.model = build_model(cfg.model_name, cfg.model_config(corpus.tokenizer.vocab_size)).to(self.device)
        self.forward = torch.compile(self.model) if cfg.train.compile else self.model
        self.train_tokens = corpus.tensor("train")
        self.valid_tokens = corpus.tensor("valid")
        self.test_tokens = corpus.tensor("test")
        n_valid = len(self.valid_tokens)
        if self.model.context_length >= n_valid:
            raise TinyLMError(
                f"model.context_length={self.model.context_length} is longer than the validation split "
                f"({n_valid} tokens); lower model.context_length or use more data"
            )
        self.plan = Plan.make(cfg, self.model, len(self.train_tokens))
        self.optimizer = make_optimizer(self.model, cfg.train, self.device)
        self.batch_rng = torch.Generator().manual_seed(cfg.train.seed + 1)
        self.state = TrainState()
        self.history: list[dict[str, Any]] = []
        self.signal: int | None = None
        if snapshot_every is not None and not snapshot_every > 0:
            raise UsageError(f"--snapshot-every must be a positive number of seconds (got {snapshot_every})")
        self.snapshot_every = snapshot_every

    # -- files ---------------------------------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.run_dir / name

    def save_last(self) -> None:
        """Write the resume state as one safetensors file (atomic)."""
        opt_tensors, opt_meta = optimizer_to_tensors(self.optimizer)
        tensors = {f"model.{k}": v for k, v in self.model.weights().items()}
        tensors.update(opt_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.batch"] = self.batch_rng.get_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        meta = {"state": dataclasses.asdict(self.state), "optimizer": opt_meta}
        save_tensors(self._path("last") / "checkpoint.safetensors", tensors, meta)

    def save_snapshot(self) -> None:
        """The current weights as snapshots/step<N>.safetensors, with step, tokens, FLOPs and seconds."""
        s = self.state
        meta = {"step": s.step, "tokens": s.tokens, "flops": s.flops, "seconds": s.seconds}
        save_tensors(self._path("snapshots") / f"step{s.step:08d}.safetensors", self.model.weights(), meta)

    def load_last(self) -> None:
        """Restore the resume state written by `save_last`, the best weights and the history up to it."""
        tensors, meta = load_tensors(self._path("last") / "checkpoint.safetensors")
        model_sd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            self.model.load_weights(model_sd)
            optimizer_from_tensors(self.optimizer, tensors, meta["optimizer"])
            self.state = TrainState(**meta["state"])
            torch.set_rng_state(tensors["rng.torch"])
            self.batch_rng.set_state(tensors["rng.batch"])
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise TinyLMError(
                f"{self._path('last')} does not fit this run's model ({str(e).splitlines()[0][:100]}); "
                "the checkpoint belongs to another config: start a new run"
            ) from None
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.history = []
        path = self._path("history.jsonl")
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut by a kill: everything after the checkpoint is redone anyway
                if row.get("step", 0) <= self.state.step:
                    self.history.append(row)
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in self.history))

    def write_metrics(self, status: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """metrics.json with the keys of DESIGN.md."""
        s, m = self.state, self.model
        metrics: dict[str, Any] = {
            "run_id": self.run_dir.name,
            "model": self.cfg.model_name,
            "dataset": self.cfg.data.label,
            "level": self.corpus.tokenizer.level,
            "vocab_size": self.corpus.tokenizer.vocab_size,
            "params": m.num_params(),
            "context_length": m.context_length,
            "flops_per_token": m.flops_per_token(training=False, seq_len=self.plan.fed_len),
            "steps": s.step,
            "tokens_trained": s.tokens,
            "train_flops": s.flops,
            "train_seconds": s.seconds,
            "tokens_per_second": s.tokens / s.seconds if s.seconds else None,
            "best_valid_loss": s.best_valid,
            "best_step": s.best_step,
            "precision": "bf16" if self.dtype == torch.bfloat16 else "fp32",
            "seed": self.cfg.train.seed,
            "device": device_name(self.device),
            "torch_version": torch.__version__,
            "git_commit": git_commit(),
            "status": status,
            "profile": self.profile,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        metrics.update(extra or {})
        atomic_write_json(self._path("metrics.json"), metrics)
        return metrics

    # -- steps ---------------------------------------------------------------------------------------------------
    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def evaluate(self, tokens: torch.Tensor) -> EvalResult:
        return evaluate(self.model, tokens, batch_size=64, device=self.device, autocast_dtype=self.dtype)

    def progress(self) -> float:
        t, s = self.cfg.train, self.state
        p = s.step / self.plan.total_steps if self.plan.total_steps else 0.0
        if t.max_time:
            p = max(p, s.seconds / t.max_time)
        return p

    def done(self) -> bool:
        t, s = self.cfg.train, self.state
        return (self.plan.total_steps is not None and s.step >= self.plan.total_steps) or (
            t.max_time is not None and s.seconds >= t.max_time
        )

    def train_step(self, lr: float) -> float:
        t = self.cfg.train
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = sample_batch(self.train_tokens, t.batch_size, self.plan.fed_len, self.batch_rng)  # (B, L)
        x, y = x.to(self.device), y.to(self.device)
        skip = self.model.train_skip
        with self.autocast():
            logits = self.forward(x)  # (B, L, V)
        loss = F.cross_entropy(logits[:, skip:].float().reshape(-1, logits.size(-1)), y[:, skip:].reshape(-1))
        loss.backward()
        if t.gradient_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.gradient_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def eval_and_log(self, lr: float) -> bool:
        """Evaluate on the valid subset, log a history line, keep the best weights; True if patience ran out."""
        s, t = self.state, self.cfg.train
        result = self.evaluate(self.valid_tokens[: t.eval_tokens + 1])
        row = {
            "step": s.step,
            "tokens": s.tokens,
            "flops": s.flops,
            "seconds": round(s.seconds, 3),
            "lr": lr,
            "train_loss": s.loss_sum / s.loss_count if s.loss_count else None,
            "valid_loss": result.loss,
            "time": time.time(),
        }
        s.loss_sum, s.loss_count = 0.0, 0
        self.history.append(row)
        with open(self._path("history.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if s.best_valid is None or result.loss < s.best_valid:
            s.best_valid, s.best_step, s.bad_evals = result.loss, s.step, 0
            save_tensors(self._path("model.safetensors"), self.model.weights(),
                         {"step": s.step, "valid_loss": result.loss})
        else:
            s.bad_evals += 1
        return bool(t.early_stopping_patience and s.bad_evals >= t.early_stopping_patience)

    # -- the loop ------------------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: object) -> None:
        if self.signal is not None:  # a second Ctrl-C: leave now; every file on disk is complete (atomic writes)
            os._exit(EXIT_CODES.get(signum, 130))
        self.signal = signum

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train to the end of the budget (or early stop) and return the metrics."""
        t, s = self.cfg.train, self.state
        if resume:
            self.load_last()
            s = self.state
        else:  # a fresh start (also after a kill before the first checkpoint): nothing of an earlier attempt
            for stale in ("history.jsonl", "model.safetensors", "last/checkpoint.safetensors"):
                self._path(stale).unlink(missing_ok=True)
            for stale in self._path("snapshots").glob("*.safetensors"):
                stale.unlink()
        handlers = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._on_signal)
        except ValueError:  # not the main thread: no signal handling
            pass
        tty = sys.stderr.isatty()  # into a log file: one refresh every 30 s, not every step
        bar = tqdm(total=self.plan.total_steps, initial=s.step, disable=self.quiet, dynamic_ncols=True,
                   desc=f"{self.cfg.model_name}/{self.cfg.data.label}", unit="step", leave=False,
                   mininterval=0.1 if tty else 30.0)
        try:
            self.write_metrics("running")
            last_valid = self.history[-1]["valid_loss"] if self.history else None
            every = self.snapshot_every
            next_snapshot = (math.floor(s.seconds / every) + 1) * every if every else math.inf
            while True:
                if self.signal is not None:
                    self.save_last()
                    code = EXIT_CODES.get(self.signal, 130)
                    self.write_metrics("interrupted")
                    raise Interrupted(f"interrupted at step {s.step}; the state is saved in {self._path('last')}",
                                      code, self.run_dir)
                lr = learning_rate(s.step, self.progress(), t.learning_rate, t.warmup_steps, t.min_lr_ratio,
                                   t.scheduler)
                at_end = self.done() or s.stopped_early
                if s.step % t.eval_interval == 0 or at_end:
                    if not (self.history and self.history[-1]["step"] == s.step):
                        if self.eval_and_log(lr):
                            s.stopped_early = at_end = True
                        last_valid = self.history[-1]["valid_loss"]
                        if not at_end:
                            self.save_last()
                if at_end:
                    break
                start = time.perf_counter()
                loss = self.train_step(lr)
                s.seconds += time.perf_counter() - start
                s.step += 1
                s.tokens += self.plan.tokens_per_step
                s.flops += self.plan.flops_per_step
                if s.seconds >= next_snapshot:
                    self.save_snapshot()
                    next_snapshot = (math.floor(s.seconds / every) + 1) * every
                if not math.isfinite(loss) or loss > max(20.0, 4 * math.log(self.corpus.tokenizer.vocab_size)):
                    self.write_metrics("diverged")
                    raise TinyLMError(
                        f"training diverged at step {s.step} (loss {loss:.3g}); the learning rate "
                        f"({t.learning_rate:g}) is likely too high: lower train.learning_rate. The best weights so "
                        f"far are kept in {self._path('model.safetensors')}"
                    )
                s.loss_sum += loss
                s.loss_count += 1
                bar.update(1)
                if s.step % 10 == 0 or s.step == 1:
                    bar.set_postfix_str(
                        f"loss {loss:.3f} valid {last_valid if last_valid is None else f'{last_valid:.3f}'} "
                        f"{s.tokens / max(s.seconds, 1e-9):,.0f} tok/s", refresh=False)
            self.save_last()
            # Handlers stay installed: a first Ctrl-C during the final evaluation lets it finish, a second exits.
            return self.finish("stopped_early" if s.stopped_early else "complete")
        finally:
            bar.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def finish(self, status: str) -> dict[str, Any]:
        """Score the best weights on the full valid and test splits; write samples and metrics."""
        from tinylm.runs import load_weights

        if self._path("model.safetensors").is_file():
            load_weights(self.model, self._path("model.safetensors"), self.run_dir, self.cfg.model_name)
        valid = self.evaluate(self.valid_tokens)
        test = self.evaluate(self.test_tokens)
        extra = {**valid.as_dict("valid"), **test.as_dict("test"), "unigram_test_loglik": self.unigram_test_loglik(),
                 "eval_stride": test.stride,
                 "eval_window": test.window, "eval_note": "every token but the first of each split scored once"}
        self.write_samples()
        return self.write_metrics(status, extra)

    def unigram_test_loglik(self) -> float:
        """Baseline: mean log p of the scored test tokens under add-one-smoothed train-split unigram counts."""
        V = self.corpus.tokenizer.vocab_size
        counts = torch.bincount(self.train_tokens, minlength=V).double() + 1.0
        logp = torch.log(counts / counts.sum())
        return float(logp[self.test_tokens[1:]].mean())

    def write_samples(self) -> None:
        from tinylm.generate.sampling import generate_ids

        tok = self.corpus.tokenizer
        prompt = tok.start_ids()
        n = 300 if tok.level == "char" else 80
        ids = list(generate_ids(self.model, prompt, n, temperature=0.8, seed=self.cfg.train.seed,
                                device=self.device))
        atomic_write_text(self._path("samples.txt"), tok.decode(ids) + "\n")


def prepare_run_dir(cfg: RunConfig, results: Path, run_name: str | None, run_dir: Path | None = None) -> Path:
    """The run directory for `cfg`; refuses one that holds a different config."""
    if run_dir is None:
        run_dir = results / "runs" / (check_run_name(run_name) if run_name else run_id(cfg))
    if (run_dir / "config.yaml").is_file():
        saved = read_config(run_dir)
        if identity(saved) != identity(cfg):
            diff = config_diff(identity(saved), identity(cfg))
            raise TinyLMError(
                f"run directory {run_dir} holds a run with a different config ({diff}); choose another --run-name"
            )
    return run_dir


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    """'section.key: old -> new' for every differing key."""
    out = []
    for section in sorted(set(a) | set(b)):
        sa, sb = a.get(section) or {}, b.get(section) or {}
        for key in sorted(set(sa) | set(sb)):
            if sa.get(key) != sb.get(key):
                out.append(f"{section}.{key}: {sa.get(key)!r} -> {sb.get(key)!r}")
    return ", ".join(out) or "no differences"


def train_run(
    cfg: RunConfig,
    results: Path,
    run_name: str | None = None,
    resume: bool = False,
    quiet: bool = False,
    data_dir: str | Path | None = None,
    mirror: str | Path | None = None,
    force: bool = False,
    profile: str | None = None,
    run_dir: Path | None = None,
    snapshot_every: float | None = None,
) -> tuple[dict[str, Any], Path, str]:
    """Train (or resume, or skip if complete) one run; returns (metrics, run dir, what happened).

    `profile` only labels the run in metrics.json (e.g. "quick"), so reports can say where numbers come from.
    """
    run_dir = prepare_run_dir(cfg, results, run_name, run_dir)
    metrics = read_metrics(run_dir) if (run_dir / "metrics.json").is_file() else None
    finished = metrics is not None and metrics.get("status") in ("complete", "stopped_early")
    if finished and not force and (run_dir / "model.safetensors").is_file():
        return metrics, run_dir, "skipped"
    # A finished run without weights (results committed without them) is trained again, here.
    force = force or finished
    corpus = load_corpus(cfg.data, data_dir, mirror, quiet=quiet)
    has_last = (run_dir / "last" / "checkpoint.safetensors").is_file()
    resume = resume or (has_last and metrics is not None and metrics.get("status") in ("interrupted", "running"))
    if resume and not has_last:
        raise TinyLMError(f"{run_dir} has no resume state (last/checkpoint.safetensors); start the run again")
    trainer = Trainer(cfg, run_dir, corpus, quiet=quiet, profile=profile,  # validates before the first write
                      snapshot_every=snapshot_every)
    with RunLock(run_dir):
        for stale in [*run_dir.glob(".*.tmp"), *run_dir.glob("last/.*.tmp")]:
            stale.unlink()  # left by a process killed mid-write; we hold the lock, so nobody is writing them
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        corpus.tokenizer.save(run_dir / "tokenizer.json")
        return trainer.run(resume=resume and not force), run_dir, "resumed" if resume and not force else "trained"
