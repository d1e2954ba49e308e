"""Atomic, pickle-free files: the one write-to-a-temporary-name-then-rename helper, safetensors and JSON.

Every write goes to a temporary file in the same folder and is renamed into place, so a crash, a kill or a full
disk leaves either the old file or the new one, never half of one. Checkpoints, downloads, the corpus cache,
tokenizers, run files and reports all write through `atomic_write`.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from tinylm.errors import TinyLMError

#: Seconds to wait between writing a temporary file and renaming it (tests use it to kill a process mid-write).
FAULT_DELAY_ENV = "TINYLM_FAULT_WRITE_DELAY"
#: A file-name pattern whose writes fail as on a full disk (tests of every write path through the real CLI).
FAULT_FULL_DISK_ENV = "TINYLM_FAULT_FULL_DISK"
_OS_ERROR = re.compile(r"os error (\d+)")
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(
    path: str | Path,
    write: Callable[[Path], None],
    check: Callable[[Path], None] | None = None,
    suffix: str = ".tmp",
) -> None:
    """Write `path` through `write(tmp)` on a temporary file beside it, then rename it into place.

    Args:
        path: the file to create or replace.
        write: writes the whole content to the temporary path it is given.
        check: called on the temporary file before the rename; raising keeps the old file (e.g. a checksum).
        suffix: of the temporary name `.<name>.<random><suffix>` (a killed writer leaves such a file behind).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
    try:
        try:
            write(tmp)
        except SafetensorError as e:  # safetensors reports I/O errors as its own type: make them OSErrors again
            code = _OS_ERROR.search(str(e))
            if code is None:
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None
        full_disk = os.environ.get(FAULT_FULL_DISK_ENV)  # read per write: the tests' forked CLI runs set it late
        if full_disk and fnmatch.fnmatch(path.name, full_disk):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        if check is not None:
            check(tmp)
        delay = float(os.environ.get(FAULT_DELAY_ENV, "0") or 0)
        if delay:  # fault injection for the kill-during-write tests
            time.sleep(delay)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text to `path` atomically (UTF-8)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a clear error if it is missing or damaged."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TinyLMError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TinyLMError(f"{path} is corrupted ({e}); delete the run or train it again") from None


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None) -> None:
    """Save tensors as safetensors atomically; `metadata` is stored as JSON in the header."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {"json": json.dumps(metadata)} if metadata is not None else None
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a safetensors file and its JSON metadata; a clear error if it is missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise TinyLMError(f"{path} does not exist; the run directory is incomplete (train or resume it)")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return tensors, json.loads(meta["json"]) if "json" in meta else {}
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        raise TinyLMError(f"{path} is truncated or corrupted ({str(e).splitlines()[0][:80]}); train the run again") \
            from None
