"""Several runs at once (`tinylm suite --jobs N`): each run trains in a worker process of its own, N at a time.

On a CPU the cores are shared out: each worker is pinned to cores // N of them (where the OS allows it) and trains
with that many threads, as `taskset` would. On a GPU the workers share the card, which small models leave mostly
idle one at a time. Every run is the same as when it
trains alone (its own seed, its own files; thread counts can change float rounding, nothing else), so a suite can
mix both ways and a finished run is skipped either way.

The workers train quietly; the parent reports each run as it finishes. Ctrl-C reaches the runs in progress, which
save their state as they do alone (the same command resumes them); the runs not yet started are not started. The
first run that fails ends the suite with its one-line error once the runs in progress have finished.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinylm.config import RunConfig
from tinylm.data.corpus import load_corpus
from tinylm.device import usable_cores
from tinylm.errors import Interrupted, TinyLMError, UsageError
from tinylm.paths import Paths
from tinylm.recorder import train_run
from tinylm.run_metrics import RunMetrics


@dataclass(frozen=True)
class Job:
    """One run of a suite and where it goes (train_run's arguments)."""

    config: RunConfig
    paths: Paths
    profile: str | None = None
    logs: tuple[str, ...] = ()


_STOP: Any = None
"""The parent's stop event, in a worker: set once Ctrl-C was pressed, so that no run starts after it."""


def _start_worker(cores: Any, stop: Any) -> None:
    """Take a share of the cores (pinned where the OS allows it: the trainer's use-every-core setting then uses
    exactly those) and the stop event; an idle worker ignores Ctrl-C, a training run handles it itself."""
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    share = cores.get()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, share)


def core_shares(cores: list[int], workers: int) -> list[list[int]]:
    """`cores` dealt out to `workers` in equal contiguous shares (shared round-robin when there are fewer cores)."""
    if workers >= len(cores):
        return [[cores[i % len(cores)]] for i in range(workers)]
    k = len(cores) // workers
    return [cores[i * k:(i + 1) * k] for i in range(workers)]


def biggest_first(jobs: list[Job]) -> list[tuple[int, Job]]:
    """(index from 1, job) with the largest training-FLOP budgets first (the suite's order otherwise): the longest
    runs start while every worker is busy, instead of last, where one worker would train alone at the end."""
    return sorted(enumerate(jobs, 1), key=lambda ij: -(ij[1].config.train.max_flops or 0.0))


def _train(job: Job) -> tuple[str, RunMetrics | int | None, str, str]:
    """("done", metrics, run dir, what) | ("interrupted", None, run dir, message) | ("error", exit code, "", line)
    | ("not started", None, "", "")."""
    if _STOP is not None and _STOP.is_set():  # a job already handed to this worker when Ctrl-C came
        return "not started", None, "", ""
    try:
        metrics, run_dir, what = train_run(job.config, job.paths, quiet=True, profile=job.profile, logs=job.logs)
        return "done", metrics, str(run_dir), what
    except Interrupted as e:
        return "interrupted", None, str(e.run_dir), str(e)
    except TinyLMError as e:  # sent back as text: the parent raises it again, as one line
        return "error", e.exit_code, "", str(e)


def _stop(stop: Any, pending: dict[Future, int]) -> None:
    """No run starts from now on: the queued ones are cancelled, those already handed to a worker see `stop`."""
    stop.set()
    for future in pending:
        future.cancel()


def train_in_parallel(jobs: list[Job], workers: int,
                      report: Callable[[int, RunMetrics, Path, str], None]) -> None:
    """Train `jobs` with `workers` processes; `report(index from 1, metrics, run dir, what)` as each one finishes."""
    if workers < 1:
        raise UsageError(f"--jobs must be at least 1 (got {workers})")
    for first in {job.config.data.label: job for job in jobs}.values():  # download and tokenize once, here
        load_corpus(first.config.data, first.paths.data, first.paths.mirror)
    context = multiprocessing.get_context("spawn")  # no forked copy of this process's threads or CUDA state
    stop, shares = context.Event(), context.Queue()
    for share in core_shares(usable_cores(), workers):
        shares.put(share)
    failure: tuple[int, str] | None = None
    interrupted = 0
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(shares, stop)) as pool:
        pending: dict[Future, int] = {pool.submit(_train, job): i for i, job in biggest_first(jobs)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    if future.cancelled():
                        continue
                    status, metrics, run_dir, what = future.result()
                    if status == "done":
                        report(index, metrics, Path(run_dir), what)
                    elif status == "interrupted":
                        interrupted += 1
                    elif status == "error" and failure is None:
                        failure = (metrics, what)
                        _stop(stop, pending)
        except KeyboardInterrupt:
            _stop(stop, pending)
            pool.shutdown(wait=True, cancel_futures=True)  # the runs in progress save their state and stop
            raise TinyLMError("interrupted: the runs in progress saved their state; the same command resumes them "
                              "and trains the rest", exit_code=130) from None
    if failure is not None:
        raise TinyLMError(failure[1], exit_code=failure[0])
    if interrupted:
        raise TinyLMError(f"{interrupted} runs were stopped and saved their state; the same command resumes "
                          "them", exit_code=143)
