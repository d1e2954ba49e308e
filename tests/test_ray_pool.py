"""`tinylm suite --backend ray`: each run a task on a real local Ray cluster, the same run as trained alone."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from tinylm.cli import main
from tinylm.errors import TinyLMError
from tinylm.paths import Paths
from tinylm.ray_pool import RayOptions, train_on_ray
from tinylm.run_pool import Job
from tinylm.suite_file import load_suite_file
from tinylm.suite_plan import plan
from tinylm.training.loop import FAULT_KILL_ENV

from .test_run_pool import metrics, suite_file

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.slow,  # a Ray instance and its worker processes (each imports torch)
              pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")]

FOUR = {"lstm": {"context_length": 16, "embed_dim": 8, "hidden_dim": 16}}
"""A fourth model beside the --jobs test's three."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local Ray instance (2 CPUs) for the module; its workers see the fault-injection file named here."""
    kill_file = tmp_path_factory.mktemp("fault") / "kill-at-step"
    os.environ[FAULT_KILL_ENV] = str(kill_file)  # before ray.init: the workers inherit this environment
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield kill_file
    ray.shutdown()
    os.environ.pop(FAULT_KILL_ENV, None)


def four_runs(tmp_path: Path, models: dict | None = None) -> Path:
    path = suite_file(tmp_path, {**FOUR, **(models or {})})
    suite = yaml.safe_load(path.read_text())
    suite["profiles"]["tiny"]["datasets"]["tiny"].append("lstm")
    path.write_text(yaml.safe_dump(suite))
    return path


def one_after_the_other(base: list[str], results: Path) -> dict[str, dict]:
    """The suite trained in this process on one core: the thread count each Ray task trains with."""
    cores, threads = sorted(os.sched_getaffinity(0)), torch.get_num_threads()
    os.sched_setaffinity(0, cores[:1])
    try:
        assert main([*base, "--results-dir", str(results)]) == 0
    finally:
        os.sched_setaffinity(0, cores)
        torch.set_num_threads(threads)
    return metrics(results)


def assert_same_runs(one: dict[str, dict], two: dict[str, dict]) -> None:
    assert one.keys() == two.keys() and one
    for name, m in one.items():
        assert two[name]["status"] == "complete" and two[name]["profile"] == "tiny"
        for key in ("steps", "tokens_trained", "train_flops", "best_step"):
            assert two[name][key] == m[key], (name, key)
        for key in ("test_loss", "valid_loss"):
            assert two[name][key] == pytest.approx(m[key], rel=1e-9), (name, key)


def test_four_runs_as_ray_tasks_are_the_runs_trained_one_after_the_other(cluster, tmp_path, capsys):
    base = ["suite", "--profile", "tiny", "--config", str(four_runs(tmp_path)), "--quiet",
            "--data-dir", str(tmp_path / "d")]
    one = one_after_the_other(base, tmp_path / "one")
    capsys.readouterr()
    assert main([*base, "--results-dir", str(tmp_path / "two"), "--backend", "ray"]) == 0
    out = capsys.readouterr().out
    assert "each run a Ray task with 1 CPUs and 0 GPUs (run folders: shared)" in out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert sorted(line.split()[0] for line in lines) == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert all(line.split()[1] == "trained" for line in lines)
    assert_same_runs(one, metrics(tmp_path / "two"))
    # a second call skips every run
    assert main([*base, "--results-dir", str(tmp_path / "two"), "--backend", "ray"]) == 0
    assert capsys.readouterr().out.count("skipped") == 4


def test_a_worker_killed_mid_run_is_retried_and_resumes_to_the_same_numbers(cluster, tmp_path, capsys):
    base = ["suite", "--profile", "tiny", "--config", str(four_runs(tmp_path)), "--quiet",
            "--data-dir", str(tmp_path / "d"), "--only", "transformer"]
    one = one_after_the_other(base, tmp_path / "one")
    cluster.write_text("5")  # the worker training step 5 sends itself SIGKILL (the state was saved at step 3)
    capsys.readouterr()
    assert main([*base, "--results-dir", str(tmp_path / "two"), "--backend", "ray"]) == 0
    assert not cluster.exists(), "no worker reached the step"
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert len(lines) == 1 and lines[0].split()[1] == "resumed", lines
    assert_same_runs(one, metrics(tmp_path / "two"))


def test_a_failing_run_ends_the_suite_with_its_one_line_and_the_others_finish(cluster, tmp_path, capsys):
    path = four_runs(tmp_path, {"mlp": {"context_length": 4, "embed_dim": 8, "hidden_dim": 16,
                                        "learning_rate": 1e6}})
    code = main(["suite", "--profile", "tiny", "--config", str(path), "--quiet", "--data-dir", str(tmp_path / "d"),
                 "--results-dir", str(tmp_path / "r"), "--backend", "ray", "--only", "linear", "mlp"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("tinylm suite: error: training diverged"), err
    statuses = {name.split("-")[1]: m["status"] for name, m in metrics(tmp_path / "r").items()}
    assert statuses == {"linear": "complete", "mlp": "diverged"}


def test_returned_run_folders_are_written_here_without_weights_unless_asked(cluster, tmp_path, capsys):
    base = ["suite", "--profile", "tiny", "--config", str(four_runs(tmp_path)), "--quiet",
            "--data-dir", str(tmp_path / "d"), "--backend", "ray", "--ray-results", "returned",
            "--only", "linear", "transformer"]
    assert main([*base, "--results-dir", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.count(" trained ") == 2
    for run in (tmp_path / "r" / "runs").iterdir():
        names = {p.relative_to(run).as_posix() for p in run.rglob("*")}
        assert {"metrics.json", "config.yaml", "history.jsonl", "tokenizer.json"} <= names, names
        assert "model.safetensors" not in names and not any(n.startswith(("last", ".")) for n in names), names
    assert main([*base, "--results-dir", str(tmp_path / "r")]) == 0  # finished here: not sent again
    assert capsys.readouterr().out.count("skipped") == 2
    assert main([*base, "--results-dir", str(tmp_path / "w"), "--ray-weights"]) == 0
    assert len(list((tmp_path / "w" / "runs").glob("*/model.safetensors"))) == 2


def test_ctrl_c_cancels_the_tasks_in_flight_which_keep_their_state(cluster, tmp_path):
    """Ctrl-C arrives (here: from the first finished run's report) while a long run trains in another task."""
    suite, paths = load_suite_file(four_runs(tmp_path)), Paths.of(tmp_path / "r", tmp_path / "d")
    linear, transformer = (run.config for run in plan(suite, "tiny", only=["linear", "transformer"]))
    transformer = replace(transformer, train=replace(transformer.train, max_steps=3000, eval_interval=1000))
    jobs = [Job(transformer, paths, "tiny"), Job(linear, paths, "tiny")]

    def ctrl_c(index, metrics, run_dir, what):
        raise KeyboardInterrupt

    with pytest.raises(TinyLMError, match="interrupted: the runs in progress saved their state") as e:
        train_on_ray(jobs, RayOptions(), ctrl_c, quiet=True)
    assert e.value.exit_code == 130
    long = next((tmp_path / "r" / "runs").glob("tiny-transformer-*"))
    status = json.loads((long / "metrics.json").read_text())["status"]
    assert status == "interrupted" and (long / "last" / "checkpoint.safetensors").is_file()
    finished = []
    train_on_ray(jobs, RayOptions(), lambda i, m, d, what: finished.append((d.name, what)), quiet=True)
    assert sorted(finished) == sorted([(long.name, "resumed"), (next(iter(
        p.name for p in (tmp_path / "r" / "runs").glob("tiny-linear-*"))), "skipped")])


@pytest.mark.parametrize("args, message", [
    (["--address", "auto"], "--address only applies with --backend ray"),
    (["--backend", "ray", "--jobs", "2"], "--jobs is for --backend processes"),
    (["--backend", "ray", "--cpus-per-run", "0"], "--cpus-per-run must be positive (got 0)"),
    (["--backend", "ray", "--ray-weights"], "--ray-weights only applies with --ray-results returned"),
    (["--backend", "ray", "--cpus-per-run", "64"], "each run asks for 64 CPUs and 0 GPUs, but the Ray cluster has 2"),
])
def test_bad_ray_options_are_one_line(cluster, tmp_path, capsys, args, message):
    code = main(["suite", "--profile", "tiny", "--config", str(suite_file(tmp_path)), "--quiet",
                 "--data-dir", str(tmp_path / "d"), "--results-dir", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_the_python_api_takes_ray_options(cluster, tmp_path):
    import tinylm

    results = tinylm.suite("tiny", config=four_runs(tmp_path), models=["linear"], results=tmp_path / "r",
                           data_dir=tmp_path / "d", quiet=True, ray=tinylm.RayOptions(cpus_per_run=2))
    assert [r.metrics.status for r in results] == ["complete"]



def test_without_ray_the_backend_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: `import ray` raises ImportError
    code = main(["suite", "--profile", "tiny", "--config", str(suite_file(tmp_path)), "--quiet",
                 "--data-dir", str(tmp_path / "d"), "--results-dir", str(tmp_path / "r"), "--backend", "ray"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["tinylm suite: error: --backend ray needs Ray: pip install -e '.[ray]' (or pip "
                                 "install 'ray>=2.9')"], err
    assert not (tmp_path / "r" / "runs").exists()
