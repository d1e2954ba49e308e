"""The CUDA path (issue 15): bf16 training, fp32 evaluation that agrees with the CPU, the GPU bench. Runs only
where a CUDA GPU is present (never in CI)."""

from __future__ import annotations

import pytest
import torch

from tinylm.config import DataConfig
from tinylm.resolve import resolve_run
from tinylm.runner import train_run
from tinylm.runs import load_run, load_run_corpus
from tinylm.training.evaluate import evaluate

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TINY = ["model.context_length=32", "model.embed_dim=64", "model.n_heads=4", "model.n_layers=2",
        "train.eval_interval=10", "train.eval_tokens=500", "train.batch_size=8"]


def test_bf16_training_on_cuda_is_scored_in_fp32_like_on_the_cpu(tiny_text_file, tmp_path):
    cfg = resolve_run("transformer", raw={}, data=DataConfig(name="tiny", level="char", path=str(tiny_text_file)),
                      train_values={"max_steps": 30, "device": "cuda"}, sets=TINY)
    metrics, run_dir, _ = train_run(cfg, tmp_path / "results", quiet=True, data_dir=tmp_path / "d")
    assert metrics["precision"] == "bf16" and metrics["eval_precision"] == "fp32"
    assert "cpu" not in metrics["device"]
    run = load_run(run_dir)
    corpus = load_run_corpus(run, tmp_path / "d")
    on_cpu = evaluate(run.model, corpus.tensor("test"), batch_size=64)
    assert on_cpu.loglik == pytest.approx(metrics["test_loglik"], abs=1e-4)
