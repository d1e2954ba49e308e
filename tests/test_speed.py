"""`tinylm bench` runs and its JSON holds every figure (speed itself is a benchmark, never asserted here)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinylm.errors import TinyLMError
from tinylm.paths import Paths
from tinylm.run_folders import run_id
from tinylm.speed import (
    head_speed,
    precision_quality,
    profile_precision,
    projected_time,
    random_corpus,
    run_bench,
    speed_corpus,
    summary_lines,
    time_to_target,
)
from tinylm.suite_file import load_suite_file, resolve_run
from tinylm.training.trainer import Trainer

pytestmark = pytest.mark.slow  # measures the machine; seconds each


def test_bench_writes_every_figure(tmp_path):
    returned, written = run_bench(Paths.of(tmp_path), quick=True, only=["attention"], repeats=1, precision="fp32")
    (path,) = (tmp_path / "bench").glob("*.json")
    report = json.loads(path.read_text())
    assert path == written and report == json.loads(json.dumps(returned))
    peak = report["matmul_fp32"]
    assert peak["peak_gflops"] == max(peak["1024"]["max"], peak["2048"]["max"], peak["after_models"]["peak_gflops"])
    assert {"cpu", "cores", "threads", "torch_version", "device", "bf16_native", "auto_precision"} <= set(
        report["machine"])
    (row,) = report["training"]
    assert row["model"] == "attention" and row["tokens_per_second"]["median"] > 0
    assert row["mfu"] == row["achieved_gflops"] / peak["peak_gflops"]
    assert {"median", "min", "max", "n"} <= set(row["tokens_per_second"])
    assert report["evaluation"]["tokens"] == 111_539
    assert {"cached", "uncached", "full_window", "speedup", "speedup_vs_full_window"} <= set(report["generation"])
    long = report["generation_long"]
    assert long["contexts"] == [1024] and long["tokens"] == 32  # quick: the first context only
    at = long["by_context"]["1024"]
    assert all(at[m]["median"] > 0 for m in ("transformer", "llama", "mamba"))
    assert at["mamba_vs_transformer"] == at["mamba"]["median"] / at["transformer"]["median"]
    assert long["crossover"] == (1024 if at["mamba_vs_transformer"] >= 1 else None)
    assert "cache_load" in report and "time_to_target" not in report  # quick: no 5-minute sprint
    start = report["start_time"]
    assert start["command"].startswith("tinylm train") and len(start["samples"]["first_step"]) == start["repeats"]
    first, torch_s = start["first_step_seconds"], start["import_torch_seconds"]  # each rounded to 1 ms, as the ratio
    assert start["ratio"] == pytest.approx(first / torch_s, abs=5e-4 * (1 + 1 / torch_s + first / torch_s**2) + 1e-9)
    assert start["first_step_seconds"] > 0 and start["import_torch_seconds"] > 0
    lines = summary_lines(report)
    assert any(line.startswith("start-up") and f"{start['ratio']:.2f}x" in line for line in lines)
    assert any(line.startswith("fp32 matmul peak") for line in lines)
    assert any(line.startswith("generation at context 1,024") and "mamba" in line for line in lines)
    assert any(line.startswith("attention") and f"{row['mfu']:.1%}" in line for line in lines)


def test_precision_comparison_trains_both_precisions_on_the_same_batches(mirror, data_dir):
    q = precision_quality(2, Paths.of(data=str(data_dir), mirror=str(mirror)), "cpu")
    assert q["fp32"]["tokens"] == q["bf16"]["tokens"] > 0
    assert q["valid_loss_difference"] == q["bf16"]["valid_loss"] - q["fp32"]["valid_loss"]
    assert abs(q["valid_loss_difference"]) < 0.1  # two steps from the same start: the precisions barely differ
    assert q["speedup"] > 0


def test_time_to_target_scores_the_sprint_runs_snapshots_on_test(tmp_path, mirror, data_dir):
    small = ["train.max_time=2", "model.n_layers=1", "model.embed_dim=32", "model.n_heads=2"]
    paths = Paths.of(tmp_path, str(data_dir), str(mirror))
    out = time_to_target(-4.5, paths, "cpu", snapshot_every=0.5, sets=small)
    rows = out["snapshots"]
    assert len(rows) >= 2 and [r["step"] for r in rows] == sorted(r["step"] for r in rows)
    assert out["best_snapshot_test_loglik"] == max(r["test_loglik"] for r in rows)
    first = next((r for r in rows if r["test_loglik"] >= -4.5), None)
    assert out["reached"] == (first is not None)
    assert out["seconds_to_target"] == (first["seconds"] if first else None)
    unreachable = time_to_target(0.0, paths, "cpu", snapshot_every=0.5, sets=small)
    assert unreachable["reached"] is False and unreachable["seconds_to_target"] is None


def test_adaptive_head_speed_compares_both_heads_on_the_same_body(mirror, data_dir):
    row = head_speed("ptb", 1, 1, "cpu", Paths.of(data=data_dir, mirror=mirror))
    assert row["corpus"] == "training split" and row["vocab_size"] == 10_000
    full, adaptive = row["full"], row["adaptive"]
    assert adaptive["train_flops_per_token"] < full["train_flops_per_token"]
    assert row["speedup"] == pytest.approx(adaptive["tokens_per_second"]["median"] /
                                           full["tokens_per_second"]["median"])
    assert row["cutoffs"] and abs(sum(row["tail_shares"]) - (1 - 0.8)) < 0.1  # the head covers ~80% of tokens


def test_the_stand_in_corpus_follows_zipfs_law():
    counts = np.bincount(random_corpus("wikitext2", zipf=True).splits["train"], minlength=33_278)
    assert counts[0] / counts[9] == pytest.approx(10, rel=0.15) and counts[0] > counts[1] > counts[3]


def test_training_speed_trains_words_on_zipf_tokens_and_characters_on_uniform_ones():
    words = np.bincount(speed_corpus("ptb").splits["train"], minlength=10_000)
    chars = np.bincount(speed_corpus("tinyshakespeare").splits["train"], minlength=65)
    assert words[0] / words[9] == pytest.approx(10, rel=0.15)  # an adaptive head's tails see as few as in the text
    assert chars.max() / chars.min() < 1.3


def test_profile_bench_times_each_run_of_the_profile_in_both_precisions(tmp_path, mirror, data_dir):
    report, _ = run_bench(Paths.of(tmp_path, str(data_dir), str(mirror)), quick=True, repeats=1, profile="sprint")
    section = report["profile_precision"]
    (row,) = section["rows"]  # the sprint profile: the transformer on Tiny Shakespeare
    assert section["profile"] == "sprint" and (row["model"], row["dataset"]) == ("transformer", "tinyshakespeare")
    want = resolve_run("transformer", "tinyshakespeare", suite=load_suite_file(), profile="sprint").train.precision
    assert row["trains_in"] == want
    assert row["speedup"] == pytest.approx(row["bf16"]["tokens_per_second"]["median"] /
                                           row["fp32"]["tokens_per_second"]["median"])
    assert "training" not in report  # the profile's runs instead of the reference models
    assert any(line.startswith("transformer") and f"{row['speedup']:.2f}x" in line for line in summary_lines(report))
    # a 5-minute profile: its time budget is its training time, whatever the rate
    assert (row["tokens_from"], row["projected_seconds"]) == ("time budget", 300)


def test_profile_bench_projects_a_runs_time_from_the_shipped_runs_tokens_else_its_budget(tmp_path, monkeypatch):
    cfg = resolve_run("transformer", "tinyshakespeare", suite=load_suite_file(), profile="full")
    trainer = Trainer(cfg, random_corpus("tinyshakespeare"))
    monkeypatch.setenv("TINYLM_REFERENCE_DIR", str(tmp_path))
    budget = projected_time(cfg, trainer, 1000.0)  # 12M tokens in steps of 32 x 128
    assert budget == {"tokens": 2930 * 4096, "tokens_from": "budget", "projected_seconds": 2930 * 4096 / 1000}
    shipped = tmp_path / "runs" / run_id(cfg) / "metrics.json"
    shipped.parent.mkdir(parents=True)
    shipped.write_text(json.dumps({"status": "stopped_early", "tokens_trained": 5000}))
    shipped_time = {"tokens": 5000, "tokens_from": "reference run", "projected_seconds": 5}
    assert projected_time(cfg, trainer, 1000.0) == shipped_time
    shipped.write_text(json.dumps({"status": "interrupted", "tokens_trained": 5000}))  # not a finished run
    assert projected_time(cfg, trainer, 1000.0)["tokens_from"] == "budget"


def test_profile_bench_notes_a_dataset_it_cannot_load(tmp_path):
    (tmp_path / "mirror").mkdir()
    rows = profile_precision("sprint", 1, 1, "cpu", Paths.of(tmp_path, tmp_path / "data", tmp_path / "mirror"))
    assert rows == [{"dataset": "tinyshakespeare", "note": rows[0]["note"]}] and rows[0]["note"].startswith("skipped")


def test_profile_bench_refuses_an_unknown_profile_before_measuring(tmp_path):
    with pytest.raises(TinyLMError, match="unknown profile 'nope'"):
        run_bench(Paths.of(tmp_path), profile="nope")
    assert not (tmp_path / "bench").exists()
