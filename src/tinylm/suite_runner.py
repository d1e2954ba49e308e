"""Train the runs of a suite profile: the Kneser-Ney baselines of its datasets, then its runs one after the other,
several at once (run_pool) or as tasks on a Ray cluster (ray_pool); `tinylm suite` and `tinylm.suite` both call
`run_suite`.

Finished runs are skipped, so the same call resumes an interrupted suite. Nothing is printed here: the caller is
told of each baseline and each run as it finishes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinylm.config import DataConfig, RunConfig
from tinylm.data.corpus import resolve_data_config
from tinylm.ngram import baseline_path, default_order, run_baseline
from tinylm.paths import Paths
from tinylm.ray_pool import RayOptions, train_on_ray
from tinylm.recorder import train_run
from tinylm.run_metrics import RunMetrics
from tinylm.run_pool import Job, train_in_parallel
from tinylm.suite_file import SuiteFile
from tinylm.suite_plan import PlannedRun, ProfileLabels, plan
from tinylm.tensorboard_log import check_logs


@dataclass
class SuiteResult:
    """One run of a suite, trained now or found finished."""

    index: int
    """Its place in the suite's plan, from 1."""
    of: int
    """How many runs the plan has."""
    label: str
    """What the plan varies, e.g. "tinyshakespeare transformer n_layers=4"."""
    config: RunConfig
    profile: str
    """The profile it was recorded as ("adhoc" when options changed its config)."""
    metrics: RunMetrics
    run_dir: Path
    what: str
    """What happened: trained, resumed or skipped (as train_run says)."""


def train_baselines(datas: list[DataConfig], paths: Paths | None = None, order: int | None = None,
                    missing_only: bool = False,
                    on_baseline: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """The Kneser-Ney baseline of every distinct dataset (seconds each), written under results/baselines; with
    `missing_only`, only those not written yet. `on_baseline` is given each one as it is done."""
    paths = paths or Paths.of()
    done, seen = [], set()
    for data in datas:
        if data.label in seen:
            continue
        seen.add(data.label)
        level = resolve_data_config(data).level
        if missing_only and baseline_path(paths.results, data.label, order or default_order(level)).is_file():
            continue
        done.append(run_baseline(data, paths, order))
        if on_baseline:
            on_baseline(done[-1])
    return done


def run_suite(
    suite: SuiteFile,
    profile: str,
    *,
    only: list[str] | None = None,
    datasets: list[str] | None = None,
    axes: dict[str, dict[str, list[Any]]] | None = None,
    train_values: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    paths: Paths | None = None,
    jobs: int = 1,
    ray: RayOptions | None = None,
    quiet: bool = False,
    logs: tuple[str, ...] | list[str] = (),
    on_plan: Callable[[list[PlannedRun]], None] | None = None,
    on_baseline: Callable[[dict[str, Any]], None] | None = None,
    on_result: Callable[[SuiteResult], None] | None = None,
    announce: Callable[[dict[str, Any]], None] | None = None,
) -> list[SuiteResult]:
    """Train every run of a profile (the finished ones are skipped) after the missing baselines of its datasets.

    Args:
        suite, profile, only, datasets, axes, train_values, sets: what `suite_plan.plan` takes (a run that
            `train_values` or `sets` change is recorded as "adhoc").
        paths: the results, data and mirror folders (default `Paths.of()`).
        jobs, ray: runs trained at once, each in a process of its own (1: one after the other, here); or each a
            task on a Ray cluster (`ray_pool.RayOptions`).
        quiet, logs: as `recorder.train_run` takes them.
        on_plan, on_baseline, on_result, announce: given the planned runs before anything trains, each baseline
            as it is done, each run as it finishes, and each run's forecast before it trains (`jobs=1` only).

    Returns:
        Every run of the plan, in the plan's order.
    """
    logs = check_logs(logs)
    runs = plan(suite, profile, only=only, datasets=datasets, axes=axes, train_values=train_values, sets=sets)
    paths = paths or Paths.of()
    if on_plan:
        on_plan(runs)
    train_baselines([r.config.data for r in runs], paths, None, missing_only=True, on_baseline=on_baseline)
    labels = ProfileLabels(suite)  # one for all: it caches each profile's planned runs
    recorded = [labels.label(run.config, profile) for run in runs]
    done: list[SuiteResult] = []

    def finished(i: int, metrics: RunMetrics, run_dir: Path, what: str) -> None:
        run = runs[i - 1]
        done.append(SuiteResult(i, len(runs), run.label, run.config, recorded[i - 1], metrics, run_dir, what))
        if on_result:
            on_result(done[-1])

    pool = [Job(run.config, paths, recorded[i], logs) for i, run in enumerate(runs)]
    if ray is not None:
        train_on_ray(pool, ray, finished, quiet=quiet)
    elif jobs != 1:
        train_in_parallel(pool, jobs, finished)
    else:
        for i, run in enumerate(runs, 1):
            finished(i, *train_run(run.config, paths, quiet=quiet, profile=recorded[i - 1], announce=announce,
                                   logs=logs))
    return sorted(done, key=lambda r: r.index)
