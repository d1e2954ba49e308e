"""`tinylm bench` runs and its JSON holds every figure (speed itself is a benchmark, never asserted here)."""

from __future__ import annotations

import json

from tinylm.bench import run_bench


def test_bench_writes_every_figure(tmp_path, capsys):
    run_bench(tmp_path, quick=True, only=["attention"], repeats=1)
    (path,) = (tmp_path / "bench").glob("*.json")
    report = json.loads(path.read_text())
    assert report["matmul_fp32"]["peak_gflops"] > 0
    assert {"cpu", "cores", "threads", "torch_version", "device"} <= set(report["machine"])
    (row,) = report["training"]
    assert row["model"] == "attention" and row["tokens_per_second"]["median"] > 0 and 0 < row["mfu"]
    assert {"median", "min", "max", "n"} <= set(row["tokens_per_second"])
    assert report["evaluation"]["tokens"] == 111_539
    assert {"cached", "uncached", "full_window", "speedup", "speedup_vs_full_window"} <= set(report["generation"])
    assert "cache_load" in report
    assert "fp32 matmul peak" in capsys.readouterr().out
