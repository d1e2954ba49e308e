"""The training loop, beside the step it drives: `fit` runs a Trainer through its budget and tells a Recorder what
happened; Ctrl-C or SIGTERM saves the state and stops.

The loop knows nothing of files: whatever implements `Recorder` (the run folder, `tinylm.recorder.RunFiles`) keeps
the history, the best weights, the resume state and the metrics.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from tinylm.errors import Interrupted, TinyLMError
from tinylm.run_metrics import RunMetrics, Status
from tinylm.training.trainer import Diverged, Trainer

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
FAULT_STOP_ENV = "TINYLM_FAULT_STOP_AT_STEP"
"""Fault injection for tests: the main process behaves as if SIGTERM arrived after this step."""
FAULT_KILL_ENV = "TINYLM_FAULT_KILL_FILE"
"""Fault injection for tests: a file holding a step; the process that finishes that step deletes the file and sends
itself SIGKILL (once: whoever resumes the run trains on)."""
FIRST_STEP_ENV = "TINYLM_FIRST_STEP_FILE"
"""For the start-up benchmark: the main process writes the wall-clock time its first step began to this file."""
ANNOUNCE_STEPS, ANNOUNCE_SECONDS, ANNOUNCE_MIN_STEPS = 20, 1.0, 5
"""The forecast is announced once this many steps after the first (which pays first-call allocations) are timed,
or this many seconds of at least ANNOUNCE_MIN_STEPS of them; it takes their median step, which a step that
compiles or recompiles does not move."""


class Recorder(Protocol):
    """What the loop reports to the place that keeps a run (only the main process of a data-parallel run writes)."""

    where: Path
    """Named in messages: the run folder."""

    def start(self, resume: bool) -> list[dict[str, Any]]:
        """Restore the resume state into the trainer (or clear an earlier attempt); the evaluations so far."""

    def on_step(self, step: int, loss: float, tokens_per_second: float) -> None:
        """A finished optimizer step."""

    def on_eval(self, row: dict[str, Any], improved: bool) -> None:
        """A periodic evaluation (its history row); `improved`: the weights are the best so far."""

    def save_snapshot(self) -> None:
        """Keep the current weights as a snapshot (a benchmark's, never used for selection)."""

    def save_state(self) -> None:
        """Keep everything resume needs."""

    def set_status(self, status: Status) -> None:
        """The run is running, interrupted or diverged."""

    def finish(self, status: Status) -> RunMetrics:
        """Score the best weights and write the final record (status complete or stopped_early); returns it."""

    def close(self) -> None:
        """Release what start opened (loggers)."""


def _progress_bar(trainer: Trainer, quiet: bool) -> tqdm:
    tty = sys.stderr.isatty()  # into a log file: one refresh every 30 s, not every step
    # smoothing: the rate behind the ETA is an exponential average with a long memory (tqdm's default 0.3 follows
    # the last few updates, so every evaluation pause swung the ETA)
    return tqdm(total=trainer.plan.total_steps, initial=trainer.state.step, disable=quiet, dynamic_ncols=True,
                desc=f"{trainer.cfg.model_name}/{trainer.cfg.data.label}", unit="step", leave=False,
                mininterval=0.1 if tty else 30.0, smoothing=0.02)


class _Signals:
    """SIGINT/SIGTERM noted (a second one leaves at once: every file on disk is complete, the writes are atomic)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.saved: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.received is not None:
            os._exit(EXIT_CODES.get(signum, 130))
        self.received = signum

    def __enter__(self) -> _Signals:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._on_signal)
        except ValueError:  # not the main thread: no signal handling
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


class _Forecast:
    """Times this session's first steps, then announces what the rest of the run should take at that speed."""

    def __init__(self, trainer: Trainer, announce: Callable[[dict[str, Any]], None] | None):
        self.trainer, self.announce = trainer, announce
        self.start = (trainer.state.step, trainer.state.seconds)
        self.timed: list[float] = []

    def step_took(self, seconds: float) -> None:
        if self.announce is None:
            return
        self.timed.append(seconds)
        t, steady = self.trainer, self.timed[1:] or self.timed
        n = len(steady)
        enough = n >= ANNOUNCE_STEPS or (n >= ANNOUNCE_MIN_STEPS and sum(steady) >= ANNOUNCE_SECONDS)
        if not (enough or t.done() or t.state.stopped_early):
            return
        info = t.forecast(speeds=(statistics.median(steady), t.eval_speed()), start=self.start)
        with tqdm.external_write_mode():  # the line goes above the progress bar, which is redrawn below it
            self.announce(info)
        self.announce = None


def _kill_if_asked(path: str, step: int) -> None:
    if Path(path).is_file() and Path(path).read_text().strip() == str(step):
        Path(path).unlink()
        os.kill(os.getpid(), signal.SIGKILL)


def _note_first_step() -> None:
    path = os.environ.get(FIRST_STEP_ENV)
    if path:
        Path(path).write_text(f"{time.time():.6f}\n")


def fit(trainer: Trainer, recorder: Recorder, *, resume: bool = False, quiet: bool = False,
        snapshot_every: float | None = None, announce: Callable[[dict[str, Any]], None] | None = None) -> RunMetrics:
    """Train to the end of the budget (or an early stop) and return `recorder.finish`'s record.

    `snapshot_every`: also keep the weights every that many seconds of training. `announce` is given
    `Trainer.forecast()` (what will be trained and how long it should take), timed on the first steps.
    """
    history = recorder.start(resume)
    bar = _progress_bar(trainer, quiet)
    try:
        # Handlers stay installed to the end: a first Ctrl-C during the final evaluation lets it finish.
        with _Signals() as signals:
            recorder.set_status("running")
            _steps(trainer, recorder, signals, bar, history, snapshot_every, _Forecast(trainer, announce))
            recorder.save_state()
            return recorder.finish("stopped_early" if trainer.state.stopped_early else "complete")
    finally:
        bar.close()
        recorder.close()


def _interrupt(trainer: Trainer, recorder: Recorder, signals: _Signals) -> None:
    recorder.save_state()
    recorder.set_status("interrupted")
    raise Interrupted(f"interrupted at step {trainer.state.step}; the state is saved in {recorder.where / 'last'}",
                      EXIT_CODES.get(signals.received or signal.SIGINT, 130), recorder.where)


def _steps(t: Trainer, recorder: Recorder, signals: _Signals, bar: tqdm, history: list[dict[str, Any]],
           every: float | None, forecast: _Forecast) -> None:
    s = t.state
    stop_at = int(os.environ.get(FAULT_STOP_ENV, "0") or 0) if t.world.main else 0
    kill_file = os.environ.get(FAULT_KILL_ENV)  # read once: nothing is added to the step unless a test sets it
    evaluated_at = history[-1]["step"] if history else None
    last_valid = history[-1]["valid_loss"] if history else None
    next_snapshot = (math.floor(s.seconds / every) + 1) * every if every else math.inf
    while True:
        if signals.received is not None and t.world.size == 1:  # (several processes agree in account(), below)
            _interrupt(t, recorder, signals)
        lr = t.learning_rate()
        at_end = t.done() or s.stopped_early
        if (s.step % t.cfg.train.eval_interval == 0 or at_end) and evaluated_at != s.step:
            row, improved = t.validate()
            recorder.on_eval(row, improved)
            evaluated_at, last_valid = s.step, row["valid_loss"]
            at_end = at_end or s.stopped_early
            if not at_end:
                recorder.save_state()
        if at_end:
            return
        if s.step == forecast.start[0] and t.world.main:
            _note_first_step()
        start = time.perf_counter()
        loss = t.train_step(lr)
        took = time.perf_counter() - start
        try:
            if t.account(loss, took, stop=signals.received is not None):
                signals.received = signals.received or signal.SIGTERM  # some rank was stopped: all stop here
                _interrupt(t, recorder, signals)
        except Diverged as e:
            recorder.set_status("diverged")
            raise TinyLMError(f"{e}. The best weights so far are kept in {recorder.where / 'model.safetensors'}") \
                from None
        forecast.step_took(took)
        if s.step == stop_at and signals.received is None:
            signals.received = signal.SIGTERM
        if kill_file:
            _kill_if_asked(kill_file, s.step)
        if s.seconds >= next_snapshot:
            recorder.save_snapshot()
            next_snapshot = (math.floor(s.seconds / every) + 1) * every
        bar.update(1)
        speed = s.tokens / max(s.seconds, 1e-9)
        recorder.on_step(s.step, loss, speed)
        if s.step % 10 == 0 or s.step == 1:
            valid = "None" if last_valid is None else f"{last_valid:.3f}"
            bar.set_postfix_str(f"loss {loss:.3f} valid {valid} {speed:,.0f} tok/s", refresh=False)
