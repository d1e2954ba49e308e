"""A killed or interrupted run loses at most one checkpoint interval and resumes to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from .conftest import TINY_TEXT

pytestmark = pytest.mark.slow  # real training subprocesses, killed and resumed

ARGS = ["train", "--model", "transformer", "--data", "tiny.txt", "--level", "char", "--max-steps", "60",
        "--run-name", "r", "--quiet", "--set", "model.context_length=16", "--set", "model.embed_dim=16",
        "--set", "model.n_heads=2", "--set", "model.n_layers=1", "--set", "train.eval_interval=10",
        "--set", "train.eval_tokens=100", "--set", "train.batch_size=4", "--set", "model.dropout=0.1"]


def start(ws: Path, results: str, delay: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "TINYLM_RESULTS_DIR": str(ws / results), "TINYLM_DATA_DIR": str(ws / "data"),
           "TINYLM_FAULT_WRITE_DELAY": str(delay)}
    return subprocess.Popen([sys.executable, "-m", "tinylm.cli", *ARGS], cwd=ws, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"process ended early: {proc.communicate()}"
        assert time.time() < deadline, "condition never met"
        time.sleep(0.02)


def history_steps(run: Path) -> list[int]:
    path = run / "history.jsonl"
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except json.JSONDecodeError:
            pass
    return steps


@pytest.fixture
def ws(tmp_path):
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    return tmp_path


def test_sigkill_at_three_moments_then_resume_gives_the_uninterrupted_result(ws):
    straight = start(ws, "a")  # the uninterrupted run, beside the interrupted ones (its own folder)
    run = ws / "b" / "runs" / "r"
    moments = [
        ("after the first checkpoints", lambda: 20 in history_steps(run)),
        ("during a checkpoint write", lambda: 40 in history_steps(run) and any((run / "last").glob(".*.tmp"))),
        ("during the final evaluation", lambda: 60 in history_steps(run)),
    ]
    for label, condition in moments:
        proc = start(ws, "b", delay=0.3)
        wait_for(condition, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert json.loads((run / "metrics.json").read_text())["status"] == "running", label
    final = start(ws, "b")
    out, err = final.communicate(timeout=180)
    assert final.returncode == 0, err
    assert straight.wait(timeout=180) == 0, straight.communicate()
    assert out.startswith("resuming transformer on tiny at step") and out.splitlines()[-1].startswith("resumed")
    a = load_file(ws / "a" / "runs" / "r" / "model.safetensors")
    b = load_file(run / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    ma = json.loads((ws / "a" / "runs" / "r" / "metrics.json").read_text())
    mb = json.loads((run / "metrics.json").read_text())
    for key in ("test_loss", "valid_loss", "best_valid_loss", "best_step", "tokens_trained", "train_flops", "status"):
        assert ma[key] == mb[key], key
    assert history_steps(run) == history_steps(ws / "a" / "runs" / "r")
    assert not list(run.rglob("*.tmp"))


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_save_state_and_print_the_resume_command(ws, sig, code):
    run = ws / "r1" / "runs" / "r"
    proc = start(ws, "r1", delay=0.1)
    wait_for(lambda: 10 in history_steps(run), proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert f"resume with: tinylm train --resume {Path('r1') / 'runs' / 'r'}" in err or "--resume" in err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "interrupted"
    assert (run / "last" / "checkpoint.safetensors").is_file()
    resumed = subprocess.run([sys.executable, "-m", "tinylm.cli", "train", "--resume", str(run), "--quiet"], cwd=ws,
                             env={**os.environ, "TINYLM_DATA_DIR": str(ws / "data")}, capture_output=True, text=True,
                             timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "metrics.json").read_text())["status"] == "complete"
