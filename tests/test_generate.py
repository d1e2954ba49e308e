"""Sampling, KV-cache generation, the generate command and the interactive prompt."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import torch

from tinylm.config import DataConfig
from tinylm.errors import TinyLMError
from tinylm.generate.interactive import Chat, generate_text
from tinylm.generate.sampling import generate_ids, sample
from tinylm.models import build_model
from tinylm.paths import Paths
from tinylm.recorder import train_run
from tinylm.run_folders import load_run
from tinylm.suite_file import SuiteFile, resolve_run

from .conftest import REPO


def test_temperature_zero_is_greedy():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 2.9]])
    assert sample(logits, temperature=0).tolist() == [1, 0]


def test_top_k_keeps_exactly_k_even_with_ties():
    logits = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])
    g = torch.Generator().manual_seed(0)
    drawn = {int(sample(logits, 1.0, top_k=2, generator=g)) for _ in range(200)}
    assert len(drawn) == 2  # a threshold would let all four tied tokens in


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    g = torch.Generator().manual_seed(0)
    drawn = {int(sample(logits, 1.0, top_p=0.7, generator=g)) for _ in range(300)}
    assert drawn == {0, 1}
    assert {int(sample(logits, 1.0, top_p=0.01, generator=g)) for _ in range(50)} == {0}


@pytest.mark.parametrize("name", ["attention", "transformer"])
def test_cached_and_uncached_generation_give_the_same_tokens(name):
    torch.manual_seed(0)
    model = build_model(name, {"vocab_size": 20, "context_length": 16, "embed_dim": 32, "n_heads": 4,
                               "n_layers": 2}).eval()
    prompt = [1, 2, 3]
    cached = list(generate_ids(model, prompt, 60, temperature=1.0, seed=5, use_cache=True))
    uncached = list(generate_ids(model, prompt, 60, temperature=1.0, seed=5, use_cache=False))
    assert cached == uncached and len(cached) == 60  # 60 > 16: the window slid several times


def test_cached_logits_match_a_full_forward_pass():
    torch.manual_seed(0)
    model = build_model("transformer", {"vocab_size": 20, "context_length": 16, "embed_dim": 32, "n_heads": 4,
                                        "n_layers": 2}).eval()
    idx = torch.randint(0, 20, (1, 10))
    full = model(idx)
    cache = model.new_cache()
    steps = [model(idx[:, :4], cache)[:, -1]] + [model(idx[:, t : t + 1], cache)[:, -1] for t in range(4, 10)]
    assert torch.allclose(torch.stack(steps, 1), full[:, 3:], atol=1e-5)


@pytest.fixture
def char_run(tiny_text_file, tmp_path):
    data = DataConfig(name="tiny", level="char", path=str(tiny_text_file))
    cfg = resolve_run("transformer", suite=SuiteFile(), data=data, train_values={"max_steps": 30},
                      sets=["model.context_length=32", "model.embed_dim=32", "model.n_heads=2", "model.n_layers=1",
                            "train.eval_interval=15", "train.learning_rate=0.01"])
    _, run_dir, _ = train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), quiet=True)
    return run_dir


@pytest.fixture
def word_run(tmp_path):
    f = tmp_path / "words.txt"
    f.write_text("the company announced a new plan\nthe market fell\n" * 200)
    data = DataConfig(name="words", level="word", path=str(f))
    cfg = resolve_run("attention", suite=SuiteFile(), data=data, train_values={"max_steps": 20},
                      sets=["model.context_length=16", "model.embed_dim=16", "model.n_heads=2", "model.n_layers=1",
                            "train.eval_interval=10"])
    _, run_dir, _ = train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), quiet=True)
    return run_dir


def test_generation_streams_and_is_reproducible(char_run):
    run = load_run(char_run)
    out = io.StringIO()
    text = generate_text(run, "First", 50, temperature=0.8, seed=3, out=out)
    assert text.startswith("First") and len(text) == 55 and out.getvalue() == text + "\n"
    assert generate_text(run, "First", 50, temperature=0.8, seed=3) == text


def test_unknown_prompt_characters_warn_and_all_unknown_is_an_error(char_run):
    run = load_run(char_run)
    warnings = []
    text = generate_text(run, "Fi§rst", 5, seed=0, warn=warnings.append)
    assert "'§'" in warnings[0] and text.startswith("Fi§rst")
    with pytest.raises(TinyLMError, match="no characters this model knows"):
        generate_text(run, "§§", 5, seed=0)
    assert len(generate_text(run, "", 10, seed=0)) == 10  # empty prompt: start from a newline


def test_word_level_output_reads_like_text(word_run):
    run = load_run(word_run)
    warnings = []
    text = generate_text(run, "the zebra", 30, temperature=0.5, seed=0, warn=warnings.append)
    assert "zebra" in warnings[0] and "<unk>" in warnings[0]
    assert "<eos>" not in text and "\n" in text


def test_generate_command_from_a_run_directory(char_run):
    out = subprocess.run(
        [sys.executable, "-m", "tinylm.cli", "generate", str(char_run), "--prompt", "All:", "--length", "40",
         "--seed", "1", "--temperature", "0"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("All:") and len(out.stdout) == 4 + 40 + 1


@pytest.mark.slow
def test_generate_finds_the_best_run_of_a_model(char_run, tmp_path):
    args = ["--model", "transformer", "--dataset", "tiny", "--results-dir", str(tmp_path / "results")]
    out = subprocess.run([sys.executable, "scripts/generate.py", *args, "--prompt", "All:", "--length", "10"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    missing = subprocess.run([sys.executable, "-m", "tinylm.cli", "generate", *args[:2], "--dataset", "ptb",
                              "--results-dir", str(tmp_path / "results")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "no trained transformer run on ptb" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_chat_with_piped_commands(char_run):
    stdin = io.StringIO("temp 0.3\ntemp abc\nlength 20\nFirst\nhelp\nquit\n")
    stdout = io.StringIO()
    chat = Chat(str(char_run), stdin=stdin, stdout=stdout)
    assert chat.loop() == 0
    text = stdout.getvalue()
    assert "temperature 0.3" in text and "usage: temp X" in text and "Goodbye!" in text
    assert chat.temperature == 0.3 and chat.length == 20 and "topk N" in text


def test_chat_ends_cleanly_at_end_of_input(char_run):
    out = subprocess.run([sys.executable, "-m", "tinylm.cli", "chat", str(char_run), "--length", "10"],
                         input="Hello\n", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "Goodbye!" in out.stdout and "Traceback" not in out.stderr


@pytest.mark.slow
def test_chat_under_a_real_terminal(char_run):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "tinylm.cli", "chat", str(char_run), "--length", "20"],
                          encoding="utf-8", timeout=60)
    child.expect("> ")
    child.sendline("temp 0.3")
    child.expect("temperature 0.3")
    child.expect("> ")
    child.sendline("First")
    child.expect("> ")
    child.sendline("quit")
    child.expect("Goodbye!")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
