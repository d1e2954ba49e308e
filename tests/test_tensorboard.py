"""`--log tensorboard`: the scalars and samples a run writes for TensorBoard agree with history.jsonl."""

from __future__ import annotations

import json
import sys

import pytest

from tinylm.cli import main
from tinylm.errors import UsageError
from tinylm.tensorboard_log import check_logs

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

TINY = ["--model", "transformer", "--level", "char", "--max-steps", "40", "--set", "model.context_length=32",
        "--set", "model.embed_dim=32", "--set", "model.n_heads=2", "--set", "model.n_layers=1",
        "--set", "train.eval_interval=20", "--quiet", "--run-name", "tb"]


def events(run_dir):
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def history(run_dir):
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def scalars(acc, tag):
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_scalars_and_samples_match_the_history(tiny_text_file, tmp_path):
    assert main(["train", "--data", str(tiny_text_file), *TINY, "--log", "tensorboard"]) == 0
    run_dir = tmp_path / "results" / "runs" / "tb"
    acc, rows = events(run_dir), history(run_dir)
    assert scalars(acc, "valid/loss") == pytest.approx({r["step"]: r["valid_loss"] for r in rows}, rel=1e-6)
    assert scalars(acc, "train/learning_rate") == pytest.approx({r["step"]: r["lr"] for r in rows}, rel=1e-6)
    assert scalars(acc, "compute/flops") == pytest.approx({r["step"]: r["flops"] for r in rows}, rel=1e-6)
    assert sorted(scalars(acc, "train/loss")) == [10, 20, 30, 40]
    assert all(v > 0 for v in scalars(acc, "speed/tokens_per_second").values())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert scalars(acc, "final/test_loglik")[40] == pytest.approx(metrics["test_loglik"], rel=1e-6)
    sample = acc.Tensors("samples/text_summary")[0].tensor_proto.string_val[0].decode()
    assert (run_dir / "samples.txt").read_text().strip().splitlines()[0] in sample


def test_a_resumed_run_logs_each_step_once(tiny_text_file, tmp_path, monkeypatch):
    """A hard kill after step 35 leaves the checkpoint of step 20 and events up to 30 (as if `kill -9`: simulated
    by putting the step-20 checkpoint back); the resumed run redoes steps 21-35, and each step is logged once."""
    run_dir = tmp_path / "results" / "runs" / "tb"
    monkeypatch.setenv("TINYLM_FAULT_STOP_AT_STEP", "20")
    assert main(["train", "--data", str(tiny_text_file), *TINY, "--log", "tensorboard"]) != 0
    at_20 = (run_dir / "last" / "checkpoint.safetensors").read_bytes()
    monkeypatch.setenv("TINYLM_FAULT_STOP_AT_STEP", "35")
    assert main(["train", "--resume", str(run_dir), "--log", "tensorboard", "--quiet"]) != 0
    assert 30 in scalars(events(run_dir), "train/loss")
    (run_dir / "last" / "checkpoint.safetensors").write_bytes(at_20)
    monkeypatch.delenv("TINYLM_FAULT_STOP_AT_STEP")
    assert main(["train", "--resume", str(run_dir), "--log", "tensorboard", "--quiet"]) == 0
    acc = events(run_dir)
    assert [e.step for e in acc.Scalars("train/loss")] == [10, 20, 30, 40]
    assert [e.step for e in acc.Scalars("valid/loss")] == [r["step"] for r in history(run_dir)] == [0, 20, 40]


def test_without_the_package_the_flag_is_one_line(monkeypatch, capsys, tiny_text_file):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    with pytest.raises(UsageError, match=r"pip install -e \"\.\[tensorboard\]\""):
        check_logs(["tensorboard"])
    assert main(["train", "--data", str(tiny_text_file), *TINY, "--log", "tensorboard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensorboard" in err[0]
