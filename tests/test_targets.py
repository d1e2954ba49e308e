"""The targets table: a missed target gets the compute it would take, and where a run already spent that much on
the same data and still missed it, the table says compute alone does not reach it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinylm.experiments.results import ReportRow
from tinylm.experiments.tables import target_records
from tinylm.run_metrics import RunMetrics


def run(name: str, flops: float, test_ll: float) -> ReportRow:
    metrics = RunMetrics(model="transformer", dataset="tinyshakespeare", params=1000, train_flops=flops,
                         valid_loss=-test_ll - 0.1, best_valid_loss=-test_ll - 0.1, test_loglik=test_ll,
                         status="complete")
    return ReportRow(Path(name), metrics, {"model": {}, "train": {}}, [], profile="full")


def test_a_target_missed_by_a_run_that_spent_the_estimate_is_not_reached_by_compute_alone():
    cheap, best = run("cheap", 1e12, -1.95), run("best", 1e13, -1.80)  # +0.15 nats per 10x: -1.55 at ~5e14
    goal = {("tinyshakespeare", "transformer"): -1.55}
    (plain,) = target_records([cheap, best], goal)
    assert plain["to_target"]["flops"] == pytest.approx(10 ** ((-1.55 + 1.95) / 0.15 + 12))
    assert "compute_alone" not in plain["to_target"]
    big = run("big", 1e16, -1.83)  # spent more than the estimate, on the same data, and scored worse
    (record,) = target_records([cheap, best], goal, every=[cheap, best, big])
    assert record["to_target"]["compute_alone"] == {"run": "big", "train_flops": 1e16, "reached": -1.83}
    assert "not reached by compute alone at this size of data: big spent 1.0e+16 FLOPs" in record["to_target"]["text"]
    (short,) = target_records([cheap, best], goal, every=[cheap, best, run("small", 1e14, -1.83)])
    assert "compute_alone" not in short["to_target"]  # 1e14 is less than the estimate: no verdict
