"""nanoGPT's split as a reproduction: train on the first 90 % of a text, valid and test both the last 10 %; its runs
carry nanoGPT's own estimate of the loss, are marked in the report's tables and are never a headline."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tinylm.cli import main
from tinylm.config import DataConfig
from tinylm.data.corpus import load_corpus
from tinylm.errors import UsageError
from tinylm.experiments.report import write_report
from tinylm.models import build_model
from tinylm.paths import Paths
from tinylm.recorder import train_run
from tinylm.suite_file import SuiteFile, data_config, load_suite_file, resolve_run
from tinylm.training.evaluate import random_window_loss


def test_the_nanogpt_split_of_tiny_shakespeare_is_nanogpts(mirror, data_dir):
    """nanoGPT's prepare.py: 1,003,854 training characters and 111,540 validation ones; valid and test the same."""
    data = data_config(load_suite_file(), "tinyshakespeare-nanogpt")
    assert data.label == "tinyshakespeare-nanogpt" and data.reproduction
    corpus = load_corpus(data, data_dir, mirror, quiet=True)
    sizes = {s: len(ids) for s, ids in corpus.splits.items()}
    assert sizes == {"train": 1_003_854, "valid": 111_540, "test": 111_540}
    assert (corpus.splits["valid"] == corpus.splits["test"]).all()
    standard = load_corpus(data_config(load_suite_file(), "tinyshakespeare"), data_dir, mirror, quiet=True)
    assert len(standard.splits["train"]) == 892_315  # its own cache: the standard split is untouched


def test_a_split_that_cannot_apply_is_one_clear_error(tmp_path):
    with pytest.raises(UsageError, match="ptb comes in fixed train, valid and test files"):
        load_corpus(DataConfig(name="ptb", split="nanogpt"), tmp_path, quiet=True)
    with pytest.raises(UsageError, match="data.split must be standard or nanogpt"):
        DataConfig(split="90/10")


def test_random_window_loss_is_the_mean_over_every_position_of_the_windows():
    torch.manual_seed(0)
    model = build_model("transformer", {"vocab_size": 11, "embed_dim": 16, "n_heads": 2, "n_layers": 1,
                                        "context_length": 8, "dropout": 0.0}).eval()
    tokens = torch.randint(11, (200,))
    got = random_window_loss(model, tokens, window=8, batches=3, batch_size=2, seed=5)
    g = torch.Generator().manual_seed(5)
    losses = []
    for _ in range(3):
        for a in torch.randint(200 - 8, (2,), generator=g).tolist():
            x, y = tokens[a : a + 8], tokens[a + 1 : a + 9]
            losses += torch.nn.functional.cross_entropy(model(x[None])[0], y, reduction="none").tolist()
    assert got == pytest.approx(sum(losses) / len(losses), rel=1e-6)


def test_a_reproduction_run_is_marked_and_never_the_headline(tiny_text_file, tmp_path, capsys):
    data = dataclasses.replace(DataConfig.text(tiny_text_file, "char"), split="nanogpt")
    sets = ["model.context_length=16", "model.embed_dim=16", "model.n_heads=2", "model.n_layers=1",
            "train.eval_interval=5", "train.eval_tokens=200"]
    cfg = resolve_run("transformer", suite=SuiteFile(), data=data, train_values={"max_steps": 10}, sets=sets)
    results = tmp_path / "results"
    metrics, run_dir, _ = train_run(cfg, Paths.of(results), quiet=True)
    assert metrics.dataset == "tiny-nanogpt" and metrics.test_window_loss > 0
    assert metrics.valid_loglik == metrics.test_loglik  # the same text
    plain = resolve_run("transformer", suite=SuiteFile(), data=DataConfig.text(tiny_text_file, "char"),
                        train_values={"max_steps": 10}, sets=sets)
    other, _, _ = train_run(plain, Paths.of(results), quiet=True)
    assert other.test_window_loss is None
    write_report(results, results, None, figures=False)
    md = (results / "RESULTS.md").read_text()
    assert "| tiny-nanogpt ‡ | transformer |" in md and "‡ *a reproduction*" in md
    headline = md.split("### Every run")[0]
    assert "tiny-nanogpt" not in headline and "| tiny |" in md
    assert main(["eval", str(run_dir), "--split", "test", "--json"]) == 0
    assert "test_loglik" in capsys.readouterr().out
