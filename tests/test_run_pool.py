"""`tinylm suite --jobs N`: several runs at once, each the same run as alone, reported as each one finishes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from tinylm.cli import main
from tinylm.paths import Paths
from tinylm.run_pool import Job, biggest_first
from tinylm.suite_file import resolve_run

from .conftest import TINY_TEXT

pytestmark = [pytest.mark.slow,  # worker processes (spawned: each imports torch)
              pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")]

SUITE = {
    "models": {"linear": {"context_length": 4}, "mlp": {"context_length": 4, "embed_dim": 8, "hidden_dim": 16},
               "transformer": {"context_length": 16, "embed_dim": 16, "n_heads": 2, "n_layers": 1}},
    "profiles": {"tiny": {"datasets": {"tiny": ["linear", "mlp", "transformer"]},
                          "training": {"max_steps": 6, "eval_interval": 3, "eval_tokens": 100, "batch_size": 4}}},
}


def suite_file(tmp_path: Path, models: dict | None = None) -> Path:
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    suite = {**SUITE, "data": {"tiny": {"type": "char", "path": str(tmp_path / "tiny.txt")}},
             "models": {**SUITE["models"], **(models or {})}}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def metrics(results: Path) -> dict[str, dict]:
    return {p.name: json.loads((p / "metrics.json").read_text()) for p in sorted((results / "runs").iterdir())}


def test_runs_trained_two_at_a_time_are_the_runs_trained_one_after_the_other(tmp_path, capsys):
    base = ["suite", "--profile", "tiny", "--config", str(suite_file(tmp_path)), "--quiet",
            "--data-dir", str(tmp_path / "d")]
    cores, threads = sorted(os.sched_getaffinity(0)), torch.get_num_threads()
    os.sched_setaffinity(0, cores[:1])  # one after the other on one core: the share each worker gets below
    try:
        assert main([*base, "--results-dir", str(tmp_path / "one")]) == 0
    finally:
        os.sched_setaffinity(0, cores)
        torch.set_num_threads(threads)
    capsys.readouterr()
    assert main([*base, "--results-dir", str(tmp_path / "two"), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 runs at a time, each in a process of its own" in out
    assert sorted(line.split()[0] for line in out.splitlines() if line.startswith("[")) == ["[1/3]", "[2/3]", "[3/3]"]
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert one.keys() == two.keys() and len(one) == 3
    for name, m in one.items():
        assert two[name]["status"] == "complete" and two[name]["profile"] == "tiny"
        for key in ("steps", "tokens_trained", "train_flops", "best_step"):
            assert two[name][key] == m[key], (name, key)
        for key in ("test_loss", "valid_loss"):  # the same thread count: the same numbers
            assert two[name][key] == pytest.approx(m[key], rel=1e-9), (name, key)
    # finished runs are skipped, in parallel as alone
    assert main([*base, "--results-dir", str(tmp_path / "two"), "--jobs", "3"]) == 0
    assert capsys.readouterr().out.count("skipped") == 3


def test_a_failing_run_ends_the_suite_with_its_one_line_and_the_others_finish(tmp_path, capsys):
    path = suite_file(tmp_path, {"mlp": {"context_length": 4, "embed_dim": 8, "hidden_dim": 16,
                                         "learning_rate": 1e6}})
    code = main(["suite", "--profile", "tiny", "--config", str(path), "--quiet", "--data-dir", str(tmp_path / "d"),
                 "--results-dir", str(tmp_path / "r"), "--jobs", "2", "--only", "linear", "mlp"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("tinylm suite: error: training diverged"), err
    statuses = {name.split("-")[1]: m["status"] for name, m in metrics(tmp_path / "r").items()}
    assert statuses == {"linear": "complete", "mlp": "diverged"}


def test_jobs_below_one_is_a_usage_error(tmp_path, capsys):
    code = main(["suite", "--profile", "tiny", "--config", str(suite_file(tmp_path)), "--jobs", "0",
                 "--data-dir", str(tmp_path / "d")])
    assert code == 2
    assert capsys.readouterr().err.strip() == "tinylm suite: error: --jobs must be at least 1 (got 0)"


def test_the_largest_budgets_start_first_and_keep_their_index():
    cfgs = [resolve_run("mlp", "tinyshakespeare", sets=[f"train.max_flops={b}"]) for b in (1e9, 3e9, 1e8)]
    paths = Paths(Path("r"), Path("d"), None)
    jobs = [Job(c, paths) for c in cfgs] + [Job(resolve_run("mlp", "tinyshakespeare"), paths)]
    assert [i for i, _ in biggest_first(jobs)] == [2, 1, 3, 4]
