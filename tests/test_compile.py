"""train.compile: where torch.compile cannot compile (no C++ compiler on a CPU, say), the run trains eagerly, says
so in one warning and is the same run; any other error of the forward is still raised."""

from __future__ import annotations

import pytest
import torch

from tinylm.config import DataConfig
from tinylm.errors import TinyLMWarning
from tinylm.paths import Paths
from tinylm.recorder import train_run
from tinylm.suite_file import SuiteFile, resolve_run
from tinylm.training.trainer import CompiledForward

TINY = ["model.context_length=16", "model.embed_dim=32", "model.n_heads=2", "model.n_layers=1", "model.dropout=0.1",
        "train.eval_interval=4", "train.eval_tokens=256", "train.batch_size=4"]


class InductorError(RuntimeError):
    """Stands for inductor's own failure (its module is what the fallback looks at)."""


InductorError.__module__ = "torch._inductor.exc"


def failing_compile(error: type[Exception], tries: list[int]):
    def compile_(body):
        def compiled(*args, **kwargs):
            tries.append(1)
            torch.rand(5)  # an attempt that drew random numbers before failing: the retry must not see it
            raise error("InvalidCxxCompiler: No working C++ compiler found")
        return compiled
    return compile_


def test_a_run_whose_compile_fails_trains_eagerly_and_is_the_same_run(tiny_text_file, tmp_path, monkeypatch):
    data = DataConfig(name="tiny", level="char", path=str(tiny_text_file))

    def train(folder: str, compile_: bool):
        cfg = resolve_run("transformer", suite=SuiteFile(), data=data, sets=TINY,
                          train_values={"max_steps": 8, "device": "cpu", "compile": compile_})
        return train_run(cfg, Paths.of(tmp_path / folder, tmp_path / "data"), quiet=True)

    eager, eager_dir, _ = train("eager", False)
    tries: list[int] = []
    monkeypatch.setattr(torch, "compile", failing_compile(InductorError, tries))
    with pytest.warns(TinyLMWarning, match=r"torch.compile failed here \(InvalidCxxCompiler.*the same run, slower"):
        fell_back, fell_back_dir, _ = train("fell-back", True)
    assert len(tries) == 1  # tried once, then eager for good
    assert fell_back_dir.name == eager_dir.name
    assert (fell_back.test_loglik, fell_back.valid_loglik) == (eager.test_loglik, eager.valid_loglik)
    assert (fell_back_dir / "history.jsonl").read_text().count("valid_loss") > 1


def test_an_error_that_is_not_the_compilers_is_raised(monkeypatch):
    monkeypatch.setattr(torch, "compile", failing_compile(ValueError, []))
    with pytest.raises(ValueError, match="InvalidCxxCompiler"):
        CompiledForward(torch.nn.Linear(2, 2))(torch.zeros(1, 2))


def test_the_compiled_forward_is_called_again_without_asking_its_truth(monkeypatch):
    """torch.compile's module answers len() by its model's, which a language model need not support."""

    class Compiled:
        def __call__(self, x):
            return x * 2

        def __len__(self):
            raise TypeError("MambaLM does not support len()")

    monkeypatch.setattr(torch, "compile", lambda body: Compiled())
    forward = CompiledForward(torch.nn.Identity())
    assert [forward(torch.ones(1)).item() for _ in range(3)] == [2.0, 2.0, 2.0]
