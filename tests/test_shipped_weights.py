"""Pre-trained weights of the headline runs: shipped read-only with their checksums, they reproduce their shipped
scores, and a fresh clone generates and chats with them before training anything."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

import tinylm
from tinylm.cli import main
from tinylm.data.sources import sha256_file
from tinylm.errors import TinyLMError
from tinylm.run_folders import WEIGHTS_MANIFEST

from .test_reference import REFERENCE, shipped  # noqa: F401 - the fixture that asserts the reference unchanged

MANIFEST = json.loads((REFERENCE / WEIGHTS_MANIFEST).read_text())
LIMIT_BYTES = 52_000_000  # the headline Tiny Shakespeare runs: 50.2 MB with the llama's 10.7 MB and mamba's 11.5 MB


def test_the_manifest_lists_every_shipped_weights_file_with_its_checksum_within_the_size_limit():
    files = {p.parent.name: p for p in (REFERENCE / "runs").glob("*/model.safetensors")}
    assert set(files) == set(MANIFEST) and len(files) >= 4
    for run, entry in MANIFEST.items():
        assert entry == {"sha256": sha256_file(files[run]), "bytes": files[run].stat().st_size}, run
    assert sum(e["bytes"] for e in MANIFEST.values()) <= LIMIT_BYTES


def test_the_weights_shipped_are_the_headline_runs_of_tiny_shakespeare():
    best = json.loads((REFERENCE / "results.json").read_text())["best"]
    headline = {name for key, name in best.items() if key.startswith("tinyshakespeare/")}
    assert headline == set(MANIFEST)


@pytest.mark.slow
@pytest.mark.parametrize("run", sorted(MANIFEST))
def test_each_shipped_run_with_weights_reproduces_its_test_score(run, mirror, data_dir):
    path = REFERENCE / "runs" / run
    result = tinylm.load(path).evaluate("test", mirror=mirror, data_dir=data_dir)
    # 1e-7: another CPU's kernels round fp32 sums differently (4e-9 nats seen between an AMD and an Intel machine);
    # any change of weights, data or protocol moves the score by orders of magnitude more
    assert result.loglik == pytest.approx(json.loads((path / "metrics.json").read_text())["test_loglik"], abs=1e-7)


def test_a_fresh_clone_generates_and_chats_with_the_shipped_weights(shipped, capsys, monkeypatch):  # noqa: F811
    assert main(["generate", "--model", "transformer", "--prompt", "HAMLET:", "--length", "40", "--seed", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("HAMLET:") and len(out) > 40
    transformer = next(r for r in MANIFEST if "-transformer-" in r)
    assert f"model transformer ({transformer})" in err  # it says which run it used
    monkeypatch.setattr("sys.stdin", io.StringIO("ROMEO:\nquit\n"))
    assert main(["chat", "--model", "attention", "--temperature", "0.5", "--length", "30"]) == 0
    assert "ROMEO:" in capsys.readouterr().out
    assert main(["runs"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if "weights shipped" in line]
    assert sorted(line.split()[0] for line in listed) == sorted(MANIFEST)


def test_your_own_run_wins_over_the_shipped_weights(shipped, monkeypatch, mirror, data_dir):  # noqa: F811
    monkeypatch.setenv("TINYLM_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("TINYLM_DATA_DIR", str(data_dir))
    mine = tinylm.train(model="linear", dataset="tinyshakespeare", max_steps=3, quiet=True)
    assert tinylm.load(model="linear").path == mine.path  # worse on valid than the shipped run, but yours
    assert tinylm.load(model="transformer").path.parent == REFERENCE / "runs"  # none of yours: the shipped one


def test_a_damaged_shipped_weights_file_is_named_and_never_loaded(tmp_path, monkeypatch):
    run = next(iter(MANIFEST))
    copy = tmp_path / "reference"
    shutil.copytree(REFERENCE / "runs" / run, copy / "runs" / run)
    shutil.copy(REFERENCE / WEIGHTS_MANIFEST, copy / WEIGHTS_MANIFEST)
    weights = copy / "runs" / run / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight: safetensors would load it without complaint
    weights.write_bytes(bytes(data))
    with pytest.raises(TinyLMError, match=rf"{weights} is damaged: its sha256 is not the one shipped"):
        tinylm.load(copy / "runs" / run)
    monkeypatch.setenv("TINYLM_REFERENCE_DIR", str(copy))
    assert main(["generate", copy.as_posix() + f"/runs/{run}", "--length", "5"]) == 1
    assert Path(weights).read_bytes() == bytes(data)  # named, never "repaired" or rewritten
