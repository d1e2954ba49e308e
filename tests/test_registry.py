"""A new model is one class plus one registry entry: a toy model registered only here trains,
evaluates, generates, shows its ablation flag and appears in the report, with no other file touched."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from tinylm.cli import main
from tinylm.models import registry
from tinylm.models.base import LanguageModel, LMConfig, init_weights


@dataclass
class ToyConfig(LMConfig):
    """A bigram model through a bottleneck."""

    context_length: int = 1
    """Only the current token is seen."""
    embed_dim: int = 8
    """Bottleneck width."""


class ToyLM(LanguageModel):
    """logits_t = W2 (W1 x_t): a factored bigram table."""

    fixed_window = True

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.head = nn.Linear(config.embed_dim, config.vocab_size)
        init_weights(self)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(idx))  # (B, T, V)

    def matmul_flops_per_token(self, seq_len: int | None = None) -> float:
        return 2.0 * self.config.embed_dim * self.config.vocab_size


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "toy", registry.ModelSpec(ToyConfig, ToyLM, "#9467bd", "--toy-dims",
                                                                   "embed_dim"))


def test_a_model_registered_in_one_place_goes_through_every_command(toy, tiny_text_file, tmp_path, capsys):
    data = ["--data", str(tiny_text_file), "--level", "char", "--data-dir", str(tmp_path / "d")]
    assert main(["train", "--model", "toy", "--max-steps", "30", "--quiet", *data]) == 0
    (run_dir,) = (tmp_path / "results" / "runs").glob("tiny-toy-*")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "toy" and metrics["status"] == "complete" and metrics["test_loglik"] < 0

    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json", "--data-dir", str(tmp_path / "d")]) == 0
    assert json.loads(capsys.readouterr().out)["test_loglik"] == pytest.approx(metrics["test_loglik"])

    assert main(["generate", "--model", "toy", "--dataset", "tiny", "--prompt", "First", "--length", "20",
                 "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("First")

    with pytest.raises(SystemExit):
        main(["suite", "--help"])
    assert "--toy-dims" in capsys.readouterr().out

    assert main(["report"]) == 0
    results = (tmp_path / "results" / "RESULTS.md").read_text()
    assert "| toy |" in results
    assert (tmp_path / "results" / "figures" / "runs" / f"{run_dir.name}.png").is_file()


def test_an_unregistered_model_is_refused_with_the_registered_names(toy, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "nope"])
    assert e.value.code == 2
    assert "toy" in capsys.readouterr().err
