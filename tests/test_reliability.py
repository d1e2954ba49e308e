"""Reliability, through the real CLI: damaged result files are named and left out, a full
disk or a read-only folder on every write path is one line with nothing half-written, and a property-based fuzz
of the CLI's inputs never ends in a traceback or changes a file that existed before."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm.config import DataConfig
from tinylm.paths import Paths
from tinylm.recorder import train_run
from tinylm.suite_file import SuiteFile, resolve_run

from .cli_forks import CLI
from .conftest import TINY_TEXT

TINY = ["model.context_length=16", "model.embed_dim=16", "model.n_heads=2", "model.n_layers=1",
        "train.eval_interval=5", "train.eval_tokens=100", "train.batch_size=4"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace with a text file, a data directory and one finished tiny run under results/runs/good."""
    root = tmp_path_factory.mktemp("reliability")
    (root / "tiny.txt").write_text(TINY_TEXT)
    data = DataConfig(name="tiny", level="char", path=str(root / "tiny.txt"))
    cfg = resolve_run("transformer", suite=SuiteFile(), data=data, train_values={"max_steps": 6}, sets=TINY)
    train_run(cfg, Paths.of(root / "results", root / "data"), run_name="good", quiet=True)
    return root


_FORKS: list[CLI] = []


@pytest.fixture(scope="module", autouse=True)
def _forks(ws):
    """One server that forks a fresh CLI process per call (tests/cli_forks.py): no torch import per call."""
    _FORKS.append(CLI(ws, dict(os.environ)))
    yield
    _FORKS.pop().close()


def cli(ws: Path, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m tinylm.cli ARGS` in a process of its own, output as bytes (forked when there is no input)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TINYLM_")}
    base.update({"TINYLM_DATA_DIR": str(ws / "data"), "TINYLM_REFERENCE_DIR": "", **(env or {})})
    if stdin is None:
        out = _FORKS[0].run(list(args), Path(tempfile.mkdtemp(dir=ws)), cwd=cwd or ws, env=base)
        return subprocess.CompletedProcess(out.args, out.returncode, out.stdout.encode(), out.stderr.encode())
    return subprocess.run([sys.executable, "-m", "tinylm.cli", *args], cwd=cwd or ws, env=base, input=stdin,
                          capture_output=True, timeout=300)


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def one_error_line(out: subprocess.CompletedProcess) -> str:
    err = out.stderr.decode()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# -- 1. damaged result files ---------------------------------------------------------------------------------------

def test_the_report_names_damaged_run_folders_and_writes_the_rest(ws, tmp_path):
    results = tmp_path / "results"
    wrong_types = {"model": 3, "dataset": None, "status": "complete", "test_loglik": "x"}
    for name, metrics in {"good": None, "not-json": "{ oops", "a-list": "[1, 2]", "wrong-types": wrong_types}.items():
        shutil.copytree(ws / "results" / "runs" / "good", results / "runs" / name)
        if metrics is not None:
            text = metrics if isinstance(metrics, str) else json.dumps(metrics)
            (results / "runs" / name / "metrics.json").write_text(text)
    out = cli(ws, "report", "--results-dir", str(results))
    err = out.stderr.decode()
    assert out.returncode == 0 and "Traceback" not in err, err
    warnings = [line for line in err.splitlines() if line.startswith("tinylm: warning: skipped")]
    assert len(warnings) == 3, err
    assert any("a-list" in w and "holds a list" in w for w in warnings)
    assert any("not-json" in w and "corrupted" in w for w in warnings)
    assert any("wrong-types" in w and "'model' must be a string" in w for w in warnings)
    md = (results / "RESULTS.md").read_text()
    assert "1 finished runs of yours" in md and (results / "figures" / "runs" / "good.png").is_file()
    # the same check everywhere: a suite's skip decision and `runs` read metrics.json the same way
    runs = cli(ws, "runs", "--results-dir", str(results))
    assert runs.returncode == 0 and runs.stderr.decode().count("skipped") == 3


# -- 2. a full disk or a read-only folder, on every write path -----------------------------------------------------

TRAIN = ["train", "--model", "transformer", "--data", "tiny.txt", "--level", "char", "--max-steps", "6", "--quiet",
         *[f"--set={s}" for s in TINY]]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["config.yaml", "tokenizer.json", "metrics.json", "history.jsonl",
                                  "model.safetensors", "checkpoint.safetensors", "samples.txt"])
def test_a_full_disk_on_each_training_write_is_one_line_and_leaves_nothing_half_written(ws, tmp_path, name):
    shutil.copytree(ws / "data", tmp_path / "data")
    shutil.copy(ws / "tiny.txt", tmp_path / "tiny.txt")
    out = cli(ws, *TRAIN, "--results-dir", "results", env={"TINYLM_FAULT_FULL_DISK": name,
                                                           "TINYLM_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path)
    assert out.returncode == 1
    line = one_error_line(out)
    assert "the disk is full: cannot write in" in line and "results" in line and "free space" in line, line
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".part"))]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["RESULTS.md", "results.json", "*.png"])
def test_a_full_disk_while_reporting_is_one_line(ws, tmp_path, name):
    shutil.copytree(ws / "results" / "runs" / "good", tmp_path / "results" / "runs" / "good")
    before = tree(tmp_path / "results" / "runs")
    out = cli(ws, "report", "--results-dir", str(tmp_path / "results"), env={"TINYLM_FAULT_FULL_DISK": name})
    assert out.returncode == 1 and "the disk is full: cannot write in" in one_error_line(out)
    assert tree(tmp_path / "results" / "runs") == before


def test_a_cache_that_cannot_be_written_is_a_warning_and_the_run_goes_on(ws, tmp_path):
    shutil.copy(ws / "tiny.txt", tmp_path / "tiny.txt")
    out = cli(ws, *TRAIN, "--results-dir", "results", env={"TINYLM_FAULT_FULL_DISK": "meta.json",
                                                           "TINYLM_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr.decode()
    assert "tinylm: warning: could not cache the tokenized data in" in out.stderr.decode()


def _in_mount_namespace(ws: Path, tmp_path: Path, options: str, *args: str) -> subprocess.CompletedProcess:
    """The CLI with its results folder on a tmpfs mounted (with `options`) in a private mount namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {mnt}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.decode().strip()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYLM_")}
    env.update(TINYLM_DATA_DIR=str(ws / "data"), TINYLM_REFERENCE_DIR="")
    command = " ".join([f"mount -t tmpfs -o {options} tmpfs {mnt} &&", sys.executable, "-m", "tinylm.cli", *args])
    return subprocess.run(["unshare", "-m", "sh", "-c", command], cwd=ws, env=env, capture_output=True, timeout=300)


@pytest.mark.slow
def test_a_really_full_disk_while_saving_weights(ws, tmp_path):
    """safetensors reports ENOSPC as its own error type; it must still read as a full disk."""
    out = _in_mount_namespace(ws, tmp_path, "size=48k", *TRAIN, "--results-dir", str(tmp_path / "mnt" / "results"))
    assert out.returncode == 1
    assert "the disk is full: cannot write in" in one_error_line(out)


@pytest.mark.slow
def test_a_read_only_results_folder(ws, tmp_path):
    out = _in_mount_namespace(ws, tmp_path, "ro,size=48k", *TRAIN, "--results-dir", str(tmp_path / "mnt"))
    assert out.returncode == 1
    line = one_error_line(out)
    assert "cannot write in" in line and "read-only" in line and "free space" not in line, line


# -- 3. the chat and `models` ----------------------------------------------------------------------------------------

def test_chat_lists_the_models_and_names_input_that_is_not_utf8(ws):
    out = cli(ws, "chat", "results/runs/good", stdin=b"model nosuch\n" + b"caf\xe9\nquit\n")
    text = out.stdout.decode()
    assert out.returncode == 0, out.stderr.decode()
    assert "usage: model NAME, one of: linear, mlp, attention, transformer" in text
    assert "that line was not UTF-8 text" in text and "\\udce9" not in text


def test_models_applies_a_model_key_to_the_models_that_have_it(ws):
    out = cli(ws, "models", "--set", "model.n_layers=6")
    assert out.returncode == 0, out.stderr.decode()
    rows = {line.split()[0]: line for line in out.stdout.decode().splitlines()[1:]}
    assert "'n_layers': 6" in rows["transformer"] and "n_layers" not in rows["linear"]


# -- 4. a property-based fuzz of the CLI's inputs ------------------------------------------------------------------

def _run(argv: list[str], capsys) -> int:
    from tinylm.cli import main

    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code


FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(key=st.sampled_from(["model", "train", "data", "x"]).flatmap(
           lambda s: st.text(min_size=0, max_size=12).map(lambda k: f"{s}.{k}")),
       value=st.one_of(st.text(max_size=20), st.integers().map(str), st.floats().map(str)))
def test_fuzz_set_overrides(ws, capsys, key, value):
    before = tree(ws)
    assert _run(["models", "--set", f"{key}={value}"], capsys) in (0, 1, 2)
    assert tree(ws) == before


@FUZZ
@given(prompt=st.text(max_size=200))
def test_fuzz_prompts(ws, capsys, monkeypatch, prompt):
    monkeypatch.chdir(ws)
    before = tree(ws)
    argv = ["generate", "results/runs/good", f"--prompt={prompt}", "--length", "3", "--seed", "1"]
    assert _run(argv, capsys) in (0, 1)
    assert tree(ws) == before


@FUZZ
@given(lines=st.lists(st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s), max_size=4))
def test_fuzz_chat_lines(ws, capsys, lines):
    import io

    from tinylm.generate.interactive import Chat

    out = io.StringIO()
    chat = Chat(str(ws / "results" / "runs" / "good"), length=3, stdin=io.StringIO("\n".join(lines) + "\nquit\n"),
                stdout=out)
    assert chat.loop() == 0


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["config.yaml", "tokenizer.json", "metrics.json", "model.safetensors"]),
       data=st.binary(max_size=300), command=st.sampled_from(["generate", "eval", "runs", "report"]))
def test_fuzz_damaged_run_files(ws, tmp_path_factory, capsys, monkeypatch, name, data, command):
    root = tmp_path_factory.mktemp("fuzz")
    run = root / "results" / "runs" / "r"
    shutil.copytree(ws / "results" / "runs" / "good", run)
    (run / name).write_bytes(data)
    monkeypatch.chdir(root)
    before = tree(run)
    argv = {"generate": ["generate", str(run), "--length", "3"], "eval": ["eval", str(run)],
            "runs": ["runs", "--results-dir", "results"], "report": ["report", "--results-dir", "results",
                                                                    "--no-figures"]}[command]
    assert _run(argv, capsys) in (0, 1, 2)
    assert tree(run) == before
