"""A run folder's life while it trains: skip, resume or force, the lock, and `RunFiles`, the recorder that keeps
what the loop reports (history, metrics, best weights, resume state, snapshots, samples).

The loop (`tinylm.training.loop.fit`) trains; this module decides what to train and writes what it did.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from tinylm import distributed
from tinylm.config import RunConfig
from tinylm.data.corpus import load_corpus
from tinylm.device import pick_device
from tinylm.errors import TinyLMError, UsageError
from tinylm.files import atomic_write_json, atomic_write_text, load_tensors, save_tensors
from tinylm.generate.sampling import generate_ids
from tinylm.paths import Paths
from tinylm.run_folders import (
    RunLock,
    check_run_name,
    config_diff,
    identity,
    load_weights,
    read_config,
    read_metrics,
    run_id,
)
from tinylm.run_metrics import RunMetrics, Status
from tinylm.tensorboard_log import TensorBoardLog, check_logs
from tinylm.training.evaluate import unigram_loglik
from tinylm.training.loop import fit
from tinylm.training.trainer import Trainer


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


class RunFiles:
    """The files of one run directory that training writes (only rank 0 writes; the other ranks of a data-parallel
    run keep the same history in memory)."""

    def __init__(self, run_dir: Path, trainer: Trainer, profile: str | None = None, logs: tuple[str, ...] = ()):
        self.dir, self.trainer, self.profile = run_dir, trainer, profile
        self.history: list[dict[str, Any]] = []
        self.writes = trainer.world.main
        self.logs = logs
        self.board: TensorBoardLog | None = None

    @property
    def where(self) -> Path:
        return self.dir

    def start(self, resume: bool) -> list[dict[str, Any]]:
        """Restore the resume state (or clear an earlier attempt) and open the extra loggers; the history so far."""
        if resume:
            self.load_last()
        else:
            self.clear()
        self._open_logs()
        return self.history

    def _open_logs(self) -> None:
        """Start the extra loggers asked for (after a resume, events past the checkpoint are purged)."""
        if self.writes and "tensorboard" in self.logs:
            step = self.trainer.state.step  # events of the steps after the checkpoint are redone: hide the old ones
            self.board = TensorBoardLog(self.dir, purge_step=step + 1 if step else None)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None

    def path(self, name: str) -> Path:
        return self.dir / name

    def clear(self) -> None:
        """A fresh start (also after a kill before the first checkpoint): nothing of an earlier attempt."""
        if not self.writes:
            return
        for stale in ("history.jsonl", "model.safetensors", "last/checkpoint.safetensors"):
            self.path(stale).unlink(missing_ok=True)
        for stale in [*self.path("snapshots").glob("*.safetensors"), *self.path("tensorboard").glob("events.*")]:
            stale.unlink()

    def save_state(self) -> None:
        """The resume state as one safetensors file."""
        if not self.writes:
            return
        tensors, meta = self.trainer.state_dict()
        save_tensors(self.path("last") / "checkpoint.safetensors", tensors, meta)

    def load_last(self) -> None:
        """Restore the resume state, and the history up to it."""
        tensors, meta = load_tensors(self.path("last") / "checkpoint.safetensors")
        try:
            self.trainer.load_state_dict(tensors, meta)
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise TinyLMError(
                f"{self.path('last')} does not fit this run's model ({str(e).splitlines()[0][:100]}); "
                "the checkpoint belongs to another config: start a new run"
            ) from None
        self.history = []
        path = self.path("history.jsonl")
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut by a kill: everything after the checkpoint is redone anyway
                if row.get("step", 0) <= self.trainer.state.step:
                    self.history.append(row)
        self.write_history()

    def write_history(self) -> None:
        """history.jsonl, rewritten whole and atomically (a few hundred lines at most): never a cut line."""
        if not self.writes:
            return
        atomic_write_text(self.path("history.jsonl"), "".join(json.dumps(r) + "\n" for r in self.history))

    def on_step(self, step: int, loss: float, tokens_per_second: float) -> None:
        if self.board is not None and step % 10 == 0:
            self.board.step(step, loss, tokens_per_second)

    def on_eval(self, row: dict[str, Any], improved: bool) -> None:
        """Append a history line and keep the weights if they are the best so far."""
        row["time"] = time.time()
        self.history.append(row)
        self.write_history()
        if self.board is not None:
            self.board.row(row)
        if improved and self.writes:
            save_tensors(self.path("model.safetensors"), self.trainer.model.weights(),
                         {"step": row["step"], "valid_loss": row["valid_loss"]})

    def save_snapshot(self) -> None:
        """The current weights as snapshots/step<N>.safetensors, with step, tokens, FLOPs and seconds."""
        if not self.writes:
            return
        s = self.trainer.state
        meta = {"step": s.step, "tokens": s.tokens, "flops": s.flops, "seconds": s.seconds}
        save_tensors(self.path("snapshots") / f"step{s.step:08d}.safetensors", self.trainer.model.weights(), meta)

    def set_status(self, status: Status) -> None:
        self.write_metrics(status)

    def write_metrics(self, status: Status, scores: dict[str, Any] | None = None) -> RunMetrics:
        """metrics.json (`RunMetrics`): the trainer's summary, where it ran, and `scores` (final-evaluation fields)."""
        metrics = dataclasses.replace(
            self.trainer.summary(status), run_id=self.dir.name, torch_version=torch.__version__,
            git_commit=git_commit(), profile=self.profile, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **(scores or {}))
        if self.writes:
            atomic_write_json(self.path("metrics.json"), metrics.to_json())
        return metrics

    def write_samples(self) -> str:
        """A short sample of the trained model, from its start token (written to samples.txt, and returned)."""
        t = self.trainer
        tok = t.corpus.tokenizer
        n = 300 if tok.level == "char" else 80
        ids = list(generate_ids(t.model, tok.start_ids(), n, temperature=0.8, seed=t.cfg.train.seed, device=t.device))
        text = tok.decode(ids) + "\n"
        atomic_write_text(self.path("samples.txt"), text)
        return text

    def finish(self, status: Status) -> RunMetrics:
        """Score the best weights on the full valid and test splits; write samples and metrics."""
        t = self.trainer
        distributed.barrier()  # rank 0's last best weights are on disk
        if self.path("model.safetensors").is_file():
            load_weights(t.model, self.path("model.safetensors"), self.dir, t.cfg.model_name)
        valid = t.evaluate(t.valid_tokens)
        test = t.evaluate(t.test_tokens)
        unigram = unigram_loglik(t.train_tokens, t.test_tokens, t.corpus.tokenizer.vocab_size)
        scores = {**valid.as_dict("valid"), **test.as_dict("test"), "unigram_test_loglik": unigram,
                  **({"test_window_loss": t.window_loss(t.test_tokens)} if t.cfg.data.reproduction else {}),
                  "eval_stride": test.stride, "eval_window": test.window,
                  "eval_note": "every token but the first of each split scored once"}
        samples = self.write_samples() if self.writes else None
        metrics = self.write_metrics(status, scores)
        if self.board is not None:
            self.board.finish(t.state.step, metrics, samples)
        return metrics


def prepare_run_dir(cfg: RunConfig, results: Path, run_name: str | None, run_dir: Path | None = None) -> Path:
    """The run directory for `cfg`; refuses one that holds a different config."""
    if run_dir is None:
        run_dir = results / "runs" / (check_run_name(run_name) if run_name else run_id(cfg))
    if (run_dir / "config.yaml").is_file():
        saved = read_config(run_dir)
        if identity(saved) != identity(cfg):
            raise TinyLMError(f"run directory {run_dir} holds a run with a different config "
                              f"({config_diff(identity(saved), identity(cfg))}); choose another --run-name")
    return run_dir


def train_run(
    cfg: RunConfig,
    paths: Paths,
    run_name: str | None = None,
    resume: bool = False,
    quiet: bool = False,
    force: bool = False,
    profile: str | None = None,
    run_dir: Path | None = None,
    snapshot_every: float | None = None,
    announce: Callable[[dict[str, Any]], None] | None = None,
    logs: tuple[str, ...] | list[str] = (),
) -> tuple[RunMetrics, Path, str]:
    """Train (or resume, or skip if complete) one run under `paths.results`; returns (metrics, run dir, what happened).

    `profile` only labels the run in metrics.json (e.g. "quick"), so reports can say where numbers come from.
    `snapshot_every`: also save the weights every that many seconds of training under snapshots/ (for scoring a
    run's progress after the fact, e.g. the time-to-target benchmark; model selection never uses them).
    `announce` is given `Trainer.forecast()` (what will be trained and how long it should take) before training.
    `logs`: extra loggers beside history.jsonl ("tensorboard").
    """
    logs = check_logs(logs)
    if snapshot_every is not None and not snapshot_every > 0:
        raise UsageError(f"--snapshot-every must be a positive number of seconds (got {snapshot_every})")
    # a bad --device is an error even when the run is complete and would be skipped
    distributed.setup(pick_device(cfg.train.device))
    main = distributed.world().main
    run_dir = prepare_run_dir(cfg, paths.results, run_name, run_dir)
    metrics = read_metrics(run_dir)
    finished = metrics is not None and metrics.finished
    if finished and not force and (run_dir / "model.safetensors").is_file():
        return metrics, run_dir, "skipped"
    # A finished run without weights (results committed without them) is trained again, here.
    force = force or finished
    with RunLock(run_dir, remove_if_unused=True) if main else contextlib.nullcontext():  # before any heavy work
        return _train_locked(cfg, run_dir, metrics, resume, force, main, quiet, paths, profile, snapshot_every,
                             announce, logs)


def _train_locked(cfg: RunConfig, run_dir: Path, metrics: RunMetrics | None, resume: bool, force: bool, main: bool,
                  quiet: bool, paths: Paths, profile: str | None,
                  snapshot_every: float | None, announce: Callable[[dict[str, Any]], None] | None,
                  logs: tuple[str, ...]) -> tuple[RunMetrics, Path, str]:
    if not main:
        distributed.barrier()  # rank 0 downloads and tokenizes first; the others then read its cache
    corpus = load_corpus(cfg.data, paths.data, paths.mirror, quiet=quiet or not main)
    if main:
        distributed.barrier()
    has_last = (run_dir / "last" / "checkpoint.safetensors").is_file()
    resume = resume or (has_last and metrics is not None and metrics.resumable)
    if resume and not has_last:
        raise TinyLMError(f"{run_dir} has no resume state (last/checkpoint.safetensors); start the run again")
    trainer = Trainer(cfg, corpus)  # validates before the first write; with DDP, every rank has decided by now
    # the other ranks of a data-parallel run train silently and write nothing (RunFiles knows)
    recorder = RunFiles(run_dir, trainer, profile, logs)
    resuming = resume and not force
    if main:
        for stale in [*run_dir.glob(".*.tmp"), *run_dir.glob("last/.*.tmp")]:
            stale.unlink()  # left by a process killed mid-write; we hold the lock, so nobody is writing them
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        corpus.tokenizer.save(run_dir / "tokenizer.json")
    metrics = fit(trainer, recorder, resume=resuming, quiet=quiet or not main, snapshot_every=snapshot_every,
                  announce=announce if main else None)
    return metrics, run_dir, "resumed" if resuming else "trained"


def forecast_run(cfg: RunConfig, paths: Paths | None = None, seconds: float = 1.0) -> dict[str, Any]:
    """What training `cfg` here would take (`Trainer.forecast`, measured over `seconds` of steps), writing no run."""
    paths = paths or Paths.of()
    return Trainer(cfg, load_corpus(cfg.data, paths.data, paths.mirror, quiet=True)).forecast(seconds=seconds)
