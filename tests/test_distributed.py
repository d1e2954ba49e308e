"""Data-parallel training: 2 gloo processes (torchrun, via `tinylm train --nproc 2`) against one process with the
same global batch; sharded evaluation; resume across a change of world size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_TEXT
from tinylm.data.corpus import sample_batch
from tinylm.models.registry import build_model, make_config
from tinylm.training.evaluate import evaluate

TINY = ["--model", "transformer", "--level", "char", "--max-steps", "20", "--batch-size", "8",
        "--set", "model.embed_dim=32", "--set", "model.n_layers=2", "--set", "model.n_heads=2",
        "--set", "model.context_length=32", "--set", "model.dropout=0", "--set", "train.eval_interval=5",
        "--set", "train.eval_tokens=512", "--set", "train.warmup_steps=5", "--quiet"]


def tinylm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinylm.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def train(text: Path, tmp: Path, name: str, *extra: str, env: dict[str, str] | None = None):
    out = tinylm("train", "--data", str(text), *TINY, "--data-dir", str(tmp / "d"), "--results-dir",
                 str(tmp / "r"), "--run-name", name, *extra, env=env)
    return out, tmp / "r" / "runs" / name


def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def assert_same_trajectory(a: Path, b: Path) -> None:
    ha, hb = history(a), history(b)
    assert [h["step"] for h in ha] == [h["step"] for h in hb] == list(range(0, 21, 5))
    for x, y in zip(ha, hb):
        assert x["tokens"] == y["tokens"] and x["flops"] == y["flops"]
        assert y["valid_loss"] == pytest.approx(x["valid_loss"], rel=1e-5, abs=1e-6)
        if x["train_loss"] is not None:
            assert y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-5, abs=1e-6)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    for key in ("test_loss", "valid_loss", "best_valid_loss"):
        assert mb[key] == pytest.approx(ma[key], rel=1e-5), key
    assert mb["test_tokens"] == ma["test_tokens"] and mb["valid_tokens"] == ma["valid_tokens"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The single-process run every data-parallel run is compared with (trained once for the module)."""
    tmp = tmp_path_factory.mktemp("one-process")
    text = tmp / "tiny.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    out, run_dir = train(text, tmp, "one")
    assert out.returncode == 0, out.stderr
    return run_dir


def test_evaluation_shards_add_up_to_the_whole_split():
    model = build_model("transformer", make_config("transformer", {"vocab_size": 11, "context_length": 16,
                                                                   "embed_dim": 16, "n_heads": 2, "n_layers": 1}))
    tokens = torch.randint(0, 11, (1001,))
    whole = evaluate(model, tokens, batch_size=4)
    parts = [evaluate(model, tokens, batch_size=4, shard=(i, 3)) for i in range(3)]
    assert sum(p.tokens for p in parts) == whole.tokens == 1000
    assert sum(p.total_logprob for p in parts) == pytest.approx(whole.total_logprob, rel=1e-9)
    assert all(p.tokens > 0 for p in parts)


def test_a_ranks_batch_is_its_slice_of_the_global_batch_and_the_generator_advances_alike():
    tokens = torch.arange(1000)
    g0, g1, g = (torch.Generator().manual_seed(5) for _ in range(3))
    x, y = sample_batch(tokens, 8, 10, g)
    x0, _ = sample_batch(tokens, 8, 10, g0, rows=(0, 4))
    x1, y1 = sample_batch(tokens, 8, 10, g1, rows=(4, 8))
    assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(y1, y[4:])
    assert torch.equal(g0.get_state(), g.get_state()) and torch.equal(g1.get_state(), g.get_state())


@pytest.mark.slow
def test_two_gloo_processes_follow_the_single_process_trajectory(one_process, tiny_text_file, tmp_path):
    one_dir = one_process
    two, two_dir = train(tiny_text_file, tmp_path, "two", "--nproc", "2")
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("trained ") == 1, two.stdout  # rank 0 alone reports
    assert_same_trajectory(one_dir, two_dir)
    metrics = json.loads((two_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["status"] == "complete"
    assert {"config.yaml", "tokenizer.json", "model.safetensors", "samples.txt", "history.jsonl"} <= {
        p.name for p in two_dir.iterdir()}
    scored = tinylm("eval", str(two_dir), "--data-dir", str(tmp_path / "d"))
    assert scored.returncode == 0 and f"{metrics['test_loglik']:.4f}" in scored.stdout, scored.stdout + scored.stderr
    text = tinylm("generate", str(two_dir), "--prompt", "All:", "--length", "20")
    assert text.returncode == 0 and text.stdout.startswith("All:"), text.stderr


@pytest.mark.slow
def test_a_run_resumes_across_a_change_of_world_size(one_process, tiny_text_file, tmp_path):
    straight_dir = one_process

    def two_then_one() -> None:  # two processes, rank 0 stopped as by SIGTERM after step 8: all stop at that step
        tmp = tmp_path / "two-then-one"
        stopped, run_dir = train(tiny_text_file, tmp, "two-then-one", "--nproc", "2",
                                 env={"TINYLM_FAULT_STOP_AT_STEP": "8"})
        assert stopped.returncode == 143, stopped.stderr
        assert stopped.stderr.count("resume with: tinylm train --resume") == 1
        assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"
        resumed = tinylm("train", "--resume", str(run_dir), "--data-dir", str(tmp / "d"), "--quiet")
        assert resumed.returncode == 0 and "resumed" in resumed.stdout, resumed.stderr
        assert_same_trajectory(straight_dir, run_dir)

    def one_then_two() -> None:
        tmp = tmp_path / "one-then-two"
        stopped, run_dir = train(tiny_text_file, tmp, "one-then-two", env={"TINYLM_FAULT_STOP_AT_STEP": "12"})
        assert stopped.returncode == 143, stopped.stderr
        resumed = tinylm("train", "--resume", str(run_dir), "--nproc", "2", "--data-dir", str(tmp / "d"), "--quiet")
        assert resumed.returncode == 0, resumed.stderr
        assert_same_trajectory(straight_dir, run_dir)
        assert json.loads((run_dir / "metrics.json").read_text())["world_size"] == 2

    with ThreadPoolExecutor(2) as pool:  # the two directions at once, each in its own folders
        for done in [pool.submit(two_then_one), pool.submit(one_then_two)]:
            done.result()


def test_nproc_mistakes_are_reported_once_before_any_process_starts(tiny_text_file, tmp_path):
    out, _ = train(tiny_text_file, tmp_path, "odd", "--nproc", "2", "--batch-size", "7")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "tinylm train: error: train.batch_size=7 must be a multiple of the 2 processes (each trains on an equal slice "
        "of the global batch)"]
