"""The folders a command works with, results, data and the dataset mirror, as one `Paths`; each is resolved
once, from its argument, else its environment variable, else its default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tinylm.errors import UsageError


def results_dir(path: str | Path | None = None) -> Path:
    """Your working folder: the argument, else $TINYLM_RESULTS_DIR, else ./results; a file there is refused."""
    root = Path(path or os.environ.get("TINYLM_RESULTS_DIR") or "results")
    if root.is_file():
        raise UsageError(f"the results folder {root} is a file; pass a folder with --results-dir (or "
                         "TINYLM_RESULTS_DIR)")
    return root


def data_dir(path: str | Path | None = None) -> Path:
    """The data directory: the argument, else $TINYLM_DATA_DIR, else ./data; a file there is refused."""
    root = Path(path or os.environ.get("TINYLM_DATA_DIR") or "data")
    if root.is_file():
        raise UsageError(f"the data directory {root} is a file; pass a folder with --data-dir (or TINYLM_DATA_DIR)")
    return root


def mirror_dir(path: str | Path | None = None) -> Path | None:
    """The mirror directory: the argument, else $TINYLM_DATA_MIRROR, else None. It must exist if named."""
    value = path or os.environ.get("TINYLM_DATA_MIRROR")
    if not value:
        return None
    mirror = Path(value)
    if mirror.is_file():
        raise UsageError(f"the mirror {mirror} is a file; pass the folder that holds tinyshakespeare/, ptb/ and "
                         "wikitext-2/ with --mirror (or TINYLM_DATA_MIRROR)")
    if not mirror.is_dir():
        raise UsageError(f"mirror directory {mirror} does not exist; fix --mirror / TINYLM_DATA_MIRROR or unset it")
    return mirror


@dataclass(frozen=True)
class Paths:
    """Where runs are written (`results`), where datasets are cached (`data`), and the local copy of the dataset
    files to read before downloading (`mirror`, None for none)."""

    results: Path
    data: Path
    mirror: Path | None

    @classmethod
    def of(cls, results: str | Path | None = None, data: str | Path | None = None,
           mirror: str | Path | None = None) -> Paths:
        """Each folder from its argument, else its environment variable, else its default; checked as it is read."""
        return cls(results_dir(results), data_dir(data), mirror_dir(mirror))
