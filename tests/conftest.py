"""Shared fixtures: the dataset mirror, a session data directory, tiny corpora and tiny trained runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tinylm.models import registry

REPO = Path(__file__).resolve().parents[1]


def mirror_path() -> Path:
    env = os.environ.get("TINYLM_DATA_MIRROR")
    return Path(env) if env else REPO.parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test runs in its own folder with its own results directory and no shipped reference runs (tests of the
    reference set TINYLM_REFERENCE_DIR themselves), and starts from the built-in models: a plugin one test loads
    (`tinylm models` loads the installed ones) is gone after it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TINYLM_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("TINYLM_REFERENCE_DIR", str(tmp_path / "no-reference"))
    monkeypatch.delenv("TINYLM_DATA_DIR", raising=False)
    torch.manual_seed(0)
    before = dict(registry.MODELS)
    yield
    registry.MODELS.clear()
    registry.MODELS.update(before)


@pytest.fixture(scope="session")
def mirror() -> Path:
    path = mirror_path()
    if not (path / "tinyshakespeare" / "input.txt").is_file():
        pytest.skip(f"no dataset mirror at {path}; set TINYLM_DATA_MIRROR")
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One data directory for the whole session, so real datasets are copied and tokenized once."""
    return tmp_path_factory.mktemp("data")


TINY_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n"
) * 40


@pytest.fixture
def tiny_text_file(tmp_path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path
