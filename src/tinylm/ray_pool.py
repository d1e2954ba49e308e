"""A suite's runs as Ray tasks (`tinylm suite --backend ray`): the same runs as `--jobs`, spread over a Ray cluster.

Each run is one task that asks for `cpus_per_run` CPUs and `gpus_per_run` GPUs, submitted with the largest
training-FLOP budgets first; Ray places the tasks on the nodes that have those resources free. A task calls the
same `train_run` as every other path, so a finished run is skipped and an interrupted one resumes from its saved
state, and the numbers are those of the run trained alone (at the same thread count).

Where the run folders go (`results`):
- "shared" (the default): each task writes its run folder into the results folder itself, which every node must
  see at the same path (a shared filesystem, e.g. NFS; on one machine, any folder). It keeps everything resumable:
  a task retried after its worker died, or the next call after Ctrl-C, finds the saved state wherever it runs.
- "returned": for nodes that do not share a folder. A task trains in a folder of its node's temporary directory and
  returns the run folder's files (the weights only with `weights`); the driver writes them, atomically, into its
  results folder, metrics.json last. An interrupted run's state stays on the node that trained it, so it resumes
  only when Ray places it there again.

Faults: Ctrl-C cancels the tasks (a running one saves its state and stops, as Ctrl-C does to a run trained
alone); a run that fails ends the suite with its one-line error once the tasks in flight have finished; a worker
that dies (killed, out of memory) is retried once by Ray, and its run resumes from its last saved state.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from tinylm.device import cap_threads
from tinylm.errors import Interrupted, TinyLMError, UsageError
from tinylm.files import atomic_write
from tinylm.paths import Paths
from tinylm.recorder import train_run
from tinylm.run_folders import read_metrics, run_id
from tinylm.run_metrics import RunMetrics
from tinylm.run_pool import Job, biggest_first

RESULTS = ("shared", "returned")
WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class RayOptions:
    """Where the cluster is and what each run asks of it."""

    address: str | None = None
    """"auto" (a cluster started with `ray start` on this node), "ray://HOST:PORT" (Ray Client), or None: a Ray
    instance started for this suite on this machine and stopped after it."""
    cpus_per_run: float = 1
    """CPUs each task reserves; a CPU run trains with that many threads."""
    gpus_per_run: float = 0
    """GPUs each task reserves (0.25: four runs share a card); 0 trains on CPUs."""
    results: Literal["shared", "returned"] = "shared"
    """Where run folders are written (the module's docstring says how each works)."""
    weights: bool = False
    """With results "returned": bring the weights back too (always there with "shared")."""

    def check(self) -> None:
        """One UsageError naming the first bad option, or saying that Ray is not installed."""
        if not self.cpus_per_run > 0:
            raise UsageError(f"--cpus-per-run must be positive (got {self.cpus_per_run:g})")
        if self.gpus_per_run < 0:
            raise UsageError(f"--gpus-per-run must be 0 or more (got {self.gpus_per_run:g})")
        if self.gpus_per_run > 1 and self.gpus_per_run != int(self.gpus_per_run):
            raise UsageError(f"--gpus-per-run above 1 must be a whole number (got {self.gpus_per_run:g})")
        if self.results not in RESULTS:
            raise UsageError(f"--ray-results must be shared or returned (got '{self.results}')")
        if self.weights and self.results != "returned":
            raise UsageError("--ray-weights only applies with --ray-results returned (a shared folder has them)")
        _import_ray()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--backend ray needs Ray: pip install -e '.[ray]' (or pip install 'ray>=2.9')") from None
    return ray


def node_results(driver_results: Path) -> Path:
    """The folder a task of the "returned" kind trains in on its node: one per driver results folder, so that a
    task Ray runs again on the same node finds the state it saved."""
    key = hashlib.sha256(str(driver_results).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "tinylm-ray" / key


def _files(run_dir: Path, weights: bool) -> dict[str, bytes]:
    """A finished run folder's files, by path inside it, without the resume state (and the weights unless asked)."""
    out = {}
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir).as_posix()
        if path.is_file() and not rel.startswith(("last/", ".")) and (weights or rel != WEIGHTS):
            out[rel] = path.read_bytes()
    return out


def run_task(job: Job, cpus: float, results: str, weights: bool) -> tuple[str, Any, str, str, dict[str, bytes]]:
    """One run, in a Ray worker: ("done", metrics, run dir, what, files) | ("interrupted", None, run dir, message,
    {}) | ("error", exit code, "", line, {}); files only for results "returned"."""
    cap_threads(max(1, int(cpus)))  # the trainer's use-every-core setting then uses this task's share
    paths = job.paths if results == "shared" else replace(job.paths, results=node_results(job.paths.results))
    try:
        metrics, run_dir, what = train_run(job.config, paths, quiet=True, profile=job.profile, logs=job.logs)
    except Interrupted as e:
        return "interrupted", None, str(e.run_dir), str(e), {}
    except TinyLMError as e:  # sent back as text: the driver raises it again, as one line
        return "error", e.exit_code, "", str(e), {}
    files = _files(run_dir, weights) if results == "returned" else {}
    return "done", metrics, str(run_dir), what, files


def _write_returned(results: Path, name: str, files: dict[str, bytes]) -> Path:
    """A task's files written into the driver's results folder, each atomically, metrics.json last (until it is
    there the run does not count as finished)."""
    run_dir = results / "runs" / name
    for rel in sorted(files, key=lambda r: r == "metrics.json"):
        data = files[rel]
        atomic_write(run_dir / rel, lambda tmp, data=data: tmp.write_bytes(data))
    return run_dir


def _absolute(job: Job) -> Job:
    """The job with absolute folders: a worker's working directory is not the driver's."""
    p = job.paths
    return replace(job, paths=Paths(p.results.resolve(), p.data.resolve(), p.mirror.resolve() if p.mirror else None))


def _skip_returned(job: Job) -> tuple[RunMetrics, Path] | None:
    """With results "returned": a run already finished in the driver's folder (its weights may have stayed on the
    node), which is not sent again."""
    run_dir = job.paths.results / "runs" / run_id(job.config)
    metrics = read_metrics(run_dir) if run_dir.is_dir() else None
    return (metrics, run_dir) if metrics is not None and metrics.finished else None


def train_on_ray(jobs: list[Job], options: RayOptions, report: Callable[[int, RunMetrics, Path, str], None],
                 quiet: bool = False) -> None:
    """Train `jobs` as Ray tasks; `report(index from 1, metrics, run dir, what)` as each one finishes, with a bar
    over the suite (unless `quiet`)."""
    options.check()
    ray = _import_ray()
    jobs = [_absolute(job) for job in jobs]
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=options.address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise TinyLMError(f"could not reach the Ray cluster at {options.address}: {str(e).splitlines()[0]}; "
                              "start one with `ray start --head` or leave out --address") from None
    try:
        _train_all(ray, jobs, options, report, quiet)
    finally:
        if started:
            ray.shutdown()


def _one_line(ray: Any, e: Exception) -> str:
    """A Ray failure as one line: the task's own exception where it raised one, else Ray's first line."""
    cause = e.cause if isinstance(e, ray.exceptions.RayTaskError) and e.cause is not None else e
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def _outcome(ray: Any, ref: Any, job: Job) -> tuple[str, Any, Path, str]:
    """A finished task's (status, metrics or exit code, run dir, what or message), its returned files written."""
    try:
        status, metrics, run_dir, what, files = ray.get(ref)
    except ray.exceptions.RayError as e:  # the worker died twice, or Ray itself failed
        return "error", 1, Path(), f"{run_id(job.config)}: {_one_line(ray, e)}"
    if files:
        run_dir = _write_returned(job.paths.results, Path(run_dir).name, files)
    return status, metrics, Path(run_dir), what


def _cancel(ray: Any, refs: list[Any]) -> None:
    """Ctrl-C: a running task gets a KeyboardInterrupt (the trainer saves its state and stops); waited for, so that
    the next command finds their state."""
    for ref in refs:
        ray.cancel(ref)
    for ref in refs:
        try:
            ray.get(ref)
        except (ray.exceptions.RayError, KeyboardInterrupt):
            pass


def capacity(ray: Any, options: RayOptions) -> int:
    """How many runs the cluster's resources hold at once now (it may grow: an autoscaling cluster adds nodes)."""
    total = ray.cluster_resources()
    fits = [total.get("CPU", 0) / options.cpus_per_run]
    if options.gpus_per_run:
        fits.append(total.get("GPU", 0) / options.gpus_per_run)
    n = int(min(fits) + 1e-9)
    if n < 1:
        raise UsageError(f"each run asks for {options.cpus_per_run:g} CPUs and {options.gpus_per_run:g} GPUs, but "
                         f"the Ray cluster has {total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs; "
                         "lower --cpus-per-run / --gpus-per-run")
    return n


def _train_all(ray: Any, jobs: list[Job], options: RayOptions,
               report: Callable[[int, RunMetrics, Path, str], None], quiet: bool) -> None:
    """Tasks are submitted as the cluster has room for them, largest budgets first, so that a run not started when
    the suite stops (a failure, Ctrl-C) is never started."""
    task = ray.remote(run_task).options(num_cpus=options.cpus_per_run, num_gpus=options.gpus_per_run,
                                        max_retries=1, retry_exceptions=False)
    bar = tqdm(total=len(jobs), desc="suite", unit="run", disable=True if quiet else None, dynamic_ncols=True)

    def finished(index: int, metrics: RunMetrics, run_dir: Path, what: str) -> None:
        bar.update(1)
        with tqdm.external_write_mode():  # the run's line goes above the bar
            report(index, metrics, run_dir, what)

    queue = biggest_first(jobs)
    pending: dict[Any, tuple[int, Job]] = {}
    failure: tuple[int, str] | None = None
    interrupted = 0
    try:
        while pending or (queue and failure is None):
            if failure is None and queue and len(pending) < capacity(ray, options):
                index, job = queue.pop(0)
                found = _skip_returned(job) if options.results == "returned" else None
                if found is not None:
                    finished(index, *found, "skipped")
                else:
                    pending[task.remote(job, options.cpus_per_run, options.results, options.weights)] = (index, job)
                continue
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)  # returns often: Ctrl-C is seen here
            if not done:
                continue
            index, job = pending.pop(done[0])
            status, metrics, run_dir, what = _outcome(ray, done[0], job)
            if status == "done":
                finished(index, metrics, run_dir, what)
            elif status == "interrupted":
                interrupted += 1
            elif failure is None:  # the runs in flight finish; no other starts
                failure = (metrics, what)
    except KeyboardInterrupt:
        _cancel(ray, list(pending))
        raise TinyLMError("interrupted: the runs in progress saved their state; the same command resumes them "
                          "and trains the rest", exit_code=130) from None
    finally:
        bar.close()
    if failure is not None:
        raise TinyLMError(failure[1], exit_code=failure[0])
    if interrupted:
        raise TinyLMError(f"{interrupted} runs were stopped and saved their state; the same command resumes "
                          "them", exit_code=143)
